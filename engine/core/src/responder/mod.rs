//! The bot brain: the port is the domain's ([`parla_domain::responder`]); its implementations
//! are here — [`builtin::BuiltinResponder`] and [`llm::LlmResponder`].

pub use parla_domain::responder::*;

pub mod builtin;
pub mod llm;
