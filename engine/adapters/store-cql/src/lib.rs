//! The distributed store: ScyllaDB or Apache Cassandra, through CQL.
//!
//! Used when `store.backend = "cql"` (distributed mode): engine nodes share one cluster, so a
//! conversation's actor can move between nodes and find its transcript. It implements the same
//! [`Store`] port as the embedded `parla_store_redb::RedbStore` and passes the same
//! conformance suite (`parla_domain::conformance`). The schema is `schema-cql/` (its README explains every key),
//! applied by [`migrate`]; [`CqlStore::connect`] expects it applied.
//!
//! # Layout
//! - this file: the [`Store`] implementation and its request helpers;
//! - `accounts`: accounts (compare-and-set on a version, the last-owner rule), API keys'
//!   revocation and last use, invitations;
//! - `analytics`: the analytics counters (claims, counter batches, range reads);
//! - `statements`: every statement, prepared at connect;
//! - `migrate`: the schema migrations;
//! - `tests`: the conformance suite and the adapter's own checks against a real cluster.
//!
//! # Consistency and durability
//! Every request runs at `LOCAL_QUORUM` (a majority of the local data centre's replicas has the
//! write when a call returns `Ok`; a read sees every write acknowledged before it) and every
//! lightweight transaction (LWT: `IF NOT EXISTS`, `IF col = ?`) at `LOCAL_SERIAL`. A cluster
//! has no multi-partition transactions, so each operation that writes several rows orders them
//! so that a crash between two writes leaves either nothing visible or a state the next call
//! completes (each method says how). The rules the trait documents hold under concurrency:
//! - unique emails, global bot ids, conversations created once, one conversation per channel
//!   contact: claimed with `INSERT ... IF NOT EXISTS`;
//! - `append`: a seq is written once (`IF NOT EXISTS` on the message row, the commit point),
//!   then the `client_msg_id` marker that makes it idempotent (a plain write; a marker missing
//!   after a crash is covered by searching the tail before the new seq) beside the counting
//!   step, one compare-and-set on the conversation row (sentiment and analytics claim);
//! - analytics counted once: each count claimed by an LWT only one writer wins, then added
//!   to counter tables by that writer alone (see `analytics.rs`: a crash or a failed counter
//!   write between the two loses counts, never doubles them);
//! - refresh tokens used once (`IF used = false`), one-time tokens taken once
//!   (`DELETE ... IF EXISTS`), delivery statuses never moving back (compare-and-set loop).
//!
//! A table whose rows an LWT writes is written only by LWTs (or deleted whole), because Paxos
//! timestamps and plain-write timestamps do not order each other under clock skew.
//!
//! # Concurrency
//! [`CqlStore`] is a cheap handle: one driver `Session` (a connection pool per node, shared by
//! every task) and the statements prepared at connect. No lock is held across a request; the
//! driver routes each prepared statement to a replica of its partition (token-aware).

mod accounts;
mod analytics;
mod billing;
mod migrate;
mod statements;
#[cfg(test)]
mod tests;

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::Duration,
};

use async_trait::async_trait;
use futures_util::{StreamExt, TryStreamExt, stream};
use parla_config::StoreSettings;
use scylla::{
    client::{
        execution_profile::ExecutionProfile, session::Session, session_builder::SessionBuilder,
    },
    deserialize::row::DeserializeRow,
    response::query_result::QueryResult,
    serialize::row::SerializeRow,
    statement::{
        Consistency, SerialConsistency,
        batch::{Batch, BatchType},
    },
    value::{Counter, CqlValue, Row},
};
use serde::{Serialize, de::DeserializeOwned};

use self::analytics::Deltas;
pub use self::migrate::migrate;
use self::statements::{Statements, Stmt};
use parla_domain::analytics::ConversationStats;
use parla_domain::model::{
    Account, AccountId, ApiKey, Bot, BotId, CannedResponse, ChannelConnection, Chunk, Conversation,
    ConversationId, Delivery, DeliveryStatus, Document, Handling, Intent, Invitation, Message,
    Note, OneTimeToken, ProcessStatus, RefreshToken, Sender, Tenant, TenantId,
};
use parla_domain::sealing::{self, Sealer};
use parla_domain::store::{
    Accounts, Analytics, Appended, AuditLog, Catalog, ChannelState, Connections, Conversations,
    Credentials, Documents, InboxIndex, Sealing, StoreError, StoreResult, Subjects, TokenUsage,
};

/// Messages per partition of `messages` (`bucket = seq / MESSAGE_BUCKET`): a long conversation
/// spreads over partitions of at most this many rows (a few MB), instead of one that grows
/// without bound. Part of the data's layout: changing it would lose existing transcripts.
const MESSAGE_BUCKET: u64 = 4096;
/// Bytes per row of `document_content`. A mutation must stay under half a commit-log segment
/// (Cassandra's default segment is 32 MiB; small test nodes use 8).
const CONTENT_PART: usize = 1 << 20;
/// Bytes of chunk JSON per batch: one single-partition batch replaces a document's chunks
/// atomically up to this size (a larger document is replaced in several).
const CHUNK_BATCH_BYTES: usize = 1 << 20;
/// Devices notified per conversation at most (as the embedded store).
const MAX_PUSH_TOKENS: usize = 5;
/// Messages before a new one searched for its client id (see `append_message`).
const TAIL: u64 = 16;
/// Attempts of a compare-and-set loop before giving up: each retry means another writer won
/// the race, which the single-writer actors make rare.
const CAS_ATTEMPTS: usize = 16;
/// An email claim whose account row is still missing after this long was left by a creator
/// that died, and may be taken over.
const ORPHAN_CLAIM_MS: i64 = 60_000;
/// Concurrent point reads when a listing fetches the records its index names.
const FETCH_CONCURRENCY: usize = 16;
/// Whole-table scans (at start only) read pages of this many rows.
const SCAN_PAGE: i32 = 1000;

/// The CQL store. Cloning shares the session and the prepared statements.
#[derive(Clone)]
pub struct CqlStore {
    session: Arc<Session>,
    st: Arc<Statements>,
    /// Always [`MESSAGE_BUCKET`] outside this module's tests, which shrink it to cross bucket
    /// boundaries with a handful of messages.
    bucket_size: u64,
    /// Seals accounts', workspaces' and intents' secrets (see `parla_domain::sealing`), once
    /// given one; shared by the clones of this store.
    sealer: Arc<std::sync::RwLock<Option<Arc<dyn Sealer>>>>,
    /// Per tenant, the first day whose unmatched-messages partition this node has not yet
    /// deleted for retention: later sweeps delete only the days since.
    forgotten: Arc<std::sync::Mutex<HashMap<String, i64>>>,
}

impl std::fmt::Debug for CqlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CqlStore")
            .field("keyspace", &self.session.get_keyspace())
            .finish_non_exhaustive()
    }
}

/// Builds a session with the consistency and timeouts every request of the store uses.
pub(crate) async fn build_session(
    settings: &StoreSettings,
    keyspace: Option<&str>,
    request_timeout: Duration,
) -> StoreResult<Session> {
    if settings.cql_nodes.is_empty() {
        return Err(StoreError::Backend("cql: store.cql_nodes names no node".into()));
    }
    let profile = ExecutionProfile::builder()
        .consistency(Consistency::LocalQuorum)
        .serial_consistency(Some(SerialConsistency::LocalSerial))
        .request_timeout(Some(request_timeout))
        .build();
    let mut builder = SessionBuilder::new()
        .known_nodes(&settings.cql_nodes)
        .default_execution_profile_handle(profile.into_handle())
        .connection_timeout(request_timeout.max(Duration::from_secs(5)))
        .schema_agreement_timeout(Duration::from_secs(60));
    if !settings.cql_username.is_empty() {
        builder = builder.user(&settings.cql_username, &settings.cql_password);
    }
    if let Some(keyspace) = keyspace {
        builder = builder.use_keyspace(keyspace, false);
    }
    builder.build().await.map_err(|e| {
        StoreError::Backend(format!("cql: cannot connect to {:?}: {e}", settings.cql_nodes))
    })
}

