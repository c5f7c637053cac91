//! An in-memory [`Store`](crate::store::Store), for tests (feature `testkit`).
//!
//! [`MemoryStore`] implements every store port the way the embedded adapter
//! (`parla-store-redb`) does, method by method: the same refusals (seq conflicts and gaps,
//! compare-and-set on accounts, the last owner), the same idempotency, the same cascades
//! (deleting a conversation or a bot) and the same analytics, counted with the rules of
//! [`crate::analytics`] in the same write. It passes the conformance suite
//! ([`crate::conformance`]), so a unit test of the engine can stand it in for a real store
//! and get the answers a real store gives, without a disk or a server. It can also be told to
//! fail ([`MemoryStore::fail_next_appends`]) to test how a caller handles a store that breaks.
//!
//! # Concurrency
//! One mutex around all the state. Every method takes it, does its whole work (checks and
//! writes), and lets it go before returning, never across an `.await`: each call is atomic,
//! as one transaction of the real adapters is. Nothing is durable.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use async_trait::async_trait;
use parking_lot::Mutex;

use crate::analytics::{self, CounterRow, Counters, Effect, IntentRow};
use crate::audit::AuditEntry;
use crate::billing::{StoredEvent, Subscription};
use crate::marketplace::{ConnectAccount, Listing};
use crate::model::{
    Account, AccountId, ApiKey, Bot, BotId, CannedResponse, Channel, ChannelConnection, Chunk,
    Conversation, ConversationId, Delivery, DeliveryStatus, Document, Handling, Intent, Invitation,
    Message, Note, OneTimeToken, ProcessStatus, RefreshToken, Role, Sender, Tenant, TenantId,
    now_ms,
};
use crate::store::{
    Accounts, Analytics, Appended, AuditLog, Billing, Catalog, ChannelState, Connections,
    Conversations, Credentials, Documents, InboxIndex, Listings, StoreError, StoreResult, Subjects,
    TokenUsage,
};

/// Devices notified per conversation at most (the newest), as the real adapters keep.
const MAX_PUSH_TOKENS: usize = 5;

/// A conversation's key: its tenant and id.
type ConversationKey = (TenantId, ConversationId);

/// Every store port in memory, behaving as the embedded adapter does; see the module doc.
#[derive(Default)]
pub struct MemoryStore {
    /// All of the state behind one lock, so that a call's checks and writes are one atomic
    /// step (what one transaction is to a real store). Held only inside a call, never across
    /// an await.
    state: Mutex<State>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore").finish_non_exhaustive()
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes the next `n` calls of [`Conversations::append`] fail with
    /// `StoreError::Backend("injected")`, writing nothing: a disk or a connection that breaks.
    /// Replaces what an earlier call asked for.
    pub fn fail_next_appends(&self, n: usize) {
        self.state.lock().failing_appends = n;
    }

    /// How many times [`Conversations::append`] was called, the failed calls included.
    pub fn appends(&self) -> usize {
        self.state.lock().appends
    }

    /// Runs `f` on the state under the lock: one atomic step.
    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock())
    }
}

/// The store's data, one map per table of the embedded adapter (same keys, same order), so
/// that every method can do what the adapter's does.
#[derive(Default)]
struct State {
    /// Kept in clear: nothing here reaches a disk (the check value is kept for the sweep).
    seal_check: Option<String>,
    tenants: BTreeMap<TenantId, Tenant>,
    bots: BTreeMap<(TenantId, BotId), Bot>,
    /// Bot → its tenant: bot ids are global (the widget knows only the bot).
    bot_index: HashMap<BotId, TenantId>,
    intents: HashMap<(TenantId, BotId), Vec<Intent>>,
    /// Bots deleted whose conversations may not all be gone yet.
    bot_tombstones: BTreeSet<(TenantId, BotId)>,
    canned: BTreeMap<(TenantId, String), CannedResponse>,

    conversations: BTreeMap<ConversationKey, Conversation>,
    /// Each conversation's transcript, by seq.
    messages: BTreeMap<ConversationKey, BTreeMap<u64, Message>>,
    /// Each conversation's idempotency index: client message id → seq.
    client_ids: HashMap<ConversationKey, HashMap<String, u64>>,
    /// Each conversation's notes, by note id.
    notes: BTreeMap<ConversationKey, BTreeMap<String, Note>>,
    user_data: HashMap<ConversationKey, BTreeMap<String, String>>,
    /// Conversations ESCALATED or ASSIGNED: the inbox's index.
    attention: BTreeSet<ConversationKey>,

    /// Channel connections by id (ids are global: a webhook names only the connection).
    channels: BTreeMap<String, ChannelConnection>,
    /// (connection, contact) → the contact's conversation. Left behind when the conversation
    /// is deleted, as in the adapter: the contact's next message starts a new one.
    contacts: HashMap<(String, String), ConversationId>,
    /// A channel conversation → its (connection, contact).
    conversation_contacts: BTreeMap<ConversationKey, (String, String)>,
    /// (connection, provider message id) → the message it stands for.
    provider_ids: HashMap<(String, String), (TenantId, ConversationId, u64)>,
    /// Each conversation's devices, with when each was registered (ms).
    push_tokens: BTreeMap<ConversationKey, BTreeMap<String, i64>>,
    /// (connection, contact) pairs that opted out.
    opted_out: HashSet<(String, String)>,
    channel_cursors: HashMap<ConversationKey, u64>,

    accounts: BTreeMap<(TenantId, AccountId), Account>,
    /// Lower-cased email → its account: login's entry point, and email uniqueness.
    account_emails: HashMap<String, (TenantId, AccountId)>,
    invitations: BTreeMap<(TenantId, String), Invitation>,
    invitation_digests: HashMap<String, (TenantId, String)>,

    refresh_tokens: HashMap<String, RefreshToken>,
    /// (family, digest): a family's tokens, to revoke them together.
    refresh_families: BTreeSet<(String, String)>,
    /// (tenant, account, digest): an account's tokens, to end all its sessions.
    refresh_by_account: BTreeSet<(TenantId, AccountId, String)>,
    api_keys: BTreeMap<(TenantId, String), ApiKey>,
    api_key_digests: HashMap<String, (TenantId, String)>,
    one_time_tokens: HashMap<String, OneTimeToken>,

    documents: BTreeMap<(TenantId, String), Document>,
    /// (tenant, bot, document): a bot's documents.
    documents_by_bot: BTreeSet<(TenantId, BotId, String)>,
    document_content: HashMap<(TenantId, String), Vec<u8>>,
    /// (tenant, bot, document, position) → chunk.
    chunks: BTreeMap<(TenantId, BotId, String, u32), Chunk>,
    /// Documents still PENDING or PROCESSING.
    document_queue: BTreeSet<(TenantId, String)>,

