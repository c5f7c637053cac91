//! The embedded store: one redb file in the data dir.
//!
//! # Concurrency
//! Reads run on tokio's blocking pool, each in its own MVCC read transaction, so they never wait
//! for writers. All writes go through one **writer thread** that does group commit: it takes the
//! first queued write, drains whatever else is queued (up to `group_commit_max_batch`), applies
//! them in one transaction and commits once (redb's default durability: fsync before commit
//! returns). Every caller is answered only after that commit, so `Ok` means durable, and
//! under load one fsync covers many appends. `docs/adr/0001-embedded-store.md` has the
//! measurements behind this choice.
//!
//! Every key starts with the tenant id.

use std::{collections::BTreeMap, path::Path, sync::Arc};

use parking_lot::RwLock;

use async_trait::async_trait;
use redb::{
    Database, ReadableDatabase, ReadableTable, TableDefinition, TableHandle, WriteTransaction,
};
use serde::{Serialize, de::DeserializeOwned};
use tokio::sync::{mpsc, oneshot};

use parla_domain::analytics::{self, CounterRow, Counters, IntentRow};
use parla_domain::billing::{StoredEvent, Subscription};
use parla_domain::marketplace::{ConnectAccount, Listing};
use parla_domain::model::{
    Account, AccountId, ApiKey, Bot, BotId, CannedResponse, Channel, ChannelConnection, Chunk,
    Conversation, ConversationId, Document, Handling, Intent, Invitation, Message, Note,
    OneTimeToken, ProcessStatus, RefreshToken, Role, Sender, Tenant, TenantId,
};
use parla_domain::sealing::{self, Sealer};
use parla_domain::store::{
    Accounts, Analytics, Appended, AuditLog, Billing, Catalog, ChannelState, Connections,
    Conversations, Credentials, Documents, InboxIndex, Listings, Sealing, StoreError, StoreResult,
    Subjects, TokenUsage,
};

const TENANTS: TableDefinition<&str, &[u8]> = TableDefinition::new("tenants");
/// Store-wide values by name (the master key's check value).
const META: TableDefinition<&str, &str> = TableDefinition::new("meta");
/// (tenant, bot) → bot JSON.
const BOTS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("bots");
/// bot → tenant: how the widget, which knows only the bot id, finds its tenant.
const BOT_INDEX: TableDefinition<&str, &str> = TableDefinition::new("bot_index");
/// (tenant, bot) → the bot's intents, JSON array.
const INTENTS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("intents");
/// (tenant, conversation) → conversation JSON.
const CONVERSATIONS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("conversations");
/// (tenant, bot, conversation) → 0: a bot's conversations in id (= time) order.
const CONVERSATIONS_BY_BOT: TableDefinition<(&str, &str, &str), u8> =
    TableDefinition::new("conversations_by_bot");
/// (tenant, conversation, seq) → message JSON.
const MESSAGES: TableDefinition<(&str, &str, u64), &[u8]> = TableDefinition::new("messages");
/// (tenant, conversation, client_msg_id) → seq: the idempotency index.
const CLIENT_IDS: TableDefinition<(&str, &str, &str), u64> = TableDefinition::new("client_msg_ids");
/// (tenant, conversation, note id) → note JSON: agents' notes, never in the transcript.
const NOTES: TableDefinition<(&str, &str, &str), &[u8]> = TableDefinition::new("notes");
/// connection id → connection JSON (ids are global: webhooks name only the connection).
const CHANNELS: TableDefinition<&str, &[u8]> = TableDefinition::new("channels");
/// (connection, contact) → conversation id: one conversation per contact and connection.
const CONTACTS: TableDefinition<(&str, &str), &str> = TableDefinition::new("channel_contacts");
/// (tenant, conversation) → (connection, contact): who a channel conversation is with.
const CONVERSATION_CONTACTS: TableDefinition<(&str, &str), (&str, &str)> =
    TableDefinition::new("conversation_contacts");
/// (connection, provider message id) → (tenant, conversation, seq).
const PROVIDER_IDS: TableDefinition<(&str, &str), (&str, &str, u64)> =
    TableDefinition::new("provider_message_ids");
/// (tenant, conversation, device token) → when it was registered (ms): where to notify an
/// offline visitor. At most [`MAX_PUSH_TOKENS`] per conversation, the newest.
const PUSH_TOKENS: TableDefinition<(&str, &str, &str), i64> = TableDefinition::new("push_tokens");
/// Devices notified per conversation at most.
const MAX_PUSH_TOKENS: usize = 5;
/// (connection, contact) → 1: contacts who opted out (SMS STOP).
const OPTED_OUT: TableDefinition<(&str, &str), u8> = TableDefinition::new("channel_opt_outs");
/// (tenant, conversation) → highest seq delivered to the conversation's channel.
const CHANNEL_CURSORS: TableDefinition<(&str, &str), u64> = TableDefinition::new("channel_cursors");
/// (tenant, conversation) → the conversation's user data (form fields), a JSON object of
/// strings. Apart from the conversation's record so a merge rewrites only the data.
const USER_DATA: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("user_data");
/// (tenant, canned response id) → canned response JSON.
const CANNED: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("canned_responses");
/// (tenant, account) → account JSON.
const ACCOUNTS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("accounts");
/// lower-cased email → (tenant, account): login's entry point, and email uniqueness.
const ACCOUNT_EMAILS: TableDefinition<&str, (&str, &str)> = TableDefinition::new("account_emails");
/// SHA-256 of a refresh token → its record (JSON).
const REFRESH_TOKENS: TableDefinition<&str, &[u8]> = TableDefinition::new("refresh_tokens");
/// (family, digest) → 0: the tokens of a family, to revoke them together.
const REFRESH_FAMILIES: TableDefinition<(&str, &str), u8> =
    TableDefinition::new("refresh_families");
/// SHA-256 of a one-time token → its record (JSON).
const ONE_TIME_TOKENS: TableDefinition<&str, &[u8]> = TableDefinition::new("one_time_tokens");
/// (tenant, account, digest) → 0: an account's refresh tokens, to end all its sessions.
const REFRESH_BY_ACCOUNT: TableDefinition<(&str, &str, &str), u8> =
    TableDefinition::new("refresh_by_account");
/// (tenant, key id) → API key JSON.
const API_KEYS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("api_keys");
/// SHA-256 of a key's value → (tenant, key id).
const API_KEY_DIGESTS: TableDefinition<&str, (&str, &str)> =
    TableDefinition::new("api_key_digests");
/// (tenant, invitation id) → invitation JSON: a tenant's pending invitations.
const INVITATIONS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("invitations");
/// SHA-256 of an invitation's mailed token → (tenant, invitation id): how it is accepted.
const INVITATION_DIGESTS: TableDefinition<&str, (&str, &str)> =
    TableDefinition::new("invitation_digests");

/// (tenant, month) → LLM tokens used.
const TOKEN_USAGE: TableDefinition<(&str, &str), u64> = TableDefinition::new("token_usage");
/// (tenant, document) → Document as JSON.
/// (tenant, month, meter) → count: usage counted against plans.
const USAGE: TableDefinition<(&str, &str, &str), u64> = TableDefinition::new("usage");
/// tenant → its customer at the payment provider.
const CUSTOMERS: TableDefinition<&str, &str> = TableDefinition::new("billing_customers");
/// Subscription id → subscription (ids are unique across tenants).
const SUBSCRIPTIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("subscriptions");
/// (tenant, subscription id): a tenant's subscriptions.
const SUBSCRIPTIONS_BY_TENANT: TableDefinition<(&str, &str), u8> =
    TableDefinition::new("subscriptions_by_tenant");
/// Provider event id → when it was received: every event seen, so a redelivery is known.
const EVENTS_SEEN: TableDefinition<&str, i64> = TableDefinition::new("billing_events_seen");
/// (received at, event id) → event: those not yet processed, oldest first.
const EVENTS_PENDING: TableDefinition<(i64, &str), &[u8]> =
    TableDefinition::new("billing_events_pending");
/// Bot id → its marketplace listing (global: buyers of every tenant browse them).
const LISTINGS: TableDefinition<&str, &[u8]> = TableDefinition::new("listings");
/// tenant → its Stripe Connect account.
const CONNECT_ACCOUNTS: TableDefinition<&str, &[u8]> = TableDefinition::new("connect_accounts");
const DOCUMENTS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("documents");
/// (tenant, bot, document): a bot's documents.
const DOCUMENTS_BY_BOT: TableDefinition<(&str, &str, &str), u8> =
    TableDefinition::new("documents_by_bot");
/// (tenant, document) → the bytes it was uploaded with.
const DOCUMENT_CONTENT: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("document_content");
/// (tenant, bot, document, position) → Chunk as JSON.
const CHUNKS: TableDefinition<(&str, &str, &str, u32), &[u8]> = TableDefinition::new("chunks");
/// (tenant, document): documents still PENDING or PROCESSING.
const DOCUMENT_QUEUE: TableDefinition<(&str, &str), u8> = TableDefinition::new("document_queue");

/// (tenant, conversation) → 0: conversations ESCALATED or ASSIGNED (see
/// [`InboxIndex::attention_conversations`]), kept by the writes that change a conversation's status.
const ATTENTION: TableDefinition<(&str, &str), u8> =
    TableDefinition::new("conversations_attention");
/// (tenant, bot) → 0: bots deleted whose conversations are still being deleted.
const BOT_TOMBSTONES: TableDefinition<(&str, &str), u8> = TableDefinition::new("bot_tombstones");

/// (tenant, hour, bot, channel) → analytics `Counters` as JSON.
const ANALYTICS: TableDefinition<(&str, i64, &str, &str), &[u8]> =
    TableDefinition::new("analytics");
/// (tenant, hour, bot, intent) → (hits, sum of confidences).
const INTENT_COUNTS: TableDefinition<(&str, i64, &str, &str), (i64, f64)> =
    TableDefinition::new("analytics_intents");
/// (tenant, subject key, conversation) → 0: the conversations holding an identifier of a person
/// (`parla_domain::subjects`), written with the contact or form that carries it.
const SUBJECTS: TableDefinition<(&str, &str, &str), u8> = TableDefinition::new("subjects");
/// (tenant, conversation, subject key) → 0: a conversation's keys, dropped with it.
const SUBJECT_KEYS: TableDefinition<(&str, &str, &str), u8> = TableDefinition::new("subject_keys");
/// (tenant, entry id) → an audit entry as JSON (ids are time-ordered).
const AUDIT: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("audit_log");
/// (tenant, stored at, conversation, seq) → bot: visitor messages no intent matched.
const UNMATCHED: TableDefinition<(&str, i64, &str, u64), &str> =
    TableDefinition::new("analytics_unmatched");

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn encode<T: Serialize>(v: &T) -> StoreResult<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> StoreResult<T> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}

enum WriteOp {
    PutTenant(Tenant),
    PutMeta(&'static str, String),
    ForgetUnmatched(TenantId, i64),
    Reseal(Arc<dyn Sealer>),
    PutBot(Bot),
    PutIntents(TenantId, BotId, Vec<Intent>),
    DeleteBot(TenantId, BotId),
    CreateConversation(Conversation),
    DeleteConversation(TenantId, ConversationId),
    /// Not a write: the writer compacts the file (see [`compact`]).
    Compact,
    AppendAudit(parla_domain::audit::AuditEntry),
    Append(Message),
    CreateAccount(Account),
    UpdateAccount(Account),
    DeleteAccount(TenantId, AccountId),
    PutRefresh(RefreshToken),
    UseRefresh(String),
    RevokeFamily(String),
    RevokeAccount(TenantId, AccountId),
    PutApiKey(ApiKey),
    PutOneTime(OneTimeToken),
    TakeOneTime(String),
    PutDocument(Document, Option<Vec<u8>>),
    SetHandling(TenantId, ConversationId, Handling),
    ClearBotTombstone(TenantId, BotId),
    PutCanned(CannedResponse),
    PutChannel(ChannelConnection),
    DeleteChannel(TenantId, String),
    ContactConversation(String, String, Conversation),
    SetChannelCursor(TenantId, ConversationId, u64),
    MergeUserData(TenantId, ConversationId, BTreeMap<String, String>),
    SetOptedOut(String, String, bool),
    PushToken(TenantId, ConversationId, String, bool),
    SetDelivery(TenantId, ConversationId, u64, String, parla_domain::model::Delivery),
    AdvanceDelivery(String, String, parla_domain::model::DeliveryStatus, Option<String>),
    DeleteCanned(TenantId, String),
    AddNote(Note),
    AddTokenUsage(TenantId, String, u64),
    PutChunks(Document, Vec<Chunk>),
    DeleteDocument(TenantId, String),
    // Accounts, API keys and invitations (see `apply_auth`).
    DeleteAccountIf(Account),
    RevokeApiKey(TenantId, String),
    TouchApiKey(TenantId, String, i64),
    PutInvitation(Invitation),
    DeleteInvitation(TenantId, String),
    TakeInvitation(String),
    // Billing (see `apply_billing`).
    CountWithin(TenantId, String, String, u64, Option<u64>),
    Uncount(TenantId, String, String, u64),
    SetCustomerOnce(TenantId, String),
    PutSubscription(Subscription),
    RecordEvent(StoredEvent),
    FinishEvent(String),
    PutListing(Listing),
    DeleteListing(TenantId, BotId),
    PutConnectAccount(ConnectAccount),
}

/// What a write produced, for the writes that produce something.
#[derive(Debug)]
// One value per write, moved once to its caller: boxing would only allocate.
#[allow(clippy::large_enum_variant)]
enum Outcome {
    Done,
    Total(u64),
    Appended(Appended),
    Refresh(Option<RefreshToken>),
    Existed(bool),
    OneTime(Option<OneTimeToken>),
    Conversation(Box<Conversation>),
    Moved(Option<(TenantId, ConversationId, u64)>),
    Invitation(Option<Invitation>),
    Counted(Option<u64>),
    Text(String),
    Resealed(sealing::Resealed),
}

struct WriteRequest {
    op: WriteOp,
    reply: oneshot::Sender<StoreResult<Outcome>>,
}

/// The embedded redb store. Cloning shares the database and its writer.
#[derive(Clone)]
pub struct RedbStore {
    /// Read-locked by every transaction, write-locked only to compact the file (which needs it
    /// alone).
    db: Arc<RwLock<Database>>,
    /// Bounded so that a stalled disk becomes backpressure on the actors, not memory growth.
    writer: mpsc::Sender<WriteRequest>,
    /// Seals accounts', workspaces' and intents' secrets (see `parla_domain::sealing`), once
    /// given one.
    sealer: Arc<RwLock<Option<Arc<dyn Sealer>>>>,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore").finish_non_exhaustive()
    }
}

