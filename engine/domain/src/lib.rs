//! Parla's domain: what a conversation, a bot, a tenant and a message are, what happens to and
//! in a conversation, what can go wrong (with the stable codes clients switch on), how analytics
//! count, and the ports every adapter implements. No I/O and no adapter here: the engine's core
//! (`parla-engine`) drives these types, the adapters (the embedded and CQL stores, the cluster
//! bus, the LLM client) implement the ports.
//!
//! # Layout
//! - [`model`]: domain types after the product brief (tenant, bot, intent, conversation,
//!   message with `seq`, accounts), ids as newtypes; the widget's vocabulary comes from
//!   `parla-protocol`.
//! - [`error`]: [`EngineError`], the one place errors get their wire codes.
//! - [`billing`]: plans and their limits, subscriptions, which plan is in force, and the
//!   payments port (Stripe).
//! - [`marketplace`]: listings, their prices, creators' payout accounts, installed bots.
//! - [`analytics`]: what each stored message or handling change adds to a tenant's counters.
//! - [`agents`]: agents' commands and their outcomes, the inbox's entries and order.
//! - [`presence`]: an agent's presence as others see it.
//! - [`channels`]: what a channel connection's sealed secrets hold; the admin API's port to
//!   the channels.
//! - [`bus`]: inbound and outbound events, receipts, subscriptions, and the bus ports, one
//!   file each (`Delivery`, `Feed`, `Coordination`, `Probe`; `Bus` is all four).
//! - [`store`]: the store ports (one small trait per concern, one file each), `Store` for
//!   all of them on one database, and their errors.
//! - [`sealing`]: secrets at rest — the sealer port and the fields each record seals.
//! - [`responder`]: the bot-brain port.
//! - [`sessions`]: the members' sessions port (who an access token names now), which the admin
//!   API implements and the agent socket asks.
//! - [`knowledge`]: the knowledge-base port (search, documents) and what retrieval hands the
//!   bot brain; `NoKnowledge` for engines without one.
//! - [`text`]: words as retrieval and intent matching see them.
//! - [`input`]: [`input::VisitorInput`], what a visitor sends however it comes in (widget,
//!   REST, WhatsApp, SMS), checked in one place against one text limit.
//! - [`limits`]: request budgets and attempt backoffs shared by a cluster's nodes.
//! - [`hooks`]: what happens outside when an intent with actions answers (webhooks).
//! - [`http`]: GETs to a tenant's targets under the egress rules, and the rule for a URL a
//!   tenant saves.
//!
//! - Behind the `testkit` feature: `conformance` (the checks every store adapter passes,
//!   stamped one test each by `store_conformance_tests!`) and `memory` (`MemoryStore`, every
//!   store port in memory, for unit tests of the engine).
//!
//! # Concurrency
//! None of its own: subscriptions and receipts are tokio channels the adapters fill and the
//! core drains.

pub mod agents;
pub mod analytics;
pub mod audit;
pub mod billing;
pub mod bus;
pub mod channels;
pub mod error;
pub mod hooks;
pub mod http;
pub mod input;
pub mod knowledge;
pub mod limits;
pub mod marketplace;
pub mod model;
pub mod presence;
pub mod redact;
pub mod responder;
pub mod sealing;
pub mod sessions;
pub mod store;
pub mod subjects;
pub mod text;

/// The store port's conformance suite, run by every adapter's tests (feature `testkit`).
#[cfg(feature = "testkit")]
pub mod conformance;

/// An in-memory store that behaves as the embedded one, for unit tests (feature `testkit`).
#[cfg(feature = "testkit")]
pub mod memory;

pub use error::EngineError;
/// Rich messages: the protocol's types, stored as they are sent.
pub use parla_protocol::rich;