    /// (tenant, hour, bot, channel name) → the bucket's channel and counters.
    counters: BTreeMap<(TenantId, i64, BotId, &'static str), (Channel, Counters)>,
    /// (tenant, hour, bot, intent) → (hits, sum of confidences).
    intent_counts: BTreeMap<(TenantId, i64, BotId, String), (i64, f64)>,
    /// (tenant, stored at, conversation, seq) → bot: visitor messages no intent matched.
    unmatched: BTreeMap<(TenantId, i64, ConversationId, u64), BotId>,
    /// (tenant, month) → LLM tokens used.
    token_usage: HashMap<(TenantId, String), u64>,

    /// (tenant, month, meter) → count.
    usage: BTreeMap<(TenantId, String, String), u64>,
    customers: HashMap<TenantId, String>,
    /// Subscription id → it (ids are unique across tenants).
    subscriptions: BTreeMap<String, Subscription>,
    /// Every event id received, and those not yet processed (by arrival).
    events_seen: HashSet<String>,
    events_pending: BTreeMap<(i64, String), StoredEvent>,
    listings: BTreeMap<BotId, Listing>,
    connect_accounts: HashMap<TenantId, ConnectAccount>,
    /// (tenant, subject key, conversation), and each conversation's keys.
    subjects: BTreeSet<(TenantId, String, ConversationId)>,
    subject_keys: HashMap<ConversationKey, BTreeSet<String>>,
    audit: BTreeMap<(TenantId, String), AuditEntry>,

    /// Calls of `append` so far.
    appends: usize,
    /// Calls of `append` still to fail.
    failing_appends: usize,
}

/// The values of `map` whose key starts with `tenant`, in key order.
fn of_tenant<'a, K: Ord, V>(
    map: &'a BTreeMap<(TenantId, K), V>,
    tenant: &'a TenantId,
) -> impl DoubleEndedIterator<Item = (&'a K, &'a V)> + 'a {
    map.iter().filter(move |((t, _), _)| t == tenant).map(|((_, k), v)| (k, v))
}

/// The key of conversation `id` of `tenant`.
fn key(tenant: &TenantId, id: &ConversationId) -> ConversationKey {
    (tenant.clone(), id.clone())
}

impl State {
    fn create_conversation(&mut self, c: &Conversation) -> StoreResult<()> {
        let key = key(&c.tenant_id, &c.id);
        if self.conversations.contains_key(&key) {
            return Err(StoreError::ConversationExists);
        }
        self.conversations.insert(key, c.clone());
        let (hour, bot, channel) = analytics::start_bucket(c);
        self.count(&c.tenant_id, (hour, bot, channel), &analytics::on_create(c));
        Ok(())
    }

    fn last_seq(&self, key: &ConversationKey) -> u64 {
        self.messages.get(key).and_then(|m| m.keys().next_back().copied()).unwrap_or(0)
    }

    fn append(&mut self, m: &Message) -> StoreResult<Appended> {
        self.appends += 1;
        if self.failing_appends > 0 {
            self.failing_appends -= 1;
            return Err(StoreError::Backend("injected".into()));
        }
        let key = key(&m.tenant_id, &m.conversation_id);
        let Some(mut conversation) = self.conversations.get(&key).cloned() else {
            return Err(StoreError::ConversationNotFound);
        };
        if let Some(cid) = m.client_msg_id.as_deref()
            && let Some(seq) = self.client_ids.get(&key).and_then(|ids| ids.get(cid))
        {
            let stored = self.messages.get(&key).and_then(|ms| ms.get(seq)).ok_or_else(|| {
                StoreError::Corrupt(format!("idempotency index points at missing seq {seq}"))
            })?;
            return Ok(Appended::Duplicate(stored.clone()));
        }
        let last = self.last_seq(&key);
        if m.seq <= last {
            return Err(StoreError::SeqConflict(m.seq));
        }
        if m.seq != last + 1 {
            return Err(StoreError::SeqGap { last, got: m.seq });
        }
        self.messages.entry(key.clone()).or_default().insert(m.seq, m.clone());
        if let Some(cid) = &m.client_msg_id {
            self.client_ids.entry(key.clone()).or_default().insert(cid.clone(), m.seq);
        }
        // The conversation's sentiment and analytics, with the message that moves them.
        let mut effect = analytics::on_append(&conversation, m);
        if let Some(sentiment) = m.sentiment.filter(|_| m.sender == Sender::User) {
            conversation.sentiment_sum += sentiment;
            conversation.sentiment_count += 1;
        }
        if let Some(stats) = effect.stats.take() {
            conversation.stats = stats;
        }
        self.count_effect(&conversation, Some(m), &effect);
        self.conversations.insert(key, conversation);
        Ok(Appended::Stored)
    }

    fn delete_conversation(&mut self, tenant: &TenantId, id: &ConversationId) -> bool {
        let key = key(tenant, id);
        if self.conversations.remove(&key).is_none() {
            return false;
        }
        self.attention.remove(&key);
        self.messages.remove(&key);
        self.client_ids.remove(&key);
        self.channel_cursors.remove(&key);
        self.user_data.remove(&key);
        self.push_tokens.remove(&key);
        self.notes.remove(&key);
        if let Some((connection, contact)) = self.conversation_contacts.remove(&key)
            && self.contacts.get(&(connection.clone(), contact.clone())) == Some(id)
        {
            self.contacts.remove(&(connection, contact));
        }
        for subject in self.subject_keys.remove(&key).unwrap_or_default() {
            self.subjects.remove(&(tenant.clone(), subject, id.clone()));
        }
        true
    }

    /// Indexes `keys` as naming the person in conversation `id`.
    fn index_subject(&mut self, tenant: &TenantId, id: &ConversationId, keys: Vec<String>) {
        for subject in keys {
            self.subjects.insert((tenant.clone(), subject.clone(), id.clone()));
            self.subject_keys.entry(key(tenant, id)).or_default().insert(subject);
        }
    }

    fn set_handling(&mut self, tenant: &TenantId, id: &ConversationId, h: &Handling) -> bool {
        let key = key(tenant, id);
        let Some(mut conversation) = self.conversations.get(&key).cloned() else {
            return false;
        };
        let mut effect = analytics::on_handling(&conversation, h);
        conversation.handling = h.clone();
        if let Some(stats) = effect.stats.take() {
            conversation.stats = stats;
        }
        self.count_effect(&conversation, None, &effect);
        self.conversations.insert(key.clone(), conversation);
        if h.needs_agent() {
            self.attention.insert(key);
        } else {
            self.attention.remove(&key);
        }
        true
    }

    /// Adds `delta` to a tenant's analytics bucket; a zero delta writes no bucket.
    fn count(
        &mut self,
        tenant: &TenantId,
        (hour, bot, channel): (i64, &BotId, Channel),
        delta: &Counters,
    ) {
        if delta.is_zero() {
            return;
        }
        let key = (tenant.clone(), hour, bot.clone(), channel.as_str());
        self.counters.entry(key).or_insert_with(|| (channel, Counters::default())).1.add(delta);
    }

    /// Applies what a write added to the analytics (the conversation's own stats are the
    /// caller's to store).
    fn count_effect(&mut self, c: &Conversation, message: Option<&Message>, effect: &Effect) {
        let (start, bot, channel) = analytics::start_bucket(c);
        self.count(&c.tenant_id, (start, bot, channel), &effect.conversation);
        let Some(m) = message else { return };
        let hour = analytics::hour_of(m.created_at);
        self.count(&c.tenant_id, (hour, bot, channel), &effect.message);
        if let Some((intent, confidence)) = &effect.intent {
            let key = (c.tenant_id.clone(), hour, bot.clone(), intent.clone());
            let (hits, sum) = self.intent_counts.entry(key).or_default();
            (*hits, *sum) = (*hits + 1, *sum + confidence);
        }
        if effect.unmatched {
            let key = (c.tenant_id.clone(), m.created_at, m.conversation_id.clone(), m.seq);
            self.unmatched.insert(key, bot.clone());
        }
    }