impl RedbStore {
    /// Opens (or creates) `dir/parla.redb` and starts the writer thread.
    pub fn open(dir: &Path, max_batch: usize, queue: usize) -> StoreResult<Self> {
        std::fs::create_dir_all(dir).map_err(backend)?;
        let db = Database::create(dir.join("parla.redb")).map_err(backend)?;
        // A file written before analytics existed has conversations but no counters; one from
        // before the attention index has conversations but no index.
        let (counted, indexed, subjects) = {
            let txn = db.begin_read().map_err(backend)?;
            let names: Vec<String> =
                txn.list_tables().map_err(backend)?.map(|t| t.name().to_owned()).collect();
            let has = |name: &str| names.iter().any(|n| n == name);
            let fresh = !has(CONVERSATIONS.name());
            (
                fresh || has(ANALYTICS.name()),
                fresh || has(ATTENTION.name()),
                fresh || has(SUBJECTS.name()),
            )
        };
        // Create every table up front so read transactions never meet a missing one.
        let txn = db.begin_write().map_err(backend)?;
        {
            txn.open_table(TENANTS).map_err(backend)?;
            txn.open_table(BOTS).map_err(backend)?;
            txn.open_table(BOT_INDEX).map_err(backend)?;
            txn.open_table(INTENTS).map_err(backend)?;
            txn.open_table(CONVERSATIONS).map_err(backend)?;
            txn.open_table(MESSAGES).map_err(backend)?;
            txn.open_table(CLIENT_IDS).map_err(backend)?;
            txn.open_table(ACCOUNTS).map_err(backend)?;
            txn.open_table(ACCOUNT_EMAILS).map_err(backend)?;
            txn.open_table(REFRESH_TOKENS).map_err(backend)?;
            txn.open_table(REFRESH_FAMILIES).map_err(backend)?;
            txn.open_table(API_KEYS).map_err(backend)?;
            txn.open_table(API_KEY_DIGESTS).map_err(backend)?;
            txn.open_table(ONE_TIME_TOKENS).map_err(backend)?;
            txn.open_table(CONVERSATIONS_BY_BOT).map_err(backend)?;
            txn.open_table(REFRESH_BY_ACCOUNT).map_err(backend)?;
            txn.open_table(DOCUMENTS).map_err(backend)?;
            txn.open_table(TOKEN_USAGE).map_err(backend)?;
            txn.open_table(DOCUMENTS_BY_BOT).map_err(backend)?;
            txn.open_table(DOCUMENT_CONTENT).map_err(backend)?;
            txn.open_table(CHUNKS).map_err(backend)?;
            txn.open_table(DOCUMENT_QUEUE).map_err(backend)?;
            txn.open_table(ANALYTICS).map_err(backend)?;
            txn.open_table(INTENT_COUNTS).map_err(backend)?;
            txn.open_table(UNMATCHED).map_err(backend)?;
            txn.open_table(NOTES).map_err(backend)?;
            txn.open_table(CANNED).map_err(backend)?;
            txn.open_table(CHANNELS).map_err(backend)?;
            txn.open_table(CONTACTS).map_err(backend)?;
            txn.open_table(CHANNEL_CURSORS).map_err(backend)?;
            txn.open_table(CONVERSATION_CONTACTS).map_err(backend)?;
            txn.open_table(OPTED_OUT).map_err(backend)?;
            txn.open_table(PROVIDER_IDS).map_err(backend)?;
            txn.open_table(PUSH_TOKENS).map_err(backend)?;
            txn.open_table(USER_DATA).map_err(backend)?;
            txn.open_table(ATTENTION).map_err(backend)?;
            txn.open_table(BOT_TOMBSTONES).map_err(backend)?;
            txn.open_table(INVITATIONS).map_err(backend)?;
            txn.open_table(INVITATION_DIGESTS).map_err(backend)?;
            txn.open_table(USAGE).map_err(backend)?;
            txn.open_table(CUSTOMERS).map_err(backend)?;
            txn.open_table(SUBSCRIPTIONS).map_err(backend)?;
            txn.open_table(SUBSCRIPTIONS_BY_TENANT).map_err(backend)?;
            txn.open_table(EVENTS_SEEN).map_err(backend)?;
            txn.open_table(EVENTS_PENDING).map_err(backend)?;
            txn.open_table(LISTINGS).map_err(backend)?;
            txn.open_table(CONNECT_ACCOUNTS).map_err(backend)?;
            txn.open_table(SUBJECTS).map_err(backend)?;
            txn.open_table(SUBJECT_KEYS).map_err(backend)?;
            txn.open_table(AUDIT).map_err(backend)?;
            txn.open_table(META).map_err(backend)?;
        }
        if !indexed {
            let n = backfill_attention(&txn)?;
            tracing::info!(
                conversations = n,
                "indexed the conversations that need an agent (once)"
            );
        }
        if !subjects {
            let tally = Txn::new(&txn);
            let n = backfill_subjects(&tally)?;
            tracing::info!(conversations = n, "indexed who each conversation is with (once)");
        }
        if !counted {
            let tally = Txn::new(&txn);
            let n = backfill_analytics(&tally)?;
            tally.flush()?;
            tracing::info!(
                conversations = n,
                "analytics counted from the stored transcripts (once)"
            );
        }
        txn.commit().map_err(backend)?;

        let (tx, rx) = mpsc::channel(queue.max(1));
        let db = Arc::new(RwLock::new(db));
        let writer_db = db.clone();
        let max_batch = max_batch.max(1);
        std::thread::Builder::new()
            .name("parla-store-writer".into())
            .spawn(move || writer_loop(&writer_db, rx, max_batch))
            .map_err(backend)?;
        Ok(Self { db, writer: tx, sealer: Arc::new(RwLock::new(None)) })
    }

    fn sealer(&self) -> Option<Arc<dyn Sealer>> {
        self.sealer.read().clone()
    }

    fn sealed_account(&self, account: &Account) -> Account {
        self.sealer().map_or_else(|| account.clone(), |s| sealing::seal_account(&*s, account))
    }

    fn opened_account(&self, account: Account) -> StoreResult<Account> {
        Ok(sealing::open_account(self.sealer().as_deref(), account)?)
    }

    fn opened_tenant(&self, tenant: Tenant) -> StoreResult<Tenant> {
        Ok(sealing::open_tenant(self.sealer().as_deref(), tenant)?)
    }

    async fn write(&self, op: WriteOp) -> StoreResult<Outcome> {
        let (reply, rx) = oneshot::channel();
        self.writer.send(WriteRequest { op, reply }).await.map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// A point read or one bounded page, run right here on the calling task. These take
    /// microseconds from redb's page cache; handing them to the blocking pool cost more than
    /// the read (a thread hand-off each way, and a pool that grew to ~180 threads under load):
    /// reading inline raised the saturated chat load from 3.2k to 4.5k messages/s (BENCHMARKS).
    async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> StoreResult<T> + Send + 'static,
    {
        f(&self.db.read())
    }

    /// A read that may scan much (a document's content, every chunk of a bot, a whole
    /// channel's conversations): on the blocking pool, so it never holds up the tasks sharing
    /// this worker thread.
    async fn read_blocking<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> StoreResult<T> + Send + 'static,
    {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db.read())).await.map_err(backend)?
    }
}

/// Indexes every stored conversation that waits for or is held by an agent: a file from before
/// the index. Returns how many.
fn backfill_attention(txn: &WriteTransaction) -> StoreResult<usize> {
    let conversations = txn.open_table(CONVERSATIONS).map_err(backend)?;
    let mut index = txn.open_table(ATTENTION).map_err(backend)?;
    let mut n = 0;
    for entry in conversations.iter().map_err(backend)? {
        let (key, value) = entry.map_err(backend)?;
        let conversation: Conversation = decode(value.value())?;
        if conversation.handling.needs_agent() {
            index.insert(key.value(), 0).map_err(backend)?;
            n += 1;
        }
    }
    Ok(n)
}

/// Indexes who every stored conversation is with, from its channel contact and form data: a
/// file from before the index. Returns how many conversations name someone.
fn backfill_subjects(txn: &Txn) -> StoreResult<usize> {
    let mut found: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for entry in txn.open_table(CONVERSATION_CONTACTS).map_err(backend)?.iter().map_err(backend)? {
        let (key, value) = entry.map_err(backend)?;
        let (t, c) = key.value();
        if let Some(subject) = parla_domain::subjects::contact_key(value.value().1) {
            found.entry((t.to_owned(), c.to_owned())).or_default().push(subject);
        }
    }
    for entry in txn.open_table(USER_DATA).map_err(backend)?.iter().map_err(backend)? {
        let (key, value) = entry.map_err(backend)?;
        let (t, c) = key.value();
        let fields: BTreeMap<String, String> = decode(value.value())?;
        found
            .entry((t.to_owned(), c.to_owned()))
            .or_default()
            .extend(parla_domain::subjects::keys_of_fields(&fields));
    }
    for ((t, c), subjects) in &found {
        index_subject(
            txn,
            &TenantId::from(t.as_str()),
            &c.as_str().into(),
            subjects.iter().cloned(),
        )?;
    }
    Ok(found.len())
}

/// Indexes `subjects` as naming the person in conversation `id`.
fn index_subject(
    txn: &Txn,
    tenant: &TenantId,
    id: &ConversationId,
    subjects: impl Iterator<Item = String>,
) -> StoreResult<()> {
    let (t, c) = (tenant.as_str(), id.as_str());
    let mut keys = txn.open_table(SUBJECT_KEYS).map_err(backend)?;
    let mut index = txn.open_table(SUBJECTS).map_err(backend)?;
    for subject in subjects {
        keys.insert((t, c, subject.as_str()), 0).map_err(backend)?;
        index.insert((t, subject.as_str(), c), 0).map_err(backend)?;
    }
    Ok(())
}

/// The group-commit loop: one transaction and one fsync per batch of queued writes.
fn writer_loop(db: &RwLock<Database>, mut rx: mpsc::Receiver<WriteRequest>, max_batch: usize) {
    let mut batch = Vec::with_capacity(max_batch);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(req) => batch.push(req),
                Err(_) => break,
            }
        }
        let compactions: Vec<_> =
            batch.extract_if(.., |r| matches!(r.op, WriteOp::Compact)).collect();
        if !compactions.is_empty() {
            let compacted = compact(&mut db.write());
            for req in compactions {
                let _ = req.reply.send(compacted.clone().map(|()| Outcome::Done));
            }
        }
        if batch.is_empty() {
            continue;
        }
        match apply_batch(&db.read(), &batch) {
            Ok(results) => {
                for (req, result) in batch.drain(..).zip(results) {
                    let _ = req.reply.send(result);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "store commit failed; the whole batch is refused");
                for req in batch.drain(..) {
                    let _ = req.reply.send(Err(backend(&e)));
                }
            }
        }
    }
}

/// Rewrites the file without its free pages, so what was deleted is not left on disk: every
/// live page moves to the front and the file is cut after the last one. Needs the database
/// alone (no transaction open), which the write lock gives.
fn compact(db: &mut Database) -> StoreResult<()> {
    let started = std::time::Instant::now();
    let mut rounds = 0;
    while db.compact().map_err(backend)? {
        rounds += 1;
    }
    tracing::info!(rounds, ms = started.elapsed().as_millis() as u64, "store file compacted");
    Ok(())
}

/// Applies every write of a batch in one transaction. Each op checks before it writes, so an op
/// refused for a logical reason (duplicate, seq conflict) leaves nothing behind; only a backend
/// failure fails the whole batch.
fn apply_batch(db: &Database, batch: &[WriteRequest]) -> StoreResult<Vec<StoreResult<Outcome>>> {
    let txn = db.begin_write().map_err(backend)?;
    let mut results = Vec::with_capacity(batch.len());
    let tally = Txn::new(&txn);
    for req in batch {
        results.push(apply(&tally, &req.op));
    }
    // A backend error inside an op means the transaction may be half-applied: refuse the batch.
    let flushed = match results.iter().any(|r| matches!(r, Err(StoreError::Backend(_)))) {
        true => Err(StoreError::Backend("a write in the batch failed".into())),
        false => tally.flush(),
    };
    if let Err(e) = flushed {
        txn.abort().map_err(backend)?;
        return Err(e);
    }
    txn.commit().map_err(backend)?;
    Ok(results)
}