impl CqlStore {
    fn sealer(&self) -> Option<Arc<dyn Sealer>> {
        self.sealer.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    fn sealed_account(&self, account: &Account) -> Account {
        self.sealer().map_or_else(|| account.clone(), |s| sealing::seal_account(&*s, account))
    }

    fn opened_account(&self, account: Account) -> StoreResult<Account> {
        Ok(sealing::open_account(self.sealer().as_deref(), account)?)
    }

    /// Connects to the cluster and prepares every statement. The keyspace must hold the
    /// current schema (`parla migrate`, i.e. [`migrate`]).
    pub async fn connect(settings: &StoreSettings) -> Result<CqlStore, StoreError> {
        let keyspace = migrate::checked_keyspace(&settings.cql_keyspace)?;
        let timeout = Duration::from_millis(settings.cql_timeout_ms.max(1));
        let session = build_session(settings, None, timeout).await?;
        let versions: Vec<String> = match session
            .query_unpaged(format!("SELECT version FROM {keyspace}.schema_migrations"), ())
            .await
            .map(QueryResult::into_rows_result)
        {
            Ok(Ok(rows)) => rows
                .rows::<(String,)>()
                .map_err(|e| StoreError::Backend(format!("cql: schema_migrations: {e}")))?
                .map(|row| row.map(|(v,)| v))
                .collect::<Result<_, _>>()
                .map_err(|e| StoreError::Backend(format!("cql: schema_migrations: {e}")))?,
            Ok(Err(e)) => return Err(StoreError::Backend(format!("cql: schema_migrations: {e}"))),
            Err(e) => {
                return Err(StoreError::Backend(format!(
                    "cql: keyspace {keyspace} has no schema ({e}): run `parla migrate`"
                )));
            }
        };
        if let Some((missing, _)) =
            migrate::MIGRATIONS.iter().find(|(v, _)| !versions.iter().any(|known| known == v))
        {
            return Err(StoreError::Backend(format!(
                "cql: keyspace {keyspace} lacks migration {missing}: run `parla migrate`"
            )));
        }
        session.use_keyspace(keyspace, false).await.map_err(|e| {
            StoreError::Backend(format!("cql: cannot use keyspace {keyspace}: {e}"))
        })?;
        // Boxed: the struct being filled lives across a hundred awaits.
        let st = Box::pin(Statements::prepare(&session)).await?;
        Ok(CqlStore {
            session: Arc::new(session),
            st: Arc::new(st),
            bucket_size: MESSAGE_BUCKET,
            sealer: Arc::default(),
            forgotten: Arc::default(),
        })
    }

    // ---- request helpers -------------------------------------------------------------------

    async fn run(&self, s: &Stmt, values: impl SerializeRow) -> StoreResult<QueryResult> {
        self.session.execute_unpaged(&s.ps, values).await.map_err(|e| fail(s, e))
    }

    /// The first row of a single-partition read, if any.
    async fn one<R>(&self, s: &Stmt, values: impl SerializeRow) -> StoreResult<Option<R>>
    where
        R: for<'f> DeserializeRow<'f, 'f>,
    {
        let rows = self.run(s, values).await?.into_rows_result().map_err(|e| fail(s, e))?;
        rows.maybe_first_row::<R>().map_err(|e| fail(s, e))
    }

    /// Every row, page by page.
    async fn all<R>(&self, s: &Stmt, values: impl SerializeRow) -> StoreResult<Vec<R>>
    where
        R: for<'f, 'm> DeserializeRow<'f, 'm>,
    {
        let pager =
            self.session.execute_iter(s.ps.clone(), values).await.map_err(|e| fail(s, e))?;
        let rows = pager.rows_stream::<R>().map_err(|e| fail(s, e))?;
        rows.try_collect().await.map_err(|e| fail(s, e))
    }

    /// Runs a lightweight transaction and reads its outcome.
    async fn cas(&self, s: &Stmt, values: impl SerializeRow) -> StoreResult<Cas> {
        let result = self.run(s, values).await?;
        Cas::from_result(s.name, result)
    }

    /// The JSON of the `data` column of a single-row read, decoded.
    async fn record<T: DeserializeOwned>(
        &self,
        s: &Stmt,
        values: impl SerializeRow,
    ) -> StoreResult<Option<T>> {
        match self.one::<(Option<String>,)>(s, values).await? {
            Some((Some(data),)) => decode(&data).map(Some),
            _ => Ok(None),
        }
    }

    /// Every `data` column of a read, decoded.
    async fn records<T: DeserializeOwned>(
        &self,
        s: &Stmt,
        values: impl SerializeRow,
    ) -> StoreResult<Vec<T>> {
        let rows = self.all::<(Option<String>,)>(s, values).await?;
        rows.into_iter().filter_map(|(data,)| data).map(|data| decode(&data)).collect()
    }

    fn bucket(&self, seq: u64) -> StoreResult<i64> {
        cql_int(seq / self.bucket_size)
    }

    /// The last seq a bucket can hold.
    fn bucket_end(&self, bucket: u64) -> u64 {
        bucket.saturating_add(1).saturating_mul(self.bucket_size).saturating_sub(1)
    }

    // ---- conversations ---------------------------------------------------------------------

    async fn conversation_row(
        &self,
        tenant: &str,
        id: &str,
    ) -> StoreResult<Option<ConversationRow>> {
        type Columns = (
            Option<String>,
            Option<String>,
            Option<String>,
            Option<f64>,
            Option<i64>,
            Option<i64>,
            Option<String>,
            Option<i64>,
        );
        let Some((_, data, handling, sum, count, upto, stats, counted)) =
            self.one::<Columns>(&self.st.get_conversation, (tenant, id)).await?
        else {
            return Ok(None);
        };
        let Some(data) = data else { return Ok(None) };
        let mut conversation: Conversation = decode(&data)?;
        if let Some(handling) = handling {
            conversation.handling = decode(&handling)?;
        }
        if let Some(sum) = sum {
            // Stored as the f32 it was computed as: the conversion back is exact.
            conversation.sentiment_sum = sum as f32;
        }
        if let Some(count) = count {
            conversation.sentiment_count = u32::try_from(count)
                .map_err(|_| StoreError::Corrupt(format!("sentiment count {count}")))?;
        }
        if let Some(stats) = &stats {
            conversation.stats = decode(stats)?;
        }
        Ok(Some(ConversationRow {
            conversation,
            sentiment_seq: upto.map_or(Ok(0), cql_uint)?,
            stats,
            analytics_seq: counted.map(cql_uint).transpose()?,
        }))
    }

    /// Creates a conversation: its two index rows first, then the record with
    /// `IF NOT EXISTS`, the commit point. A crash between them leaves index rows naming a
    /// conversation that does not exist, which listings skip; the retry completes it. The
    /// record's insert is also the claim of the conversation's count: its winner adds it.
    async fn insert_conversation(&self, c: &Conversation) -> StoreResult<()> {
        let (t, id, bot) = (c.tenant_id.as_str(), c.id.as_str(), c.bot_id.as_str());
        self.run(&self.st.index_conversation_by_bot, (t, bot, id)).await?;
        self.run(&self.st.index_conversation_by_tenant, (t, id)).await?;
        let values = (
            t,
            id,
            bot,
            encode(c)?,
            encode(&c.handling)?,
            f64::from(c.sentiment_sum),
            i64::from(c.sentiment_count),
            encode(&c.stats)?,
        );
        let cas = self.cas(&self.st.create_conversation, values).await?;
        if cas.applied {
            self.add_counts(c, &Deltas::created(c)).await;
            return Ok(());
        }
        if cas.text("bot_id") != Some(bot) {
            // The index row just written for another bot names someone else's conversation.
            self.run(&self.st.unindex_conversation_by_bot, (t, bot, id)).await?;
        }
        Err(StoreError::ConversationExists)
    }

    /// Lists conversations from an index (newest first), keeping those whose record exists
    /// (and belongs to `bot`, when given); pages on through skipped ids so a page is full
    /// unless the index is exhausted.
    async fn list_indexed_conversations(
        &self,
        tenant: &TenantId,
        bot: Option<&BotId>,
        before: Option<&ConversationId>,
        limit: usize,
    ) -> StoreResult<Vec<Conversation>> {
        let t = tenant.as_str();
        let mut out = Vec::new();
        let mut cursor = before.map(|c| c.as_str().to_owned());
        while out.len() < limit {
            let want = i32::try_from(limit - out.len()).unwrap_or(i32::MAX);
            let ids: Vec<(String,)> = match (bot, cursor.as_deref()) {
                (Some(b), None) => {
                    self.all(&self.st.list_conversations_by_bot, (t, b.as_str(), want)).await?
                }
                (Some(b), Some(c)) => {
                    let s = &self.st.list_conversations_by_bot_before;
                    self.all(s, (t, b.as_str(), c, want)).await?
                }
                (None, None) => self.all(&self.st.list_conversations_by_tenant, (t, want)).await?,
                (None, Some(c)) => {
                    self.all(&self.st.list_conversations_by_tenant_before, (t, c, want)).await?
                }
            };
            let exhausted = ids.len() < usize::try_from(want).unwrap_or(usize::MAX);
            cursor = ids.last().map(|(id,)| id.clone());
            let found: Vec<Option<ConversationRow>> = stream::iter(ids)
                .map(|(id,)| async move { self.conversation_row(t, &id).await })
                .buffered(FETCH_CONCURRENCY)
                .try_collect()
                .await?;
            out.extend(
                found
                    .into_iter()
                    .flatten()
                    .map(|row| row.conversation)
                    .filter(|c| bot.is_none_or(|b| c.bot_id == *b)),
            );
            if exhausted || cursor.is_none() {
                break;
            }
        }
        out.truncate(limit);
        Ok(out)
    }

    // ---- messages --------------------------------------------------------------------------

    async fn message_at(&self, tenant: &str, id: &str, seq: u64) -> StoreResult<Option<Message>> {
        let Ok(seq_i) = i64::try_from(seq) else { return Ok(None) };
        let key = (tenant, id, self.bucket(seq)?, seq_i);
        match self.one::<(Option<String>, Option<String>)>(&self.st.get_message, key).await? {
            Some((Some(data), delivery)) => decode_message(&data, delivery.as_deref()).map(Some),
            _ => Ok(None),
        }
    }

    async fn top_seq(&self, tenant: &str, id: &str, bucket: u64) -> StoreResult<Option<u64>> {
        let key = (tenant, id, cql_int(bucket)?);
        self.one::<(i64,)>(&self.st.top_seq, key).await?.map(|(seq,)| cql_uint(seq)).transpose()
    }

    /// The highest seq. Seqs have no gaps, so buckets fill in order: the answer is the top of
    /// the last non-empty bucket, found by doubling then bisecting (one read for a
    /// conversation shorter than a bucket).
    async fn last_seq_of(&self, tenant: &str, id: &str) -> StoreResult<u64> {
        let Some(mut top) = self.top_seq(tenant, id, 0).await? else { return Ok(0) };
        if top < self.bucket_end(0) {
            return Ok(top);
        }
        let (mut full, mut empty) = (0u64, None::<u64>);
        let mut probe = 1u64;
        while empty.is_none() {
            match self.top_seq(tenant, id, probe).await? {
                None => empty = Some(probe),
                Some(t) if t < self.bucket_end(probe) => return Ok(t),
                Some(t) => {
                    (full, top) = (probe, t);
                    probe = probe.saturating_mul(2);
                }
            }
        }
        let mut empty = empty.unwrap_or(u64::MAX);
        while empty - full > 1 {
            let mid = full + (empty - full) / 2;
            match self.top_seq(tenant, id, mid).await? {
                None => empty = mid,
                Some(t) if t < self.bucket_end(mid) => return Ok(t),
                Some(t) => (full, top) = (mid, t),
            }
        }
        Ok(top)
    }

    /// Appends a message: one lightweight transaction on the common path. Every read comes
    /// first (in parallel), so a refused append writes nothing. Then:
    /// 1. the message row, `IF NOT EXISTS`: the commit point, and the fence between two
    ///    writers of one conversation (a seq is written once);
    /// 2. the `client_msg_id` marker (conversation, client id) -> seq, a plain write;
    /// 3. beside it, the counting step ([`Self::count_append`]): the conversation's visitor
    ///    sentiment and the claim of the message's analytics, one compare-and-set, then the
    ///    analytics counters.
    ///
    /// A message is a duplicate if its client id's marker names a seq holding a message with
    /// that client id, or if one of the [`TAIL`] messages before `seq` carries it: a process
    /// that died between (1) and (2) left its last message without a marker, and that message
    /// is in the tail when the event is delivered again (the conversation's next owner stores
    /// nothing between them but the answer to it). A marker naming anything else (a deleted
    /// conversation's leftover) is overwritten. If the process dies after (1), the next
    /// append counts (3) its predecessor.
    async fn append_message(&self, m: &Message) -> StoreResult<Appended> {
        let (t, c, seq) = (m.tenant_id.as_str(), m.conversation_id.as_str(), m.seq);
        let cid = m.client_msg_id.as_deref();
        let marker = async {
            match cid {
                Some(cid) => self.client_marker(t, c, cid).await,
                None => Ok(None),
            }
        };
        let (conversation, marker, tail, slot) = Box::pin(futures_util::future::try_join4(
            self.conversation_row(t, c),
            marker,
            // A message with a client id searches the tail for it; any other needs only its
            // predecessor (the seq check).
            self.tail_before(t, c, seq, if cid.is_some() { TAIL } else { 1 }),
            self.message_at(t, c, seq),
        ))
        .await?;
        let Some(conversation) = conversation else {
            return Err(StoreError::ConversationNotFound);
        };
        if let Some(cid) = cid {
            if let Some(first) = tail.iter().find(|x| x.client_msg_id.as_deref() == Some(cid)) {
                // Found without its marker, maybe (its writer died before it): marked now, so a
                // resend after the tail has moved on is still found.
                if marker != Some(first.seq) {
                    self.mark_or_warn(first).await;
                }
                return Ok(Appended::Duplicate(first.clone()));
            }
            if let Some(marked) = marker
                && let Some(first) = self.message_at(t, c, marked).await?
                && first.client_msg_id.as_deref() == Some(cid)
            {
                return Ok(Appended::Duplicate(first));
            }
        }
        if seq == 0 {
            return Err(StoreError::SeqConflict(0));
        }
        let previous = tail.last().filter(|x| x.seq + 1 == seq);
        if let Some(existing) = slot {
            return self.settle_taken_seq(m, existing, &conversation, previous).await;
        }
        if seq > 1 && previous.is_none() {
            let last = self.last_seq_of(t, c).await?;
            return Err(if seq <= last {
                StoreError::SeqConflict(seq)
            } else {
                StoreError::SeqGap { last, got: seq }
            });
        }
        let (data, delivery) = message_columns(m)?;
        let values = (t, c, self.bucket(seq)?, cql_int(seq)?, data, delivery);
        let cas = self.cas(&self.st.insert_message, values).await?;
        if !cas.applied {
            let existing = match cas.text("data") {
                Some(data) => decode_message(data, cas.text("delivery"))?,
                None => return Err(StoreError::SeqConflict(seq)),
            };
            return self.settle_taken_seq(m, existing, &conversation, previous).await;
        }
        // The message is stored (the insert above is the commit point): a failed marker or
        // counting step must not report the append failed (the tail check covers a missing
        // marker of a recent message; the next append counts an uncounted predecessor).
        let (_, counted) = futures_util::future::join(
            self.mark_or_warn(m),
            self.count_append(m, conversation, previous),
        )
        .await;
        if let Err(e) = counted {
            tracing::warn!(error = %e, "message not counted yet; the next append catches up");
        }
        Ok(Appended::Stored)
    }

    /// `m.seq` already holds `existing`: this very message (a retry after its row was
    /// written: finish the append), its first copy (same client id), or another message.
    async fn settle_taken_seq(
        &self,
        m: &Message,
        existing: Message,
        conversation: &ConversationRow,
        previous: Option<&Message>,
    ) -> StoreResult<Appended> {
        if existing.id == m.id {
            self.mark_or_warn(m).await;
            self.count_append(m, conversation.clone(), previous).await?;
            return Ok(Appended::Stored);
        }
        if m.client_msg_id.is_some() && existing.client_msg_id == m.client_msg_id {
            return Ok(Appended::Duplicate(existing));
        }
        Err(StoreError::SeqConflict(m.seq))
    }

    async fn client_marker(&self, tenant: &str, id: &str, cid: &str) -> StoreResult<Option<u64>> {
        let found = self.one::<(Option<i64>,)>(&self.st.get_client_id, (tenant, id, cid)).await?;
        found.and_then(|(seq,)| seq).map(cql_uint).transpose()
    }

    /// Points the marker of `m`'s client id (if any) at `m`'s seq.
    async fn mark(&self, m: &Message) -> StoreResult<()> {
        let Some(cid) = m.client_msg_id.as_deref() else { return Ok(()) };
        let values = (m.tenant_id.as_str(), m.conversation_id.as_str(), cid, cql_int(m.seq)?);
        self.run(&self.st.put_client_id, values).await.map(drop)
    }

    /// [`Self::mark`], tried a few times: the message is stored whatever happens here, and
    /// a marker still missing is found again only through the tail.
    async fn mark_or_warn(&self, m: &Message) {
        for attempt in 1..=3 {
            match self.mark(m).await {
                Ok(()) => return,
                Err(e) if attempt == 3 => {
                    tracing::warn!(error = %e, seq = m.seq, "client_msg_id marker not written");
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20 * attempt)).await,
            }
        }
    }