    /// Writes a document's record, its bot index entry and its place in the processing queue.
    fn write_document(&mut self, d: &Document) {
        let key = (d.tenant_id.clone(), d.id.clone());
        self.documents.insert(key.clone(), d.clone());
        self.documents_by_bot.insert((d.tenant_id.clone(), d.bot_id.clone(), d.id.clone()));
        if matches!(d.status, ProcessStatus::Pending | ProcessStatus::Processing) {
            self.document_queue.insert(key);
        } else {
            self.document_queue.remove(&key);
        }
    }

    /// Removes a document with its bytes, chunks and queue entry; returns whether it existed.
    fn remove_document(&mut self, tenant: &TenantId, id: &str) -> bool {
        let key = (tenant.clone(), id.to_owned());
        let Some(document) = self.documents.remove(&key) else { return false };
        self.remove_chunks(tenant, &document.bot_id, id);
        self.documents_by_bot.remove(&(tenant.clone(), document.bot_id, id.to_owned()));
        self.document_content.remove(&key);
        self.document_queue.remove(&key);
        true
    }

    fn remove_chunks(&mut self, tenant: &TenantId, bot: &BotId, id: &str) {
        self.chunks.retain(|(t, b, d, _), _| !(t == tenant && b == bot && d == id));
    }

    /// Refuses to take the owner role from `leaving` when no other owner of its tenant remains.
    fn no_last_owner(&self, leaving: &Account) -> StoreResult<()> {
        let others = of_tenant(&self.accounts, &leaving.tenant_id)
            .any(|(_, a)| a.role == Role::Owner && a.id != leaving.id);
        if others { Ok(()) } else { Err(StoreError::LastOwner) }
    }

    /// Removes an account and frees its email, if it is (at `version`, when given); refuses
    /// the last owner. Returns whether it was removed.
    fn remove_account(
        &mut self,
        tenant: &TenantId,
        id: &AccountId,
        version: Option<u64>,
    ) -> StoreResult<bool> {
        let key = (tenant.clone(), id.clone());
        let Some(account) = self.accounts.get(&key) else { return Ok(false) };
        if version.is_some_and(|v| v != account.version) {
            return Ok(false);
        }
        if account.role == Role::Owner {
            self.no_last_owner(account)?;
        }
        if let Some(account) = self.accounts.remove(&key) {
            self.account_emails.remove(&account.email);
        }
        Ok(true)
    }

    fn update_account(&mut self, a: &Account) -> StoreResult<()> {
        let key = (a.tenant_id.clone(), a.id.clone());
        let Some(existing) = self.accounts.get(&key) else { return Err(StoreError::Conflict) };
        if existing.email != a.email {
            return Err(StoreError::Corrupt("an account's email cannot change here".into()));
        }
        if existing.version != a.version {
            return Err(StoreError::Conflict);
        }
        if existing.role == Role::Owner && a.role != Role::Owner {
            self.no_last_owner(existing)?;
        }
        self.accounts.insert(key, Account { version: a.version + 1, ..a.clone() });
        Ok(())
    }

    /// Removes an invitation with its digest; returns it if it was there.
    fn remove_invitation(&mut self, tenant: &TenantId, id: &str) -> Option<Invitation> {
        let invitation = self.invitations.remove(&(tenant.clone(), id.to_owned()))?;
        self.invitation_digests.remove(&invitation.digest);
        Some(invitation)
    }

    fn put_invitation(&mut self, i: &Invitation) {
        // The tenant's expired invitations go as a new one comes: nothing else reads them.
        let now = now_ms();
        let expired: Vec<String> = of_tenant(&self.invitations, &i.tenant_id)
            .filter(|(_, old)| old.expires_at <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &expired {
            self.remove_invitation(&i.tenant_id, id);
        }
        self.invitations.insert((i.tenant_id.clone(), i.id.clone()), i.clone());
        self.invitation_digests.insert(i.digest.clone(), (i.tenant_id.clone(), i.id.clone()));
    }

    fn contact_conversation(
        &mut self,
        connection: &str,
        contact: &str,
        fresh: &Conversation,
    ) -> StoreResult<Conversation> {
        let mapping = (connection.to_owned(), contact.to_owned());
        if let Some(id) = self.contacts.get(&mapping)
            && let Some(existing) = self.conversations.get(&key(&fresh.tenant_id, id))
        {
            return Ok(existing.clone());
        }
        // None yet, or deleted since: the contact starts a new conversation.
        self.create_conversation(fresh)?;
        self.contacts.insert(mapping.clone(), fresh.id.clone());
        self.conversation_contacts.insert(key(&fresh.tenant_id, &fresh.id), mapping);
        let subject = crate::subjects::contact_key(contact).into_iter().collect();
        self.index_subject(&fresh.tenant_id, &fresh.id, subject);
        Ok(fresh.clone())
    }

    fn set_delivery(
        &mut self,
        tenant: &TenantId,
        id: &ConversationId,
        seq: u64,
        connection: &str,
        delivery: &Delivery,
    ) -> bool {
        let key = key(tenant, id);
        let Some(message) = self.messages.get_mut(&key).and_then(|ms| ms.get_mut(&seq)) else {
            return false;
        };
        // Merged with what a provider's report may already have said.
        message.delivery = Some(Delivery::merged(message.delivery.take(), delivery));
        for provider_id in &delivery.provider_ids {
            self.provider_ids.insert(
                (connection.to_owned(), provider_id.clone()),
                (tenant.clone(), id.clone(), seq),
            );
        }
        true
    }

    fn advance_delivery(
        &mut self,
        connection: &str,
        provider_id: &str,
        status: DeliveryStatus,
        error: Option<String>,
    ) -> Option<(TenantId, ConversationId, u64)> {
        let (t, c, seq) =
            self.provider_ids.get(&(connection.to_owned(), provider_id.to_owned()))?.clone();
        let message = self.messages.get_mut(&key(&t, &c))?.get_mut(&seq)?;
        let now = now_ms();
        let known = message.delivery.clone().unwrap_or(Delivery {
            status: DeliveryStatus::Sent,
            provider_ids: vec![provider_id.to_owned()],
            error: None,
            updated_at: now,
        });
        if status <= known.status {
            return None;
        }
        message.delivery = Some(Delivery {
            status,
            error: error.or(known.error),
            updated_at: now,
            provider_ids: known.provider_ids,
        });
        Some((t, c, seq))
    }

    fn add_push_token(&mut self, tenant: &TenantId, id: &ConversationId, token: &str) {
        let tokens = self.push_tokens.entry(key(tenant, id)).or_default();
        tokens.insert(token.to_owned(), now_ms());
        let mut all: Vec<(i64, String)> = tokens.iter().map(|(t, at)| (*at, t.clone())).collect();
        all.sort();
        let excess = all.len().saturating_sub(MAX_PUSH_TOKENS);
        for (_, oldest) in all.into_iter().take(excess) {
            tokens.remove(&oldest);
        }
    }

    fn delete_bot(&mut self, tenant: &TenantId, id: &BotId) -> bool {
        let key = (tenant.clone(), id.clone());
        if self.bots.remove(&key).is_none() {
            return false;
        }
        self.bot_index.remove(id);
        self.intents.remove(&key);
        // Its knowledge base goes with it.
        let documents: Vec<String> = self
            .documents_by_bot
            .iter()
            .filter(|(t, b, _)| t == tenant && b == id)
            .map(|(_, _, d)| d.clone())
            .collect();
        for document in &documents {
            self.remove_document(tenant, document);
        }
        // And its channel connections.
        self.channels.retain(|_, c| !(c.tenant_id == *tenant && c.bot_id == *id));
        // Its conversations go next, each through its actor; this says some may be left.
        self.bot_tombstones.insert(key);
        true
    }

    fn put_refresh_token(&mut self, token: &RefreshToken) {
        self.refresh_tokens.insert(token.digest.clone(), token.clone());
        self.refresh_families.insert((token.family.clone(), token.digest.clone()));
        self.refresh_by_account.insert((
            token.tenant_id.clone(),
            token.account_id.clone(),
            token.digest.clone(),
        ));
    }

    fn revoke_refresh_family(&mut self, family: &str) {
        let tokens = &mut self.refresh_tokens;
        self.refresh_families.retain(|(f, digest)| {
            let revoked = f == family;
            if revoked {
                tokens.remove(digest);
            }
            !revoked
        });
    }

    fn revoke_account_sessions(&mut self, tenant: &TenantId, account: &AccountId) {
        let tokens = &mut self.refresh_tokens;
        self.refresh_by_account.retain(|(t, a, digest)| {
            let revoked = t == tenant && a == account;
            if revoked {
                tokens.remove(digest);
            }
            !revoked
        });
    }

    /// Revokes the key, or records a use of it at `touched`; returns whether it exists.
    fn change_api_key(&mut self, tenant: &TenantId, id: &str, touched: Option<i64>) -> bool {
        let Some(key) = self.api_keys.get_mut(&(tenant.clone(), id.to_owned())) else {
            return false;
        };
        match touched {
            Some(at) => key.last_used_at = Some(key.last_used_at.map_or(at, |t| t.max(at))),
            None => key.revoked = true,
        }
        true
    }

    fn unmatched_messages(
        &self,
        tenant: &TenantId,
        bot: Option<&BotId>,
        (from_ms, to_ms): (i64, i64),
        limit: usize,
    ) -> Vec<(BotId, Message)> {
        let mut out = Vec::new();
        let newest_first = self
            .unmatched
            .iter()
            .filter(|((t, at, _, _), _)| t == tenant && (from_ms..to_ms).contains(at))
            .rev();
        for ((t, _, c, seq), owner) in newest_first {
            if out.len() >= limit {
                break;
            }
            if bot.is_some_and(|b| b != owner) {
                continue;
            }
            if let Some(m) = self.messages.get(&key(t, c)).and_then(|ms| ms.get(seq)) {
                out.push((owner.clone(), m.clone()));
            }
        }
        out
    }
}

#[async_trait]
impl Catalog for MemoryStore {
    async fn put_tenant(&self, tenant: &Tenant) -> StoreResult<()> {
        self.with(|s| s.tenants.insert(tenant.id.clone(), tenant.clone()));
        Ok(())
    }