fn apply(txn: &Txn, op: &WriteOp) -> StoreResult<Outcome> {
    match op {
        WriteOp::Reseal(sealer) => return reseal_all(txn, &**sealer).map(Outcome::Resealed),
        WriteOp::ForgetUnmatched(tenant, before) => {
            let t = tenant.as_str();
            let mut index = txn.open_table(UNMATCHED).map_err(backend)?;
            let old: Vec<(i64, String, u64)> = index
                .range((t, i64::MIN, "", 0)..(t, *before, "", 0))
                .map_err(backend)?
                .map(|entry| {
                    let (key, _) = entry.map_err(backend)?;
                    let (_, at, conversation, seq) = key.value();
                    Ok((at, conversation.to_owned(), seq))
                })
                .collect::<StoreResult<_>>()?;
            for (at, conversation, seq) in &old {
                index.remove((t, *at, conversation.as_str(), *seq)).map_err(backend)?;
            }
            return Ok(Outcome::Total(old.len() as u64));
        }
        WriteOp::PutMeta(name, value) => {
            txn.open_table(META)
                .map_err(backend)?
                .insert(*name, value.as_str())
                .map_err(backend)?;
        }
        WriteOp::PutTenant(t) => {
            let bytes = encode(t)?;
            txn.open_table(TENANTS)
                .map_err(backend)?
                .insert(t.id.as_str(), bytes.as_slice())
                .map_err(backend)?;
        }
        WriteOp::PutBot(b) => {
            let bytes = encode(b)?;
            let mut index = txn.open_table(BOT_INDEX).map_err(backend)?;
            if let Some(owner) = index.get(b.id.as_str()).map_err(backend)?
                && owner.value() != b.tenant_id.as_str()
            {
                // Bot ids are global; one tenant may never overwrite another's bot.
                return Err(StoreError::BotIdTaken);
            }
            index.insert(b.id.as_str(), b.tenant_id.as_str()).map_err(backend)?;
            txn.open_table(BOTS)
                .map_err(backend)?
                .insert((b.tenant_id.as_str(), b.id.as_str()), bytes.as_slice())
                .map_err(backend)?;
        }
        WriteOp::PutIntents(tenant, bot, intents) => {
            let bytes = encode(intents)?;
            txn.open_table(INTENTS)
                .map_err(backend)?
                .insert((tenant.as_str(), bot.as_str()), bytes.as_slice())
                .map_err(backend)?;
        }
        WriteOp::DeleteBot(tenant, bot) => {
            let key = (tenant.as_str(), bot.as_str());
            let existed =
                txn.open_table(BOTS).map_err(backend)?.remove(key).map_err(backend)?.is_some();
            if existed {
                txn.open_table(BOT_INDEX)
                    .map_err(backend)?
                    .remove(bot.as_str())
                    .map_err(backend)?;
                txn.open_table(INTENTS).map_err(backend)?.remove(key).map_err(backend)?;
                // Its knowledge base goes with it.
                let (t, b) = key;
                let documents: Vec<String> = txn
                    .open_table(DOCUMENTS_BY_BOT)
                    .map_err(backend)?
                    .range((t, b, "")..=(t, b, "\u{10FFFF}"))
                    .map_err(backend)?
                    .map(|entry| entry.map(|(k, _)| k.value().2.to_owned()).map_err(backend))
                    .collect::<StoreResult<_>>()?;
                for document in &documents {
                    remove_document(txn, t, document)?;
                }
                // And its channel connections (their webhooks answer 404 from now on).
                let mut channels = txn.open_table(CHANNELS).map_err(backend)?;
                let mut doomed = Vec::new();
                for entry in channels.iter().map_err(backend)? {
                    let (id, value) = entry.map_err(backend)?;
                    let c: ChannelConnection = decode(value.value())?;
                    if c.tenant_id.as_str() == t && c.bot_id.as_str() == b {
                        doomed.push(id.value().to_owned());
                    }
                }
                for id in &doomed {
                    channels.remove(id.as_str()).map_err(backend)?;
                }
                // Its conversations go next, each through its actor; this says some may be left.
                txn.open_table(BOT_TOMBSTONES).map_err(backend)?.insert(key, 0).map_err(backend)?;
            }
            return Ok(Outcome::Existed(existed));
        }
        WriteOp::PutOneTime(t) => {
            let bytes = encode(t)?;
            txn.open_table(ONE_TIME_TOKENS)
                .map_err(backend)?
                .insert(t.digest.as_str(), bytes.as_slice())
                .map_err(backend)?;
        }
        WriteOp::TakeOneTime(digest) => {
            let mut table = txn.open_table(ONE_TIME_TOKENS).map_err(backend)?;
            let taken = match table.remove(digest.as_str()).map_err(backend)? {
                Some(v) => Some(decode(v.value())?),
                None => None,
            };
            return Ok(Outcome::OneTime(taken));
        }
        WriteOp::PutApiKey(k) => {
            let bytes = encode(k)?;
            txn.open_table(API_KEYS)
                .map_err(backend)?
                .insert((k.tenant_id.as_str(), k.id.as_str()), bytes.as_slice())
                .map_err(backend)?;
            txn.open_table(API_KEY_DIGESTS)
                .map_err(backend)?
                .insert(k.digest.as_str(), (k.tenant_id.as_str(), k.id.as_str()))
                .map_err(backend)?;
        }
        WriteOp::CreateConversation(c) => create_conversation(txn, c)?,
        WriteOp::DeleteConversation(tenant, id) => {
            let (t, c) = (tenant.as_str(), id.as_str());
            let conversation: Conversation = {
                let mut table = txn.open_table(CONVERSATIONS).map_err(backend)?;
                let Some(removed) = table.remove((t, c)).map_err(backend)? else {
                    return Ok(Outcome::Existed(false));
                };
                decode(removed.value())?
            };
            txn.open_table(CONVERSATIONS_BY_BOT)
                .map_err(backend)?
                .remove((t, conversation.bot_id.as_str(), c))
                .map_err(backend)?;
            txn.open_table(ATTENTION).map_err(backend)?.remove((t, c)).map_err(backend)?;
            let mut messages = txn.open_table(MESSAGES).map_err(backend)?;
            let seqs: Vec<u64> = messages
                .range((t, c, 0)..=(t, c, u64::MAX))
                .map_err(backend)?
                .map(|entry| entry.map(|(k, _)| k.value().2).map_err(backend))
                .collect::<StoreResult<_>>()?;
            for seq in seqs {
                messages.remove((t, c, seq)).map_err(backend)?;
            }
            let mut client_ids = txn.open_table(CLIENT_IDS).map_err(backend)?;
            let ids: Vec<String> = client_ids
                .range((t, c, "")..=(t, c, "\u{10FFFF}"))
                .map_err(backend)?
                .map(|entry| entry.map(|(k, _)| k.value().2.to_owned()).map_err(backend))
                .collect::<StoreResult<_>>()?;
            for cid in &ids {
                client_ids.remove((t, c, cid.as_str())).map_err(backend)?;
            }
            let contact = txn
                .open_table(CONVERSATION_CONTACTS)
                .map_err(backend)?
                .remove((t, c))
                .map_err(backend)?
                .map(|v| {
                    let (connection, contact) = v.value();
                    (connection.to_owned(), contact.to_owned())
                });
            if let Some((connection, contact)) = contact {
                let mut contacts = txn.open_table(CONTACTS).map_err(backend)?;
                let key = (connection.as_str(), contact.as_str());
                if contacts.get(key).map_err(backend)?.is_some_and(|v| v.value() == c) {
                    contacts.remove(key).map_err(backend)?;
                }
            }
            let mut keys = txn.open_table(SUBJECT_KEYS).map_err(backend)?;
            let subjects: Vec<String> = keys
                .range((t, c, "")..=(t, c, "\u{10FFFF}"))
                .map_err(backend)?
                .map(|entry| entry.map(|(k, _)| k.value().2.to_owned()).map_err(backend))
                .collect::<StoreResult<_>>()?;
            let mut index = txn.open_table(SUBJECTS).map_err(backend)?;
            for subject in &subjects {
                keys.remove((t, c, subject.as_str())).map_err(backend)?;
                index.remove((t, subject.as_str(), c)).map_err(backend)?;
            }
            drop((keys, index));
            txn.open_table(CHANNEL_CURSORS).map_err(backend)?.remove((t, c)).map_err(backend)?;
            txn.open_table(USER_DATA).map_err(backend)?.remove((t, c)).map_err(backend)?;
            let mut tokens = txn.open_table(PUSH_TOKENS).map_err(backend)?;
            let devices: Vec<String> = tokens
                .range((t, c, "")..=(t, c, "\u{10FFFF}"))
                .map_err(backend)?
                .map(|entry| entry.map(|(k, _)| k.value().2.to_owned()).map_err(backend))
                .collect::<StoreResult<_>>()?;
            for device in &devices {
                tokens.remove((t, c, device.as_str())).map_err(backend)?;
            }
            drop(tokens);
            let mut notes = txn.open_table(NOTES).map_err(backend)?;
            let note_ids: Vec<String> = notes
                .range((t, c, "")..=(t, c, "\u{10FFFF}"))
                .map_err(backend)?
                .map(|entry| entry.map(|(k, _)| k.value().2.to_owned()).map_err(backend))
                .collect::<StoreResult<_>>()?;
            for id in &note_ids {
                notes.remove((t, c, id.as_str())).map_err(backend)?;
            }
            return Ok(Outcome::Existed(true));
        }
        WriteOp::Append(m) => return append(txn, m).map(Outcome::Appended),
        WriteOp::AppendAudit(entry) => {
            let mut table = txn.open_table(AUDIT).map_err(backend)?;
            let key = (entry.tenant_id.as_str(), entry.id.as_str());
            if table.get(key).map_err(backend)?.is_none() {
                table.insert(key, encode(entry)?.as_slice()).map_err(backend)?;
            }
        }
        // Taken out of every batch by the writer.
        WriteOp::Compact => return Err(StoreError::Backend("compaction inside a batch".into())),
        WriteOp::CreateAccount(a) => {
            let mut emails = txn.open_table(ACCOUNT_EMAILS).map_err(backend)?;
            if emails.get(a.email.as_str()).map_err(backend)?.is_some() {
                return Err(StoreError::EmailTaken);
            }
            let bytes = encode(a)?;
            emails
                .insert(a.email.as_str(), (a.tenant_id.as_str(), a.id.as_str()))
                .map_err(backend)?;
            txn.open_table(ACCOUNTS)
                .map_err(backend)?
                .insert((a.tenant_id.as_str(), a.id.as_str()), bytes.as_slice())
                .map_err(backend)?;
        }
        WriteOp::UpdateAccount(_)
        | WriteOp::DeleteAccount(..)
        | WriteOp::DeleteAccountIf(_)
        | WriteOp::RevokeApiKey(..)
        | WriteOp::TouchApiKey(..)
        | WriteOp::PutInvitation(_)
        | WriteOp::DeleteInvitation(..)
        | WriteOp::TakeInvitation(_) => return apply_auth(txn, op),
        WriteOp::CountWithin(..)
        | WriteOp::Uncount(..)
        | WriteOp::SetCustomerOnce(..)
        | WriteOp::PutSubscription(_)
        | WriteOp::RecordEvent(_)
        | WriteOp::FinishEvent(_)
        | WriteOp::PutListing(_)
        | WriteOp::DeleteListing(..)
        | WriteOp::PutConnectAccount(_) => return apply_billing(txn, op),
        WriteOp::PutRefresh(t) => {
            let bytes = encode(t)?;
            txn.open_table(REFRESH_TOKENS)
                .map_err(backend)?
                .insert(t.digest.as_str(), bytes.as_slice())
                .map_err(backend)?;
            txn.open_table(REFRESH_FAMILIES)
                .map_err(backend)?
                .insert((t.family.as_str(), t.digest.as_str()), 0)
                .map_err(backend)?;
            txn.open_table(REFRESH_BY_ACCOUNT)
                .map_err(backend)?
                .insert((t.tenant_id.as_str(), t.account_id.as_str(), t.digest.as_str()), 0)
                .map_err(backend)?;
        }
        WriteOp::RevokeAccount(tenant, account) => {
            let (t, a) = (tenant.as_str(), account.as_str());
            let mut index = txn.open_table(REFRESH_BY_ACCOUNT).map_err(backend)?;
            let digests: Vec<String> = index
                .range((t, a, "")..=(t, a, "\u{10FFFF}"))
                .map_err(backend)?
                .map(|entry| entry.map(|(k, _)| k.value().2.to_owned()).map_err(backend))
                .collect::<StoreResult<_>>()?;
            let mut tokens = txn.open_table(REFRESH_TOKENS).map_err(backend)?;
            for digest in &digests {
                tokens.remove(digest.as_str()).map_err(backend)?;
                index.remove((t, a, digest.as_str())).map_err(backend)?;
            }
        }
        WriteOp::UseRefresh(digest) => {
            let mut tokens = txn.open_table(REFRESH_TOKENS).map_err(backend)?;
            let before: Option<RefreshToken> = match tokens.get(digest.as_str()).map_err(backend)? {
                Some(v) => Some(decode(v.value())?),
                None => None,
            };
            if let Some(token) = &before
                && !token.used
            {
                let used = RefreshToken { used: true, ..token.clone() };
                let bytes = encode(&used)?;
                tokens.insert(digest.as_str(), bytes.as_slice()).map_err(backend)?;
            }
            return Ok(Outcome::Refresh(before));
        }
        WriteOp::AddTokenUsage(tenant, month, tokens) => {
            let mut table = txn.open_table(TOKEN_USAGE).map_err(backend)?;
            let key = (tenant.as_str(), month.as_str());
            let before = table.get(key).map_err(backend)?.map_or(0, |v| v.value());
            let total = before.saturating_add(*tokens);
            table.insert(key, total).map_err(backend)?;
            return Ok(Outcome::Total(total));
        }
        WriteOp::PutChannel(c) => {
            let bytes = encode(c)?;
            txn.open_table(CHANNELS)
                .map_err(backend)?
                .insert(c.id.as_str(), bytes.as_slice())
                .map_err(backend)?;
        }
        WriteOp::DeleteChannel(tenant, id) => {
            let mut table = txn.open_table(CHANNELS).map_err(backend)?;
            let found: Option<ChannelConnection> =
                table.get(id.as_str()).map_err(backend)?.map(|v| decode(v.value())).transpose()?;
            if found.is_none_or(|c| c.tenant_id != *tenant) {
                return Ok(Outcome::Existed(false));
            }
            table.remove(id.as_str()).map_err(backend)?;
            return Ok(Outcome::Existed(true));
        }
        WriteOp::ContactConversation(connection, contact, fresh) => {
            let mut contacts = txn.open_table(CONTACTS).map_err(backend)?;
            let key = (connection.as_str(), contact.as_str());
            let existing = contacts.get(key).map_err(backend)?.map(|v| v.value().to_owned());
            let conversations = txn.open_table(CONVERSATIONS).map_err(backend)?;
            if let Some(id) = existing {
                let t = fresh.tenant_id.as_str();
                let found = conversations.get((t, id.as_str())).map_err(backend)?;
                if let Some(v) = found {
                    return Ok(Outcome::Conversation(Box::new(decode(v.value())?)));
                }
                // Deleted since: the contact starts a new conversation.
            }
            drop(conversations);
            create_conversation(txn, fresh)?;
            contacts.insert(key, fresh.id.as_str()).map_err(backend)?;
            txn.open_table(CONVERSATION_CONTACTS)
                .map_err(backend)?
                .insert((fresh.tenant_id.as_str(), fresh.id.as_str()), key)
                .map_err(backend)?;
            let subject = parla_domain::subjects::contact_key(contact);
            index_subject(txn, &fresh.tenant_id, &fresh.id, subject.into_iter())?;
            return Ok(Outcome::Conversation(Box::new(fresh.clone())));
        }
        WriteOp::SetDelivery(tenant, id, seq, connection, delivery) => {
            let (t, c) = (tenant.as_str(), id.as_str());
            let mut messages = txn.open_table(MESSAGES).map_err(backend)?;
            let found: Option<Message> = messages
                .get((t, c, *seq))
                .map_err(backend)?
                .map(|v| decode(v.value()))
                .transpose()?;
            let Some(mut message) = found else { return Ok(Outcome::Existed(false)) };
            // Merged with what a provider's report may already have said: ids accumulate and
            // the status never moves back (a failure always shows).
            let merged = parla_domain::model::Delivery::merged(message.delivery.take(), delivery);
            message.delivery = Some(merged);
            let bytes = encode(&message)?;
            messages.insert((t, c, *seq), bytes.as_slice()).map_err(backend)?;
            let mut ids = txn.open_table(PROVIDER_IDS).map_err(backend)?;
            for provider_id in &delivery.provider_ids {
                ids.insert((connection.as_str(), provider_id.as_str()), (t, c, *seq))
                    .map_err(backend)?;
            }
            return Ok(Outcome::Existed(true));
        }
        WriteOp::PushToken(tenant, id, token, add) => {
            let mut table = txn.open_table(PUSH_TOKENS).map_err(backend)?;
            let (t, c) = (tenant.as_str(), id.as_str());
            if !*add {
                table.remove((t, c, token.as_str())).map_err(backend)?;
                return Ok(Outcome::Done);
            }
            table.insert((t, c, token.as_str()), parla_domain::model::now_ms()).map_err(backend)?;
            let mut all: Vec<(i64, String)> = table
                .range((t, c, "")..=(t, c, "\u{10FFFF}"))
                .map_err(backend)?
                .map(|e| e.map(|(k, v)| (v.value(), k.value().2.to_owned())).map_err(backend))
                .collect::<StoreResult<_>>()?;
            all.sort();
            let excess = all.len().saturating_sub(MAX_PUSH_TOKENS);
            for (_, oldest) in all.into_iter().take(excess) {
                table.remove((t, c, oldest.as_str())).map_err(backend)?;
            }
        }
        WriteOp::AdvanceDelivery(connection, provider_id, status, error) => {
            let found = txn
                .open_table(PROVIDER_IDS)
                .map_err(backend)?
                .get((connection.as_str(), provider_id.as_str()))
                .map_err(backend)?
                .map(|v| {
                    let (t, c, seq) = v.value();
                    (t.to_owned(), c.to_owned(), seq)
                });
            let Some((t, c, seq)) = found else { return Ok(Outcome::Moved(None)) };
            let mut messages = txn.open_table(MESSAGES).map_err(backend)?;
            let stored: Option<Message> = messages
                .get((t.as_str(), c.as_str(), seq))
                .map_err(backend)?
                .map(|v| decode(v.value()))
                .transpose()?;
            let Some(mut message) = stored else { return Ok(Outcome::Moved(None)) };
            let now = parla_domain::model::now_ms();
            let mut delivery = message.delivery.take().unwrap_or(parla_domain::model::Delivery {
                status: parla_domain::model::DeliveryStatus::Sent,
                provider_ids: vec![provider_id.clone()],
                error: None,
                updated_at: now,
            });
            let moved = *status > delivery.status;
            if moved {
                delivery.status = *status;
                delivery.error = error.clone().or(delivery.error.take());
                delivery.updated_at = now;
            }
            message.delivery = Some(delivery);
            if !moved {
                return Ok(Outcome::Moved(None));
            }
            let bytes = encode(&message)?;
            messages.insert((t.as_str(), c.as_str(), seq), bytes.as_slice()).map_err(backend)?;
            return Ok(Outcome::Moved(Some((TenantId(t), ConversationId(c), seq))));
        }
        WriteOp::SetOptedOut(connection, contact, out) => {
            let mut table = txn.open_table(OPTED_OUT).map_err(backend)?;
            let key = (connection.as_str(), contact.as_str());
            if *out {
                table.insert(key, 1).map_err(backend)?;
            } else {
                table.remove(key).map_err(backend)?;
            }
        }
        WriteOp::MergeUserData(tenant, id, fields) => {
            let key = (tenant.as_str(), id.as_str());
            let exists = txn
                .open_table(CONVERSATIONS)
                .map_err(backend)?
                .get(key)
                .map_err(backend)?
                .is_some();
            if !exists {
                return Ok(Outcome::Existed(false));
            }
            let mut table = txn.open_table(USER_DATA).map_err(backend)?;
            let mut data: BTreeMap<String, String> = table
                .get(key)
                .map_err(backend)?
                .map(|v| decode(v.value()))
                .transpose()?
                .unwrap_or_default();
            data.extend(fields.iter().map(|(k, v)| (k.clone(), v.clone())));
            table.insert(key, encode(&data)?.as_slice()).map_err(backend)?;
            drop(table);
            let subjects = parla_domain::subjects::keys_of_fields(fields);
            index_subject(txn, tenant, id, subjects.into_iter())?;
            return Ok(Outcome::Existed(true));
        }
        WriteOp::SetChannelCursor(tenant, id, seq) => {
            txn.open_table(CHANNEL_CURSORS)
                .map_err(backend)?
                .insert((tenant.as_str(), id.as_str()), *seq)
                .map_err(backend)?;
        }
        WriteOp::PutCanned(c) => {
            let bytes = encode(c)?;
            txn.open_table(CANNED)
                .map_err(backend)?
                .insert((c.tenant_id.as_str(), c.id.as_str()), bytes.as_slice())
                .map_err(backend)?;
        }
        WriteOp::DeleteCanned(tenant, id) => {
            let mut table = txn.open_table(CANNED).map_err(backend)?;
            let existed = table.remove((tenant.as_str(), id.as_str())).map_err(backend)?.is_some();
            return Ok(Outcome::Existed(existed));
        }
        WriteOp::AddNote(note) => {
            let (t, c) = (note.tenant_id.as_str(), note.conversation_id.as_str());
            if txn
                .open_table(CONVERSATIONS)
                .map_err(backend)?
                .get((t, c))
                .map_err(backend)?
                .is_none()
            {
                return Ok(Outcome::Existed(false));
            }
            let bytes = encode(note)?;
            txn.open_table(NOTES)
                .map_err(backend)?
                .insert((t, c, note.id.as_str()), bytes.as_slice())
                .map_err(backend)?;
            return Ok(Outcome::Existed(true));
        }
        WriteOp::SetHandling(tenant, id, handling) => {
            let mut table = txn.open_table(CONVERSATIONS).map_err(backend)?;
            let key = (tenant.as_str(), id.as_str());
            let found: Option<Conversation> =
                table.get(key).map_err(backend)?.map(|v| decode(v.value())).transpose()?;
            let Some(mut conversation) = found else { return Ok(Outcome::Existed(false)) };
            let mut effect = analytics::on_handling(&conversation, handling);
            conversation.handling = handling.clone();
            if let Some(stats) = effect.stats.take() {
                conversation.stats = stats;
            }
            let bytes = encode(&conversation)?;
            // Counted last: an op refused before this point leaves no count behind. (Counting
            // reads only the conversation's tenant, bot, channel and start: unchanged here.)
            count_effect(txn, &conversation, None, &effect)?;
            table.insert(key, bytes.as_slice()).map_err(backend)?;
            let mut attention = txn.open_table(ATTENTION).map_err(backend)?;
            if handling.needs_agent() {
                attention.insert(key, 0).map_err(backend)?;
            } else {
                attention.remove(key).map_err(backend)?;
            }
            return Ok(Outcome::Existed(true));
        }
        WriteOp::ClearBotTombstone(tenant, bot) => {
            txn.open_table(BOT_TOMBSTONES)
                .map_err(backend)?
                .remove((tenant.as_str(), bot.as_str()))
                .map_err(backend)?;
        }
        WriteOp::PutDocument(d, content) => {
            write_document(txn, d)?;
            if let Some(content) = content {
                txn.open_table(DOCUMENT_CONTENT)
                    .map_err(backend)?
                    .insert((d.tenant_id.as_str(), d.id.as_str()), content.as_slice())
                    .map_err(backend)?;
            }
        }
        WriteOp::PutChunks(d, chunks) => {
            let (t, b, id) = (d.tenant_id.as_str(), d.bot_id.as_str(), d.id.as_str());
            remove_chunks(txn, t, b, id)?;
            let mut table = txn.open_table(CHUNKS).map_err(backend)?;
            for chunk in chunks {
                let bytes = encode(chunk)?;
                table.insert((t, b, id, chunk.position), bytes.as_slice()).map_err(backend)?;
            }
            drop(table);
            write_document(txn, d)?;
        }
        WriteOp::DeleteDocument(tenant, id) => {
            return remove_document(txn, tenant.as_str(), id).map(Outcome::Existed);
        }
        WriteOp::RevokeFamily(family) => {
            let mut families = txn.open_table(REFRESH_FAMILIES).map_err(backend)?;
            let digests: Vec<String> = families
                .range((family.as_str(), "")..=(family.as_str(), "\u{10FFFF}"))
                .map_err(backend)?
                .map(|entry| entry.map(|(k, _)| k.value().1.to_owned()).map_err(backend))
                .collect::<StoreResult<_>>()?;
            let mut tokens = txn.open_table(REFRESH_TOKENS).map_err(backend)?;
            for digest in &digests {
                tokens.remove(digest.as_str()).map_err(backend)?;
                families.remove((family.as_str(), digest.as_str())).map_err(backend)?;
            }
        }
    }
    Ok(Outcome::Done)
}