    /// The (up to) `n` messages right before `seq`, in seq order.
    async fn tail_before(&self, t: &str, c: &str, seq: u64, n: u64) -> StoreResult<Vec<Message>> {
        let Some(last) = seq.checked_sub(1).filter(|l| *l > 0) else { return Ok(Vec::new()) };
        let first = last.saturating_sub(n.max(1) - 1).max(1);
        let mut out = Vec::new();
        for bucket in first / self.bucket_size..=last / self.bucket_size {
            let from = first.max(bucket * self.bucket_size);
            let want = i32::try_from(last - from + 1).unwrap_or(i32::MAX);
            let values = (t, c, cql_int(bucket)?, cql_int(from)?, want);
            let rows =
                self.all::<(i64, String, Option<String>)>(&self.st.messages_from, values).await?;
            for (_, data, delivery) in rows {
                let message = decode_message(&data, delivery.as_deref())?;
                if message.seq <= last {
                    out.push(message);
                }
            }
        }
        Ok(out)
    }

    /// Counts `m`, and its predecessor if a crash kept that one from being counted: the
    /// conversation's visitor sentiment and the message's analytics ([`analytics`]). One
    /// compare-and-set on the conversation row claims both, `IF sentiment_seq = ? AND
    /// analytics_seq = ? AND stats = ?` as read: the last message counted for each, and the
    /// stats the analytics were computed from (which `set_handling` also moves). Counting
    /// again is a no-op; only the winner of the claim adds the counters, once.
    async fn count_append(
        &self,
        m: &Message,
        mut row: ConversationRow,
        previous: Option<&Message>,
    ) -> StoreResult<()> {
        let (t, c) = (m.tenant_id.as_str(), m.conversation_id.as_str());
        for _ in 0..CAS_ATTEMPTS {
            let Some(counted) = append_counts(&row, m, previous) else { return Ok(()) };
            let values = (
                f64::from(counted.sentiment_sum),
                i64::from(counted.sentiment_count),
                cql_int(counted.sentiment_seq)?,
                encode(&counted.stats)?,
                cql_int(counted.analytics_seq)?,
                t,
                c,
                cql_int(row.sentiment_seq)?,
                row.analytics_seq.map(cql_int).transpose()?,
                row.stats.as_deref(),
            );
            if self.cas(&self.st.count_append, values).await?.applied {
                self.add_counts(&row.conversation, &counted.deltas).await;
                return Ok(());
            }
            match self.conversation_row(t, c).await? {
                Some(current) => row = current,
                None => return Ok(()),
            }
        }
        Err(StoreError::Backend("cql: the conversation's counts kept changing".into()))
    }

    /// Reads a message's delivery for a compare-and-set: the stored text ('' for none) and the
    /// record. `None` if the message does not exist.
    async fn delivery_of(
        &self,
        t: &str,
        c: &str,
        seq: u64,
    ) -> StoreResult<Option<(String, Option<Delivery>)>> {
        let Some(message) = self.message_at(t, c, seq).await? else { return Ok(None) };
        let text = match &message.delivery {
            Some(d) => encode(d)?,
            None => String::new(),
        };
        Ok(Some((text, message.delivery)))
    }

    /// Replaces a message's delivery if it still is `old` (text as stored). `Ok(Some(current))`
    /// when it was not (`current` is `None` if the message is gone).
    async fn swap_delivery(
        &self,
        t: &str,
        c: &str,
        seq: u64,
        old: &str,
        new: &Delivery,
    ) -> StoreResult<Option<Option<(String, Option<Delivery>)>>> {
        let values = (encode(new)?, t, c, self.bucket(seq)?, cql_int(seq)?, old);
        let cas = self.cas(&self.st.set_delivery, values).await?;
        if cas.applied {
            return Ok(None);
        }
        Ok(Some(match cas.text("delivery") {
            None => None,
            Some("") => Some((String::new(), None)),
            Some(text) => Some((text.to_owned(), Some(decode(text)?))),
        }))
    }

    // ---- documents -------------------------------------------------------------------------

    /// Writes a document's record with its bot index entry and its place in the queue. The
    /// queue entry of unfinished work goes in before the record and that of finished work
    /// comes out after it, so a crash never hides unfinished work from a restart (a stale
    /// entry is harmless: the queue is read through the records' status).
    async fn write_document(&self, d: &Document) -> StoreResult<()> {
        let (t, id, bot) = (d.tenant_id.as_str(), d.id.as_str(), d.bot_id.as_str());
        self.run(&self.st.index_document, (t, bot, id)).await?;
        let unfinished = is_unfinished(d);
        if unfinished {
            self.run(&self.st.queue_document, (t, id)).await?;
        }
        self.run(&self.st.put_document, (t, id, bot, encode(d)?)).await?;
        if !unfinished {
            self.run(&self.st.dequeue_document, (t, id)).await?;
        }
        Ok(())
    }

    /// Deletes a document: out of its bot's list first, then chunks, bytes and queue entry,
    /// the record last, so a crash leaves it findable by id and the retry completes it.
    async fn remove_document(&self, t: &str, id: &str) -> StoreResult<bool> {
        let Some(d) = self.record::<Document>(&self.st.get_document, (t, id)).await? else {
            return Ok(false);
        };
        self.run(&self.st.unindex_document, (t, d.bot_id.as_str(), id)).await?;
        self.run(&self.st.delete_chunks, (t, id)).await?;
        self.run(&self.st.delete_content, (t, id)).await?;
        self.run(&self.st.dequeue_document, (t, id)).await?;
        self.run(&self.st.delete_document, (t, id)).await?;
        Ok(true)
    }

    async fn document_ids(&self, t: &str, bot: &str) -> StoreResult<Vec<String>> {
        let ids = self.all::<(String,)>(&self.st.list_documents_by_bot, (t, bot)).await?;
        Ok(ids.into_iter().map(|(id,)| id).collect())
    }

    // ---- channels --------------------------------------------------------------------------

    async fn remove_channel(&self, c: &ChannelConnection) -> StoreResult<()> {
        let (t, bot, id) = (c.tenant_id.as_str(), c.bot_id.as_str(), c.id.as_str());
        self.run(&self.st.unindex_channel, (t, bot, id)).await?;
        self.run(&self.st.delete_channel, (id,)).await?;
        Ok(())
    }

    /// Makes sure the conversation a contact claim names exists: written by whoever claimed
    /// it, or (if that one died or is still at it) from the claim's own copy, which is what
    /// makes the claim the commit point of [`ChannelState::contact_conversation`].
    /// Indexes `subjects` as naming the person in conversation `id`: each key under the
    /// conversation first, so its deletion finds every index row.
    async fn index_subject(
        &self,
        tenant: &TenantId,
        id: &ConversationId,
        subjects: impl Iterator<Item = String>,
    ) -> StoreResult<()> {
        let (t, c) = (tenant.as_str(), id.as_str());
        for subject in subjects {
            self.run(&self.st.index_subject_key, (t, c, subject.as_str())).await?;
            self.run(&self.st.index_subject, (t, subject.as_str(), c)).await?;
        }
        Ok(())
    }

    async fn complete_contact(
        &self,
        connection: &str,
        contact: &str,
        c: &Conversation,
    ) -> StoreResult<Conversation> {
        let (t, id) = (c.tenant_id.as_str(), c.id.as_str());
        if let Some(row) = self.conversation_row(t, id).await? {
            return Ok(row.conversation);
        }
        self.run(&self.st.put_channel_conversation, (t, id, connection, contact)).await?;
        let subject = parla_domain::subjects::contact_key(contact);
        self.index_subject(&c.tenant_id, &c.id, subject.into_iter()).await?;
        match self.insert_conversation(c).await {
            Ok(()) => Ok(c.clone()),
            Err(StoreError::ConversationExists) => match self.conversation_row(t, id).await? {
                Some(row) => Ok(row.conversation),
                None => Err(StoreError::Backend("cql: a contact's conversation vanished".into())),
            },
            Err(e) => Err(e),
        }
    }
}

