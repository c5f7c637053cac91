//! The store port: transcripts and tenant data.
//!
//! Every method takes the tenant explicitly and every key an adapter writes starts with it, so a
//! query cannot reach another tenant's data. Adapters (in `parla-engine`'s `store` today):
//! - `redb::RedbStore`: the embedded default, one file in the data dir, durable on return
//!   (group commit + fsync).
//! - `cql::CqlStore`: ScyllaDB or Apache Cassandra for distributed mode, durable on return
//!   at `LOCAL_QUORUM`; schema in `schema-cql/`, applied by `cql::migrate`.
//!
//! Every adapter must pass the conformance suite (`crate::conformance`, feature `testkit`).

use async_trait::async_trait;

use crate::model::{
    Account, AccountId, ApiKey, Bot, BotId, Chunk, Conversation, ConversationId, Document, Intent,
    Invitation, Message, OneTimeToken, RefreshToken, Tenant, TenantId,
};

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

/// What [`Store::append`] did.
#[derive(Debug, Clone, PartialEq)]
// One value per append, moved once: its size does not matter, boxing would only allocate.
#[allow(clippy::large_enum_variant)]
pub enum Appended {
    /// The message is stored and durable.
    Stored,
    /// A message with the same `client_msg_id` was stored before: this is it, nothing written.
    Duplicate(Message),
}