/// Writes a document's record, its bot index entry and its place in the processing queue.
fn write_document(txn: &WriteTransaction, d: &Document) -> StoreResult<()> {
    let (t, id) = (d.tenant_id.as_str(), d.id.as_str());
    let bytes = encode(d)?;
    txn.open_table(DOCUMENTS)
        .map_err(backend)?
        .insert((t, id), bytes.as_slice())
        .map_err(backend)?;
    txn.open_table(DOCUMENTS_BY_BOT)
        .map_err(backend)?
        .insert((t, d.bot_id.as_str(), id), 0)
        .map_err(backend)?;
    let mut queue = txn.open_table(DOCUMENT_QUEUE).map_err(backend)?;
    if matches!(d.status, ProcessStatus::Pending | ProcessStatus::Processing) {
        queue.insert((t, id), 0).map_err(backend)?;
    } else {
        queue.remove((t, id)).map_err(backend)?;
    }
    Ok(())
}

fn create_conversation(txn: &Txn, c: &Conversation) -> StoreResult<()> {
    let bytes = encode(c)?;
    let mut table = txn.open_table(CONVERSATIONS).map_err(backend)?;
    let key = (c.tenant_id.as_str(), c.id.as_str());
    if table.get(key).map_err(backend)?.is_some() {
        return Err(StoreError::ConversationExists);
    }
    table.insert(key, bytes.as_slice()).map_err(backend)?;
    txn.open_table(CONVERSATIONS_BY_BOT)
        .map_err(backend)?
        .insert((c.tenant_id.as_str(), c.bot_id.as_str(), c.id.as_str()), 0)
        .map_err(backend)?;
    let (hour, bot, channel) = analytics::start_bucket(c);
    count(txn, c.tenant_id.as_str(), (hour, bot.as_str(), channel), &analytics::on_create(c))
}

/// Counts every stored conversation and message into the analytics, as if they had been
/// counted as they were written: once, when a file written before analytics existed is opened.
/// A conversation's handling history was not kept, so only its current handling counts (a
/// conversation handed back to the bot since does not count as handed over).
fn backfill_analytics(txn: &Txn) -> StoreResult<usize> {
    let conversations: Vec<Conversation> = {
        let table = txn.open_table(CONVERSATIONS).map_err(backend)?;
        let mut all = Vec::new();
        for entry in table.iter().map_err(backend)? {
            all.push(decode(entry.map_err(backend)?.1.value())?);
        }
        all
    };
    for mut c in conversations.iter().cloned() {
        c.stats = Default::default();
        let (hour, bot, channel) = analytics::start_bucket(&c);
        count(txn, c.tenant_id.as_str(), (hour, bot.as_str(), channel), &analytics::on_create(&c))?;
        let messages: Vec<Message> = {
            let table = txn.open_table(MESSAGES).map_err(backend)?;
            let (t, id) = (c.tenant_id.as_str(), c.id.as_str());
            let mut all = Vec::new();
            for entry in table.range((t, id, 0)..=(t, id, u64::MAX)).map_err(backend)? {
                all.push(decode(entry.map_err(backend)?.1.value())?);
            }
            all
        };
        for m in &messages {
            let effect = analytics::on_append(&c, m);
            count_effect(txn, &c, Some(m), &effect)?;
            if let Some(stats) = effect.stats {
                c.stats = stats;
            }
        }
        let effect = analytics::on_handling(&c, &c.handling);
        count_effect(txn, &c, None, &effect)?;
        if let Some(stats) = effect.stats {
            c.stats = stats;
        }
        let bytes = encode(&c)?;
        txn.open_table(CONVERSATIONS)
            .map_err(backend)?
            .insert((c.tenant_id.as_str(), c.id.as_str()), bytes.as_slice())
            .map_err(backend)?;
    }
    Ok(conversations.len())
}

/// A write transaction with the analytics deltas of its writes, summed in memory and added
/// to the tables once, just before the commit ([`Txn::flush`]): a batch of 500 appends to one
/// busy bucket reads and rewrites it once, not 500 times. Dropped with the transaction when
/// the batch is refused.
struct Txn<'a> {
    txn: &'a WriteTransaction,
    counters: std::cell::RefCell<BTreeMap<BucketKey, Counters>>,
    intents: std::cell::RefCell<BTreeMap<IntentKey, (i64, f64)>>,
}

/// (tenant, hour, bot, channel), owned.
type BucketKey = (String, i64, String, &'static str);
/// (tenant, hour, bot, intent), owned.
type IntentKey = (String, i64, String, String);

impl std::ops::Deref for Txn<'_> {
    type Target = WriteTransaction;

    fn deref(&self) -> &WriteTransaction {
        self.txn
    }
}

impl<'a> Txn<'a> {
    fn new(txn: &'a WriteTransaction) -> Self {
        Self { txn, counters: Default::default(), intents: Default::default() }
    }

    /// Adds the summed deltas to the stored counters.
    fn flush(self) -> StoreResult<()> {
        let mut table = self.txn.open_table(ANALYTICS).map_err(backend)?;
        for ((t, hour, bot, channel), delta) in self.counters.into_inner() {
            let key = (t.as_str(), hour, bot.as_str(), channel);
            let mut counters: Counters = match table.get(key).map_err(backend)? {
                Some(v) => decode(v.value())?,
                None => Counters::default(),
            };
            counters.add(&delta);
            let bytes = encode(&counters)?;
            table.insert(key, bytes.as_slice()).map_err(backend)?;
        }
        let mut table = self.txn.open_table(INTENT_COUNTS).map_err(backend)?;
        for ((t, hour, bot, intent), (n, sum)) in self.intents.into_inner() {
            let key = (t.as_str(), hour, bot.as_str(), intent.as_str());
            let (hits, total) = table.get(key).map_err(backend)?.map_or((0, 0.0), |v| v.value());
            table.insert(key, (hits + n, total + sum)).map_err(backend)?;
        }
        Ok(())
    }
}

/// Adds `delta` to a tenant's analytics bucket (at the commit).
fn count(
    txn: &Txn,
    tenant: &str,
    (hour, bot, channel): (i64, &str, Channel),
    delta: &Counters,
) -> StoreResult<()> {
    if !delta.is_zero() {
        let key = (tenant.to_owned(), hour, bot.to_owned(), channel.as_str());
        txn.counters.borrow_mut().entry(key).or_default().add(delta);
    }
    Ok(())
}

/// Applies what a write added to the analytics (the conversation's own stats are the
/// caller's to store, with the rest of its record).
fn count_effect(
    txn: &Txn,
    c: &Conversation,
    message: Option<&Message>,
    effect: &analytics::Effect,
) -> StoreResult<()> {
    let (t, b) = (c.tenant_id.as_str(), c.bot_id.as_str());
    let (start, _, channel) = analytics::start_bucket(c);
    count(txn, t, (start, b, channel), &effect.conversation)?;
    let Some(m) = message else { return Ok(()) };
    let hour = analytics::hour_of(m.created_at);
    count(txn, t, (hour, b, channel), &effect.message)?;
    if let Some((intent, confidence)) = &effect.intent {
        let key = (t.to_owned(), hour, b.to_owned(), intent.clone());
        let mut intents = txn.intents.borrow_mut();
        let (hits, sum) = intents.entry(key).or_default();
        (*hits, *sum) = (*hits + 1, *sum + confidence);
    }
    if effect.unmatched {
        txn.open_table(UNMATCHED)
            .map_err(backend)?
            .insert((t, m.created_at, m.conversation_id.as_str(), m.seq), b)
            .map_err(backend)?;
    }
    Ok(())
}

/// Removes a document with its bytes, chunks and queue entry; returns whether it existed.
fn remove_document(txn: &WriteTransaction, t: &str, id: &str) -> StoreResult<bool> {
    let removed = txn
        .open_table(DOCUMENTS)
        .map_err(backend)?
        .remove((t, id))
        .map_err(backend)?
        .map(|v| decode::<Document>(v.value()))
        .transpose()?;
    let Some(document) = removed else { return Ok(false) };
    let b = document.bot_id.as_str();
    remove_chunks(txn, t, b, id)?;
    txn.open_table(DOCUMENTS_BY_BOT).map_err(backend)?.remove((t, b, id)).map_err(backend)?;
    txn.open_table(DOCUMENT_CONTENT).map_err(backend)?.remove((t, id)).map_err(backend)?;
    txn.open_table(DOCUMENT_QUEUE).map_err(backend)?.remove((t, id)).map_err(backend)?;
    Ok(true)
}

fn remove_chunks(txn: &WriteTransaction, t: &str, b: &str, id: &str) -> StoreResult<()> {
    let mut table = txn.open_table(CHUNKS).map_err(backend)?;
    let positions: Vec<u32> = table
        .range((t, b, id, 0)..=(t, b, id, u32::MAX))
        .map_err(backend)?
        .map(|entry| entry.map(|(k, _)| k.value().3).map_err(backend))
        .collect::<StoreResult<_>>()?;
    for position in positions {
        table.remove((t, b, id, position)).map_err(backend)?;
    }
    Ok(())
}

fn append(txn: &Txn, m: &Message) -> StoreResult<Appended> {
    let (t, c) = (m.tenant_id.as_str(), m.conversation_id.as_str());
    let mut conversations = txn.open_table(CONVERSATIONS).map_err(backend)?;
    let mut conversation: Conversation = match conversations.get((t, c)).map_err(backend)? {
        Some(v) => decode(v.value())?,
        None => return Err(StoreError::ConversationNotFound),
    };
    let mut messages = txn.open_table(MESSAGES).map_err(backend)?;
    let mut client_ids = txn.open_table(CLIENT_IDS).map_err(backend)?;
    if let Some(cid) = m.client_msg_id.as_deref() {
        let existing = client_ids.get((t, c, cid)).map_err(backend)?.map(|g| g.value());
        if let Some(seq) = existing {
            let bytes = messages.get((t, c, seq)).map_err(backend)?.ok_or_else(|| {
                StoreError::Corrupt(format!("idempotency index points at missing seq {seq}"))
            })?;
            return Ok(Appended::Duplicate(decode(bytes.value())?));
        }
    }
    let last = last_seq_in(&messages, t, c)?;
    if m.seq <= last {
        return Err(StoreError::SeqConflict(m.seq));
    }
    if m.seq != last + 1 {
        return Err(StoreError::SeqGap { last, got: m.seq });
    }
    let bytes = encode(m)?;
    messages.insert((t, c, m.seq), bytes.as_slice()).map_err(backend)?;
    if let Some(cid) = m.client_msg_id.as_deref() {
        client_ids.insert((t, c, cid), m.seq).map_err(backend)?;
    }
    // The conversation's sentiment and analytics, in the same transaction as the message
    // that moves them.
    let mut effect = analytics::on_append(&conversation, m);
    let sentiment = m.sentiment.filter(|_| m.sender == Sender::User);
    let changed = sentiment.is_some() || effect.stats.is_some();
    if let Some(sentiment) = sentiment {
        conversation.sentiment_sum += sentiment;
        conversation.sentiment_count += 1;
    }
    if let Some(stats) = effect.stats.take() {
        conversation.stats = stats;
    }
    let bytes = if changed { Some(encode(&conversation)?) } else { None };
    // Counted last: nothing that can refuse the append comes after. (Counting reads only the
    // conversation's tenant, bot, channel and start: unchanged above.)
    count_effect(txn, &conversation, Some(m), &effect)?;
    if let Some(bytes) = bytes {
        conversations.insert((t, c), bytes.as_slice()).map_err(backend)?;
    }
    Ok(Appended::Stored)
}

fn last_seq_in(
    table: &impl ReadableTable<(&'static str, &'static str, u64), &'static [u8]>,
    tenant: &str,
    conversation: &str,
) -> StoreResult<u64> {
    let mut range = table
        .range((tenant, conversation, 0)..=(tenant, conversation, u64::MAX))
        .map_err(backend)?;
    match range.next_back() {
        Some(entry) => Ok(entry.map_err(backend)?.0.value().2),
        None => Ok(0),
    }
}

#[async_trait]
impl Catalog for RedbStore {
    async fn put_tenant(&self, tenant: &Tenant) -> StoreResult<()> {
        let sealed =
            self.sealer().map_or_else(|| tenant.clone(), |s| sealing::seal_tenant(&*s, tenant));
        self.write(WriteOp::PutTenant(sealed)).await.map(drop)
    }

