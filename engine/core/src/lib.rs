//! Parla's engine: the conversation actors, their supervisors and services, and (until they
//! move to crates of their own, issue 20) the adapters of the domain's ports.
//!
//! Transports (`gateway`, `channels`, `admin-api`) call [`Engine`]; the engine never depends on
//! a transport. Everything outside the process sits behind a port trait with adapters; the
//! ports, the model and the errors are `parla-domain`'s (re-exported here under their old
//! paths: [`model`], [`analytics`], [`agents`], [`error`], [`rich`]).
//!
//! # Layout
//! - [`engine`]: the [`Engine`] facade: open/resume a conversation, send events, subscribe.
//! - [`accounts`]: account changes as compare-and-set loops (none undoes another), each
//!   announced to the member's agent sockets.
//! - `supervisor`: one tenant supervisor per tenant, owning its live conversation actors.
//! - `actor`: the conversation actor, single writer of its conversation.
//! - [`store`]: the store port (the adapters are `parla-store-redb` and `parla-store-cql`).
//! - [`bus`]: the bus adapters (in-process, cluster).
//! - [`responder`]: the built-in responder (intents, knowledge-base passage, fallback).
//! - [`sentiment`]: offline sentiment and "asks for a person" detection.
//! - [`demo`]: the demo tenant and bot.
//! - [`clients`]: who an anonymous client is (its address, through trusted proxies only,
//!   IPv6 by /64) and the keyed limiters the transports hold against floods.
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
pub mod bus;
pub mod clients;
pub mod demo;
mod dispatch;
pub mod engine;
pub mod health;
pub mod metrics;
pub mod presence;
pub mod responder;
pub mod sentiment;
pub mod store;
mod supervisor;

pub use engine::{Deletion, Engine, EngineParts, OpenRequest, Opened, Pending};
/// The domain's modules, where they have always been found (`parla_engine::model`, …): the
/// transports and the binary name them so while the split moves on (issue 20).
pub use parla_domain::{EngineError, agents, analytics, error, model, rich};
