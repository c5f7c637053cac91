//! Parla's engine: the domain, the conversation actors and the ports to the outside world.
//!
//! Transports (`gateway`, `channels`, `admin-api`) call [`Engine`]; the engine never depends on
//! a transport. Everything outside the process sits behind a port trait with adapters.
//!
//! # Layout
//! - [`model`]: domain types after the product brief (tenant, bot, intent, conversation,
//!   message with `seq`).
//! - [`engine`]: the [`Engine`] facade: open/resume a conversation, send events, subscribe.
//! - [`accounts`]: account changes as compare-and-set loops (none undoes another), each
//!   announced to the member's agent sockets.
//! - `supervisor`: one tenant supervisor per tenant, owning its live conversation actors.
//! - `actor`: the conversation actor, single writer of its conversation.
//! - [`store`]: the store port, the embedded redb adapter, the conformance suite.
//! - [`bus`]: the bus port and the in-process adapter.
//! - [`responder`]: the bot-brain port, the built-in responder (intents, knowledge-base
//!   passage, fallback) and the OpenAI-compatible streaming LLM responder.
//! - [`knowledge`]: documents → text → chunks (a background worker with a durable queue),
//!   scraping, the embedder port and hybrid (BM25 + vector) retrieval.
//! - [`rich`]: rich messages (image, file, card, carousel, form), postbacks and form
//!   submissions, with their limits.
//! - [`sentiment`]: offline sentiment and "asks for a person" detection.
//! - [`webhook`]: signed intent webhooks.
//! - [`egress`]: outbound HTTP rules (SSRF): no redirects, the address checked is the address
//!   connected to, for every call to a target a tenant chose; no redirects for the operator's.
//! - [`demo`]: the demo tenant and bot.
//! - [`clients`]: who an anonymous client is (its address, through trusted proxies only,
//!   IPv6 by /64) and the keyed limiters the transports hold against floods.
//! - [`analytics`]: what each stored message or handling change adds to the tenant's analytics.
//! - [`metrics`]: the Prometheus metrics exposed at `/metrics` (one registry per engine).
//! - [`health`]: readiness probes of every port (`/readyz`), cached and single-flight.
//!
//! # Concurrency model
//! Each live conversation is one tokio task (its actor) with a bounded mailbox; it alone writes
//! that conversation, so `seq` needs no lock. Tenant supervisors hold the actor maps behind
//! short mutexes. The embedded store has one writer thread doing group commit; reads run on the
//! blocking pool. Outbound events fan out through the bus, never through the actor's mailbox.

pub mod accounts;
mod actor;
pub mod agents;
pub mod analytics;
pub mod bus;
pub mod clients;
pub mod demo;
mod dispatch;
pub mod egress;
pub mod engine;
mod error;
pub mod health;
pub mod knowledge;
pub mod metrics;
pub mod model;
pub mod presence;
pub mod responder;
/// Rich messages: the protocol's types, stored as they are sent (see [`parla_protocol::rich`]).
pub use parla_protocol::rich;
pub mod sentiment;
pub mod store;
mod supervisor;
pub mod webhook;

pub use engine::{Deletion, Engine, OpenRequest, Opened, Pending};
pub use error::EngineError;