/// The persistence port. Implementations are cheap to share (`Arc<dyn Store>`).
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    async fn put_tenant(&self, tenant: &Tenant) -> StoreResult<()>;
    async fn get_tenant(&self, id: &TenantId) -> StoreResult<Option<Tenant>>;

    /// Creates or replaces a bot.
    async fn put_bot(&self, bot: &Bot) -> StoreResult<()>;
    async fn get_bot(&self, tenant: &TenantId, id: &BotId) -> StoreResult<Option<Bot>>;
    /// Finds a bot by id alone: the widget's entry point, which knows no tenant.
    async fn resolve_bot(&self, id: &BotId) -> StoreResult<Option<Bot>>;
    async fn list_bots(&self, tenant: &TenantId) -> StoreResult<Vec<Bot>>;
    /// Deletes a bot of `tenant` with its intents, documents and channel connections, and
    /// leaves a tombstone (listed by [`Store::bot_tombstones`]) in the same write; returns
    /// whether it existed. Its conversations are deleted after it, each by its own actor
    /// (`Engine::delete_bot`), which then clears the tombstone.
    async fn delete_bot(&self, tenant: &TenantId, id: &BotId) -> StoreResult<bool>;
    /// Bots of every tenant deleted whose conversations may not all be gone yet.
    async fn bot_tombstones(&self) -> StoreResult<Vec<(TenantId, BotId)>>;
    /// The deleted bot's conversations are all gone.
    async fn clear_bot_tombstone(&self, tenant: &TenantId, id: &BotId) -> StoreResult<()>;

    /// Replaces the whole intent set of a bot.
    async fn put_intents(
        &self,
        tenant: &TenantId,
        bot: &BotId,
        intents: &[Intent],
    ) -> StoreResult<()>;
    async fn list_intents(&self, tenant: &TenantId, bot: &BotId) -> StoreResult<Vec<Intent>>;

    /// Creates a conversation; fails with [`StoreError::ConversationExists`] if the id is taken.
    async fn create_conversation(&self, conversation: &Conversation) -> StoreResult<()>;
    async fn get_conversation(
        &self,
        tenant: &TenantId,
        id: &ConversationId,
    ) -> StoreResult<Option<Conversation>>;
    /// Deletes a conversation of `tenant` with all its messages; returns whether it existed.
    /// Only the conversation's actor calls this (it is the single writer).
    async fn delete_conversation(
        &self,
        tenant: &TenantId,
        id: &ConversationId,
    ) -> StoreResult<bool>;
    /// A bot's conversations, newest first (ids are time-ordered), strictly before `before`
    /// when given (the cursor of the previous page), at most `limit`.
    async fn list_conversations(
        &self,
        tenant: &TenantId,
        bot: &BotId,
        before: Option<&ConversationId>,
        limit: usize,
    ) -> StoreResult<Vec<Conversation>>;

    /// Appends a message, durable when this returns `Ok`. Idempotent by `client_msg_id`: a
    /// second message with the same one is not stored and the first comes back as
    /// [`Appended::Duplicate`]. `seq` must be the conversation's last seq + 1.
    async fn append(&self, message: &Message) -> StoreResult<Appended>;
    /// Messages with `seq > after_seq`, in seq order, at most `limit`.
    async fn messages_after(
        &self,
        tenant: &TenantId,
        conversation: &ConversationId,
        after_seq: u64,
        limit: usize,
    ) -> StoreResult<Vec<Message>>;
    /// The message stored with `client_msg_id` in the conversation, if any (what `append`
    /// would answer as [`Appended::Duplicate`]).
    async fn message_by_client_id(
        &self,
        tenant: &TenantId,
        conversation: &ConversationId,
        client_msg_id: &str,
    ) -> StoreResult<Option<Message>>;
    /// The highest stored seq of a conversation, 0 if it has none.
    async fn last_seq(&self, tenant: &TenantId, conversation: &ConversationId) -> StoreResult<u64>;

    /// Creates an account; [`StoreError::EmailTaken`] if its (lower-cased) email exists.
    async fn create_account(&self, account: &Account) -> StoreResult<()>;
    /// Finds an account by email alone: the login entry point, which knows no tenant.
    async fn account_by_email(&self, email: &str) -> StoreResult<Option<Account>>;
    async fn get_account(&self, tenant: &TenantId, id: &AccountId) -> StoreResult<Option<Account>>;
    /// Replaces an existing account (same tenant, id and email) if it is still at
    /// `account.version` (compare-and-set), storing it at `account.version + 1`:
    /// [`StoreError::Conflict`] when it was written or deleted since it was read, and
    /// [`StoreError::LastOwner`] when it would demote the tenant's last owner (checked
    /// atomically with every other demotion and removal of the tenant).
    async fn update_account(&self, account: &Account) -> StoreResult<()>;
    async fn list_accounts(&self, tenant: &TenantId) -> StoreResult<Vec<Account>>;
    /// Deletes an account of `tenant` (and frees its email); returns whether it existed.
    /// [`StoreError::LastOwner`] when it is the tenant's last owner.
    async fn delete_account(&self, tenant: &TenantId, id: &AccountId) -> StoreResult<bool>;

    async fn put_refresh_token(&self, token: &RefreshToken) -> StoreResult<()>;
    /// Marks the token with this digest used and returns it as it was before (so `used: true`
    /// means this is a reuse). Atomic: two concurrent uses see one `false` and one `true`.
    async fn use_refresh_token(&self, digest: &str) -> StoreResult<Option<RefreshToken>>;
    /// Deletes every token of a family (logout, or reuse detected).
    async fn revoke_refresh_family(&self, family: &str) -> StoreResult<()>;
    /// Deletes every refresh token of an account (password reset, removal): all its sessions.
    async fn revoke_account_sessions(
        &self,
        tenant: &TenantId,
        account: &AccountId,
    ) -> StoreResult<()>;

    /// Stores a new API key. Nothing rewrites a stored key: revocation and last use change one
    /// field each, with [`Store::revoke_api_key`] and [`Store::touch_api_key`], so no write
    /// undoes another (a whole-record write would put back whatever it read).
    async fn put_api_key(&self, key: &ApiKey) -> StoreResult<()>;
    /// Finds a key by the digest of its value: the authentication entry point.
    async fn api_key_by_digest(&self, digest: &str) -> StoreResult<Option<ApiKey>>;
    async fn list_api_keys(&self, tenant: &TenantId) -> StoreResult<Vec<ApiKey>>;

    async fn put_one_time_token(&self, token: &OneTimeToken) -> StoreResult<()>;
    /// Removes and returns the token with this digest: a second take finds nothing.
    async fn take_one_time_token(&self, digest: &str) -> StoreResult<Option<OneTimeToken>>;

    /// Adds `tokens` to the tenant's LLM usage in `month` (`YYYY-MM`); returns the new total.
    async fn add_token_usage(
        &self,
        tenant: &TenantId,
        month: &str,
        tokens: u64,
    ) -> StoreResult<u64>;
    async fn token_usage(&self, tenant: &TenantId, month: &str) -> StoreResult<u64>;

    /// Replaces how a conversation is handled (status, assignee, resolution…), keeping the
    /// rest of its record; returns whether it exists. Only the conversation's actor calls it.
    async fn set_handling(
        &self,
        tenant: &TenantId,
        id: &ConversationId,
        handling: &crate::model::Handling,
    ) -> StoreResult<bool>;
    /// Merges `fields` into the conversation's user data (what its forms collected): a key
    /// already there takes the new value, the others stay. Returns whether the conversation
    /// exists (nothing is written if not). Only the conversation's actor calls it.
    async fn merge_user_data(
        &self,
        tenant: &TenantId,
        id: &ConversationId,
        fields: &std::collections::BTreeMap<String, String>,
    ) -> StoreResult<bool>;
    /// The conversation's user data (empty when nothing was collected); `None` if the
    /// conversation does not exist for `tenant`.
    async fn user_data(
        &self,
        tenant: &TenantId,
        id: &ConversationId,
    ) -> StoreResult<Option<std::collections::BTreeMap<String, String>>>;
    /// Adds an agent's note to an existing conversation; returns whether it exists.
    async fn add_note(&self, note: &crate::model::Note) -> StoreResult<bool>;
    /// A conversation's notes, oldest first.
    async fn list_notes(
        &self,
        tenant: &TenantId,
        id: &ConversationId,
    ) -> StoreResult<Vec<crate::model::Note>>;
    /// The tenant's conversations that wait for an agent or are held by one (ESCALATED or
    /// ASSIGNED), whatever their age, in id order after `after` (the last id of the previous
    /// page), at most `limit`: an index kept by `set_handling` (and `delete_conversation`), so
    /// the inbox and the dispatcher find every one of them however many other conversations
    /// there are.
    async fn attention_conversations(
        &self,
        tenant: &TenantId,
        after: Option<&ConversationId>,
        limit: usize,
    ) -> StoreResult<Vec<Conversation>>;
    /// The tenant's conversations across its bots, newest first, before `before` (a cursor).
    async fn list_tenant_conversations(
        &self,
        tenant: &TenantId,
        before: Option<&ConversationId>,
        limit: usize,
    ) -> StoreResult<Vec<Conversation>>;
    /// Creates or replaces a canned response (shortcut uniqueness is the caller's to check).
    async fn put_canned(&self, canned: &crate::model::CannedResponse) -> StoreResult<()>;
    /// The tenant's canned responses, by id.
    async fn list_canned(
        &self,
        tenant: &TenantId,
    ) -> StoreResult<Vec<crate::model::CannedResponse>>;
    /// Deletes one; returns whether it existed.
    async fn delete_canned(&self, tenant: &TenantId, id: &str) -> StoreResult<bool>;
    /// Creates or replaces a channel connection (findable by id alone, for webhooks).
    async fn put_channel(&self, channel: &crate::model::ChannelConnection) -> StoreResult<()>;
    /// A connection by id, whatever its tenant: the webhook entry point.
    async fn channel_by_id(&self, id: &str)
    -> StoreResult<Option<crate::model::ChannelConnection>>;
    async fn list_channels(
        &self,
        tenant: &TenantId,
        bot: &BotId,
    ) -> StoreResult<Vec<crate::model::ChannelConnection>>;
    /// Deletes one of the tenant's connections; returns whether it existed.
    async fn delete_channel(&self, tenant: &TenantId, id: &str) -> StoreResult<bool>;
    /// The conversation of `contact` on `connection`: the existing one, or `fresh`, created
    /// with the mapping in one transaction (so two first messages open one conversation).
    async fn contact_conversation(
        &self,
        connection: &str,
        contact: &str,
        fresh: &Conversation,
    ) -> StoreResult<Conversation>;
    /// The existing conversation of `contact` on `connection` (a read; see
    /// [`Store::contact_conversation`] to create it).
    async fn find_contact_conversation(
        &self,
        tenant: &TenantId,
        connection: &str,
        contact: &str,
    ) -> StoreResult<Option<Conversation>>;
    /// The (connection, contact) a channel conversation belongs to; `None` for widget ones.
    async fn conversation_contact(
        &self,
        tenant: &TenantId,
        id: &ConversationId,
    ) -> StoreResult<Option<(String, String)>>;
    /// The tenant's channel conversations (WhatsApp, SMS), whatever their age.
    async fn channel_conversations(&self, tenant: &TenantId) -> StoreResult<Vec<ConversationId>>;
    /// Every channel connection, of every tenant (the channels start their watchers from it).
    async fn all_channels(&self) -> StoreResult<Vec<crate::model::ChannelConnection>>;
    /// Records a stored message's delivery, merged with what it had (provider ids accumulate,
    /// the status never moves back), and indexes the ids under `connection` (so a provider's
    /// status report finds it); returns whether the message exists.
    async fn set_delivery(
        &self,
        tenant: &TenantId,
        id: &ConversationId,
        seq: u64,
        connection: &str,
        delivery: &crate::model::Delivery,
    ) -> StoreResult<bool>;
    /// A provider's report on the message its id stands for, in one transaction: moves the
    /// message's delivery to `status` only if that is further on (a late "delivered" after
    /// "read" changes nothing). Returns the message's key and seq when the report moved it.
    async fn advance_delivery(
        &self,
        connection: &str,
        provider_id: &str,
        status: crate::model::DeliveryStatus,
        error: Option<String>,
    ) -> StoreResult<Option<(TenantId, ConversationId, u64)>>;
    /// Registers a device token for notifications about a conversation (idempotent).
    async fn add_push_token(
        &self,
        tenant: &TenantId,
        id: &ConversationId,
        token: &str,
    ) -> StoreResult<()>;
    async fn remove_push_token(
        &self,
        tenant: &TenantId,
        id: &ConversationId,
        token: &str,
    ) -> StoreResult<()>;
    async fn push_tokens(&self, tenant: &TenantId, id: &ConversationId)
    -> StoreResult<Vec<String>>;
    /// Records that `contact` opted out of (`true`) or back into messages on `connection`.
    async fn set_opted_out(&self, connection: &str, contact: &str, out: bool) -> StoreResult<()>;
    async fn opted_out(&self, connection: &str, contact: &str) -> StoreResult<bool>;
    /// Highest seq of a conversation delivered to its channel (0: none).
    async fn channel_cursor(&self, tenant: &TenantId, id: &ConversationId) -> StoreResult<u64>;
    async fn set_channel_cursor(
        &self,
        tenant: &TenantId,
        id: &ConversationId,
        seq: u64,
    ) -> StoreResult<()>;
    /// A conversation's last stored message.
    async fn last_message(
        &self,
        tenant: &TenantId,
        id: &ConversationId,
    ) -> StoreResult<Option<Message>>;

    /// Creates a document with its original bytes, or replaces the record (status, progress)
    /// when `content` is `None`. A document that is PENDING or PROCESSING is listed by
    /// [`Store::unfinished_documents`] until it is not.
    async fn put_document(&self, document: &Document, content: Option<&[u8]>) -> StoreResult<()>;
    async fn get_document(&self, tenant: &TenantId, id: &str) -> StoreResult<Option<Document>>;
    async fn list_documents(&self, tenant: &TenantId, bot: &BotId) -> StoreResult<Vec<Document>>;
    /// The bytes a document was created with.
    async fn document_content(&self, tenant: &TenantId, id: &str) -> StoreResult<Option<Vec<u8>>>;
    /// Replaces a document's chunks and its record in one transaction (processing done).
    async fn put_chunks(&self, document: &Document, chunks: &[Chunk]) -> StoreResult<()>;
    /// Every chunk of a bot's documents, by document then position.
    async fn list_chunks(&self, tenant: &TenantId, bot: &BotId) -> StoreResult<Vec<Chunk>>;
    /// Deletes a document with its bytes and chunks; returns whether it existed.
    async fn delete_document(&self, tenant: &TenantId, id: &str) -> StoreResult<bool>;
    /// Documents of every tenant still PENDING or PROCESSING: the work a restart resumes.
    async fn unfinished_documents(&self) -> StoreResult<Vec<Document>>;

    /// The tenant's analytics buckets (see [`crate::analytics`]) whose hour starts in
    /// `[from_ms, to_ms)`, every bot and channel, by hour. Kept by `create_conversation`,
    /// `contact_conversation`, `append` and `set_handling` as they write, exactly once each.
    async fn analytics(
        &self,
        tenant: &TenantId,
        from_ms: i64,
        to_ms: i64,
    ) -> StoreResult<Vec<crate::analytics::CounterRow>>;
    /// Intent hits per hour (starting in `[from_ms, to_ms)`), bot and intent.
    async fn intent_counts(
        &self,
        tenant: &TenantId,
        from_ms: i64,
        to_ms: i64,
    ) -> StoreResult<Vec<crate::analytics::IntentRow>>;
    /// Visitor text messages no intent matched, stored in `[from_ms, to_ms)`, newest first, at
    /// most `limit`, of `bot` only when given, each with its bot. Messages deleted since are
    /// left out.
    async fn unmatched_messages(
        &self,
        tenant: &TenantId,
        bot: Option<&BotId>,
        from_ms: i64,
        to_ms: i64,
        limit: usize,
    ) -> StoreResult<Vec<(BotId, Message)>>;

    // ---- accounts, API keys and invitations: changes that must not undo each other ----

    /// Deletes the account (and frees its email) if it is still at `account.version`:
    /// [`StoreError::Conflict`] when it changed or is gone, [`StoreError::LastOwner`] when it is
    /// the tenant's last owner. The removal of a member whose role was checked as read.
    async fn delete_account_if_unchanged(&self, account: &Account) -> StoreResult<()>;
    /// Revokes a key of `tenant` for good (field-level: a concurrent last-use write cannot
    /// undo it); returns whether the key exists.
    async fn revoke_api_key(&self, tenant: &TenantId, id: &str) -> StoreResult<bool>;
    /// Records that a key was used at `at` (ms), keeping the latest time; changes nothing
    /// else of the key (its revocation above all), nothing if there is no such key.
    async fn touch_api_key(&self, tenant: &TenantId, id: &str, at: i64) -> StoreResult<()>;
    /// Stores a new invitation, findable by its digest until taken, deleted or expired.
    async fn put_invitation(&self, invitation: &Invitation) -> StoreResult<()>;
    /// The tenant's invitations not yet taken or deleted (expired ones may be among them).
    async fn list_invitations(&self, tenant: &TenantId) -> StoreResult<Vec<Invitation>>;
    /// Deletes (revokes) an invitation of `tenant`; returns it if this call removed it: of a
    /// revocation and an acceptance racing, exactly one gets it.
    async fn delete_invitation(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> StoreResult<Option<Invitation>>;
    /// Removes and returns the invitation with this digest: of two concurrent takes (or a take
    /// and a deletion), exactly one gets it.
    async fn take_invitation(&self, digest: &str) -> StoreResult<Option<Invitation>>;
    /// The invitation with this digest, read only: a bogus or spent link is refused for one
    /// read, before anything costly (a password hash) is done. [`Store::take_invitation`]
    /// still decides who gets it.
    async fn invitation_by_digest(&self, digest: &str) -> StoreResult<Option<Invitation>>;
    /// The one-time token with this digest, read only (as [`Store::invitation_by_digest`]);
    /// [`Store::take_one_time_token`] still decides who gets it.
    async fn one_time_token_by_digest(&self, digest: &str) -> StoreResult<Option<OneTimeToken>>;
}
