//! The store ports: transcripts and tenant data, one small trait per concern (one file each),
//! so a consumer names only what it uses (the knowledge base `Documents`, a channel
//! `Connections` and `ChannelState`).
//!
//! Every method takes the tenant explicitly and every key an adapter writes starts with it, so a
//! query cannot reach another tenant's data. Adapters:
//! - `parla-store-redb` (`RedbStore`): the embedded default, one file in the data dir, durable
//!   on return (group commit + fsync).
//! - `parla-store-cql` (`CqlStore`): ScyllaDB or Apache Cassandra for distributed mode,
//!   durable on return at `LOCAL_QUORUM`; schema in `schema-cql/`, applied by its `migrate`.
//! - `crate::memory::MemoryStore` (feature `testkit`): in memory, for unit tests.
//!
//! Every adapter must pass the conformance suite (`crate::conformance`, feature `testkit`).

use crate::model::Message;

mod accounts;
mod analytics;
mod audit;
mod billing;
mod catalog;
mod channel_state;
mod connections;
mod conversations;
mod credentials;
mod documents;
mod inbox;
mod listings;
mod sealing;
mod subjects;
mod token_usage;

pub use accounts::Accounts;
pub use analytics::Analytics;
pub use audit::AuditLog;
pub use billing::Billing;
pub use catalog::Catalog;
pub use channel_state::ChannelState;
pub use connections::Connections;
pub use conversations::Conversations;
pub use credentials::Credentials;
pub use documents::Documents;
pub use inbox::InboxIndex;
pub use listings::Listings;
pub use sealing::Sealing;
pub use subjects::Subjects;
pub use token_usage::TokenUsage;

/// Why a store call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The conversation a message is appended to does not exist for that tenant.
    #[error("conversation not found")]
    ConversationNotFound,
    /// An account with that email exists (in any tenant).
    #[error("email already registered")]
    EmailTaken,
    /// Bot ids are global and this one belongs to another tenant.
    #[error("bot id is taken")]
    BotIdTaken,
    /// A conversation with that id already exists.
    #[error("conversation already exists")]
    ConversationExists,
    /// The seq is already taken by a different message: a second writer, which the actor model
    /// rules out; refusing keeps the transcript intact if it ever happens.
    #[error("seq {0} is already used in this conversation")]
    SeqConflict(u64),
    /// The seq does not follow the conversation's last one.
    #[error("seq {got} does not follow {last}")]
    SeqGap { last: u64, got: u64 },
    /// Stored bytes could not be decoded: corruption or an incompatible version.
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// The backend failed (I/O, connection, timeout).
    #[error("store backend: {0}")]
    Backend(String),
    /// The store has been closed.
    #[error("store closed")]
    Closed,

    // ---- compare-and-set refusals (accounts, members) ----
    /// The record changed (or was deleted) since it was read: read it again and redo the
    /// change on what it is now (the engine's `accounts` does).
    #[error("the record changed since it was read")]
    Conflict,
    /// The change would leave a tenant without an owner.
    #[error("a tenant keeps at least one owner")]
    LastOwner,
}

pub type StoreResult<T> = Result<T, StoreError>;

/// What [`Conversations::append`](crate::store::Conversations::append) did.
#[derive(Debug, Clone, PartialEq)]
// One value per append, moved once: its size does not matter, boxing would only allocate.
#[allow(clippy::large_enum_variant)]
pub enum Appended {
    /// The message is stored and durable.
    Stored,
    /// A message with the same `client_msg_id` was stored before: this is it, nothing written.
    Duplicate(Message),
}

impl From<crate::sealing::SealError> for StoreError {
    fn from(e: crate::sealing::SealError) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}

/// Every store port on one database. The ports share invariants an adapter keeps in one write
/// (deleting a bot drops its documents and connections; a channel contact creates a
/// conversation; every write keeps the analytics), so an adapter implements all of them on one
/// struct and is handed around as `Arc<dyn Store>`; a consumer that needs one concern takes
/// that port alone (`Arc<dyn Documents>`), upcast from it.
pub trait Store:
    Catalog
    + Conversations
    + InboxIndex
    + Accounts
    + Credentials
    + Connections
    + ChannelState
    + Documents
    + Analytics
    + TokenUsage
    + Billing
    + Listings
    + Subjects
    + AuditLog
    + Sealing
{
}

impl<T> Store for T where
    T: ?Sized
        + Catalog
        + Conversations
        + InboxIndex
        + Accounts
        + Credentials
        + Connections
        + ChannelState
        + Documents
        + Analytics
        + TokenUsage
        + Billing
        + Listings
        + Subjects
        + AuditLog
        + Sealing
{
}