    async fn get_tenant(&self, id: &TenantId) -> StoreResult<Option<Tenant>> {
        Ok(self.with(|s| s.tenants.get(id).cloned()))
    }

    async fn list_tenants(&self) -> StoreResult<Vec<TenantId>> {
        Ok(self.with(|s| s.tenants.keys().cloned().collect()))
    }

    async fn put_bot(&self, bot: &Bot) -> StoreResult<()> {
        self.with(|s| {
            if s.bot_index.get(&bot.id).is_some_and(|owner| *owner != bot.tenant_id) {
                // Bot ids are global; one tenant may never overwrite another's bot.
                return Err(StoreError::BotIdTaken);
            }
            s.bot_index.insert(bot.id.clone(), bot.tenant_id.clone());
            s.bots.insert((bot.tenant_id.clone(), bot.id.clone()), bot.clone());
            Ok(())
        })
    }

    async fn get_bot(&self, tenant: &TenantId, id: &BotId) -> StoreResult<Option<Bot>> {
        Ok(self.with(|s| s.bots.get(&(tenant.clone(), id.clone())).cloned()))
    }

    async fn resolve_bot(&self, id: &BotId) -> StoreResult<Option<Bot>> {
        Ok(self.with(|s| {
            let tenant = s.bot_index.get(id)?;
            s.bots.get(&(tenant.clone(), id.clone())).cloned()
        }))
    }

    async fn list_bots(&self, tenant: &TenantId) -> StoreResult<Vec<Bot>> {
        Ok(self.with(|s| of_tenant(&s.bots, tenant).map(|(_, b)| b.clone()).collect()))
    }

    async fn delete_bot(&self, tenant: &TenantId, id: &BotId) -> StoreResult<bool> {
        Ok(self.with(|s| s.delete_bot(tenant, id)))
    }

    async fn bot_tombstones(&self) -> StoreResult<Vec<(TenantId, BotId)>> {
        Ok(self.with(|s| s.bot_tombstones.iter().cloned().collect()))
    }

    async fn clear_bot_tombstone(&self, tenant: &TenantId, id: &BotId) -> StoreResult<()> {
        self.with(|s| s.bot_tombstones.remove(&(tenant.clone(), id.clone())));
        Ok(())
    }

    async fn put_intents(
        &self,
        tenant: &TenantId,
        bot: &BotId,
        intents: &[Intent],
    ) -> StoreResult<()> {
        self.with(|s| s.intents.insert((tenant.clone(), bot.clone()), intents.to_vec()));
        Ok(())
    }

    async fn list_intents(&self, tenant: &TenantId, bot: &BotId) -> StoreResult<Vec<Intent>> {
        Ok(self
            .with(|s| s.intents.get(&(tenant.clone(), bot.clone())).cloned().unwrap_or_default()))
    }

    async fn put_canned(&self, canned: &CannedResponse) -> StoreResult<()> {
        self.with(|s| {
            s.canned.insert((canned.tenant_id.clone(), canned.id.clone()), canned.clone())
        });
        Ok(())
    }

    async fn list_canned(&self, tenant: &TenantId) -> StoreResult<Vec<CannedResponse>> {
        Ok(self.with(|s| of_tenant(&s.canned, tenant).map(|(_, c)| c.clone()).collect()))
    }

    async fn delete_canned(&self, tenant: &TenantId, id: &str) -> StoreResult<bool> {
        Ok(self.with(|s| s.canned.remove(&(tenant.clone(), id.to_owned())).is_some()))
    }
}

#[async_trait]
impl Conversations for MemoryStore {
    async fn create_conversation(&self, conversation: &Conversation) -> StoreResult<()> {
        self.with(|s| s.create_conversation(conversation))
    }

    async fn get_conversation(
        &self,
        tenant: &TenantId,
        id: &ConversationId,
    ) -> StoreResult<Option<Conversation>> {
        Ok(self.with(|s| s.conversations.get(&key(tenant, id)).cloned()))
    }

    async fn delete_conversation(
        &self,
        tenant: &TenantId,
        id: &ConversationId,
    ) -> StoreResult<bool> {
        Ok(self.with(|s| s.delete_conversation(tenant, id)))
    }