/// The conversation record and the columns its compare-and-sets compare.
#[derive(Debug, Clone)]
struct ConversationRow {
    /// With its `stats` decoded from the column.
    conversation: Conversation,
    /// The last seq whose sentiment it counts.
    sentiment_seq: u64,
    /// The `stats` column as stored (compared as text); `None` on a conversation created
    /// before analytics (migration 0003).
    stats: Option<String>,
    /// The last seq whose analytics are claimed; `None` before migration 0003.
    analytics_seq: Option<u64>,
}

/// What an append's counting step writes to the conversation row, and the counts it claims.
#[derive(Debug)]
struct AppendCounts {
    sentiment_sum: f32,
    sentiment_count: u32,
    sentiment_seq: u64,
    stats: ConversationStats,
    analytics_seq: u64,
    deltas: Deltas,
}

/// Counts `m` and, if not counted yet, its predecessor `previous` against `row`: their visitor
/// sentiment (messages past `sentiment_seq`) and their analytics (messages past
/// `analytics_seq`, each computed from the stats the one before left). `None` when both are
/// counted already. A conversation from before migration 0003 starts counting with `m`.
fn append_counts(
    row: &ConversationRow,
    m: &Message,
    previous: Option<&Message>,
) -> Option<AppendCounts> {
    let mut at = row.conversation.clone();
    let (mut sentiment_sum, mut sentiment_count) = (at.sentiment_sum, at.sentiment_count);
    let mut sentiment_seq = row.sentiment_seq;
    let counted_upto = row.analytics_seq.unwrap_or(m.seq.saturating_sub(1));
    let mut deltas = Deltas::default();
    for x in previous.into_iter().chain([m]) {
        if let Some(s) = x.sentiment.filter(|_| x.sender == Sender::User && x.seq > sentiment_seq) {
            sentiment_sum += s;
            sentiment_count = sentiment_count.saturating_add(1);
            sentiment_seq = x.seq;
        }
        if x.seq > counted_upto {
            let effect = parla_domain::analytics::on_append(&at, x);
            deltas.add(&at, Some(x), &effect);
            if let Some(stats) = effect.stats {
                at.stats = stats;
            }
        }
    }
    let analytics_seq = counted_upto.max(m.seq);
    if sentiment_seq == row.sentiment_seq && Some(analytics_seq) == row.analytics_seq {
        return None;
    }
    Some(AppendCounts {
        sentiment_sum,
        sentiment_count,
        sentiment_seq,
        stats: at.stats,
        analytics_seq,
        deltas,
    })
}

/// What a lightweight transaction answered: whether it applied and, when not, the columns
/// the cluster returned (the existing row, or the compared columns).
#[derive(Debug)]
pub(crate) struct Cas {
    pub applied: bool,
    columns: HashMap<String, CqlValue>,
}

impl Cas {
    pub(crate) fn from_result(what: &str, result: QueryResult) -> StoreResult<Self> {
        let bad = |e: &dyn std::fmt::Display| StoreError::Backend(format!("cql {what}: {e}"));
        let rows = result.into_rows_result().map_err(|e| bad(&e))?;
        let names: Vec<String> = rows.column_specs().iter().map(|c| c.name().to_owned()).collect();
        let row = rows.maybe_first_row::<Row>().map_err(|e| bad(&e))?;
        let row = row.ok_or_else(|| bad(&"the transaction returned no row"))?;
        let columns: HashMap<String, CqlValue> = names
            .into_iter()
            .zip(row.columns)
            .filter_map(|(name, value)| value.map(|v| (name, v)))
            .collect();
        let applied = columns
            .get("[applied]")
            .and_then(CqlValue::as_boolean)
            .ok_or_else(|| bad(&"the transaction returned no [applied]"))?;
        Ok(Self { applied, columns })
    }

    fn text(&self, column: &str) -> Option<&str> {
        self.columns.get(column).and_then(CqlValue::as_text).map(String::as_str)
    }

    fn bigint(&self, column: &str) -> Option<i64> {
        self.columns.get(column).and_then(CqlValue::as_bigint)
    }

    fn boolean(&self, column: &str) -> Option<bool> {
        self.columns.get(column).and_then(CqlValue::as_boolean)
    }
}

fn fail(s: &Stmt, e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("cql {}: {e}", s.name))
}

/// `s` reading a whole table, a page of [`SCAN_PAGE`] rows at a time.
fn scanning(s: &Stmt) -> Stmt {
    let mut ps = s.ps.clone();
    ps.set_page_size(SCAN_PAGE);
    Stmt { name: s.name, ps }
}

fn encode<T: Serialize + ?Sized>(v: &T) -> StoreResult<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn decode<T: DeserializeOwned>(text: &str) -> StoreResult<T> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// CQL integers are signed.
fn cql_int(v: u64) -> StoreResult<i64> {
    i64::try_from(v).map_err(|_| StoreError::Backend(format!("cql: {v} is out of range")))
}

fn cql_uint(v: i64) -> StoreResult<u64> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative value {v}")))
}

/// A message's two columns: the record without its delivery, and the delivery ('' for none),
/// which changes on its own by compare-and-set.
fn message_columns(m: &Message) -> StoreResult<(String, String)> {
    let delivery = match &m.delivery {
        Some(d) => encode(d)?,
        None => String::new(),
    };
    let data = encode(&Message { delivery: None, ..m.clone() })?;
    Ok((data, delivery))
}

fn decode_message(data: &str, delivery: Option<&str>) -> StoreResult<Message> {
    let mut message: Message = decode(data)?;
    message.delivery = match delivery {
        None | Some("") => None,
        Some(text) => Some(decode(text)?),
    };
    Ok(message)
}

fn is_unfinished(d: &Document) -> bool {
    matches!(d.status, ProcessStatus::Pending | ProcessStatus::Processing)
}

#[async_trait]
impl Catalog for CqlStore {
    async fn put_tenant(&self, tenant: &Tenant) -> StoreResult<()> {
        let sealed = self.sealer().map(|s| sealing::seal_tenant(&*s, tenant));
        let data = encode(sealed.as_ref().unwrap_or(tenant))?;
        self.run(&self.st.put_tenant, (tenant.id.as_str(), data)).await.map(drop)
    }

    async fn get_tenant(&self, id: &TenantId) -> StoreResult<Option<Tenant>> {
        let found: Option<Tenant> = self.record(&self.st.get_tenant, (id.as_str(),)).await?;
        let sealer = self.sealer();
        Ok(found.map(|t| sealing::open_tenant(sealer.as_deref(), t)).transpose()?)
    }

    async fn list_tenants(&self) -> StoreResult<Vec<TenantId>> {
        let rows = self.all::<(String,)>(&scanning(&self.st.scan_tenants), ()).await?;
        Ok(rows.into_iter().map(|(id,)| TenantId::from(id.as_str())).collect())
    }

    /// Claims the bot id for the tenant (LWT), then writes the record. A crash between them
    /// leaves the id claimed and the bot missing; the tenant's retry completes it.
    async fn put_bot(&self, bot: &Bot) -> StoreResult<()> {
        let (t, id) = (bot.tenant_id.as_str(), bot.id.as_str());
        let cas = self.cas(&self.st.claim_bot_id, (id, t)).await?;
        if !cas.applied && cas.text("tenant_id") != Some(t) {
            return Err(StoreError::BotIdTaken);
        }
        self.run(&self.st.put_bot, (t, id, encode(bot)?)).await.map(drop)
    }

    async fn get_bot(&self, tenant: &TenantId, id: &BotId) -> StoreResult<Option<Bot>> {
        self.record(&self.st.get_bot, (tenant.as_str(), id.as_str())).await
    }

    async fn resolve_bot(&self, id: &BotId) -> StoreResult<Option<Bot>> {
        let owner = self.one::<(Option<String>,)>(&self.st.get_bot_owner, (id.as_str(),)).await?;
        match owner {
            Some((Some(tenant),)) => {
                self.record(&self.st.get_bot, (tenant.as_str(), id.as_str())).await
            }
            _ => Ok(None),
        }
    }

    async fn list_bots(&self, tenant: &TenantId) -> StoreResult<Vec<Bot>> {
        self.records(&self.st.list_bots, (tenant.as_str(),)).await
    }

    /// Its intents, documents and channel connections go first, then the id claim, the record
    /// last: a crash leaves the bot listed and the retry completes the deletion.
    async fn delete_bot(&self, tenant: &TenantId, id: &BotId) -> StoreResult<bool> {
        let (t, b) = (tenant.as_str(), id.as_str());
        if self.get_bot(tenant, id).await?.is_none() {
            return Ok(false);
        }
        // First: a crash part-way leaves the tombstone, and the deletion is carried on.
        self.run(&self.st.put_bot_tombstone, (t, b)).await?;
        self.run(&self.st.delete_intents, (t, b)).await?;
        for document in self.document_ids(t, b).await? {
            self.remove_document(t, &document).await?;
        }
        let channels = self.all::<(String,)>(&self.st.list_channels_by_bot, (t, b)).await?;
        for (channel,) in channels {
            match self.record::<ChannelConnection>(&self.st.get_channel, (&channel,)).await? {
                Some(c) if c.tenant_id == *tenant && c.bot_id == *id => {
                    self.remove_channel(&c).await?;
                }
                _ => self.run(&self.st.unindex_channel, (t, b, &channel)).await.map(drop)?,
            }
        }
        self.cas(&self.st.release_bot_id, (b, t)).await?;
        self.run(&self.st.delete_bot, (t, b)).await?;
        Ok(true)
    }

    async fn bot_tombstones(&self) -> StoreResult<Vec<(TenantId, BotId)>> {
        let rows = self.all::<(String, String)>(&self.st.scan_bot_tombstones, ()).await?;
        Ok(rows.into_iter().map(|(t, b)| (TenantId(t), BotId(b))).collect())
    }

    async fn clear_bot_tombstone(&self, tenant: &TenantId, id: &BotId) -> StoreResult<()> {
        self.run(&self.st.clear_bot_tombstone, (tenant.as_str(), id.as_str())).await.map(drop)
    }

    async fn put_intents(
        &self,
        tenant: &TenantId,
        bot: &BotId,
        intents: &[Intent],
    ) -> StoreResult<()> {
        let data = match self.sealer() {
            Some(s) => encode(&sealing::seal_intents(&*s, tenant.as_str(), intents))?,
            None => encode(intents)?,
        };
        self.run(&self.st.put_intents, (tenant.as_str(), bot.as_str(), data)).await.map(drop)
    }

    async fn list_intents(&self, tenant: &TenantId, bot: &BotId) -> StoreResult<Vec<Intent>> {
        let found = self.record(&self.st.get_intents, (tenant.as_str(), bot.as_str())).await?;
        let sealer = self.sealer();
        Ok(sealing::open_intents(sealer.as_deref(), tenant.as_str(), found.unwrap_or_default())?)
    }

