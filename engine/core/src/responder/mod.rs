//! The bot brain: the port is the domain's ([`parla_domain::responder`]); the built-in
//! implementation is here ([`builtin::BuiltinResponder`]: intents, knowledge-base passage,
//! fallback). The LLM responder is the egress adapter's (`parla_egress::llm`), wrapping this one.

pub use parla_domain::responder::*;

pub mod builtin;