    async fn list_conversations(
        &self,
        tenant: &TenantId,
        bot: &BotId,
        before: Option<&ConversationId>,
        limit: usize,
    ) -> StoreResult<Vec<Conversation>> {
        Ok(self.with(|s| {
            of_tenant(&s.conversations, tenant)
                .filter(|(id, c)| c.bot_id == *bot && before.is_none_or(|cursor| *id < cursor))
                .rev()
                .take(limit)
                .map(|(_, c)| c.clone())
                .collect()
        }))
    }

    async fn append(&self, message: &Message) -> StoreResult<Appended> {
        self.with(|s| s.append(message))
    }

    async fn messages_after(
        &self,
        tenant: &TenantId,
        conversation: &ConversationId,
        after_seq: u64,
        limit: usize,
    ) -> StoreResult<Vec<Message>> {
        let Some(start) = after_seq.checked_add(1) else { return Ok(Vec::new()) };
        Ok(self.with(|s| match s.messages.get(&key(tenant, conversation)) {
            Some(messages) => messages.range(start..).take(limit).map(|(_, m)| m.clone()).collect(),
            None => Vec::new(),
        }))
    }

    async fn message_by_client_id(
        &self,
        tenant: &TenantId,
        conversation: &ConversationId,
        client_msg_id: &str,
    ) -> StoreResult<Option<Message>> {
        let key = key(tenant, conversation);
        Ok(self.with(|s| {
            let seq = s.client_ids.get(&key)?.get(client_msg_id)?;
            s.messages.get(&key)?.get(seq).cloned()
        }))
    }

    async fn last_seq(&self, tenant: &TenantId, conversation: &ConversationId) -> StoreResult<u64> {
        Ok(self.with(|s| s.last_seq(&key(tenant, conversation))))
    }

    async fn set_handling(
        &self,
        tenant: &TenantId,
        id: &ConversationId,
        handling: &Handling,
    ) -> StoreResult<bool> {
        Ok(self.with(|s| s.set_handling(tenant, id, handling)))
    }

    async fn merge_user_data(
        &self,
        tenant: &TenantId,
        id: &ConversationId,
        fields: &BTreeMap<String, String>,
    ) -> StoreResult<bool> {
        let key = key(tenant, id);
        Ok(self.with(|s| {
            if !s.conversations.contains_key(&key) {
                return false;
            }
            let data = s.user_data.entry(key).or_default();
            data.extend(fields.iter().map(|(k, v)| (k.clone(), v.clone())));
            s.index_subject(tenant, id, crate::subjects::keys_of_fields(fields));
            true
        }))
    }

    async fn user_data(
        &self,
        tenant: &TenantId,
        id: &ConversationId,
    ) -> StoreResult<Option<BTreeMap<String, String>>> {
        let key = key(tenant, id);
        Ok(self.with(|s| {
            s.conversations
                .contains_key(&key)
                .then(|| s.user_data.get(&key).cloned().unwrap_or_default())
        }))
    }

    async fn add_note(&self, note: &Note) -> StoreResult<bool> {
        let key = key(&note.tenant_id, &note.conversation_id);
        Ok(self.with(|s| {
            if !s.conversations.contains_key(&key) {
                return false;
            }
            s.notes.entry(key).or_default().insert(note.id.clone(), note.clone());
            true
        }))
    }

    async fn list_notes(&self, tenant: &TenantId, id: &ConversationId) -> StoreResult<Vec<Note>> {
        Ok(self.with(|s| {
            s.notes.get(&key(tenant, id)).map(|n| n.values().cloned().collect()).unwrap_or_default()
        }))
    }

    async fn last_message(
        &self,
        tenant: &TenantId,
        id: &ConversationId,
    ) -> StoreResult<Option<Message>> {
        Ok(self.with(|s| {
            s.messages.get(&key(tenant, id)).and_then(|m| m.values().next_back().cloned())
        }))
    }
}

#[async_trait]
impl InboxIndex for MemoryStore {
    async fn attention_conversations(
        &self,
        tenant: &TenantId,
        after: Option<&ConversationId>,
        limit: usize,
    ) -> StoreResult<Vec<Conversation>> {
        Ok(self.with(|s| {
            let mut out = Vec::new();
            let listed = s
                .attention
                .iter()
                .filter(|(t, c)| t == tenant && after.is_none_or(|cursor| c > cursor));
            for key in listed {
                if out.len() >= limit {
                    break;
                }
                if let Some(c) = s.conversations.get(key) {
                    out.push(c.clone());
                }
            }
            out
        }))
    }

    async fn list_tenant_conversations(
        &self,
        tenant: &TenantId,
        before: Option<&ConversationId>,
        limit: usize,
    ) -> StoreResult<Vec<Conversation>> {
        Ok(self.with(|s| {
            of_tenant(&s.conversations, tenant)
                .filter(|(id, _)| before.is_none_or(|cursor| *id < cursor))
                .rev()
                .take(limit)
                .map(|(_, c)| c.clone())
                .collect()
        }))
    }
}

#[async_trait]
impl Accounts for MemoryStore {
    async fn create_account(&self, account: &Account) -> StoreResult<()> {
        let account = Account { email: account.email.to_lowercase(), ..account.clone() };
        self.with(|s| {
            if s.account_emails.contains_key(&account.email) {
                return Err(StoreError::EmailTaken);
            }
            let owner = (account.tenant_id.clone(), account.id.clone());
            s.account_emails.insert(account.email.clone(), owner.clone());
            s.accounts.insert(owner, account);
            Ok(())
        })
    }

    async fn account_by_email(&self, email: &str) -> StoreResult<Option<Account>> {
        let email = email.to_lowercase();
        Ok(self.with(|s| s.accounts.get(s.account_emails.get(&email)?).cloned()))
    }

    async fn get_account(&self, tenant: &TenantId, id: &AccountId) -> StoreResult<Option<Account>> {
        Ok(self.with(|s| s.accounts.get(&(tenant.clone(), id.clone())).cloned()))
    }

    async fn update_account(&self, account: &Account) -> StoreResult<()> {
        self.with(|s| s.update_account(account))
    }

    async fn list_accounts(&self, tenant: &TenantId) -> StoreResult<Vec<Account>> {
        Ok(self.with(|s| of_tenant(&s.accounts, tenant).map(|(_, a)| a.clone()).collect()))
    }

    async fn delete_account(&self, tenant: &TenantId, id: &AccountId) -> StoreResult<bool> {
        self.with(|s| s.remove_account(tenant, id, None))
    }

    async fn delete_account_if_unchanged(&self, account: &Account) -> StoreResult<()> {
        let (t, id) = (&account.tenant_id, &account.id);
        match self.with(|s| s.remove_account(t, id, Some(account.version)))? {
            true => Ok(()),
            false => Err(StoreError::Conflict),
        }
    }

    async fn put_invitation(&self, invitation: &Invitation) -> StoreResult<()> {
        self.with(|s| s.put_invitation(invitation));
        Ok(())
    }

    async fn list_invitations(&self, tenant: &TenantId) -> StoreResult<Vec<Invitation>> {
        Ok(self.with(|s| of_tenant(&s.invitations, tenant).map(|(_, i)| i.clone()).collect()))
    }