    async fn put_canned(&self, canned: &CannedResponse) -> StoreResult<()> {
        let values = (canned.tenant_id.as_str(), canned.id.as_str(), encode(canned)?);
        self.run(&self.st.put_canned, values).await.map(drop)
    }

    async fn list_canned(&self, tenant: &TenantId) -> StoreResult<Vec<CannedResponse>> {
        self.records(&self.st.list_canned, (tenant.as_str(),)).await
    }

    async fn delete_canned(&self, tenant: &TenantId, id: &str) -> StoreResult<bool> {
        let key = (tenant.as_str(), id);
        if self.one::<(String,)>(&self.st.get_canned, key).await?.is_none() {
            return Ok(false);
        }
        self.run(&self.st.delete_canned, key).await?;
        Ok(true)
    }
}

#[async_trait]
impl Conversations for CqlStore {
    async fn create_conversation(&self, conversation: &Conversation) -> StoreResult<()> {
        self.insert_conversation(conversation).await
    }

    async fn get_conversation(
        &self,
        tenant: &TenantId,
        id: &ConversationId,
    ) -> StoreResult<Option<Conversation>> {
        Ok(self.conversation_row(tenant.as_str(), id.as_str()).await?.map(|r| r.conversation))
    }

    /// Everything that hangs off the conversation goes first (its channel contact, index rows,
    /// messages with their idempotency markers, notes, devices, cursor), the record last
    /// (`IF EXISTS`): a crash leaves the conversation in place and the retry completes it.
    async fn delete_conversation(
        &self,
        tenant: &TenantId,
        id: &ConversationId,
    ) -> StoreResult<bool> {
        let (t, c) = (tenant.as_str(), id.as_str());
        let Some(row) = self.conversation_row(t, c).await? else { return Ok(false) };
        let contact = self
            .one::<(Option<String>, Option<String>)>(&self.st.get_channel_conversation, (t, c))
            .await?;
        if let Some((Some(connection), Some(contact))) = contact {
            self.cas(&self.st.release_contact, (&connection, &contact, c)).await?;
        }
        self.run(&self.st.delete_channel_conversation, (t, c)).await?;
        let last = self.last_seq_of(t, c).await?;
        for bucket in 0..=last / self.bucket_size {
            let b = cql_int(bucket)?;
            let from = cql_int(bucket * self.bucket_size)?;
            let rows = self
                .all::<(i64, String, Option<String>)>(
                    &self.st.messages_from,
                    (t, c, b, from, i32::MAX),
                )
                .await?;
            for (_, data, _) in rows {
                let message: Message = decode(&data)?;
                if let Some(cid) = message.client_msg_id.as_deref() {
                    self.run(&self.st.delete_client_id, (t, c, cid)).await?;
                }
            }
            self.run(&self.st.delete_bucket, (t, c, b)).await?;
        }
        self.run(&self.st.delete_notes, (t, c)).await?;
        self.run(&self.st.delete_push_tokens, (t, c)).await?;
        for (subject,) in self.all::<(String,)>(&self.st.subject_keys_of, (t, c)).await? {
            self.run(&self.st.unindex_subject, (t, subject.as_str(), c)).await?;
        }
        self.run(&self.st.delete_subject_keys, (t, c)).await?;
        self.run(&self.st.delete_channel_cursor, (t, c)).await?;
        let deleted = self.cas(&self.st.delete_conversation, (t, c)).await?.applied;
        // The index rows last: until the record is gone its bot's listing must still find it
        // (a deleted bot's purge lists them), and an index row without its record is skipped.
        let bot = row.conversation.bot_id.as_str();
        self.run(&self.st.unindex_conversation_by_bot, (t, bot, c)).await?;
        self.run(&self.st.unindex_conversation_by_tenant, (t, c)).await?;
        self.run(&self.st.unindex_attention, (t, c)).await?;
        Ok(deleted)
    }

    async fn list_conversations(
        &self,
        tenant: &TenantId,
        bot: &BotId,
        before: Option<&ConversationId>,
        limit: usize,
    ) -> StoreResult<Vec<Conversation>> {
        self.list_indexed_conversations(tenant, Some(bot), before, limit).await
    }

    async fn append(&self, message: &Message) -> StoreResult<Appended> {
        Box::pin(self.append_message(message)).await
    }

    async fn message_by_client_id(
        &self,
        tenant: &TenantId,
        conversation: &ConversationId,
        client_msg_id: &str,
    ) -> StoreResult<Option<Message>> {
        let (t, c) = (tenant.as_str(), conversation.as_str());
        let carries = |m: &Message| m.client_msg_id.as_deref() == Some(client_msg_id);
        if let Some(marked) = self.client_marker(t, c, client_msg_id).await?
            && let Some(found) = self.message_at(t, c, marked).await?
            && carries(&found)
        {
            return Ok(Some(found));
        }
        // A marker its writer died before writing: the message is recent (see `append`).
        let last = self.last_seq_of(t, c).await?;
        let tail = self.tail_before(t, c, last.saturating_add(1), TAIL).await?;
        Ok(tail.into_iter().find(|m| carries(m)))
    }

    async fn messages_after(
        &self,
        tenant: &TenantId,
        conversation: &ConversationId,
        after_seq: u64,
        limit: usize,
    ) -> StoreResult<Vec<Message>> {
        let (t, c) = (tenant.as_str(), conversation.as_str());
        let mut out = Vec::new();
        let Some(mut from) = after_seq.checked_add(1) else { return Ok(out) };
        while out.len() < limit {
            let Ok(from_i) = i64::try_from(from) else { break };
            let bucket = from / self.bucket_size;
            let want = i32::try_from(limit - out.len()).unwrap_or(i32::MAX);
            let values = (t, c, cql_int(bucket)?, from_i, want);
            let rows =
                self.all::<(i64, String, Option<String>)>(&self.st.messages_from, values).await?;
            let end = self.bucket_end(bucket);
            let through = rows.last().is_some_and(|(seq, _, _)| u64::try_from(*seq) == Ok(end));
            for (_, data, delivery) in rows {
                out.push(decode_message(&data, delivery.as_deref())?);
            }
            // Seqs have no gaps: a bucket read to its last seq may continue in the next one.
            if !through || end == u64::MAX {
                break;
            }
            from = end + 1;
        }
        out.truncate(limit);
        Ok(out)
    }

    async fn last_seq(&self, tenant: &TenantId, conversation: &ConversationId) -> StoreResult<u64> {
        self.last_seq_of(tenant.as_str(), conversation.as_str()).await
    }

    /// A compare-and-set of the handling with the analytics stats it moves, `IF bot_id = ? AND
    /// stats = ?` as read: the rest of the record (and the sentiment an append may be
    /// counting) is untouched, a deleted conversation is not brought back (its `bot_id` is
    /// null), and the counts the change moves are claimed by it, added by its winner once
    /// (a repeat finds the stats it would set, and moves nothing).
    async fn set_handling(
        &self,
        tenant: &TenantId,
        id: &ConversationId,
        handling: &Handling,
    ) -> StoreResult<bool> {
        let (t, c) = (tenant.as_str(), id.as_str());
        let text = encode(handling)?;
        let Some(mut row) = self.conversation_row(t, c).await? else { return Ok(false) };
        // Indexed before the row says so, unindexed after it no longer does (see migration
        // 0004): a failure in between leaves an extra index row, never a missing one.
        let attention = handling.needs_agent();
        if attention {
            self.run(&self.st.index_attention, (t, c)).await?;
        }
        for _ in 0..CAS_ATTEMPTS {
            let effect = parla_domain::analytics::on_handling(&row.conversation, handling);
            let stats = encode(effect.stats.as_ref().unwrap_or(&row.conversation.stats))?;
            let bot = row.conversation.bot_id.as_str();
            let values = (&text, stats, t, c, bot, row.stats.as_deref());
            if self.cas(&self.st.set_handling, values).await?.applied {
                let mut deltas = Deltas::default();
                deltas.add(&row.conversation, None, &effect);
                self.add_counts(&row.conversation, &deltas).await;
                // Best effort: the change is made, and an index row too many is skipped by
                // readers (they check the row's status), so a failure here must not say the
                // change failed.
                if !attention && let Err(e) = self.run(&self.st.unindex_attention, (t, c)).await {
                    tracing::warn!(error = %e, conversation = c, "an attention index row was left behind");
                }
                return Ok(true);
            }
            match self.conversation_row(t, c).await? {
                Some(current) => row = current,
                None => return Ok(false),
            }
        }
        Err(StoreError::Backend("cql: the conversation's stats kept changing".into()))
    }

    /// `UPDATE ... SET user_data = user_data + ? IF EXISTS`: the map merges server-side, the
    /// row's other columns are untouched, and (an LWT, like every write of this row) a deleted
    /// conversation is not brought back.
    async fn merge_user_data(
        &self,
        tenant: &TenantId,
        id: &ConversationId,
        fields: &BTreeMap<String, String>,
    ) -> StoreResult<bool> {
        let values = (fields, tenant.as_str(), id.as_str());
        let merged = self.cas(&self.st.merge_user_data, values).await?.applied;
        if merged {
            let subjects = parla_domain::subjects::keys_of_fields(fields);
            self.index_subject(tenant, id, subjects.into_iter()).await?;
        }
        Ok(merged)
    }

    async fn user_data(
        &self,
        tenant: &TenantId,
        id: &ConversationId,
    ) -> StoreResult<Option<BTreeMap<String, String>>> {
        type Columns = (Option<String>, Option<BTreeMap<String, String>>);
        let found =
            self.one::<Columns>(&self.st.get_user_data, (tenant.as_str(), id.as_str())).await?;
        Ok(match found {
            Some((Some(_), data)) => Some(data.unwrap_or_default()),
            _ => None,
        })
    }

    async fn add_note(&self, note: &Note) -> StoreResult<bool> {
        let (t, c) = (note.tenant_id.as_str(), note.conversation_id.as_str());
        if self.conversation_row(t, c).await?.is_none() {
            return Ok(false);
        }
        self.run(&self.st.put_note, (t, c, note.id.as_str(), encode(note)?)).await?;
        Ok(true)
    }

    async fn list_notes(&self, tenant: &TenantId, id: &ConversationId) -> StoreResult<Vec<Note>> {
        self.records(&self.st.list_notes, (tenant.as_str(), id.as_str())).await
    }

    async fn last_message(
        &self,
        tenant: &TenantId,
        id: &ConversationId,
    ) -> StoreResult<Option<Message>> {
        let (t, c) = (tenant.as_str(), id.as_str());
        match self.last_seq_of(t, c).await? {
            0 => Ok(None),
            last => self.message_at(t, c, last).await,
        }
    }
}

#[async_trait]
impl InboxIndex for CqlStore {
    async fn list_tenant_conversations(
        &self,
        tenant: &TenantId,
        before: Option<&ConversationId>,
        limit: usize,
    ) -> StoreResult<Vec<Conversation>> {
        self.list_indexed_conversations(tenant, None, before, limit).await
    }