    async fn get_tenant(&self, id: &TenantId) -> StoreResult<Option<Tenant>> {
        let id = id.clone();
        self.read(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let table = txn.open_table(TENANTS).map_err(backend)?;
            table.get(id.as_str()).map_err(backend)?.map(|v| decode(v.value())).transpose()
        })
        .await?
        .map(|t| self.opened_tenant(t))
        .transpose()
    }

    async fn list_tenants(&self) -> StoreResult<Vec<TenantId>> {
        self.read_blocking(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let table = txn.open_table(TENANTS).map_err(backend)?;
            let rows = table.iter().map_err(backend)?;
            rows.map(|row| Ok(TenantId::from(row.map_err(backend)?.0.value()))).collect()
        })
        .await
    }

    async fn put_bot(&self, bot: &Bot) -> StoreResult<()> {
        self.write(WriteOp::PutBot(bot.clone())).await.map(drop)
    }

    async fn get_bot(&self, tenant: &TenantId, id: &BotId) -> StoreResult<Option<Bot>> {
        let (tenant, id) = (tenant.clone(), id.clone());
        self.read(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let table = txn.open_table(BOTS).map_err(backend)?;
            let found = table.get((tenant.as_str(), id.as_str())).map_err(backend)?;
            found.map(|v| decode(v.value())).transpose()
        })
        .await
    }

    async fn resolve_bot(&self, id: &BotId) -> StoreResult<Option<Bot>> {
        let id = id.clone();
        self.read(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let index = txn.open_table(BOT_INDEX).map_err(backend)?;
            let Some(tenant) = index.get(id.as_str()).map_err(backend)? else {
                return Ok(None);
            };
            let table = txn.open_table(BOTS).map_err(backend)?;
            let found = table.get((tenant.value(), id.as_str())).map_err(backend)?;
            found.map(|v| decode(v.value())).transpose()
        })
        .await
    }

    async fn list_bots(&self, tenant: &TenantId) -> StoreResult<Vec<Bot>> {
        let tenant = tenant.clone();
        self.read(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let table = txn.open_table(BOTS).map_err(backend)?;
            let t = tenant.as_str();
            // Bot ids are non-empty, so ("", ..) up to (t, "\u{10FFFF}") covers exactly tenant t.
            let range = table.range((t, "")..=(t, "\u{10FFFF}")).map_err(backend)?;
            range.map(|entry| decode(entry.map_err(backend)?.1.value())).collect()
        })
        .await
    }

    async fn delete_bot(&self, tenant: &TenantId, id: &BotId) -> StoreResult<bool> {
        match self.write(WriteOp::DeleteBot(tenant.clone(), id.clone())).await? {
            Outcome::Existed(existed) => Ok(existed),
            other => Err(StoreError::Backend(format!("delete_bot returned {other:?}"))),
        }
    }

    async fn bot_tombstones(&self) -> StoreResult<Vec<(TenantId, BotId)>> {
        self.read_blocking(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let table = txn.open_table(BOT_TOMBSTONES).map_err(backend)?;
            table
                .iter()
                .map_err(backend)?
                .map(|entry| {
                    let (key, _) = entry.map_err(backend)?;
                    let (t, b) = key.value();
                    Ok((TenantId::from(t), BotId::from(b)))
                })
                .collect()
        })
        .await
    }

    async fn clear_bot_tombstone(&self, tenant: &TenantId, id: &BotId) -> StoreResult<()> {
        self.write(WriteOp::ClearBotTombstone(tenant.clone(), id.clone())).await.map(drop)
    }

    async fn put_intents(
        &self,
        tenant: &TenantId,
        bot: &BotId,
        intents: &[Intent],
    ) -> StoreResult<()> {
        let sealed = match self.sealer() {
            Some(s) => sealing::seal_intents(&*s, tenant.as_str(), intents),
            None => intents.to_vec(),
        };
        self.write(WriteOp::PutIntents(tenant.clone(), bot.clone(), sealed)).await.map(drop)
    }

    async fn list_intents(&self, tenant: &TenantId, bot: &BotId) -> StoreResult<Vec<Intent>> {
        let (t, bot) = (tenant.clone(), bot.clone());
        let stored = self
            .read(move |db| {
                let txn = db.begin_read().map_err(backend)?;
                let table = txn.open_table(INTENTS).map_err(backend)?;
                let found = table.get((t.as_str(), bot.as_str())).map_err(backend)?;
                Ok(found.map(|v| decode(v.value())).transpose()?.unwrap_or_default())
            })
            .await?;
        Ok(sealing::open_intents(self.sealer().as_deref(), tenant.as_str(), stored)?)
    }

    async fn put_canned(&self, canned: &CannedResponse) -> StoreResult<()> {
        self.write(WriteOp::PutCanned(canned.clone())).await.map(drop)
    }

    async fn list_canned(&self, tenant: &TenantId) -> StoreResult<Vec<CannedResponse>> {
        let tenant = tenant.clone();
        self.read(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let table = txn.open_table(CANNED).map_err(backend)?;
            let t = tenant.as_str();
            let range = table.range((t, "")..=(t, "\u{10FFFF}")).map_err(backend)?;
            range.map(|entry| decode(entry.map_err(backend)?.1.value())).collect()
        })
        .await
    }

    async fn delete_canned(&self, tenant: &TenantId, id: &str) -> StoreResult<bool> {
        match self.write(WriteOp::DeleteCanned(tenant.clone(), id.to_owned())).await? {
            Outcome::Existed(existed) => Ok(existed),
            other => Err(StoreError::Backend(format!("delete_canned returned {other:?}"))),
        }
    }
}

#[async_trait]
impl Conversations for RedbStore {
    async fn create_conversation(&self, conversation: &Conversation) -> StoreResult<()> {
        self.write(WriteOp::CreateConversation(conversation.clone())).await.map(drop)
    }

    async fn get_conversation(
        &self,
        tenant: &TenantId,
        id: &ConversationId,
    ) -> StoreResult<Option<Conversation>> {
        let (tenant, id) = (tenant.clone(), id.clone());
        self.read(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let table = txn.open_table(CONVERSATIONS).map_err(backend)?;
            let found = table.get((tenant.as_str(), id.as_str())).map_err(backend)?;
            found.map(|v| decode(v.value())).transpose()
        })
        .await
    }

    async fn delete_conversation(
        &self,
        tenant: &TenantId,
        id: &ConversationId,
    ) -> StoreResult<bool> {
        match self.write(WriteOp::DeleteConversation(tenant.clone(), id.clone())).await? {
            Outcome::Existed(existed) => Ok(existed),
            other => Err(StoreError::Backend(format!("delete_conversation returned {other:?}"))),
        }
    }

    async fn list_conversations(
        &self,
        tenant: &TenantId,
        bot: &BotId,
        before: Option<&ConversationId>,
        limit: usize,
    ) -> StoreResult<Vec<Conversation>> {
        let (tenant, bot, before) = (tenant.clone(), bot.clone(), before.cloned());
        self.read_blocking(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let index = txn.open_table(CONVERSATIONS_BY_BOT).map_err(backend)?;
            let conversations = txn.open_table(CONVERSATIONS).map_err(backend)?;
            let (t, b) = (tenant.as_str(), bot.as_str());
            let range = match before.as_ref() {
                Some(cursor) => index.range((t, b, "")..(t, b, cursor.as_str())),
                None => index.range((t, b, "")..=(t, b, "\u{10FFFF}")),
            }
            .map_err(backend)?;
            let mut out = Vec::new();
            for entry in range.rev().take(limit) {
                let (key, _) = entry.map_err(backend)?;
                let id = key.value().2.to_owned();
                if let Some(v) = conversations.get((t, id.as_str())).map_err(backend)? {
                    out.push(decode(v.value())?);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn append(&self, message: &Message) -> StoreResult<Appended> {
        match self.write(WriteOp::Append(message.clone())).await? {
            Outcome::Appended(appended) => Ok(appended),
            other => Err(StoreError::Backend(format!("append returned {other:?}"))),
        }
    }

    async fn messages_after(
        &self,
        tenant: &TenantId,
        conversation: &ConversationId,
        after_seq: u64,
        limit: usize,
    ) -> StoreResult<Vec<Message>> {
        let (tenant, conversation) = (tenant.clone(), conversation.clone());
        self.read(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let table = txn.open_table(MESSAGES).map_err(backend)?;
            let (t, c) = (tenant.as_str(), conversation.as_str());
            let Some(start) = after_seq.checked_add(1) else {
                return Ok(Vec::new());
            };
            let range = table.range((t, c, start)..=(t, c, u64::MAX)).map_err(backend)?;
            range.take(limit).map(|entry| decode(entry.map_err(backend)?.1.value())).collect()
        })
        .await
    }

    async fn message_by_client_id(
        &self,
        tenant: &TenantId,
        conversation: &ConversationId,
        client_msg_id: &str,
    ) -> StoreResult<Option<Message>> {
        let (tenant, conversation) = (tenant.clone(), conversation.clone());
        let cid = client_msg_id.to_owned();
        self.read(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let (t, c) = (tenant.as_str(), conversation.as_str());
            let ids = txn.open_table(CLIENT_IDS).map_err(backend)?;
            let Some(seq) = ids.get((t, c, cid.as_str())).map_err(backend)?.map(|g| g.value())
            else {
                return Ok(None);
            };
            let messages = txn.open_table(MESSAGES).map_err(backend)?;
            let found = messages.get((t, c, seq)).map_err(backend)?;
            found.map(|bytes| decode(bytes.value())).transpose()
        })
        .await
    }

    async fn last_seq(&self, tenant: &TenantId, conversation: &ConversationId) -> StoreResult<u64> {
        let (tenant, conversation) = (tenant.clone(), conversation.clone());
        self.read(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let table = txn.open_table(MESSAGES).map_err(backend)?;
            last_seq_in(&table, tenant.as_str(), conversation.as_str())
        })
        .await
    }

    async fn set_handling(
        &self,
        tenant: &TenantId,
        id: &ConversationId,
        handling: &Handling,
    ) -> StoreResult<bool> {
        let op = WriteOp::SetHandling(tenant.clone(), id.clone(), handling.clone());
        match self.write(op).await? {
            Outcome::Existed(existed) => Ok(existed),
            other => Err(StoreError::Backend(format!("set_handling returned {other:?}"))),
        }
    }

    async fn merge_user_data(
        &self,
        tenant: &TenantId,
        id: &ConversationId,
        fields: &BTreeMap<String, String>,
    ) -> StoreResult<bool> {
        let op = WriteOp::MergeUserData(tenant.clone(), id.clone(), fields.clone());
        match self.write(op).await? {
            Outcome::Existed(existed) => Ok(existed),
            other => Err(StoreError::Backend(format!("merge_user_data returned {other:?}"))),
        }
    }

    async fn user_data(
        &self,
        tenant: &TenantId,
        id: &ConversationId,
    ) -> StoreResult<Option<BTreeMap<String, String>>> {
        let (tenant, id) = (tenant.clone(), id.clone());
        self.read(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let key = (tenant.as_str(), id.as_str());
            if txn.open_table(CONVERSATIONS).map_err(backend)?.get(key).map_err(backend)?.is_none()
            {
                return Ok(None);
            }
            let table = txn.open_table(USER_DATA).map_err(backend)?;
            let data = table.get(key).map_err(backend)?.map(|v| decode(v.value())).transpose()?;
            Ok(Some(data.unwrap_or_default()))
        })
        .await
    }

    async fn add_note(&self, note: &Note) -> StoreResult<bool> {
        match self.write(WriteOp::AddNote(note.clone())).await? {
            Outcome::Existed(existed) => Ok(existed),
            other => Err(StoreError::Backend(format!("add_note returned {other:?}"))),
        }
    }

    async fn list_notes(&self, tenant: &TenantId, id: &ConversationId) -> StoreResult<Vec<Note>> {
        let (tenant, id) = (tenant.clone(), id.clone());
        self.read(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let table = txn.open_table(NOTES).map_err(backend)?;
            let (t, c) = (tenant.as_str(), id.as_str());
            let range = table.range((t, c, "")..=(t, c, "\u{10FFFF}")).map_err(backend)?;
            range.map(|entry| decode(entry.map_err(backend)?.1.value())).collect()
        })
        .await
    }

    async fn last_message(
        &self,
        tenant: &TenantId,
        id: &ConversationId,
    ) -> StoreResult<Option<Message>> {
        let (tenant, id) = (tenant.clone(), id.clone());
        self.read(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let table = txn.open_table(MESSAGES).map_err(backend)?;
            let (t, c) = (tenant.as_str(), id.as_str());
            let mut range = table.range((t, c, 0)..=(t, c, u64::MAX)).map_err(backend)?;
            range.next_back().map(|entry| decode(entry.map_err(backend)?.1.value())).transpose()
        })
        .await
    }
}

#[async_trait]
impl InboxIndex for RedbStore {
    async fn attention_conversations(
        &self,
        tenant: &TenantId,
        after: Option<&ConversationId>,
        limit: usize,
    ) -> StoreResult<Vec<Conversation>> {
        let (tenant, after) = (tenant.clone(), after.cloned());
        self.read_blocking(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let index = txn.open_table(ATTENTION).map_err(backend)?;
            let table = txn.open_table(CONVERSATIONS).map_err(backend)?;
            let t = tenant.as_str();
            let mut out = Vec::new();
            let range = match after.as_ref() {
                Some(cursor) => {
                    use std::ops::Bound::{Excluded, Included};
                    index.range::<(&str, &str)>((
                        Excluded((t, cursor.as_str())),
                        Included((t, "\u{10FFFF}")),
                    ))
                }
                None => index.range((t, "")..=(t, "\u{10FFFF}")),
            };
            for entry in range.map_err(backend)? {
                if out.len() >= limit {
                    break;
                }
                let (key, _) = entry.map_err(backend)?;
                if let Some(v) = table.get(key.value()).map_err(backend)? {
                    out.push(decode(v.value())?);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn list_tenant_conversations(
        &self,
        tenant: &TenantId,
        before: Option<&ConversationId>,
        limit: usize,
    ) -> StoreResult<Vec<Conversation>> {
        let (tenant, before) = (tenant.clone(), before.cloned());
        self.read_blocking(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let table = txn.open_table(CONVERSATIONS).map_err(backend)?;
            let t = tenant.as_str();
            let range = match before.as_ref() {
                Some(cursor) => table.range((t, "")..(t, cursor.as_str())),
                None => table.range((t, "")..=(t, "\u{10FFFF}")),
            }
            .map_err(backend)?;
            range.rev().take(limit).map(|entry| decode(entry.map_err(backend)?.1.value())).collect()
        })
        .await
    }
}

#[async_trait]
impl Accounts for RedbStore {
    async fn create_account(&self, account: &Account) -> StoreResult<()> {
        let mut account = self.sealed_account(account);
        account.email = account.email.to_lowercase();
        self.write(WriteOp::CreateAccount(account)).await.map(drop)
    }

    async fn account_by_email(&self, email: &str) -> StoreResult<Option<Account>> {
        let email = email.to_lowercase();
        self.read(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let emails = txn.open_table(ACCOUNT_EMAILS).map_err(backend)?;
            let Some(owner) = emails.get(email.as_str()).map_err(backend)? else {
                return Ok(None);
            };
            let (tenant, id) = owner.value();
            let accounts = txn.open_table(ACCOUNTS).map_err(backend)?;
            let found = accounts.get((tenant, id)).map_err(backend)?;
            found.map(|v| decode(v.value())).transpose()
        })
        .await?
        .map(|a| self.opened_account(a))
        .transpose()
    }

    async fn get_account(&self, tenant: &TenantId, id: &AccountId) -> StoreResult<Option<Account>> {
        let (tenant, id) = (tenant.clone(), id.clone());
        self.read(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let table = txn.open_table(ACCOUNTS).map_err(backend)?;
            let found = table.get((tenant.as_str(), id.as_str())).map_err(backend)?;
            found.map(|v| decode(v.value())).transpose()
        })
        .await?
        .map(|a| self.opened_account(a))
        .transpose()
    }

    async fn update_account(&self, account: &Account) -> StoreResult<()> {
        self.write(WriteOp::UpdateAccount(self.sealed_account(account))).await.map(drop)
    }

    async fn list_accounts(&self, tenant: &TenantId) -> StoreResult<Vec<Account>> {
        let tenant = tenant.clone();
        self.read_blocking(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let table = txn.open_table(ACCOUNTS).map_err(backend)?;
            let t = tenant.as_str();
            let range = table.range((t, "")..=(t, "\u{10FFFF}")).map_err(backend)?;
            range
                .map(|entry| decode(entry.map_err(backend)?.1.value()))
                .collect::<StoreResult<Vec<Account>>>()
        })
        .await?
        .into_iter()
        .map(|a| self.opened_account(a))
        .collect()
    }

    async fn delete_account(&self, tenant: &TenantId, id: &AccountId) -> StoreResult<bool> {
        match self.write(WriteOp::DeleteAccount(tenant.clone(), id.clone())).await? {
            Outcome::Existed(existed) => Ok(existed),
            other => Err(StoreError::Backend(format!("delete_account returned {other:?}"))),
        }
    }

    async fn delete_account_if_unchanged(&self, account: &Account) -> StoreResult<()> {
        self.write(WriteOp::DeleteAccountIf(account.clone())).await.map(drop)
    }

    async fn put_invitation(&self, invitation: &Invitation) -> StoreResult<()> {
        self.write(WriteOp::PutInvitation(invitation.clone())).await.map(drop)
    }

    async fn list_invitations(&self, tenant: &TenantId) -> StoreResult<Vec<Invitation>> {
        let tenant = tenant.clone();
        self.read_blocking(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let table = txn.open_table(INVITATIONS).map_err(backend)?;
            let t = tenant.as_str();
            let range = table.range((t, "")..=(t, "\u{10FFFF}")).map_err(backend)?;
            range.map(|entry| decode(entry.map_err(backend)?.1.value())).collect()
        })
        .await
    }

    async fn delete_invitation(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> StoreResult<Option<Invitation>> {
        match self.write(WriteOp::DeleteInvitation(tenant.clone(), id.to_owned())).await? {
            Outcome::Invitation(removed) => Ok(removed),
            other => Err(StoreError::Backend(format!("delete_invitation returned {other:?}"))),
        }
    }

    async fn take_invitation(&self, digest: &str) -> StoreResult<Option<Invitation>> {
        match self.write(WriteOp::TakeInvitation(digest.to_owned())).await? {
            Outcome::Invitation(taken) => Ok(taken),
            other => Err(StoreError::Backend(format!("take_invitation returned {other:?}"))),
        }
    }

    async fn invitation_by_digest(&self, digest: &str) -> StoreResult<Option<Invitation>> {
        let digest = digest.to_owned();
        self.read(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let index = txn.open_table(INVITATION_DIGESTS).map_err(backend)?;
            let Some(owner) = index.get(digest.as_str()).map_err(backend)? else {
                return Ok(None);
            };
            let invitations = txn.open_table(INVITATIONS).map_err(backend)?;
            let found = invitations.get(owner.value()).map_err(backend)?;
            found.map(|v| decode(v.value())).transpose()
        })
        .await
    }
}