    async fn delete_invitation(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> StoreResult<Option<Invitation>> {
        Ok(self.with(|s| s.remove_invitation(tenant, id)))
    }

    async fn take_invitation(&self, digest: &str) -> StoreResult<Option<Invitation>> {
        Ok(self.with(|s| {
            let (t, id) = s.invitation_digests.get(digest)?.clone();
            s.remove_invitation(&t, &id)
        }))
    }

    async fn invitation_by_digest(&self, digest: &str) -> StoreResult<Option<Invitation>> {
        Ok(self.with(|s| s.invitations.get(s.invitation_digests.get(digest)?).cloned()))
    }
}

#[async_trait]
impl Credentials for MemoryStore {
    async fn put_refresh_token(&self, token: &RefreshToken) -> StoreResult<()> {
        self.with(|s| s.put_refresh_token(token));
        Ok(())
    }

    async fn use_refresh_token(&self, digest: &str) -> StoreResult<Option<RefreshToken>> {
        Ok(self.with(|s| {
            let token = s.refresh_tokens.get_mut(digest)?;
            let before = token.clone();
            token.used = true;
            Some(before)
        }))
    }

    async fn revoke_refresh_family(&self, family: &str) -> StoreResult<()> {
        self.with(|s| s.revoke_refresh_family(family));
        Ok(())
    }

    async fn revoke_account_sessions(
        &self,
        tenant: &TenantId,
        account: &AccountId,
    ) -> StoreResult<()> {
        self.with(|s| s.revoke_account_sessions(tenant, account));
        Ok(())
    }

    async fn put_api_key(&self, key: &ApiKey) -> StoreResult<()> {
        self.with(|s| {
            let owner = (key.tenant_id.clone(), key.id.clone());
            s.api_key_digests.insert(key.digest.clone(), owner.clone());
            s.api_keys.insert(owner, key.clone());
        });
        Ok(())
    }

    async fn api_key_by_digest(&self, digest: &str) -> StoreResult<Option<ApiKey>> {
        Ok(self.with(|s| s.api_keys.get(s.api_key_digests.get(digest)?).cloned()))
    }

    async fn list_api_keys(&self, tenant: &TenantId) -> StoreResult<Vec<ApiKey>> {
        Ok(self.with(|s| of_tenant(&s.api_keys, tenant).map(|(_, k)| k.clone()).collect()))
    }

    async fn put_one_time_token(&self, token: &OneTimeToken) -> StoreResult<()> {
        self.with(|s| s.one_time_tokens.insert(token.digest.clone(), token.clone()));
        Ok(())
    }

    async fn take_one_time_token(&self, digest: &str) -> StoreResult<Option<OneTimeToken>> {
        Ok(self.with(|s| s.one_time_tokens.remove(digest)))
    }

    async fn revoke_api_key(&self, tenant: &TenantId, id: &str) -> StoreResult<bool> {
        Ok(self.with(|s| s.change_api_key(tenant, id, None)))
    }

    async fn touch_api_key(&self, tenant: &TenantId, id: &str, at: i64) -> StoreResult<()> {
        self.with(|s| s.change_api_key(tenant, id, Some(at)));
        Ok(())
    }

    async fn one_time_token_by_digest(&self, digest: &str) -> StoreResult<Option<OneTimeToken>> {
        Ok(self.with(|s| s.one_time_tokens.get(digest).cloned()))
    }
}

#[async_trait]
impl Connections for MemoryStore {
    async fn put_channel(&self, channel: &ChannelConnection) -> StoreResult<()> {
        self.with(|s| s.channels.insert(channel.id.clone(), channel.clone()));
        Ok(())
    }

    async fn channel_by_id(&self, id: &str) -> StoreResult<Option<ChannelConnection>> {
        Ok(self.with(|s| s.channels.get(id).cloned()))
    }

    async fn list_channels(
        &self,
        tenant: &TenantId,
        bot: &BotId,
    ) -> StoreResult<Vec<ChannelConnection>> {
        Ok(self.with(|s| {
            s.channels
                .values()
                .filter(|c| c.tenant_id == *tenant && c.bot_id == *bot)
                .cloned()
                .collect()
        }))
    }

    async fn delete_channel(&self, tenant: &TenantId, id: &str) -> StoreResult<bool> {
        Ok(self.with(|s| {
            if s.channels.get(id).is_none_or(|c| c.tenant_id != *tenant) {
                return false;
            }
            s.channels.remove(id).is_some()
        }))
    }

    async fn all_channels(&self) -> StoreResult<Vec<ChannelConnection>> {
        Ok(self.with(|s| s.channels.values().cloned().collect()))
    }
}

#[async_trait]
impl ChannelState for MemoryStore {
    async fn contact_conversation(
        &self,
        connection: &str,
        contact: &str,
        fresh: &Conversation,
    ) -> StoreResult<Conversation> {
        self.with(|s| s.contact_conversation(connection, contact, fresh))
    }

    async fn find_contact_conversation(
        &self,
        tenant: &TenantId,
        connection: &str,
        contact: &str,
    ) -> StoreResult<Option<Conversation>> {
        let mapping = (connection.to_owned(), contact.to_owned());
        Ok(self.with(|s| s.conversations.get(&key(tenant, s.contacts.get(&mapping)?)).cloned()))
    }

    async fn conversation_contact(
        &self,
        tenant: &TenantId,
        id: &ConversationId,
    ) -> StoreResult<Option<(String, String)>> {
        Ok(self.with(|s| s.conversation_contacts.get(&key(tenant, id)).cloned()))
    }

    async fn channel_conversations(&self, tenant: &TenantId) -> StoreResult<Vec<ConversationId>> {
        Ok(self.with(|s| {
            of_tenant(&s.conversation_contacts, tenant).map(|(id, _)| id.clone()).collect()
        }))
    }

    async fn set_delivery(
        &self,
        tenant: &TenantId,
        id: &ConversationId,
        seq: u64,
        connection: &str,
        delivery: &Delivery,
    ) -> StoreResult<bool> {
        Ok(self.with(|s| s.set_delivery(tenant, id, seq, connection, delivery)))
    }

    async fn advance_delivery(
        &self,
        connection: &str,
        provider_id: &str,
        status: DeliveryStatus,
        error: Option<String>,
    ) -> StoreResult<Option<(TenantId, ConversationId, u64)>> {
        Ok(self.with(|s| s.advance_delivery(connection, provider_id, status, error)))
    }

    async fn add_push_token(
        &self,
        tenant: &TenantId,
        id: &ConversationId,
        token: &str,
    ) -> StoreResult<()> {
        self.with(|s| s.add_push_token(tenant, id, token));
        Ok(())
    }

    async fn remove_push_token(
        &self,
        tenant: &TenantId,
        id: &ConversationId,
        token: &str,
    ) -> StoreResult<()> {
        self.with(|s| {
            let key = key(tenant, id);
            if let Some(tokens) = s.push_tokens.get_mut(&key) {
                tokens.remove(token);
                if tokens.is_empty() {
                    s.push_tokens.remove(&key);
                }
            }
        });
        Ok(())
    }

    async fn push_tokens(
        &self,
        tenant: &TenantId,
        id: &ConversationId,
    ) -> StoreResult<Vec<String>> {
        Ok(self.with(|s| {
            s.push_tokens
                .get(&key(tenant, id))
                .map(|t| t.keys().cloned().collect())
                .unwrap_or_default()
        }))
    }