    /// The index's rows checked against each conversation's own row: an extra index row (a
    /// `set_handling` cut short, see migration 0004) is skipped, not shown.
    async fn attention_conversations(
        &self,
        tenant: &TenantId,
        after: Option<&ConversationId>,
        limit: usize,
    ) -> StoreResult<Vec<Conversation>> {
        /// Rows read at once: a page is read in a few round trips, not one per conversation.
        const AT_ONCE: usize = 16;
        let t = tenant.as_str();
        let cap = i32::try_from(limit).unwrap_or(i32::MAX);
        let mut cursor = after.map(|c| c.as_str().to_owned());
        let mut out = Vec::new();
        // Index rows whose conversation no longer needs an agent are skipped, so a short page
        // is read on until `limit` are found or the index ends (a caller pages by the last id).
        loop {
            let ids = match cursor.as_deref() {
                Some(after) => {
                    self.all::<(String,)>(&self.st.list_attention_after, (t, after, cap)).await?
                }
                None => self.all::<(String,)>(&self.st.list_attention, (t, cap)).await?,
            };
            let end = ids.len() < limit;
            cursor = ids.last().map(|(c,)| c.clone());
            let rows: Vec<_> = stream::iter(ids)
                .map(|(c,)| async move { self.conversation_row(t, &c).await })
                .buffered(AT_ONCE)
                .try_collect()
                .await?;
            let found = rows.into_iter().flatten().map(|row| row.conversation);
            out.extend(found.filter(|c| c.handling.needs_agent()));
            if end || out.len() >= limit {
                out.truncate(limit);
                return Ok(out);
            }
        }
    }
}

#[async_trait]
impl Accounts for CqlStore {
    /// Claims the email (LWT), then writes the account. A claim naming an account that does not
    /// exist is the creator's retry (same account: completed), an account being created
    /// (taken), or left by a creator that died (taken over once older than a minute).
    async fn create_account(&self, account: &Account) -> StoreResult<()> {
        let mut account = self.sealed_account(account);
        account.email = account.email.to_lowercase();
        let (email, t, id) =
            (account.email.as_str(), account.tenant_id.as_str(), account.id.as_str());
        let now = parla_domain::model::now_ms();
        let cas = self.cas(&self.st.claim_email, (email, t, id, now)).await?;
        if !cas.applied {
            let (owner_t, owner_id) =
                (cas.text("tenant_id").unwrap_or(""), cas.text("account_id").unwrap_or(""));
            if (owner_t, owner_id) != (t, id) {
                let exists = self
                    .one::<(Option<String>,)>(&self.st.get_account, (owner_t, owner_id))
                    .await?
                    .is_some();
                let fresh = now - cas.bigint("claimed_at").unwrap_or(0) < ORPHAN_CLAIM_MS;
                if exists || fresh {
                    return Err(StoreError::EmailTaken);
                }
                let values = (t, id, now, email, owner_t, owner_id);
                if !self.cas(&self.st.take_over_email, values).await?.applied {
                    return Err(StoreError::EmailTaken);
                }
            }
        }
        self.insert_account(&account).await
    }

    async fn account_by_email(&self, email: &str) -> StoreResult<Option<Account>> {
        let email = email.to_lowercase();
        let owner = self.one::<(Option<String>, Option<String>)>(&self.st.get_email, (&email,));
        let Some((Some(t), Some(id))) = owner.await? else { return Ok(None) };
        let account = self.account_row(&t, &id).await?.map(|(account, _)| account);
        account.filter(|a| a.email == email).map(|a| self.opened_account(a)).transpose()
    }

    async fn get_account(&self, tenant: &TenantId, id: &AccountId) -> StoreResult<Option<Account>> {
        let found = self.account_row(tenant.as_str(), id.as_str()).await?;
        found.map(|(account, _)| self.opened_account(account)).transpose()
    }

    /// `UPDATE ... IF version = ?` (see `accounts.rs`).
    async fn update_account(&self, account: &Account) -> StoreResult<()> {
        self.update_account_cas(&self.sealed_account(account)).await
    }

    async fn list_accounts(&self, tenant: &TenantId) -> StoreResult<Vec<Account>> {
        let accounts = self.account_rows(tenant.as_str()).await?.0;
        accounts.into_iter().map(|a| self.opened_account(a)).collect()
    }

    /// The record first (`IF version = ?` as read), then the email (see `accounts.rs`).
    async fn delete_account(&self, tenant: &TenantId, id: &AccountId) -> StoreResult<bool> {
        self.remove_account(tenant.as_str(), id.as_str(), None).await
    }

    async fn delete_account_if_unchanged(&self, account: &Account) -> StoreResult<()> {
        let (t, id) = (account.tenant_id.as_str(), account.id.as_str());
        match self.remove_account(t, id, Some(account.version)).await? {
            true => Ok(()),
            false => Err(StoreError::Conflict),
        }
    }

    async fn put_invitation(&self, invitation: &Invitation) -> StoreResult<()> {
        self.insert_invitation(invitation).await
    }

    async fn list_invitations(&self, tenant: &TenantId) -> StoreResult<Vec<Invitation>> {
        self.invitations(tenant.as_str()).await
    }

    async fn delete_invitation(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> StoreResult<Option<Invitation>> {
        self.revoke_invitation(tenant.as_str(), id).await
    }

    async fn take_invitation(&self, digest: &str) -> StoreResult<Option<Invitation>> {
        self.take_invitation_by_digest(digest).await
    }

    async fn invitation_by_digest(&self, digest: &str) -> StoreResult<Option<Invitation>> {
        self.invitation_of_digest(digest).await
    }
}

#[async_trait]
impl Credentials for CqlStore {
    /// The two index rows first, so a stored token is always found by its family and its
    /// account when they are revoked.
    async fn put_refresh_token(&self, token: &RefreshToken) -> StoreResult<()> {
        let (digest, t, a) =
            (token.digest.as_str(), token.tenant_id.as_str(), token.account_id.as_str());
        self.run(&self.st.put_refresh_family, (token.family.as_str(), digest)).await?;
        self.run(&self.st.put_refresh_by_account, (t, a, digest)).await?;
        let data = encode(token)?;
        for _ in 0..CAS_ATTEMPTS {
            let cas = self.cas(&self.st.insert_refresh, (digest, &data, token.used)).await?;
            if cas.applied {
                return Ok(());
            }
            let cas = self.cas(&self.st.replace_refresh, (&data, token.used, digest)).await?;
            if cas.applied {
                return Ok(());
            }
        }
        Err(StoreError::Backend("cql: a refresh token kept changing".into()))
    }

    /// `UPDATE ... IF used = false`: of two concurrent uses, exactly one applies.
    async fn use_refresh_token(&self, digest: &str) -> StoreResult<Option<RefreshToken>> {
        let found = self.one::<(Option<String>, Option<bool>)>(&self.st.get_refresh, (digest,));
        let Some((Some(data), _)) = found.await? else { return Ok(None) };
        let token: RefreshToken = decode(&data)?;
        let cas = self.cas(&self.st.use_refresh, (digest,)).await?;
        if cas.applied {
            return Ok(Some(RefreshToken { used: false, ..token }));
        }
        // Not applied: used already, or revoked meanwhile (no row, no `used`).
        Ok(cas.boolean("used").map(|_| RefreshToken { used: true, ..token }))
    }

    async fn revoke_refresh_family(&self, family: &str) -> StoreResult<()> {
        let digests = self.all::<(String,)>(&self.st.list_refresh_family, (family,)).await?;
        for (digest,) in &digests {
            self.cas(&self.st.delete_refresh, (digest,)).await?;
        }
        self.run(&self.st.delete_refresh_family, (family,)).await.map(drop)
    }

    async fn revoke_account_sessions(
        &self,
        tenant: &TenantId,
        account: &AccountId,
    ) -> StoreResult<()> {
        let (t, a) = (tenant.as_str(), account.as_str());
        let digests = self.all::<(String,)>(&self.st.list_refresh_by_account, (t, a)).await?;
        for (digest,) in &digests {
            self.cas(&self.st.delete_refresh, (digest,)).await?;
            self.run(&self.st.delete_refresh_by_account, (t, a, digest)).await?;
        }
        Ok(())
    }

    /// The digest index after the record: a crash leaves a key that authenticates nothing
    /// yet, and the retry completes it.
    async fn put_api_key(&self, key: &ApiKey) -> StoreResult<()> {
        let (t, id) = (key.tenant_id.as_str(), key.id.as_str());
        self.put_api_key_row(key).await?;
        self.run(&self.st.put_api_key_digest, (key.digest.as_str(), t, id)).await.map(drop)
    }

    async fn api_key_by_digest(&self, digest: &str) -> StoreResult<Option<ApiKey>> {
        let owner =
            self.one::<(Option<String>, Option<String>)>(&self.st.get_api_key_digest, (digest,));
        let Some((Some(t), Some(id))) = owner.await? else { return Ok(None) };
        let key = self.api_key_row(&t, &id).await?;
        // A key whose digest changed since leaves a stale index row: it must not match.
        Ok(key.filter(|k| k.digest == digest))
    }

    async fn list_api_keys(&self, tenant: &TenantId) -> StoreResult<Vec<ApiKey>> {
        self.api_key_rows(tenant.as_str()).await
    }

    async fn put_one_time_token(&self, token: &OneTimeToken) -> StoreResult<()> {
        let (digest, data) = (token.digest.as_str(), encode(token)?);
        for _ in 0..CAS_ATTEMPTS {
            if self.cas(&self.st.insert_one_time, (digest, &data)).await?.applied {
                return Ok(());
            }
            if self.cas(&self.st.replace_one_time, (&data, digest)).await?.applied {
                return Ok(());
            }
        }
        Err(StoreError::Backend("cql: a one-time token kept changing".into()))
    }

    /// `DELETE ... IF EXISTS`: of two concurrent takes, exactly one applies.
    async fn take_one_time_token(&self, digest: &str) -> StoreResult<Option<OneTimeToken>> {
        let Some(token) = self.record(&self.st.get_one_time, (digest,)).await? else {
            return Ok(None);
        };
        Ok(self.cas(&self.st.take_one_time, (digest,)).await?.applied.then_some(token))
    }

    async fn revoke_api_key(&self, tenant: &TenantId, id: &str) -> StoreResult<bool> {
        self.revoke_key(tenant.as_str(), id).await
    }

    async fn touch_api_key(&self, tenant: &TenantId, id: &str, at: i64) -> StoreResult<()> {
        self.touch_key(tenant.as_str(), id, at).await
    }

    async fn one_time_token_by_digest(&self, digest: &str) -> StoreResult<Option<OneTimeToken>> {
        self.record(&self.st.get_one_time, (digest,)).await
    }
}

#[async_trait]
impl Connections for CqlStore {
    /// The bot's index row first, then the record: listings check the record's bot, so a
    /// crash (or a connection moved to another bot) leaves nothing wrong in a list.
    async fn put_channel(&self, channel: &ChannelConnection) -> StoreResult<()> {
        let (t, bot, id) =
            (channel.tenant_id.as_str(), channel.bot_id.as_str(), channel.id.as_str());
        self.run(&self.st.index_channel, (t, bot, id)).await?;
        self.run(&self.st.put_channel, (id, t, bot, encode(channel)?)).await.map(drop)
    }