#[async_trait]
impl Credentials for RedbStore {
    async fn revoke_api_key(&self, tenant: &TenantId, id: &str) -> StoreResult<bool> {
        match self.write(WriteOp::RevokeApiKey(tenant.clone(), id.to_owned())).await? {
            Outcome::Existed(existed) => Ok(existed),
            other => Err(StoreError::Backend(format!("revoke_api_key returned {other:?}"))),
        }
    }

    async fn touch_api_key(&self, tenant: &TenantId, id: &str, at: i64) -> StoreResult<()> {
        self.write(WriteOp::TouchApiKey(tenant.clone(), id.to_owned(), at)).await.map(drop)
    }

    async fn one_time_token_by_digest(&self, digest: &str) -> StoreResult<Option<OneTimeToken>> {
        let digest = digest.to_owned();
        self.read(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let table = txn.open_table(ONE_TIME_TOKENS).map_err(backend)?;
            let found = table.get(digest.as_str()).map_err(backend)?;
            found.map(|v| decode(v.value())).transpose()
        })
        .await
    }

    async fn put_refresh_token(&self, token: &RefreshToken) -> StoreResult<()> {
        self.write(WriteOp::PutRefresh(token.clone())).await.map(drop)
    }

    async fn use_refresh_token(&self, digest: &str) -> StoreResult<Option<RefreshToken>> {
        match self.write(WriteOp::UseRefresh(digest.to_owned())).await? {
            Outcome::Refresh(before) => Ok(before),
            other => Err(StoreError::Backend(format!("use_refresh_token returned {other:?}"))),
        }
    }

    async fn revoke_refresh_family(&self, family: &str) -> StoreResult<()> {
        self.write(WriteOp::RevokeFamily(family.to_owned())).await.map(drop)
    }

    async fn revoke_account_sessions(
        &self,
        tenant: &TenantId,
        account: &AccountId,
    ) -> StoreResult<()> {
        self.write(WriteOp::RevokeAccount(tenant.clone(), account.clone())).await.map(drop)
    }

    async fn put_one_time_token(&self, token: &OneTimeToken) -> StoreResult<()> {
        self.write(WriteOp::PutOneTime(token.clone())).await.map(drop)
    }

    async fn take_one_time_token(&self, digest: &str) -> StoreResult<Option<OneTimeToken>> {
        match self.write(WriteOp::TakeOneTime(digest.to_owned())).await? {
            Outcome::OneTime(taken) => Ok(taken),
            other => Err(StoreError::Backend(format!("take_one_time_token returned {other:?}"))),
        }
    }

    async fn put_api_key(&self, key: &ApiKey) -> StoreResult<()> {
        self.write(WriteOp::PutApiKey(key.clone())).await.map(drop)
    }

    async fn api_key_by_digest(&self, digest: &str) -> StoreResult<Option<ApiKey>> {
        let digest = digest.to_owned();
        self.read(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let index = txn.open_table(API_KEY_DIGESTS).map_err(backend)?;
            let Some(owner) = index.get(digest.as_str()).map_err(backend)? else {
                return Ok(None);
            };
            let keys = txn.open_table(API_KEYS).map_err(backend)?;
            let found = keys.get(owner.value()).map_err(backend)?;
            found.map(|v| decode(v.value())).transpose()
        })
        .await
    }

    async fn list_api_keys(&self, tenant: &TenantId) -> StoreResult<Vec<ApiKey>> {
        let tenant = tenant.clone();
        self.read_blocking(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let table = txn.open_table(API_KEYS).map_err(backend)?;
            let t = tenant.as_str();
            let range = table.range((t, "")..=(t, "\u{10FFFF}")).map_err(backend)?;
            range.map(|entry| decode(entry.map_err(backend)?.1.value())).collect()
        })
        .await
    }
}

#[async_trait]
impl Connections for RedbStore {
    async fn put_channel(&self, channel: &ChannelConnection) -> StoreResult<()> {
        self.write(WriteOp::PutChannel(channel.clone())).await.map(drop)
    }

    async fn channel_by_id(&self, id: &str) -> StoreResult<Option<ChannelConnection>> {
        let id = id.to_owned();
        self.read(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let table = txn.open_table(CHANNELS).map_err(backend)?;
            table.get(id.as_str()).map_err(backend)?.map(|v| decode(v.value())).transpose()
        })
        .await
    }

    async fn list_channels(
        &self,
        tenant: &TenantId,
        bot: &BotId,
    ) -> StoreResult<Vec<ChannelConnection>> {
        let (tenant, bot) = (tenant.clone(), bot.clone());
        self.read_blocking(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let table = txn.open_table(CHANNELS).map_err(backend)?;
            let mut out = Vec::new();
            for entry in table.iter().map_err(backend)? {
                let c: ChannelConnection = decode(entry.map_err(backend)?.1.value())?;
                if c.tenant_id == tenant && c.bot_id == bot {
                    out.push(c);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn delete_channel(&self, tenant: &TenantId, id: &str) -> StoreResult<bool> {
        match self.write(WriteOp::DeleteChannel(tenant.clone(), id.to_owned())).await? {
            Outcome::Existed(existed) => Ok(existed),
            other => Err(StoreError::Backend(format!("delete_channel returned {other:?}"))),
        }
    }

    async fn all_channels(&self) -> StoreResult<Vec<ChannelConnection>> {
        self.read_blocking(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let table = txn.open_table(CHANNELS).map_err(backend)?;
            let entries = table.iter().map_err(backend)?;
            entries.map(|entry| decode(entry.map_err(backend)?.1.value())).collect()
        })
        .await
    }
}

#[async_trait]
impl ChannelState for RedbStore {
    async fn contact_conversation(
        &self,
        connection: &str,
        contact: &str,
        fresh: &Conversation,
    ) -> StoreResult<Conversation> {
        let op =
            WriteOp::ContactConversation(connection.to_owned(), contact.to_owned(), fresh.clone());
        match self.write(op).await? {
            Outcome::Conversation(c) => Ok(*c),
            other => Err(StoreError::Backend(format!("contact_conversation returned {other:?}"))),
        }
    }

    async fn find_contact_conversation(
        &self,
        tenant: &TenantId,
        connection: &str,
        contact: &str,
    ) -> StoreResult<Option<Conversation>> {
        let (tenant, connection, contact) =
            (tenant.clone(), connection.to_owned(), contact.to_owned());
        self.read(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let contacts = txn.open_table(CONTACTS).map_err(backend)?;
            let Some(id) = contacts
                .get((connection.as_str(), contact.as_str()))
                .map_err(backend)?
                .map(|v| v.value().to_owned())
            else {
                return Ok(None);
            };
            let conversations = txn.open_table(CONVERSATIONS).map_err(backend)?;
            let found = conversations.get((tenant.as_str(), id.as_str())).map_err(backend)?;
            found.map(|v| decode(v.value())).transpose()
        })
        .await
    }

    async fn conversation_contact(
        &self,
        tenant: &TenantId,
        id: &ConversationId,
    ) -> StoreResult<Option<(String, String)>> {
        let (tenant, id) = (tenant.clone(), id.clone());
        self.read(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let table = txn.open_table(CONVERSATION_CONTACTS).map_err(backend)?;
            let found = table.get((tenant.as_str(), id.as_str())).map_err(backend)?;
            Ok(found.map(|v| {
                let (connection, contact) = v.value();
                (connection.to_owned(), contact.to_owned())
            }))
        })
        .await
    }

    async fn set_delivery(
        &self,
        tenant: &TenantId,
        id: &ConversationId,
        seq: u64,
        connection: &str,
        delivery: &parla_domain::model::Delivery,
    ) -> StoreResult<bool> {
        let op = WriteOp::SetDelivery(
            tenant.clone(),
            id.clone(),
            seq,
            connection.to_owned(),
            delivery.clone(),
        );
        match self.write(op).await? {
            Outcome::Existed(existed) => Ok(existed),
            other => Err(StoreError::Backend(format!("set_delivery returned {other:?}"))),
        }
    }

    async fn advance_delivery(
        &self,
        connection: &str,
        provider_id: &str,
        status: parla_domain::model::DeliveryStatus,
        error: Option<String>,
    ) -> StoreResult<Option<(TenantId, ConversationId, u64)>> {
        let op =
            WriteOp::AdvanceDelivery(connection.to_owned(), provider_id.to_owned(), status, error);
        match self.write(op).await? {
            Outcome::Moved(moved) => Ok(moved),
            other => Err(StoreError::Backend(format!("advance_delivery returned {other:?}"))),
        }
    }

    async fn add_push_token(
        &self,
        tenant: &TenantId,
        id: &ConversationId,
        token: &str,
    ) -> StoreResult<()> {
        let op = WriteOp::PushToken(tenant.clone(), id.clone(), token.to_owned(), true);
        self.write(op).await.map(drop)
    }

    async fn remove_push_token(
        &self,
        tenant: &TenantId,
        id: &ConversationId,
        token: &str,
    ) -> StoreResult<()> {
        let op = WriteOp::PushToken(tenant.clone(), id.clone(), token.to_owned(), false);
        self.write(op).await.map(drop)
    }

    async fn push_tokens(
        &self,
        tenant: &TenantId,
        id: &ConversationId,
    ) -> StoreResult<Vec<String>> {
        let (tenant, id) = (tenant.clone(), id.clone());
        self.read(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let table = txn.open_table(PUSH_TOKENS).map_err(backend)?;
            let (t, c) = (tenant.as_str(), id.as_str());
            let range = table.range((t, c, "")..=(t, c, "\u{10FFFF}")).map_err(backend)?;
            range.map(|entry| entry.map(|(k, _)| k.value().2.to_owned()).map_err(backend)).collect()
        })
        .await
    }

    async fn set_opted_out(&self, connection: &str, contact: &str, out: bool) -> StoreResult<()> {
        let op = WriteOp::SetOptedOut(connection.to_owned(), contact.to_owned(), out);
        self.write(op).await.map(drop)
    }

    async fn opted_out(&self, connection: &str, contact: &str) -> StoreResult<bool> {
        let (connection, contact) = (connection.to_owned(), contact.to_owned());
        self.read(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let table = txn.open_table(OPTED_OUT).map_err(backend)?;
            Ok(table.get((connection.as_str(), contact.as_str())).map_err(backend)?.is_some())
        })
        .await
    }

    async fn channel_conversations(&self, tenant: &TenantId) -> StoreResult<Vec<ConversationId>> {
        let tenant = tenant.clone();
        self.read_blocking(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let table = txn.open_table(CONVERSATION_CONTACTS).map_err(backend)?;
            let t = tenant.as_str();
            let range = table.range((t, "")..=(t, "\u{10FFFF}")).map_err(backend)?;
            range
                .map(|entry| entry.map(|(k, _)| ConversationId::from(k.value().1)).map_err(backend))
                .collect()
        })
        .await
    }

    async fn channel_cursor(&self, tenant: &TenantId, id: &ConversationId) -> StoreResult<u64> {
        let (tenant, id) = (tenant.clone(), id.clone());
        self.read(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let table = txn.open_table(CHANNEL_CURSORS).map_err(backend)?;
            Ok(table.get((tenant.as_str(), id.as_str())).map_err(backend)?.map_or(0, |v| v.value()))
        })
        .await
    }

    async fn set_channel_cursor(
        &self,
        tenant: &TenantId,
        id: &ConversationId,
        seq: u64,
    ) -> StoreResult<()> {
        let op = WriteOp::SetChannelCursor(tenant.clone(), id.clone(), seq);
        self.write(op).await.map(drop)
    }
}

#[async_trait]
impl Documents for RedbStore {
    async fn put_document(&self, document: &Document, content: Option<&[u8]>) -> StoreResult<()> {
        let op = WriteOp::PutDocument(document.clone(), content.map(<[u8]>::to_vec));
        self.write(op).await.map(drop)
    }

    async fn get_document(&self, tenant: &TenantId, id: &str) -> StoreResult<Option<Document>> {
        let (tenant, id) = (tenant.clone(), id.to_owned());
        self.read(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let table = txn.open_table(DOCUMENTS).map_err(backend)?;
            let found = table.get((tenant.as_str(), id.as_str())).map_err(backend)?;
            found.map(|v| decode(v.value())).transpose()
        })
        .await
    }

    async fn list_documents(&self, tenant: &TenantId, bot: &BotId) -> StoreResult<Vec<Document>> {
        let (tenant, bot) = (tenant.clone(), bot.clone());
        self.read_blocking(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let index = txn.open_table(DOCUMENTS_BY_BOT).map_err(backend)?;
            let documents = txn.open_table(DOCUMENTS).map_err(backend)?;
            let (t, b) = (tenant.as_str(), bot.as_str());
            let mut out = Vec::new();
            for entry in index.range((t, b, "")..=(t, b, "\u{10FFFF}")).map_err(backend)? {
                let (key, _) = entry.map_err(backend)?;
                if let Some(v) = documents.get((t, key.value().2)).map_err(backend)? {
                    out.push(decode(v.value())?);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn document_content(&self, tenant: &TenantId, id: &str) -> StoreResult<Option<Vec<u8>>> {
        let (tenant, id) = (tenant.clone(), id.to_owned());
        self.read_blocking(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let table = txn.open_table(DOCUMENT_CONTENT).map_err(backend)?;
            let found = table.get((tenant.as_str(), id.as_str())).map_err(backend)?;
            Ok(found.map(|v| v.value().to_vec()))
        })
        .await
    }

    async fn put_chunks(&self, document: &Document, chunks: &[Chunk]) -> StoreResult<()> {
        self.write(WriteOp::PutChunks(document.clone(), chunks.to_vec())).await.map(drop)
    }

    async fn list_chunks(&self, tenant: &TenantId, bot: &BotId) -> StoreResult<Vec<Chunk>> {
        let (tenant, bot) = (tenant.clone(), bot.clone());
        self.read_blocking(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let table = txn.open_table(CHUNKS).map_err(backend)?;
            let (t, b) = (tenant.as_str(), bot.as_str());
            let range =
                table.range((t, b, "", 0)..=(t, b, "\u{10FFFF}", u32::MAX)).map_err(backend)?;
            range.map(|entry| decode(entry.map_err(backend)?.1.value())).collect()
        })
        .await
    }

    async fn delete_document(&self, tenant: &TenantId, id: &str) -> StoreResult<bool> {
        match self.write(WriteOp::DeleteDocument(tenant.clone(), id.to_owned())).await? {
            Outcome::Existed(existed) => Ok(existed),
            other => Err(StoreError::Backend(format!("delete_document returned {other:?}"))),
        }
    }

    async fn unfinished_documents(&self) -> StoreResult<Vec<Document>> {
        self.read_blocking(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let queue = txn.open_table(DOCUMENT_QUEUE).map_err(backend)?;
            let documents = txn.open_table(DOCUMENTS).map_err(backend)?;
            let mut out = Vec::new();
            for entry in queue.iter().map_err(backend)? {
                let (key, _) = entry.map_err(backend)?;
                let (t, id) = key.value();
                if let Some(v) = documents.get((t, id)).map_err(backend)? {
                    out.push(decode(v.value())?);
                }
            }
            Ok(out)
        })
        .await
    }
}