    async fn set_opted_out(&self, connection: &str, contact: &str, out: bool) -> StoreResult<()> {
        let pair = (connection.to_owned(), contact.to_owned());
        self.with(|s| match out {
            true => s.opted_out.insert(pair),
            false => s.opted_out.remove(&pair),
        });
        Ok(())
    }

    async fn opted_out(&self, connection: &str, contact: &str) -> StoreResult<bool> {
        let pair = (connection.to_owned(), contact.to_owned());
        Ok(self.with(|s| s.opted_out.contains(&pair)))
    }

    async fn channel_cursor(&self, tenant: &TenantId, id: &ConversationId) -> StoreResult<u64> {
        Ok(self.with(|s| s.channel_cursors.get(&key(tenant, id)).copied().unwrap_or(0)))
    }

    async fn set_channel_cursor(
        &self,
        tenant: &TenantId,
        id: &ConversationId,
        seq: u64,
    ) -> StoreResult<()> {
        self.with(|s| s.channel_cursors.insert(key(tenant, id), seq));
        Ok(())
    }
}

#[async_trait]
impl Documents for MemoryStore {
    async fn put_document(&self, document: &Document, content: Option<&[u8]>) -> StoreResult<()> {
        self.with(|s| {
            s.write_document(document);
            if let Some(content) = content {
                let key = (document.tenant_id.clone(), document.id.clone());
                s.document_content.insert(key, content.to_vec());
            }
        });
        Ok(())
    }

    async fn get_document(&self, tenant: &TenantId, id: &str) -> StoreResult<Option<Document>> {
        Ok(self.with(|s| s.documents.get(&(tenant.clone(), id.to_owned())).cloned()))
    }

    async fn list_documents(&self, tenant: &TenantId, bot: &BotId) -> StoreResult<Vec<Document>> {
        Ok(self.with(|s| {
            s.documents_by_bot
                .iter()
                .filter(|(t, b, _)| t == tenant && b == bot)
                .filter_map(|(t, _, id)| s.documents.get(&(t.clone(), id.clone())).cloned())
                .collect()
        }))
    }

    async fn document_content(&self, tenant: &TenantId, id: &str) -> StoreResult<Option<Vec<u8>>> {
        Ok(self.with(|s| s.document_content.get(&(tenant.clone(), id.to_owned())).cloned()))
    }

    async fn put_chunks(&self, document: &Document, chunks: &[Chunk]) -> StoreResult<()> {
        self.with(|s| {
            let (t, b, id) = (&document.tenant_id, &document.bot_id, &document.id);
            s.remove_chunks(t, b, id);
            for chunk in chunks {
                let key = (t.clone(), b.clone(), id.clone(), chunk.position);
                s.chunks.insert(key, chunk.clone());
            }
            s.write_document(document);
        });
        Ok(())
    }

    async fn list_chunks(&self, tenant: &TenantId, bot: &BotId) -> StoreResult<Vec<Chunk>> {
        Ok(self.with(|s| {
            s.chunks
                .iter()
                .filter(|((t, b, _, _), _)| t == tenant && b == bot)
                .map(|(_, c)| c.clone())
                .collect()
        }))
    }

    async fn delete_document(&self, tenant: &TenantId, id: &str) -> StoreResult<bool> {
        Ok(self.with(|s| s.remove_document(tenant, id)))
    }

    async fn unfinished_documents(&self) -> StoreResult<Vec<Document>> {
        Ok(self.with(|s| {
            s.document_queue.iter().filter_map(|k| s.documents.get(k).cloned()).collect()
        }))
    }
}

#[async_trait]
impl Analytics for MemoryStore {
    async fn analytics(
        &self,
        tenant: &TenantId,
        from_ms: i64,
        to_ms: i64,
    ) -> StoreResult<Vec<CounterRow>> {
        Ok(self.with(|s| {
            s.counters
                .iter()
                .filter(|((t, hour, _, _), _)| t == tenant && (from_ms..to_ms).contains(hour))
                .map(|((_, hour, bot, _), (channel, counters))| CounterRow {
                    hour: *hour,
                    bot_id: bot.clone(),
                    channel: *channel,
                    counters: counters.clone(),
                })
                .collect()
        }))
    }

    async fn intent_counts(
        &self,
        tenant: &TenantId,
        from_ms: i64,
        to_ms: i64,
    ) -> StoreResult<Vec<IntentRow>> {
        Ok(self.with(|s| {
            s.intent_counts
                .iter()
                .filter(|((t, hour, _, _), _)| t == tenant && (from_ms..to_ms).contains(hour))
                .map(|((_, hour, bot, intent), (hits, confidence_sum))| IntentRow {
                    hour: *hour,
                    bot_id: bot.clone(),
                    intent: intent.clone(),
                    hits: *hits,
                    confidence_sum: *confidence_sum,
                })
                .collect()
        }))
    }

    async fn unmatched_messages(
        &self,
        tenant: &TenantId,
        bot: Option<&BotId>,
        from_ms: i64,
        to_ms: i64,
        limit: usize,
    ) -> StoreResult<Vec<(BotId, Message)>> {
        Ok(self.with(|s| s.unmatched_messages(tenant, bot, (from_ms, to_ms), limit)))
    }

    async fn forget_unmatched(&self, tenant: &TenantId, before_ms: i64) -> StoreResult<u64> {
        Ok(self.with(|s| {
            let before = s.unmatched.len();
            s.unmatched.retain(|(t, at, _, _), _| t != tenant || *at >= before_ms);
            (before - s.unmatched.len()) as u64
        }))
    }
}

#[async_trait]
impl TokenUsage for MemoryStore {
    async fn add_token_usage(
        &self,
        tenant: &TenantId,
        month: &str,
        tokens: u64,
    ) -> StoreResult<u64> {
        Ok(self.with(|s| {
            let total = s.token_usage.entry((tenant.clone(), month.to_owned())).or_default();
            *total = total.saturating_add(tokens);
            *total
        }))
    }

    async fn token_usage(&self, tenant: &TenantId, month: &str) -> StoreResult<u64> {
        Ok(self
            .with(|s| s.token_usage.get(&(tenant.clone(), month.to_owned())).copied().unwrap_or(0)))
    }
}

#[async_trait]
impl Billing for MemoryStore {
    async fn count_within(
        &self,
        tenant: &TenantId,
        month: &str,
        meter: &str,
        n: u64,
        limit: Option<u64>,
    ) -> StoreResult<Option<u64>> {
        Ok(self.with(|s| {
            let count = s.usage.entry((tenant.clone(), month.to_owned(), meter.to_owned()));
            let count = count.or_default();
            let total = count.saturating_add(n);
            if limit.is_some_and(|limit| total > limit) {
                return None;
            }
            *count = total;
            Some(total)
        }))
    }

    async fn uncount(
        &self,
        tenant: &TenantId,
        month: &str,
        meter: &str,
        n: u64,
    ) -> StoreResult<()> {
        self.with(|s| {
            let key = (tenant.clone(), month.to_owned(), meter.to_owned());
            if let Some(count) = s.usage.get_mut(&key) {
                *count = count.saturating_sub(n);
            }
        });
        Ok(())
    }

    async fn usage(&self, tenant: &TenantId, month: &str) -> StoreResult<Vec<(String, u64)>> {
        Ok(self.with(|s| {
            s.usage
                .iter()
                .filter(|((t, m, _), _)| t == tenant && m == month)
                .map(|((_, _, meter), n)| (meter.clone(), *n))
                .collect()
        }))
    }