    async fn channel_by_id(&self, id: &str) -> StoreResult<Option<ChannelConnection>> {
        self.record(&self.st.get_channel, (id,)).await
    }

    async fn list_channels(
        &self,
        tenant: &TenantId,
        bot: &BotId,
    ) -> StoreResult<Vec<ChannelConnection>> {
        let key = (tenant.as_str(), bot.as_str());
        let ids = self.all::<(String,)>(&self.st.list_channels_by_bot, key).await?;
        let found: Vec<Option<ChannelConnection>> = stream::iter(ids)
            .map(|(id,)| async move { self.channel_by_id(&id).await })
            .buffered(FETCH_CONCURRENCY)
            .try_collect()
            .await?;
        Ok(found
            .into_iter()
            .flatten()
            .filter(|c| c.tenant_id == *tenant && c.bot_id == *bot)
            .collect())
    }

    async fn delete_channel(&self, tenant: &TenantId, id: &str) -> StoreResult<bool> {
        match self.channel_by_id(id).await? {
            Some(c) if c.tenant_id == *tenant => {
                self.remove_channel(&c).await?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn all_channels(&self) -> StoreResult<Vec<ChannelConnection>> {
        self.records(&scanning(&self.st.scan_channels), ()).await
    }
}

#[async_trait]
impl ChannelState for CqlStore {
    /// The claim (connection, contact) -> conversation, `IF NOT EXISTS`, is the commit point:
    /// of two concurrent first messages one claim applies and both get its conversation. The
    /// claim carries the conversation it names, so whoever finds the conversation missing
    /// (the claimer died, or is still writing it) creates it from there. Deleting the
    /// conversation releases the claim first, so a missing conversation never means a
    /// deleted one.
    async fn contact_conversation(
        &self,
        connection: &str,
        contact: &str,
        fresh: &Conversation,
    ) -> StoreResult<Conversation> {
        // The common case, every message of a known contact: a plain read, no transaction.
        type Columns = (Option<String>, Option<String>, Option<String>);
        if let Some((Some(t), Some(id), _)) =
            self.one::<Columns>(&self.st.get_contact, (connection, contact)).await?
            && let Some(row) = self.conversation_row(&t, &id).await?
        {
            return Ok(row.conversation);
        }
        let values =
            (connection, contact, fresh.tenant_id.as_str(), fresh.id.as_str(), encode(fresh)?);
        let cas = self.cas(&self.st.claim_contact, values).await?;
        let claimed = if cas.applied {
            fresh.clone()
        } else {
            match cas.text("data") {
                Some(data) => decode(data)?,
                None => return Err(StoreError::Corrupt("a channel contact without data".into())),
            }
        };
        self.complete_contact(connection, contact, &claimed).await
    }

    async fn find_contact_conversation(
        &self,
        tenant: &TenantId,
        connection: &str,
        contact: &str,
    ) -> StoreResult<Option<Conversation>> {
        type Columns = (Option<String>, Option<String>, Option<String>);
        let found = self.one::<Columns>(&self.st.get_contact, (connection, contact)).await?;
        let Some((Some(t), Some(id), _)) = found else { return Ok(None) };
        if t != tenant.as_str() {
            return Ok(None);
        }
        Ok(self.conversation_row(&t, &id).await?.map(|r| r.conversation))
    }

    async fn conversation_contact(
        &self,
        tenant: &TenantId,
        id: &ConversationId,
    ) -> StoreResult<Option<(String, String)>> {
        let key = (tenant.as_str(), id.as_str());
        let found = self
            .one::<(Option<String>, Option<String>)>(&self.st.get_channel_conversation, key)
            .await?;
        Ok(match found {
            Some((Some(connection), Some(contact))) => Some((connection, contact)),
            _ => None,
        })
    }

    async fn channel_conversations(&self, tenant: &TenantId) -> StoreResult<Vec<ConversationId>> {
        let ids =
            self.all::<(String,)>(&self.st.list_channel_conversations, (tenant.as_str(),)).await?;
        Ok(ids.into_iter().map(|(id,)| ConversationId(id)).collect())
    }

    /// The provider ids are indexed first (a report arriving meanwhile finds the message and
    /// starts its delivery record itself), then the record is merged by compare-and-set.
    async fn set_delivery(
        &self,
        tenant: &TenantId,
        id: &ConversationId,
        seq: u64,
        connection: &str,
        delivery: &Delivery,
    ) -> StoreResult<bool> {
        let (t, c) = (tenant.as_str(), id.as_str());
        let Some(mut current) = self.delivery_of(t, c, seq).await? else { return Ok(false) };
        let seq_i = cql_int(seq)?;
        for provider_id in &delivery.provider_ids {
            let values = (connection, provider_id.as_str(), t, c, seq_i);
            self.run(&self.st.put_provider_id, values).await?;
        }
        for _ in 0..CAS_ATTEMPTS {
            let (old, known) = current;
            let merged = Delivery::merged(known, delivery);
            match self.swap_delivery(t, c, seq, &old, &merged).await? {
                None => return Ok(true),
                Some(None) => return Ok(false),
                Some(Some(now)) => current = now,
            }
        }
        Err(StoreError::Backend("cql: a message's delivery kept changing".into()))
    }

    /// A compare-and-set loop on the message's delivery column: the status only ever moves
    /// forward, whatever order concurrent reports arrive in.
    async fn advance_delivery(
        &self,
        connection: &str,
        provider_id: &str,
        status: DeliveryStatus,
        error: Option<String>,
    ) -> StoreResult<Option<(TenantId, ConversationId, u64)>> {
        type Columns = (Option<String>, Option<String>, Option<i64>);
        let found = self.one::<Columns>(&self.st.get_provider_id, (connection, provider_id));
        let Some((Some(t), Some(c), Some(seq))) = found.await? else { return Ok(None) };
        let seq = cql_uint(seq)?;
        let Some(mut current) = self.delivery_of(&t, &c, seq).await? else { return Ok(None) };
        for _ in 0..CAS_ATTEMPTS {
            let (old, known) = current;
            let now = parla_domain::model::now_ms();
            let mut delivery = known.unwrap_or_else(|| Delivery {
                status: DeliveryStatus::Sent,
                provider_ids: vec![provider_id.to_owned()],
                error: None,
                updated_at: now,
            });
            if status <= delivery.status {
                return Ok(None);
            }
            delivery.status = status;
            delivery.error = error.clone().or(delivery.error.take());
            delivery.updated_at = now;
            match self.swap_delivery(&t, &c, seq, &old, &delivery).await? {
                None => return Ok(Some((TenantId(t), ConversationId(c), seq))),
                Some(None) => return Ok(None),
                Some(Some(latest)) => current = latest,
            }
        }
        Err(StoreError::Backend("cql: a message's delivery kept changing".into()))
    }

    async fn add_push_token(
        &self,
        tenant: &TenantId,
        id: &ConversationId,
        token: &str,
    ) -> StoreResult<()> {
        let (t, c) = (tenant.as_str(), id.as_str());
        self.run(&self.st.put_push_token, (t, c, token, parla_domain::model::now_ms())).await?;
        let mut all = self.all::<(String, Option<i64>)>(&self.st.list_push_tokens, (t, c)).await?;
        all.sort_by(|(a, at), (b, bt)| (at, a).cmp(&(bt, b)));
        let excess = all.len().saturating_sub(MAX_PUSH_TOKENS);
        for (oldest, _) in all.into_iter().take(excess) {
            self.run(&self.st.delete_push_token, (t, c, &oldest)).await?;
        }
        Ok(())
    }

    async fn remove_push_token(
        &self,
        tenant: &TenantId,
        id: &ConversationId,
        token: &str,
    ) -> StoreResult<()> {
        let values = (tenant.as_str(), id.as_str(), token);
        self.run(&self.st.delete_push_token, values).await.map(drop)
    }

    async fn push_tokens(
        &self,
        tenant: &TenantId,
        id: &ConversationId,
    ) -> StoreResult<Vec<String>> {
        let key = (tenant.as_str(), id.as_str());
        let all = self.all::<(String, Option<i64>)>(&self.st.list_push_tokens, key).await?;
        Ok(all.into_iter().map(|(token, _)| token).collect())
    }

    async fn set_opted_out(&self, connection: &str, contact: &str, out: bool) -> StoreResult<()> {
        let s = if out { &self.st.put_opt_out } else { &self.st.delete_opt_out };
        self.run(s, (connection, contact)).await.map(drop)
    }

    async fn opted_out(&self, connection: &str, contact: &str) -> StoreResult<bool> {
        Ok(self.one::<(String,)>(&self.st.get_opt_out, (connection, contact)).await?.is_some())
    }

    async fn channel_cursor(&self, tenant: &TenantId, id: &ConversationId) -> StoreResult<u64> {
        let key = (tenant.as_str(), id.as_str());
        match self.one::<(Option<i64>,)>(&self.st.get_channel_cursor, key).await? {
            Some((Some(seq),)) => cql_uint(seq),
            _ => Ok(0),
        }
    }

    async fn set_channel_cursor(
        &self,
        tenant: &TenantId,
        id: &ConversationId,
        seq: u64,
    ) -> StoreResult<()> {
        let values = (tenant.as_str(), id.as_str(), cql_int(seq)?);
        self.run(&self.st.set_channel_cursor, values).await.map(drop)
    }
}

#[async_trait]
impl Documents for CqlStore {
    /// The bytes first (in parts; part 0 always, so empty content still reads back as
    /// empty), then the record: a new document is invisible until complete.
    async fn put_document(&self, document: &Document, content: Option<&[u8]>) -> StoreResult<()> {
        if let Some(content) = content {
            let (t, id) = (document.tenant_id.as_str(), document.id.as_str());
            let mut parts = 0i32;
            for (part, bytes) in content.chunks(CONTENT_PART).enumerate() {
                let part = i32::try_from(part)
                    .map_err(|_| StoreError::Backend("cql: document too large".into()))?;
                self.run(&self.st.put_content_part, (t, id, part, bytes)).await?;
                parts = part + 1;
            }
            if parts == 0 {
                self.run(&self.st.put_content_part, (t, id, 0i32, &[0u8; 0][..])).await?;
                parts = 1;
            }
            self.run(&self.st.trim_content, (t, id, parts)).await?;
        }
        self.write_document(document).await
    }

    async fn get_document(&self, tenant: &TenantId, id: &str) -> StoreResult<Option<Document>> {
        self.record(&self.st.get_document, (tenant.as_str(), id)).await
    }

    async fn list_documents(&self, tenant: &TenantId, bot: &BotId) -> StoreResult<Vec<Document>> {
        let ids = self.document_ids(tenant.as_str(), bot.as_str()).await?;
        let found: Vec<Option<Document>> = stream::iter(ids)
            .map(|id| async move { self.get_document(tenant, &id).await })
            .buffered(FETCH_CONCURRENCY)
            .try_collect()
            .await?;
        Ok(found.into_iter().flatten().filter(|d| d.bot_id == *bot).collect())
    }

    async fn document_content(&self, tenant: &TenantId, id: &str) -> StoreResult<Option<Vec<u8>>> {
        let parts = self.all::<(Option<Vec<u8>>,)>(&self.st.get_content, (tenant.as_str(), id));
        let parts = parts.await?;
        if parts.is_empty() {
            return Ok(None);
        }
        Ok(Some(parts.into_iter().flat_map(|(bytes,)| bytes.unwrap_or_default()).collect()))
    }

    /// The chunks are replaced by one single-partition batch (atomic and isolated: a reader
    /// sees the old set or the new one): upserts of the new positions and a range deletion of
    /// the positions past them. Then the record: a crash in between leaves the document
    /// PROCESSING, so a restart processes it again.
    async fn put_chunks(&self, document: &Document, chunks: &[Chunk]) -> StoreResult<()> {
        let (t, id) = (document.tenant_id.as_str(), document.id.as_str());
        let mut batch = Batch::new(BatchType::Logged);
        let mut values: Vec<Vec<CqlValue>> = Vec::new();
        let mut bytes = 0;
        let text = |s: &str| CqlValue::Text(s.to_owned());
        for chunk in chunks {
            let position = i32::try_from(chunk.position)
                .map_err(|_| StoreError::Backend("cql: chunk position out of range".into()))?;
            let data = encode(chunk)?;
            bytes += data.len();
            batch.append_statement(self.st.put_chunk.ps.clone());
            values.push(vec![text(t), text(id), CqlValue::Int(position), CqlValue::Text(data)]);
            if bytes >= CHUNK_BATCH_BYTES {
                // A very large document: this part of its chunks goes in a batch of its own.
                self.session
                    .batch(&batch, &values)
                    .await
                    .map_err(|e| fail(&self.st.put_chunk, e))?;
                (batch, values, bytes) = (Batch::new(BatchType::Logged), Vec::new(), 0);
            }
        }
        let count = i32::try_from(chunks.len())
            .map_err(|_| StoreError::Backend("cql: too many chunks".into()))?;
        batch.append_statement(self.st.trim_chunks.ps.clone());
        values.push(vec![text(t), text(id), CqlValue::Int(count)]);
        self.session.batch(&batch, &values).await.map_err(|e| fail(&self.st.put_chunk, e))?;
        self.write_document(document).await
    }

    async fn list_chunks(&self, tenant: &TenantId, bot: &BotId) -> StoreResult<Vec<Chunk>> {
        let t = tenant.as_str();
        let ids = self.document_ids(t, bot.as_str()).await?;
        let per_document: Vec<Vec<Chunk>> = stream::iter(ids)
            .map(|id| async move { self.records(&self.st.list_chunks, (t, id)).await })
            .buffered(FETCH_CONCURRENCY)
            .try_collect()
            .await?;
        Ok(per_document.into_iter().flatten().collect())
    }

    async fn delete_document(&self, tenant: &TenantId, id: &str) -> StoreResult<bool> {
        self.remove_document(tenant.as_str(), id).await
    }

    /// A scan of the queue (small: only unfinished work), read through the records' status.
    async fn unfinished_documents(&self) -> StoreResult<Vec<Document>> {
        let scan = scanning(&self.st.scan_document_queue);
        let queued = self.all::<(String, String)>(&scan, ()).await?;
        let found: Vec<Option<Document>> = stream::iter(queued)
            .map(|(t, id)| async move { self.record(&self.st.get_document, (t, id)).await })
            .buffered(FETCH_CONCURRENCY)
            .try_collect()
            .await?;
        Ok(found.into_iter().flatten().filter(is_unfinished).collect())
    }
}

#[async_trait]
impl Analytics for CqlStore {
    /// One partition per UTC day of the range, read concurrently; a range of more than
    /// `analytics::MAX_RANGE_DAYS` (400) days keeps its newest (see there).
    async fn analytics(
        &self,
        tenant: &TenantId,
        from_ms: i64,
        to_ms: i64,
    ) -> StoreResult<Vec<parla_domain::analytics::CounterRow>> {
        self.read_analytics(tenant, from_ms, to_ms).await
    }

    /// As [`Analytics::analytics`], from `analytics_intents`.
    async fn intent_counts(
        &self,
        tenant: &TenantId,
        from_ms: i64,
        to_ms: i64,
    ) -> StoreResult<Vec<parla_domain::analytics::IntentRow>> {
        self.read_intent_counts(tenant, from_ms, to_ms).await
    }

    /// The index `analytics_unmatched`, newest day first, read through to the messages.
    async fn unmatched_messages(
        &self,
        tenant: &TenantId,
        bot: Option<&BotId>,
        from_ms: i64,
        to_ms: i64,
        limit: usize,
    ) -> StoreResult<Vec<(BotId, Message)>> {
        self.read_unmatched(tenant, bot, from_ms, to_ms, limit).await
    }

    /// Deletes the day partitions before `before_ms`'s day that reads can reach (the last
    /// `MAX_RANGE_DAYS`), and the rows of that day before it; the count is not known (0).
    async fn forget_unmatched(&self, tenant: &TenantId, before_ms: i64) -> StoreResult<u64> {
        self.forget_unmatched_rows(tenant, before_ms).await.map(|()| 0)
    }
}

#[async_trait]
impl TokenUsage for CqlStore {
    /// A counter: concurrent adds never lose one another and never contend. The total read
    /// back includes this add (and maybe a concurrent one). A counter add is not idempotent,
    /// so the driver does not retry it after a timeout; a timed-out add may or may not count.
    async fn add_token_usage(
        &self,
        tenant: &TenantId,
        month: &str,
        tokens: u64,
    ) -> StoreResult<u64> {
        let delta = Counter(i64::try_from(tokens).unwrap_or(i64::MAX));
        self.run(&self.st.add_token_usage, (delta, tenant.as_str(), month)).await?;
        self.token_usage(tenant, month).await
    }

    async fn token_usage(&self, tenant: &TenantId, month: &str) -> StoreResult<u64> {
        let found =
            self.one::<(Option<Counter>,)>(&self.st.get_token_usage, (tenant.as_str(), month));
        Ok(found.await?.and_then(|(c,)| c).map_or(0, |Counter(n)| u64::try_from(n).unwrap_or(0)))
    }
}

#[async_trait]
impl Subjects for CqlStore {
    async fn subject_conversations(
        &self,
        tenant: &TenantId,
        subject: &str,
    ) -> StoreResult<Vec<ConversationId>> {
        let rows = self
            .all::<(String,)>(&self.st.subject_conversations, (tenant.as_str(), subject))
            .await?;
        Ok(rows.into_iter().map(|(c,)| ConversationId::from(c.as_str())).collect())
    }

    /// Deleted rows are tombstones until compaction drops them after `gc_grace_seconds`
    /// (docs/deploy.md): nothing this node can speed up safely.
    async fn reclaim_deleted(&self) -> StoreResult<()> {
        Ok(())
    }
}

#[async_trait]
impl Sealing for CqlStore {
    fn use_sealer(&self, sealer: Arc<dyn Sealer>) {
        *self.sealer.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(sealer);
    }

    async fn seal_check(&self) -> StoreResult<Option<String>> {
        let found = self.one::<(Option<String>,)>(&self.st.get_meta, ("seal_check",)).await?;
        Ok(found.and_then(|(value,)| value))
    }

    async fn put_seal_check(&self, sealed: &str) -> StoreResult<()> {
        self.run(&self.st.put_meta, ("seal_check", sealed)).await.map(drop)
    }

    /// Each record rewritten with `UPDATE … IF data = <as read>`: a record changed meanwhile
    /// is left for the next pass (its writer sealed it under the current key anyway).
    async fn reseal_all(&self) -> StoreResult<sealing::Resealed> {
        use parla_domain::sealing::SealError;
        let Some(sealer) = self.sealer() else { return Ok(sealing::Resealed::default()) };
        let sealer = &*sealer;
        let mut done = sealing::Resealed::default();
        // A record's new text if it is to be rewritten; one that does not open is counted.
        fn tally<T: Serialize>(
            outcome: Result<Option<T>, SealError>,
            done: &mut sealing::Resealed,
        ) -> StoreResult<Option<String>> {
            match outcome {
                Ok(fresh) => fresh.map(|record| encode(&record)).transpose(),
                Err(e) => {
                    tracing::warn!(error = %e, "a secret that does not open is left as it is");
                    done.unreadable += 1;
                    Ok(None)
                }
            }
        }
        type Two = (Option<String>, Option<String>);
        for (id, data) in self.all::<Two>(&scanning(&self.st.scan_tenant_rows), ()).await? {
            let (Some(id), Some(data)) = (id, data) else { continue };
            let fresh = sealing::reseal_tenant(sealer, &decode(&data)?);
            if let Some(fresh) = tally(fresh, &mut done)?
                && self.cas(&self.st.reseal_tenant, (fresh, &id, &data)).await?.applied
            {
                done.workspaces += 1;
            }
        }
        type Three = (Option<String>, Option<String>, Option<String>);
        for (t, id, data) in self.all::<Three>(&scanning(&self.st.scan_account_rows), ()).await? {
            let (Some(t), Some(id), Some(data)) = (t, id, data) else { continue };
            let fresh = sealing::reseal_account(sealer, &decode(&data)?);
            if let Some(fresh) = tally(fresh, &mut done)?
                && self.cas(&self.st.reseal_account, (fresh, &t, &id, &data)).await?.applied
            {
                done.accounts += 1;
            }
        }
        for (t, bot, data) in self.all::<Three>(&scanning(&self.st.scan_intent_rows), ()).await? {
            let (Some(t), Some(bot), Some(data)) = (t, bot, data) else { continue };
            let intents: Vec<Intent> = decode(&data)?;
            let fresh = sealing::reseal_intents(sealer, &t, &intents);
            if let Some(fresh) = tally(fresh, &mut done)?
                && self.cas(&self.st.reseal_intents, (fresh, &t, &bot, &data)).await?.applied
            {
                done.intent_sets += 1;
            }
        }
        for (id, data) in self.all::<Two>(&scanning(&self.st.scan_channel_rows), ()).await? {
            let (Some(id), Some(data)) = (id, data) else { continue };
            let fresh = sealing::reseal_connection(sealer, &decode(&data)?);
            if let Some(fresh) = tally(fresh, &mut done)?
                && self.cas(&self.st.reseal_channel, (fresh, &id, &data)).await?.applied
            {
                done.connections += 1;
            }
        }
        Ok(done)
    }
}

#[async_trait]
impl AuditLog for CqlStore {
    async fn append_audit(&self, entry: &parla_domain::audit::AuditEntry) -> StoreResult<()> {
        let values = (entry.tenant_id.as_str(), entry.id.as_str(), encode(entry)?);
        self.cas(&self.st.append_audit, values).await?;
        Ok(())
    }

    async fn list_audit(
        &self,
        tenant: &TenantId,
        before: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<parla_domain::audit::AuditEntry>> {
        let limit = i32::try_from(limit).unwrap_or(i32::MAX);
        let rows = match before {
            Some(cursor) => {
                let values = (tenant.as_str(), cursor, limit);
                self.all::<(String,)>(&self.st.list_audit_before, values).await?
            }
            None => self.all::<(String,)>(&self.st.list_audit, (tenant.as_str(), limit)).await?,
        };
        rows.iter().map(|(data,)| decode(data)).collect()
    }
}