#[async_trait]
impl Analytics for RedbStore {
    async fn analytics(
        &self,
        tenant: &TenantId,
        from_ms: i64,
        to_ms: i64,
    ) -> StoreResult<Vec<CounterRow>> {
        let tenant = tenant.clone();
        self.read_blocking(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let table = txn.open_table(ANALYTICS).map_err(backend)?;
            let t = tenant.as_str();
            let mut out = Vec::new();
            if from_ms >= to_ms {
                return Ok(out);
            }
            for entry in table.range((t, from_ms, "", "")..(t, to_ms, "", "")).map_err(backend)? {
                let (key, value) = entry.map_err(backend)?;
                let (_, hour, bot, channel) = key.value();
                let channel = Channel::from_name(channel)
                    .ok_or_else(|| StoreError::Corrupt(format!("analytics channel {channel}")))?;
                let counters = decode(value.value())?;
                out.push(CounterRow { hour, bot_id: BotId(bot.to_owned()), channel, counters });
            }
            Ok(out)
        })
        .await
    }

    async fn intent_counts(
        &self,
        tenant: &TenantId,
        from_ms: i64,
        to_ms: i64,
    ) -> StoreResult<Vec<IntentRow>> {
        let tenant = tenant.clone();
        self.read_blocking(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let table = txn.open_table(INTENT_COUNTS).map_err(backend)?;
            let t = tenant.as_str();
            let mut out = Vec::new();
            if from_ms >= to_ms {
                return Ok(out);
            }
            for entry in table.range((t, from_ms, "", "")..(t, to_ms, "", "")).map_err(backend)? {
                let (key, value) = entry.map_err(backend)?;
                let (_, hour, bot, intent) = key.value();
                let (hits, confidence_sum) = value.value();
                let bot_id = BotId(bot.to_owned());
                out.push(IntentRow {
                    hour,
                    bot_id,
                    intent: intent.to_owned(),
                    hits,
                    confidence_sum,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn unmatched_messages(
        &self,
        tenant: &TenantId,
        bot: Option<&BotId>,
        from_ms: i64,
        to_ms: i64,
        limit: usize,
    ) -> StoreResult<Vec<(BotId, Message)>> {
        let (tenant, bot) = (tenant.clone(), bot.cloned());
        self.read_blocking(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let index = txn.open_table(UNMATCHED).map_err(backend)?;
            let messages = txn.open_table(MESSAGES).map_err(backend)?;
            let t = tenant.as_str();
            let mut out = Vec::new();
            if from_ms >= to_ms {
                return Ok(out);
            }
            let range = index.range((t, from_ms, "", 0)..(t, to_ms, "", 0)).map_err(backend)?;
            for entry in range.rev() {
                if out.len() >= limit {
                    break;
                }
                let (key, value) = entry.map_err(backend)?;
                let (_, _, conversation, seq) = key.value();
                let owner = value.value();
                if bot.as_ref().is_some_and(|b| b.as_str() != owner) {
                    continue;
                }
                if let Some(v) = messages.get((t, conversation, seq)).map_err(backend)? {
                    out.push((BotId(owner.to_owned()), decode(v.value())?));
                }
            }
            Ok(out)
        })
        .await
    }

    async fn forget_unmatched(&self, tenant: &TenantId, before_ms: i64) -> StoreResult<u64> {
        match self.write(WriteOp::ForgetUnmatched(tenant.clone(), before_ms)).await? {
            Outcome::Total(n) => Ok(n),
            other => Err(StoreError::Backend(format!("forget_unmatched returned {other:?}"))),
        }
    }
}

#[async_trait]
impl Billing for RedbStore {
    async fn count_within(
        &self,
        tenant: &TenantId,
        month: &str,
        meter: &str,
        n: u64,
        limit: Option<u64>,
    ) -> StoreResult<Option<u64>> {
        let op = WriteOp::CountWithin(tenant.clone(), month.into(), meter.into(), n, limit);
        match self.write(op).await? {
            Outcome::Counted(total) => Ok(total),
            other => Err(StoreError::Backend(format!("count_within returned {other:?}"))),
        }
    }

    async fn uncount(
        &self,
        tenant: &TenantId,
        month: &str,
        meter: &str,
        n: u64,
    ) -> StoreResult<()> {
        self.write(WriteOp::Uncount(tenant.clone(), month.into(), meter.into(), n)).await.map(drop)
    }

    async fn usage(&self, tenant: &TenantId, month: &str) -> StoreResult<Vec<(String, u64)>> {
        let (tenant, month) = (tenant.clone(), month.to_owned());
        self.read(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let table = txn.open_table(USAGE).map_err(backend)?;
            let (t, m) = (tenant.as_str(), month.as_str());
            let mut out = Vec::new();
            for row in table.range((t, m, "")..).map_err(backend)? {
                let (key, count) = row.map_err(backend)?;
                let (rt, rm, meter) = key.value();
                if rt != t || rm != m {
                    break;
                }
                out.push((meter.to_owned(), count.value()));
            }
            Ok(out)
        })
        .await
    }

    async fn customer(&self, tenant: &TenantId) -> StoreResult<Option<String>> {
        let tenant = tenant.clone();
        self.read(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let table = txn.open_table(CUSTOMERS).map_err(backend)?;
            Ok(table.get(tenant.as_str()).map_err(backend)?.map(|v| v.value().to_owned()))
        })
        .await
    }

    async fn set_customer_once(&self, tenant: &TenantId, customer: &str) -> StoreResult<String> {
        match self.write(WriteOp::SetCustomerOnce(tenant.clone(), customer.to_owned())).await? {
            Outcome::Text(held) => Ok(held),
            other => Err(StoreError::Backend(format!("set_customer_once returned {other:?}"))),
        }
    }

    async fn put_subscription_if_newer(&self, subscription: &Subscription) -> StoreResult<bool> {
        match self.write(WriteOp::PutSubscription(subscription.clone())).await? {
            Outcome::Existed(written) => Ok(written),
            other => Err(StoreError::Backend(format!("put_subscription returned {other:?}"))),
        }
    }

    async fn get_subscription(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> StoreResult<Option<Subscription>> {
        let (tenant, id) = (tenant.clone(), id.to_owned());
        self.read(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let table = txn.open_table(SUBSCRIPTIONS).map_err(backend)?;
            let found: Option<Subscription> = match table.get(id.as_str()).map_err(backend)? {
                Some(v) => Some(decode(v.value())?),
                None => None,
            };
            Ok(found.filter(|s| s.tenant_id == tenant))
        })
        .await
    }

    async fn live_subscriptions(&self) -> StoreResult<Vec<Subscription>> {
        self.read_blocking(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let table = txn.open_table(SUBSCRIPTIONS).map_err(backend)?;
            let mut out = Vec::new();
            for row in table.iter().map_err(backend)? {
                let (_, v) = row.map_err(backend)?;
                let sub: Subscription = decode(v.value())?;
                if sub.is_live() {
                    out.push(sub);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn list_subscriptions(&self, tenant: &TenantId) -> StoreResult<Vec<Subscription>> {
        let tenant = tenant.clone();
        self.read(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let index = txn.open_table(SUBSCRIPTIONS_BY_TENANT).map_err(backend)?;
            let table = txn.open_table(SUBSCRIPTIONS).map_err(backend)?;
            let t = tenant.as_str();
            let mut out = Vec::new();
            for row in index.range((t, "")..).map_err(backend)? {
                let (key, _) = row.map_err(backend)?;
                let (rt, id) = key.value();
                if rt != t {
                    break;
                }
                if let Some(v) = table.get(id).map_err(backend)? {
                    out.push(decode(v.value())?);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn record_event(&self, event: &StoredEvent) -> StoreResult<bool> {
        match self.write(WriteOp::RecordEvent(event.clone())).await? {
            Outcome::Existed(new) => Ok(new),
            other => Err(StoreError::Backend(format!("record_event returned {other:?}"))),
        }
    }

    async fn pending_events(&self, limit: usize) -> StoreResult<Vec<StoredEvent>> {
        self.read(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let table = txn.open_table(EVENTS_PENDING).map_err(backend)?;
            let mut out = Vec::new();
            for row in table.iter().map_err(backend)?.take(limit) {
                let (_, v) = row.map_err(backend)?;
                out.push(decode(v.value())?);
            }
            Ok(out)
        })
        .await
    }

    async fn finish_event(&self, id: &str) -> StoreResult<()> {
        self.write(WriteOp::FinishEvent(id.to_owned())).await.map(drop)
    }
}

#[async_trait]
impl AuditLog for RedbStore {
    async fn append_audit(&self, entry: &parla_domain::audit::AuditEntry) -> StoreResult<()> {
        self.write(WriteOp::AppendAudit(entry.clone())).await.map(|_| ())
    }

    async fn list_audit(
        &self,
        tenant: &TenantId,
        before: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<parla_domain::audit::AuditEntry>> {
        let (tenant, before) = (tenant.clone(), before.map(str::to_owned));
        self.read_blocking(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let table = txn.open_table(AUDIT).map_err(backend)?;
            let t = tenant.as_str();
            let range = match before.as_deref() {
                Some(cursor) => table.range((t, "")..(t, cursor)),
                None => table.range((t, "")..=(t, "\u{10FFFF}")),
            }
            .map_err(backend)?;
            range
                .rev()
                .take(limit)
                .map(|entry| entry.map_err(backend).and_then(|(_, v)| decode(v.value())))
                .collect()
        })
        .await
    }
}

#[async_trait]
impl Subjects for RedbStore {
    async fn subject_conversations(
        &self,
        tenant: &TenantId,
        subject: &str,
    ) -> StoreResult<Vec<ConversationId>> {
        let (tenant, subject) = (tenant.clone(), subject.to_owned());
        self.read_blocking(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let index = txn.open_table(SUBJECTS).map_err(backend)?;
            let (t, k) = (tenant.as_str(), subject.as_str());
            index
                .range((t, k, "")..=(t, k, "\u{10FFFF}"))
                .map_err(backend)?
                .map(|entry| entry.map(|(key, _)| key.value().2.into()).map_err(backend))
                .collect()
        })
        .await
    }

    async fn reclaim_deleted(&self) -> StoreResult<()> {
        match self.write(WriteOp::Compact).await? {
            Outcome::Done => Ok(()),
            other => Err(StoreError::Backend(format!("compaction returned {other:?}"))),
        }
    }
}

#[async_trait]
impl Listings for RedbStore {
    async fn put_listing(&self, listing: &Listing) -> StoreResult<()> {
        self.write(WriteOp::PutListing(listing.clone())).await.map(drop)
    }

    async fn get_listing(&self, bot: &BotId) -> StoreResult<Option<Listing>> {
        let bot = bot.clone();
        self.read(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let table = txn.open_table(LISTINGS).map_err(backend)?;
            match table.get(bot.as_str()).map_err(backend)? {
                Some(v) => decode(v.value()).map(Some),
                None => Ok(None),
            }
        })
        .await
    }

    async fn public_listings(&self) -> StoreResult<Vec<Listing>> {
        self.read_blocking(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let table = txn.open_table(LISTINGS).map_err(backend)?;
            let mut out = Vec::new();
            for row in table.iter().map_err(backend)? {
                let (_, v) = row.map_err(backend)?;
                let listing: Listing = decode(v.value())?;
                if listing.public {
                    out.push(listing);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn delete_listing(&self, tenant: &TenantId, bot: &BotId) -> StoreResult<bool> {
        match self.write(WriteOp::DeleteListing(tenant.clone(), bot.clone())).await? {
            Outcome::Existed(existed) => Ok(existed),
            other => Err(StoreError::Backend(format!("delete_listing returned {other:?}"))),
        }
    }

    async fn put_connect_account(&self, account: &ConnectAccount) -> StoreResult<()> {
        self.write(WriteOp::PutConnectAccount(account.clone())).await.map(drop)
    }

    async fn connect_account(&self, tenant: &TenantId) -> StoreResult<Option<ConnectAccount>> {
        let tenant = tenant.clone();
        self.read(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let table = txn.open_table(CONNECT_ACCOUNTS).map_err(backend)?;
            match table.get(tenant.as_str()).map_err(backend)? {
                Some(v) => decode(v.value()).map(Some),
                None => Ok(None),
            }
        })
        .await
    }
}

#[async_trait]
impl TokenUsage for RedbStore {
    async fn add_token_usage(
        &self,
        tenant: &TenantId,
        month: &str,
        tokens: u64,
    ) -> StoreResult<u64> {
        match self.write(WriteOp::AddTokenUsage(tenant.clone(), month.to_owned(), tokens)).await? {
            Outcome::Total(total) => Ok(total),
            other => Err(StoreError::Backend(format!("add_token_usage returned {other:?}"))),
        }
    }

    async fn token_usage(&self, tenant: &TenantId, month: &str) -> StoreResult<u64> {
        let (tenant, month) = (tenant.clone(), month.to_owned());
        self.read(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let table = txn.open_table(TOKEN_USAGE).map_err(backend)?;
            Ok(table
                .get((tenant.as_str(), month.as_str()))
                .map_err(backend)?
                .map_or(0, |v| v.value()))
        })
        .await
    }
}

/// The billing writes: counts within limits, the customer set once, subscriptions by event
/// age, provider events once. A refusal writes nothing.
fn apply_billing(txn: &Txn, op: &WriteOp) -> StoreResult<Outcome> {
    match op {
        WriteOp::CountWithin(tenant, month, meter, n, limit) => {
            let mut table = txn.open_table(USAGE).map_err(backend)?;
            let key = (tenant.as_str(), month.as_str(), meter.as_str());
            let before = table.get(key).map_err(backend)?.map_or(0, |v| v.value());
            let total = before.saturating_add(*n);
            if limit.is_some_and(|limit| total > limit) {
                return Ok(Outcome::Counted(None));
            }
            table.insert(key, total).map_err(backend)?;
            Ok(Outcome::Counted(Some(total)))
        }
        WriteOp::Uncount(tenant, month, meter, n) => {
            let mut table = txn.open_table(USAGE).map_err(backend)?;
            let key = (tenant.as_str(), month.as_str(), meter.as_str());
            let before = table.get(key).map_err(backend)?.map(|v| v.value());
            if let Some(before) = before {
                table.insert(key, before.saturating_sub(*n)).map_err(backend)?;
            }
            Ok(Outcome::Done)
        }
        WriteOp::SetCustomerOnce(tenant, customer) => {
            let mut table = txn.open_table(CUSTOMERS).map_err(backend)?;
            let held = table.get(tenant.as_str()).map_err(backend)?.map(|v| v.value().to_owned());
            if let Some(held) = held {
                return Ok(Outcome::Text(held));
            }
            table.insert(tenant.as_str(), customer.as_str()).map_err(backend)?;
            Ok(Outcome::Text(customer.clone()))
        }
        WriteOp::PutSubscription(sub) => {
            let mut table = txn.open_table(SUBSCRIPTIONS).map_err(backend)?;
            let held: Option<Subscription> = match table.get(sub.id.as_str()).map_err(backend)? {
                Some(v) => Some(decode(v.value())?),
                None => None,
            };
            match held {
                Some(held) if held.tenant_id != sub.tenant_id => return Err(StoreError::Conflict),
                Some(held) if held.event_created > sub.event_created => {
                    return Ok(Outcome::Existed(false));
                }
                _ => {}
            }
            let bytes = encode(sub)?;
            table.insert(sub.id.as_str(), bytes.as_slice()).map_err(backend)?;
            txn.open_table(SUBSCRIPTIONS_BY_TENANT)
                .map_err(backend)?
                .insert((sub.tenant_id.as_str(), sub.id.as_str()), 0)
                .map_err(backend)?;
            Ok(Outcome::Existed(true))
        }
        WriteOp::RecordEvent(event) => {
            let mut seen = txn.open_table(EVENTS_SEEN).map_err(backend)?;
            if seen.get(event.id.as_str()).map_err(backend)?.is_some() {
                return Ok(Outcome::Existed(false));
            }
            seen.insert(event.id.as_str(), event.received_at).map_err(backend)?;
            let bytes = encode(event)?;
            txn.open_table(EVENTS_PENDING)
                .map_err(backend)?
                .insert((event.received_at, event.id.as_str()), bytes.as_slice())
                .map_err(backend)?;
            Ok(Outcome::Existed(true))
        }
        WriteOp::FinishEvent(id) => {
            let received = txn
                .open_table(EVENTS_SEEN)
                .map_err(backend)?
                .get(id.as_str())
                .map_err(backend)?
                .map(|v| v.value());
            if let Some(at) = received {
                txn.open_table(EVENTS_PENDING)
                    .map_err(backend)?
                    .remove((at, id.as_str()))
                    .map_err(backend)?;
            }
            Ok(Outcome::Done)
        }
        WriteOp::PutListing(listing) => {
            let bytes = encode(listing)?;
            let mut table = txn.open_table(LISTINGS).map_err(backend)?;
            table.insert(listing.bot_id.as_str(), bytes.as_slice()).map_err(backend)?;
            Ok(Outcome::Done)
        }
        WriteOp::DeleteListing(tenant, bot) => {
            let mut table = txn.open_table(LISTINGS).map_err(backend)?;
            let held: Option<Listing> = match table.get(bot.as_str()).map_err(backend)? {
                Some(v) => Some(decode(v.value())?),
                None => None,
            };
            if held.is_some_and(|l| &l.tenant_id == tenant) {
                table.remove(bot.as_str()).map_err(backend)?;
                return Ok(Outcome::Existed(true));
            }
            Ok(Outcome::Existed(false))
        }
        WriteOp::PutConnectAccount(account) => {
            let bytes = encode(account)?;
            let mut table = txn.open_table(CONNECT_ACCOUNTS).map_err(backend)?;
            table.insert(account.tenant_id.as_str(), bytes.as_slice()).map_err(backend)?;
            Ok(Outcome::Done)
        }
        _ => Err(StoreError::Backend("not a billing write".into())),
    }
}

/// The writes of accounts, API keys and invitations, each checked and applied in the writer's
/// transaction: compare-and-set on an account's version, the last-owner rule, field-level key
/// changes, invitations taken once. A refusal writes nothing.
fn apply_auth(txn: &Txn, op: &WriteOp) -> StoreResult<Outcome> {
    match op {
        WriteOp::UpdateAccount(a) => {
            let mut accounts = txn.open_table(ACCOUNTS).map_err(backend)?;
            let key = (a.tenant_id.as_str(), a.id.as_str());
            let existing: Account = match accounts.get(key).map_err(backend)? {
                Some(v) => decode(v.value())?,
                None => return Err(StoreError::Conflict),
            };
            if existing.email != a.email {
                return Err(StoreError::Corrupt("an account's email cannot change here".into()));
            }
            if existing.version != a.version {
                return Err(StoreError::Conflict);
            }
            if existing.role == Role::Owner && a.role != Role::Owner {
                no_last_owner(&accounts, &existing)?;
            }
            let stored = Account { version: a.version + 1, ..a.clone() };
            let bytes = encode(&stored)?;
            accounts.insert(key, bytes.as_slice()).map_err(backend)?;
        }
        WriteOp::DeleteAccount(tenant, id) => {
            let existed = remove_account(txn, tenant.as_str(), id.as_str(), None)?;
            return Ok(Outcome::Existed(existed));
        }
        WriteOp::DeleteAccountIf(a) => {
            let (t, id) = (a.tenant_id.as_str(), a.id.as_str());
            if !remove_account(txn, t, id, Some(a.version))? {
                return Err(StoreError::Conflict);
            }
        }
        WriteOp::RevokeApiKey(tenant, id) | WriteOp::TouchApiKey(tenant, id, _) => {
            let mut keys = txn.open_table(API_KEYS).map_err(backend)?;
            let key = (tenant.as_str(), id.as_str());
            let Some(mut found) =
                keys.get(key).map_err(backend)?.map(|v| decode::<ApiKey>(v.value())).transpose()?
            else {
                return Ok(Outcome::Existed(false));
            };
            match op {
                WriteOp::TouchApiKey(.., at) => {
                    found.last_used_at = Some(found.last_used_at.map_or(*at, |t| t.max(*at)));
                }
                _ => found.revoked = true,
            }
            let bytes = encode(&found)?;
            keys.insert(key, bytes.as_slice()).map_err(backend)?;
            return Ok(Outcome::Existed(true));
        }
        WriteOp::PutInvitation(i) => {
            let (t, id) = (i.tenant_id.as_str(), i.id.as_str());
            // The tenant's expired invitations go as a new one comes: nothing else reads them.
            let now = parla_domain::model::now_ms();
            let expired: Vec<Invitation> = txn
                .open_table(INVITATIONS)
                .map_err(backend)?
                .range((t, "")..=(t, "\u{10FFFF}"))
                .map_err(backend)?
                .map(|entry| decode::<Invitation>(entry.map_err(backend)?.1.value()))
                .filter(|i| i.as_ref().is_ok_and(|i| i.expires_at <= now))
                .collect::<StoreResult<_>>()?;
            for old in &expired {
                remove_invitation(txn, t, &old.id)?;
            }
            let bytes = encode(i)?;
            txn.open_table(INVITATIONS)
                .map_err(backend)?
                .insert((t, id), bytes.as_slice())
                .map_err(backend)?;
            txn.open_table(INVITATION_DIGESTS)
                .map_err(backend)?
                .insert(i.digest.as_str(), (t, id))
                .map_err(backend)?;
        }
        WriteOp::DeleteInvitation(tenant, id) => {
            return Ok(Outcome::Invitation(remove_invitation(txn, tenant.as_str(), id)?));
        }
        WriteOp::TakeInvitation(digest) => {
            let owner = txn
                .open_table(INVITATION_DIGESTS)
                .map_err(backend)?
                .get(digest.as_str())
                .map_err(backend)?
                .map(|v| (v.value().0.to_owned(), v.value().1.to_owned()));
            let taken = match owner {
                Some((t, id)) => remove_invitation(txn, &t, &id)?,
                None => None,
            };
            return Ok(Outcome::Invitation(taken));
        }
        _ => return Err(StoreError::Backend("apply_auth got another write".into())),
    }
    Ok(Outcome::Done)
}

/// Refuses to take the owner role from `leaving` when no other owner of its tenant remains.
fn no_last_owner(
    accounts: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    leaving: &Account,
) -> StoreResult<()> {
    let t = leaving.tenant_id.as_str();
    for entry in accounts.range((t, "")..=(t, "\u{10FFFF}")).map_err(backend)? {
        let other: Account = decode(entry.map_err(backend)?.1.value())?;
        if other.role == Role::Owner && other.id != leaving.id {
            return Ok(());
        }
    }
    Err(StoreError::LastOwner)
}

/// Removes an account and frees its email, if it is (at `version`, when given); refuses the
/// last owner. Returns whether it was removed.
fn remove_account(txn: &Txn, t: &str, id: &str, version: Option<u64>) -> StoreResult<bool> {
    let mut accounts = txn.open_table(ACCOUNTS).map_err(backend)?;
    let Some(account) = accounts
        .get((t, id))
        .map_err(backend)?
        .map(|v| decode::<Account>(v.value()))
        .transpose()?
    else {
        return Ok(false);
    };
    if version.is_some_and(|v| v != account.version) {
        return Ok(false);
    }
    if account.role == Role::Owner {
        no_last_owner(&accounts, &account)?;
    }
    accounts.remove((t, id)).map_err(backend)?;
    txn.open_table(ACCOUNT_EMAILS)
        .map_err(backend)?
        .remove(account.email.as_str())
        .map_err(backend)?;
    Ok(true)
}

/// Removes an invitation with its digest; returns it if it was there.
fn remove_invitation(txn: &Txn, t: &str, id: &str) -> StoreResult<Option<Invitation>> {
    let invitation: Invitation = {
        let mut table = txn.open_table(INVITATIONS).map_err(backend)?;
        let Some(removed) = table.remove((t, id)).map_err(backend)? else { return Ok(None) };
        decode(removed.value())?
    };
    txn.open_table(INVITATION_DIGESTS)
        .map_err(backend)?
        .remove(invitation.digest.as_str())
        .map_err(backend)?;
    Ok(Some(invitation))
}

#[async_trait]
impl Sealing for RedbStore {
    fn use_sealer(&self, sealer: Arc<dyn Sealer>) {
        *self.sealer.write() = Some(sealer);
    }

    async fn seal_check(&self) -> StoreResult<Option<String>> {
        self.read(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let table = txn.open_table(META).map_err(backend)?;
            Ok(table.get(SEAL_CHECK).map_err(backend)?.map(|v| v.value().to_owned()))
        })
        .await
    }

    async fn put_seal_check(&self, sealed: &str) -> StoreResult<()> {
        self.write(WriteOp::PutMeta(SEAL_CHECK, sealed.to_owned())).await.map(drop)
    }

    async fn reseal_all(&self) -> StoreResult<sealing::Resealed> {
        let Some(sealer) = self.sealer() else { return Ok(sealing::Resealed::default()) };
        match self.write(WriteOp::Reseal(sealer)).await? {
            Outcome::Resealed(done) => Ok(done),
            other => Err(StoreError::Backend(format!("reseal_all returned {other:?}"))),
        }
    }
}

/// Re-seals, in the writer's transaction (no other write can come between the read and the
/// write), every secret not under `sealer`'s current key.
fn reseal_all(txn: &Txn, sealer: &dyn Sealer) -> StoreResult<sealing::Resealed> {
    use parla_domain::sealing::SealError;
    /// The records of `table` that `fresh` rewrites, by owned key, and how many did not open.
    fn collect<K, T, O>(
        table: &impl ReadableTable<K, &'static [u8]>,
        owned: impl Fn(K::SelfType<'_>) -> O,
        fresh: impl Fn(&T, &O) -> Result<Option<T>, SealError>,
        unreadable: &mut u64,
    ) -> StoreResult<Vec<(O, Vec<u8>)>>
    where
        K: redb::Key + 'static,
        T: Serialize + DeserializeOwned,
    {
        let mut updates = Vec::new();
        for entry in table.iter().map_err(backend)? {
            let (key, value) = entry.map_err(backend)?;
            let key = owned(key.value());
            match fresh(&decode(value.value())?, &key) {
                Ok(Some(record)) => updates.push((key, encode(&record)?)),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "a secret that does not open is left as it is");
                    *unreadable += 1;
                }
            }
        }
        Ok(updates)
    }
    let mut done = sealing::Resealed::default();
    let mut unreadable = 0;
    {
        let mut table = txn.open_table(TENANTS).map_err(backend)?;
        let fresh = |t: &Tenant, _: &String| sealing::reseal_tenant(sealer, t);
        let updates = collect(&table, str::to_owned, fresh, &mut unreadable)?;
        for (key, bytes) in &updates {
            table.insert(key.as_str(), bytes.as_slice()).map_err(backend)?;
        }
        done.workspaces = updates.len() as u64;
    }
    {
        let mut table = txn.open_table(CHANNELS).map_err(backend)?;
        let fresh = |c: &ChannelConnection, _: &String| sealing::reseal_connection(sealer, c);
        let updates = collect(&table, str::to_owned, fresh, &mut unreadable)?;
        for (key, bytes) in &updates {
            table.insert(key.as_str(), bytes.as_slice()).map_err(backend)?;
        }
        done.connections = updates.len() as u64;
    }
    let pair = |(a, b): (&str, &str)| (a.to_owned(), b.to_owned());
    {
        let mut table = txn.open_table(ACCOUNTS).map_err(backend)?;
        let fresh = |a: &Account, _: &(String, String)| sealing::reseal_account(sealer, a);
        let updates = collect(&table, pair, fresh, &mut unreadable)?;
        for ((t, id), bytes) in &updates {
            table.insert((t.as_str(), id.as_str()), bytes.as_slice()).map_err(backend)?;
        }
        done.accounts = updates.len() as u64;
    }
    {
        let mut table = txn.open_table(INTENTS).map_err(backend)?;
        let fresh =
            |i: &Vec<Intent>, (t, _): &(String, String)| sealing::reseal_intents(sealer, t, i);
        let updates = collect(&table, pair, fresh, &mut unreadable)?;
        for ((t, bot), bytes) in &updates {
            table.insert((t.as_str(), bot.as_str()), bytes.as_slice()).map_err(backend)?;
        }
        done.intent_sets = updates.len() as u64;
    }
    done.unreadable = unreadable;
    Ok(done)
}

/// The name of the master key's check value in [`META`].
const SEAL_CHECK: &str = "seal_check";

#[cfg(test)]
mod tests {
    use super::*;

    /// A store in a temporary directory of its own, deleted after the store is dropped
    /// (fields drop in order).
    struct TempStore {
        store: RedbStore,
        _dir: tempfile::TempDir,
    }

    impl std::ops::Deref for TempStore {
        type Target = RedbStore;

        fn deref(&self) -> &RedbStore {
            &self.store
        }
    }

    fn temp_store() -> TempStore {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = RedbStore::open(dir.path(), 64, 128).expect("open");
        TempStore { store, _dir: dir }
    }

    parla_domain::store_conformance_tests!(async { temp_store() });

    #[tokio::test]
    async fn data_survives_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = RedbStore::open(dir.path(), 64, 128).expect("open");
            parla_domain::conformance::seed_conversation(&store, "t-reopen", "c1").await;
            let m = parla_domain::conformance::message("t-reopen", "c1", 1, Some("k1"));
            assert_eq!(store.append(&m).await.expect("append"), Appended::Stored);
        }
        let store = reopen(dir.path()).await;
        let t = TenantId::from("t-reopen");
        let c = ConversationId::from("c1");
        assert_eq!(store.last_seq(&t, &c).await.expect("last_seq"), 1);
    }
    /// Reopens the store, waiting for the previous one's writer thread (which holds the
    /// database until its queue closes) to let go of the file lock.
    async fn reopen(dir: &Path) -> RedbStore {
        for _ in 0..100 {
            if let Ok(s) = RedbStore::open(dir, 64, 128) {
                return s;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("could not reopen {}", dir.display());
    }

    /// A file from before the subject index: who each conversation is with is indexed at open
    /// from its contact and form data, so a person's older conversations are found too.
    #[tokio::test]
    async fn a_file_from_before_the_subject_index_is_indexed_when_opened() {
        use parla_domain::conformance::seed_conversation;
        let dir = tempfile::tempdir().expect("tempdir");
        let t = TenantId::from("t-subjects-old");
        {
            let store = RedbStore::open(dir.path(), 64, 128).expect("open");
            seed_conversation(&store, "t-subjects-old", "c-form").await;
            let form = BTreeMap::from([("email".to_owned(), "Ada@Example.com".to_owned())]);
            assert!(store.merge_user_data(&t, &"c-form".into(), &form).await.expect("form"));
            let sms = Conversation {
                id: "c-sms".into(),
                source: Channel::Sms,
                ..store.get_conversation(&t, &"c-form".into()).await.expect("get").expect("it")
            };
            store.contact_conversation("sms-1", "+393331234567", &sms).await.expect("contact");
        }
        {
            let store = reopen(dir.path()).await;
            drop(store);
            let db = loop {
                match Database::create(dir.path().join("parla.redb")) {
                    Ok(db) => break db,
                    Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
                }
            };
            let txn = db.begin_write().expect("write");
            txn.delete_table(SUBJECTS).expect("drop subjects");
            txn.delete_table(SUBJECT_KEYS).expect("drop subject keys");
            txn.commit().expect("commit");
        }
        let store = reopen(dir.path()).await;
        let found = |key: &'static str| store.subject_conversations(&t, key);
        assert_eq!(
            found("email:ada@example.com").await.expect("find"),
            [ConversationId::from("c-form")]
        );
        assert_eq!(
            found("phone:393331234567").await.expect("find"),
            [ConversationId::from("c-sms")]
        );
        // Forgotten with the conversation, as if indexed when written.
        assert!(store.delete_conversation(&t, &"c-sms".into()).await.expect("delete"));
        assert!(found("phone:393331234567").await.expect("find").is_empty());
    }

    /// A file from before analytics: its transcripts are counted once at open, to the same
    /// numbers as counting while writing gave.
    #[tokio::test]
    async fn a_file_from_before_analytics_is_counted_once_when_opened() {
        use parla_domain::conformance::{message, seed_conversation};
        let dir = tempfile::tempdir().expect("tempdir");
        let t = TenantId::from("t-old");
        let live = {
            let store = RedbStore::open(dir.path(), 64, 128).expect("open");
            for c in ["c1", "c2"] {
                seed_conversation(&store, "t-old", c).await;
                let mut asked = message("t-old", c, 1, Some("k1"));
                (asked.intent, asked.confidence) = (Some("hours".into()), Some(0.5));
                let answer = Message { sender: Sender::Bot, ..message("t-old", c, 2, None) };
                let unmatched = message("t-old", c, 3, Some("k3"));
                for m in [&asked, &answer, &unmatched] {
                    store.append(m).await.expect("append");
                }
            }
            let resolved = Handling {
                status: parla_domain::model::ConversationStatus::Resolved,
                resolution: Some(parla_domain::model::Resolution::Resolved),
                ended_at: Some(parla_domain::model::now_ms()),
                csat: Some(5),
                ..Handling::default()
            };
            store.set_handling(&t, &"c1".into(), &resolved).await.expect("resolve");
            store.analytics(&t, 0, i64::MAX).await.expect("analytics")
        };
        assert!(!live.is_empty());
        // Make it a file from before: no analytics tables, no stats on conversations.
        {
            let store = reopen(dir.path()).await;
            drop(store);
            let db = loop {
                match Database::create(dir.path().join("parla.redb")) {
                    Ok(db) => break db,
                    Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
                }
            };
            let txn = db.begin_write().expect("write");
            txn.delete_table(ANALYTICS).expect("drop analytics");
            txn.delete_table(INTENT_COUNTS).expect("drop intents");
            txn.delete_table(UNMATCHED).expect("drop unmatched");
            {
                let mut table = txn.open_table(CONVERSATIONS).expect("conversations");
                for c in ["c1", "c2"] {
                    let found = table.get(("t-old", c)).expect("get").map(|v| v.value().to_vec());
                    let mut conv: Conversation = decode(&found.expect("exists")).expect("decode");
                    conv.stats = Default::default();
                    table
                        .insert(("t-old", c), encode(&conv).expect("encode").as_slice())
                        .expect("put");
                }
            }
            txn.commit().expect("commit");
        }
        let store = reopen(dir.path()).await;
        assert_eq!(store.analytics(&t, 0, i64::MAX).await.expect("analytics"), live);
        let unmatched = store.unmatched_messages(&t, None, 0, i64::MAX, 10).await.expect("list");
        assert_eq!(unmatched.len(), 2);
        drop(store);
        // Opened again: not counted twice.
        let store = reopen(dir.path()).await;
        assert_eq!(store.analytics(&t, 0, i64::MAX).await.expect("analytics"), live);
    }
}