    async fn customer(&self, tenant: &TenantId) -> StoreResult<Option<String>> {
        Ok(self.with(|s| s.customers.get(tenant).cloned()))
    }

    async fn set_customer_once(&self, tenant: &TenantId, customer: &str) -> StoreResult<String> {
        Ok(self.with(|s| s.customers.entry(tenant.clone()).or_insert(customer.to_owned()).clone()))
    }

    async fn put_subscription_if_newer(&self, subscription: &Subscription) -> StoreResult<bool> {
        self.with(|s| match s.subscriptions.get(&subscription.id) {
            Some(held) if held.tenant_id != subscription.tenant_id => Err(StoreError::Conflict),
            Some(held) if held.event_created > subscription.event_created => Ok(false),
            _ => {
                s.subscriptions.insert(subscription.id.clone(), subscription.clone());
                Ok(true)
            }
        })
    }

    async fn get_subscription(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> StoreResult<Option<Subscription>> {
        Ok(self.with(|s| s.subscriptions.get(id).filter(|x| &x.tenant_id == tenant).cloned()))
    }

    async fn live_subscriptions(&self) -> StoreResult<Vec<Subscription>> {
        Ok(self.with(|s| s.subscriptions.values().filter(|x| x.is_live()).cloned().collect()))
    }

    async fn list_subscriptions(&self, tenant: &TenantId) -> StoreResult<Vec<Subscription>> {
        Ok(self.with(|s| {
            s.subscriptions.values().filter(|x| &x.tenant_id == tenant).cloned().collect()
        }))
    }

    async fn record_event(&self, event: &StoredEvent) -> StoreResult<bool> {
        Ok(self.with(|s| {
            if !s.events_seen.insert(event.id.clone()) {
                return false;
            }
            s.events_pending.insert((event.received_at, event.id.clone()), event.clone());
            true
        }))
    }

    async fn pending_events(&self, limit: usize) -> StoreResult<Vec<StoredEvent>> {
        Ok(self.with(|s| s.events_pending.values().take(limit).cloned().collect()))
    }

    async fn finish_event(&self, id: &str) -> StoreResult<()> {
        self.with(|s| s.events_pending.retain(|(_, e), _| e != id));
        Ok(())
    }
}

#[async_trait]
impl AuditLog for MemoryStore {
    async fn append_audit(&self, entry: &AuditEntry) -> StoreResult<()> {
        let key = (entry.tenant_id.clone(), entry.id.clone());
        self.with(|s| {
            s.audit.entry(key).or_insert_with(|| entry.clone());
        });
        Ok(())
    }

    async fn list_audit(
        &self,
        tenant: &TenantId,
        before: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<AuditEntry>> {
        Ok(self.with(|s| {
            of_tenant(&s.audit, tenant)
                .filter(|(id, _)| before.is_none_or(|b| id.as_str() < b))
                .rev()
                .take(limit)
                .map(|(_, e)| e.clone())
                .collect()
        }))
    }
}

#[async_trait]
impl Subjects for MemoryStore {
    async fn subject_conversations(
        &self,
        tenant: &TenantId,
        subject: &str,
    ) -> StoreResult<Vec<ConversationId>> {
        let from = (tenant.clone(), subject.to_owned(), ConversationId::from(""));
        Ok(self.with(|s| {
            s.subjects
                .range(from..)
                .take_while(|(t, k, _)| t == tenant && k == subject)
                .map(|(_, _, c)| c.clone())
                .collect()
        }))
    }

    async fn reclaim_deleted(&self) -> StoreResult<()> {
        Ok(())
    }
}

#[async_trait]
impl Listings for MemoryStore {
    async fn put_listing(&self, listing: &Listing) -> StoreResult<()> {
        self.with(|s| s.listings.insert(listing.bot_id.clone(), listing.clone()));
        Ok(())
    }

    async fn get_listing(&self, bot: &BotId) -> StoreResult<Option<Listing>> {
        Ok(self.with(|s| s.listings.get(bot).cloned()))
    }

    async fn public_listings(&self) -> StoreResult<Vec<Listing>> {
        Ok(self.with(|s| s.listings.values().filter(|l| l.public).cloned().collect()))
    }

    async fn delete_listing(&self, tenant: &TenantId, bot: &BotId) -> StoreResult<bool> {
        Ok(self.with(|s| match s.listings.get(bot) {
            Some(l) if &l.tenant_id == tenant => s.listings.remove(bot).is_some(),
            _ => false,
        }))
    }

    async fn put_connect_account(&self, account: &ConnectAccount) -> StoreResult<()> {
        self.with(|s| s.connect_accounts.insert(account.tenant_id.clone(), account.clone()));
        Ok(())
    }

    async fn connect_account(&self, tenant: &TenantId) -> StoreResult<Option<ConnectAccount>> {
        Ok(self.with(|s| s.connect_accounts.get(tenant).cloned()))
    }
}

#[async_trait]
impl crate::store::Sealing for MemoryStore {
    /// Nothing here reaches a disk: records stay in clear.
    fn use_sealer(&self, _sealer: std::sync::Arc<dyn crate::sealing::Sealer>) {}

    async fn seal_check(&self) -> StoreResult<Option<String>> {
        Ok(self.with(|s| s.seal_check.clone()))
    }

    async fn put_seal_check(&self, sealed: &str) -> StoreResult<()> {
        self.with(|s| s.seal_check = Some(sealed.to_owned()));
        Ok(())
    }

    /// Nothing is sealed here.
    async fn reseal_all(&self) -> StoreResult<crate::sealing::Resealed> {
        Ok(crate::sealing::Resealed::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::{message, seed_conversation};

    crate::store_conformance_tests!(async { Box::new(MemoryStore::new()) });

    #[tokio::test]
    async fn injected_failures_refuse_the_next_appends_and_write_nothing() {
        let store = MemoryStore::new();
        seed_conversation(&store, "t-fail", "c1").await;
        let (t, c) = (TenantId::from("t-fail"), ConversationId::from("c1"));
        store.fail_next_appends(2);
        for _ in 0..2 {
            let refused = store.append(&message("t-fail", "c1", 1, Some("k1"))).await;
            assert!(
                matches!(&refused, Err(StoreError::Backend(why)) if why == "injected"),
                "{refused:?}"
            );
        }
        assert_eq!(store.last_seq(&t, &c).await.expect("last_seq"), 0, "nothing written");
        let rows = store.analytics(&t, 0, i64::MAX).await.expect("analytics");
        assert_eq!(rows.iter().map(|r| r.counters.visitor_messages).sum::<i64>(), 0);
        let retried = store.append(&message("t-fail", "c1", 1, Some("k1"))).await;
        assert_eq!(retried.expect("the third append"), Appended::Stored);
        assert_eq!(store.appends(), 3, "every call is counted, the failed ones too");
    }

    #[tokio::test]
    async fn a_new_injection_replaces_the_one_left() {
        let store = MemoryStore::new();
        seed_conversation(&store, "t-fail", "c1").await;
        store.fail_next_appends(5);
        store.fail_next_appends(0);
        let m = message("t-fail", "c1", 1, None);
        assert_eq!(store.append(&m).await.expect("append"), Appended::Stored);
        assert_eq!(store.appends(), 1);
    }
}
