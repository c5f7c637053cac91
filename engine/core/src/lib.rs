//! Parla's engine: the conversation actors, their supervisors and the services transports call.
//!
//! Transports (`gateway`, `channels`, `admin-api`) call [`Engine`]; the engine never depends on
//! a transport, and names no adapter: everything outside the process sits behind the domain's
//! ports (store, bus, responder, knowledge base, intent hooks), whose adapters the binary
//! chooses and hands in through [`EngineParts`]. The ports, the model and the errors are
//! `parla-domain`'s (re-exported here under their old paths: [`model`], [`analytics`],
//! [`agents`], [`error`], [`rich`]).
//!
//! # Layout
//! - [`engine`]: the [`Engine`] facade: open/resume a conversation, send events, subscribe.
//! - [`feed`]: one reader's view of a conversation (every stored message once, in order, then
//!   live events), used by the widget socket, the agent socket and the channels' sinks.
//! - [`accounts`]: account changes as compare-and-set loops (none undoes another), each
//!   announced to the member's agent sockets.
//! - [`billing`]: the plan in force, usage and refusals past the limits, checkout and portal,
//!   the payment provider's events applied from the store's queue.
//! - [`marketplace`]: listings, payouts onboarding, buying a bot, installing it, and whether an
//!   installed bot is paid for.
//! - `supervisor`: one tenant supervisor per tenant, owning its live conversation actors.
//! - `actor`: the conversation actor, single writer of its conversation (`actor/`: lifecycle,
//!   visitor, agent and reply handling).
//! - `dispatch`: routing waiting conversations to agents.
//! - [`presence`]: agents' presence on this node (and, through the bus, the cluster's).
//! - [`store`]: the store port (the adapters are `parla-store-redb` and `parla-store-cql`).
//! - [`bus`]: the bus port and its in-process adapter (the domain's; the cluster adapter is
//!   `parla-cluster`).
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
//! short mutexes. Outbound events fan out through the bus, never through the actor's mailbox;
//! a bot's reply streams from a task of its own while the actor keeps handling events.

pub mod accounts;
mod actor;
pub mod billing;
pub mod bus;
pub mod clients;
pub mod demo;
mod dispatch;
pub mod engine;
pub mod feed;
pub mod health;
pub mod marketplace;
pub mod metering;
pub mod metrics;
pub mod presence;
pub mod responder;
pub mod retention;
pub mod sentiment;
pub mod store;
pub mod subjects;
mod supervisor;

pub use engine::{Deletion, Engine, EngineParts, OpenRequest, Opened, Pending};
/// The domain's modules, where they have always been found (`parla_engine::model`, …): the
/// transports and the binary name them so while the split moves on (issue 20).
pub use parla_domain::{EngineError, agents, analytics, error, input, model, rich};
