//! The analytics of [`parla_domain::analytics`] kept in CQL: counter tables, and the claims that make
//! each write count once.
//!
//! # Counted once: claim, then add
//! The aggregates are Cassandra counters (`analytics_counters`, `analytics_intents`):
//! conversations of one tenant, bot and hour add to the same row concurrently without any Paxos
//! round. A counter add is not idempotent (adding twice counts twice, and the driver does not
//! retry it after a timeout), so a count is first *claimed* by a lightweight transaction only
//! one writer can win, and then added by that writer alone, once:
//! - a new conversation: the `INSERT ... IF NOT EXISTS` of its row;
//! - a message: the compare-and-set that moves the conversation's `analytics_seq` past it,
//!   `IF sentiment_seq = ? AND analytics_seq = ? AND stats = ?` as read (the same LWT counts
//!   its sentiment and stores the conversation's new `stats`): a retried or raced append of
//!   the same message finds it counted already (see `CqlStore::count_append`);
//! - a handling change: the compare-and-set of the handling with the `stats` it moves,
//!   `IF stats = ?` as read, so a repeat computes no change.
//!
//! Every effect is computed by the rules of [`parla_domain::analytics`] from the `stats` its claim
//! compares, so two writers never both count a first response, a handover, a resolution.
//!
//! # What can be lost (an undercount, never a double count)
//! - A process that dies after a claim and before its counter batch lands loses that write's
//!   counts, and so does a counter batch that fails or times out (it may or may not have
//!   applied: it is logged, never retried). A batch spans at most three partitions (the
//!   conversation's start hour, the message's hour, their days) and is not atomic across
//!   them.
//! - A claim whose LWT times out: if it did not apply, the message is counted by the next
//!   append (as its predecessor) or by a retry of the same append; if it did, its counts are
//!   lost.
//! - A process that dies between storing a message and claiming it: the same catch-up. Only
//!   the immediate predecessor is caught up (as for the sentiment), so two uncounted messages
//!   in a row lose the older one.
//! - A conversation created before migration 0003 has no `analytics_seq`: its counting starts
//!   with its next message (its past, and its creation, are not counted).
//!
//! Exactly-once would need the counter add and the claim in one transaction, which a cluster
//! cannot give counters (a counter table cannot take part in an LWT or a mixed batch).
//!
//! # Precision
//! Counters are integers: visitor sentiment and intent confidence are summed in millionths
//! (each write's sum rounded to the nearest millionth), read back as `f64`. A sentiment in
//! [-1, 1] carries about seven significant digits as an `f32`, so nothing is lost that was
//! there; an `i64` of millionths holds 9.2 × 10¹² full-scale sentiments.
//!
//! # Range reads
//! Every table is partitioned by tenant and UTC day, so a range reads one partition per day it
//! overlaps (at most [`MAX_RANGE_DAYS`] of them, newest kept), concurrently.

use std::collections::BTreeMap;

use futures_util::{StreamExt, TryStreamExt, stream};
use scylla::{
    statement::batch::{Batch, BatchType},
    value::{Counter, CqlValue, MaybeUnset, Row},
};

use super::{CqlStore, FETCH_CONCURRENCY, cql_int, cql_uint, fail, statements::Stmt};
use parla_domain::analytics::{self, COUNTERS, CounterRow, Counters, DAY_MS, Effect, IntentRow};
use parla_domain::model::{BotId, Channel, Conversation, Message, TenantId};
use parla_domain::store::{StoreError, StoreResult};

/// UTC days (partitions) one range read visits at most; a longer range keeps its newest days,
/// and a range reaching into the future ends a day after now (nothing is stored later than the
/// storing node's clock, give or take its skew). The admin API asks for at most 366 days; the
/// bound keeps a careless caller from fanning out over thousands of partitions.
pub(super) const MAX_RANGE_DAYS: i64 = 400;
/// Attempts at an unmatched-index insert (idempotent, so safe to repeat).
const INDEX_ATTEMPTS: u64 = 3;
/// Rows per page when the unmatched index is read (a page is read only when needed).
const UNMATCHED_PAGE: i32 = 100;

/// The counter columns of `analytics_counters`: [`Counters::NAMES`], the fraction
/// `sentiment_sum` kept as `sentiment_micros` (its [`Counters::units`]).
pub(super) fn counter_columns() -> [&'static str; COUNTERS] {
    Counters::NAMES.map(|name| if name == "sentiment_sum" { "sentiment_micros" } else { name })
}

/// The statement adding a delta to one bucket: every counter column, of which a write binds
/// only the non-zero ones (an unset value leaves its counter untouched, no cell written).
pub(super) fn add_counters_cql() -> String {
    let sets: Vec<String> = counter_columns().iter().map(|c| format!("{c} = {c} + ?")).collect();
    format!(
        "UPDATE analytics_counters SET {} WHERE tenant_id = ? AND day = ? AND hour = ? \
         AND bot_id = ? AND channel = ?",
        sets.join(", ")
    )
}

/// The statement reading a day's buckets of a tenant, hours in `[?, ?)`.
pub(super) fn read_counters_cql() -> String {
    format!(
        "SELECT hour, bot_id, channel, {} FROM analytics_counters WHERE tenant_id = ? \
         AND day = ? AND hour >= ? AND hour < ?",
        counter_columns().join(", ")
    )
}

/// The UTC day (days since the epoch) `at_ms` falls in: the partition of its rows.
fn day_of(at_ms: i64) -> i64 {
    at_ms.div_euclid(DAY_MS)
}

/// The part of `[from_ms, to_ms)` that is read, and the days it covers (oldest first): at most
/// [`MAX_RANGE_DAYS`] + 1 of them, see there. `None` when empty.
fn read_range(
    from_ms: i64,
    to_ms: i64,
    now_ms: i64,
) -> Option<(i64, i64, std::ops::RangeInclusive<i64>)> {
    let to = to_ms.min(now_ms.saturating_add(DAY_MS));
    let from = from_ms.max(to.saturating_sub(MAX_RANGE_DAYS * DAY_MS));
    (from < to).then(|| (from, to, day_of(from)..=day_of(to - 1)))
}

/// An unmatched visitor message to index.
#[derive(Debug)]
struct Unmatched {
    created_at: i64,
    seq: u64,
    message_id: String,
}

/// What claimed writes of one conversation add to the analytics, gathered per bucket so that
/// one counter batch adds them.
#[derive(Debug, Default)]
pub(super) struct Deltas {
    /// By the hour of the bucket (of the conversation's bot and channel) they go to.
    buckets: BTreeMap<i64, Counters>,
    /// (hour, intent) -> (hits, sum of confidences).
    intents: BTreeMap<(i64, String), (i64, f64)>,
    unmatched: Vec<Unmatched>,
}

impl Deltas {
    /// Adds what a write of `c` (storing `message`, if any) adds, as `effect` says.
    pub(super) fn add(&mut self, c: &Conversation, message: Option<&Message>, effect: &Effect) {
        let (start, _, _) = analytics::start_bucket(c);
        if !effect.conversation.is_zero() {
            self.buckets.entry(start).or_default().add(&effect.conversation);
        }
        let Some(m) = message else { return };
        let hour = analytics::hour_of(m.created_at);
        if !effect.message.is_zero() {
            self.buckets.entry(hour).or_default().add(&effect.message);
        }
        if let Some((intent, confidence)) = &effect.intent {
            let (hits, sum) = self.intents.entry((hour, intent.clone())).or_default();
            *hits += 1;
            *sum += confidence;
        }
        if effect.unmatched {
            let message_id = m.id.as_str().to_owned();
            self.unmatched.push(Unmatched { created_at: m.created_at, seq: m.seq, message_id });
        }
    }

    /// A new conversation.
    pub(super) fn created(c: &Conversation) -> Deltas {
        let mut deltas = Deltas::default();
        let effect = Effect { conversation: analytics::on_create(c), ..Effect::default() };
        deltas.add(c, None, &effect);
        deltas
    }
}

fn counter(v: i64) -> MaybeUnset<CqlValue> {
    if v == 0 { MaybeUnset::Unset } else { MaybeUnset::Set(CqlValue::Counter(Counter(v))) }
}

fn set(v: CqlValue) -> MaybeUnset<CqlValue> {
    MaybeUnset::Set(v)
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("cql analytics: {what}"))
}

/// One row of `read_counters`: the key columns, then [`counter_columns`] (null when never
/// added to).
fn counter_row(row: Row) -> StoreResult<CounterRow> {
    let mut columns = row.columns.into_iter();
    let mut next = || columns.next().flatten();
    let hour = next().and_then(|v| v.as_bigint()).ok_or_else(|| corrupt("a bucket's hour"))?;
    let bot = next().and_then(|v| v.into_string()).ok_or_else(|| corrupt("a bucket's bot"))?;
    let channel = next().and_then(|v| v.into_string()).unwrap_or_default();
    let channel = Channel::from_name(&channel)
        .ok_or_else(|| corrupt(&format!("a bucket's channel {channel:?}")))?;
    let mut values = [0i64; COUNTERS];
    for slot in &mut values {
        *slot = next().and_then(|v| v.as_counter()).map_or(0, |Counter(n)| n);
    }
    Ok(CounterRow { hour, bot_id: BotId(bot), channel, counters: Counters::from_units(values) })
}

impl CqlStore {
    /// See [`parla_domain::store::Analytics::forget_unmatched`].
    pub(super) async fn forget_unmatched_rows(
        &self,
        tenant: &TenantId,
        before_ms: i64,
    ) -> StoreResult<()> {
        let t = tenant.as_str();
        let last = day_of(before_ms);
        self.run(&self.st.forget_unmatched_before, (t, last, before_ms)).await?;
        let from = {
            let done = self.forgotten.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            done.get(t).copied().unwrap_or(last - MAX_RANGE_DAYS)
        };
        for day in from..last {
            self.run(&self.st.forget_unmatched_day, (t, day)).await?;
        }
        let mut done = self.forgotten.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        done.insert(t.to_owned(), last.max(from));
        Ok(())
    }

    /// Adds claimed counts: once, never retried (a counter add is not idempotent). What cannot
    /// be added is logged and lost (see the module's doc); the write that claimed it stands.
    pub(super) async fn add_counts(&self, c: &Conversation, deltas: &Deltas) {
        let (indexed, added) = futures_util::future::join(
            self.index_unmatched(c, deltas),
            self.add_counters(c, deltas),
        )
        .await;
        for e in [indexed.err(), added.err()].into_iter().flatten() {
            tracing::warn!(
                error = %e,
                tenant = c.tenant_id.as_str(),
                conversation = c.id.as_str(),
                "analytics: claimed counts not added (lost)"
            );
        }
    }

    /// One counter batch (counter statements only, as Cassandra requires; not atomic across
    /// partitions) with every bucket and intent the deltas move.
    async fn add_counters(&self, c: &Conversation, deltas: &Deltas) -> StoreResult<()> {
        let text = |s: &str| set(CqlValue::Text(s.to_owned()));
        let (t, bot, channel) = (c.tenant_id.as_str(), c.bot_id.as_str(), c.source.as_str());
        let mut batch = Batch::new(BatchType::Counter);
        let mut values: Vec<Vec<MaybeUnset<CqlValue>>> = Vec::new();
        for (hour, delta) in &deltas.buckets {
            let counts = delta.units();
            if counts.iter().all(|v| *v == 0) {
                continue;
            }
            let mut row: Vec<_> = counts.into_iter().map(counter).collect();
            let key = [CqlValue::BigInt(day_of(*hour)), CqlValue::BigInt(*hour)];
            row.push(text(t));
            row.extend(key.map(set));
            row.extend([text(bot), text(channel)]);
            batch.append_statement(self.st.add_counters.ps.clone());
            values.push(row);
        }
        for ((hour, intent), (hits, sum)) in &deltas.intents {
            batch.append_statement(self.st.add_intent.ps.clone());
            values.push(vec![
                counter(*hits),
                counter(analytics::to_micros(*sum)),
                text(t),
                set(CqlValue::BigInt(day_of(*hour))),
                set(CqlValue::BigInt(*hour)),
                text(bot),
                text(intent),
            ]);
        }
        if values.is_empty() {
            return Ok(());
        }
        batch.set_is_idempotent(false);
        self.session.batch(&batch, &values).await.map_err(|e| fail(&self.st.add_counters, e))?;
        Ok(())
    }

    /// Indexes unmatched visitor messages: plain inserts, idempotent, so retried.
    async fn index_unmatched(&self, c: &Conversation, deltas: &Deltas) -> StoreResult<()> {
        let (t, id, bot) = (c.tenant_id.as_str(), c.id.as_str(), c.bot_id.as_str());
        for u in &deltas.unmatched {
            let values =
                (t, day_of(u.created_at), u.created_at, id, cql_int(u.seq)?, bot, &u.message_id);
            let mut attempt = 0;
            loop {
                attempt += 1;
                match self.run(&self.st.index_unmatched, &values).await {
                    Ok(_) => break,
                    Err(e) if attempt >= INDEX_ATTEMPTS => return Err(e),
                    Err(_) => {
                        tokio::time::sleep(std::time::Duration::from_millis(20 * attempt)).await;
                    }
                }
            }
        }
        Ok(())
    }

    /// Reads a tenant's rows of `s` over the days of `[from_ms, to_ms)`, a day at a time
    /// (concurrently), in day order.
    async fn per_day<R>(
        &self,
        s: &Stmt,
        tenant: &TenantId,
        from_ms: i64,
        to_ms: i64,
    ) -> StoreResult<Vec<R>>
    where
        R: for<'f, 'm> scylla::deserialize::row::DeserializeRow<'f, 'm>,
    {
        let Some((from, to, days)) = read_range(from_ms, to_ms, parla_domain::model::now_ms())
        else {
            return Ok(Vec::new());
        };
        let t = tenant.as_str();
        let per_day: Vec<Vec<R>> = stream::iter(days)
            .map(|day| async move { self.all::<R>(s, (t, day, from, to)).await })
            .buffered(FETCH_CONCURRENCY)
            .try_collect()
            .await?;
        Ok(per_day.into_iter().flatten().collect())
    }

    pub(super) async fn read_analytics(
        &self,
        tenant: &TenantId,
        from_ms: i64,
        to_ms: i64,
    ) -> StoreResult<Vec<CounterRow>> {
        let rows = self.per_day::<Row>(&self.st.read_counters, tenant, from_ms, to_ms).await?;
        rows.into_iter().map(counter_row).collect()
    }

    pub(super) async fn read_intent_counts(
        &self,
        tenant: &TenantId,
        from_ms: i64,
        to_ms: i64,
    ) -> StoreResult<Vec<IntentRow>> {
        type Columns = (i64, String, String, Option<Counter>, Option<Counter>);
        let rows = self.per_day::<Columns>(&self.st.read_intents, tenant, from_ms, to_ms).await?;
        Ok(rows
            .into_iter()
            .map(|(hour, bot, intent, hits, sum)| IntentRow {
                hour,
                bot_id: BotId(bot),
                intent,
                hits: hits.map_or(0, |Counter(n)| n),
                confidence_sum: analytics::from_micros(sum.map_or(0, |Counter(n)| n)),
            })
            .collect())
    }

    /// Day by day, newest first, a page of the index at a time: the entries of `bot` (when
    /// given) are read through to their messages (concurrently), until `limit` are found.
    pub(super) async fn read_unmatched(
        &self,
        tenant: &TenantId,
        bot: Option<&BotId>,
        from_ms: i64,
        to_ms: i64,
        limit: usize,
    ) -> StoreResult<Vec<(BotId, Message)>> {
        type Columns = (i64, String, i64, Option<String>, Option<String>);
        let mut out = Vec::new();
        let Some((from, to, days)) = read_range(from_ms, to_ms, parla_domain::model::now_ms())
        else {
            return Ok(out);
        };
        if limit == 0 {
            return Ok(out);
        }
        let t = tenant.as_str();
        let mut ps = self.st.read_unmatched.ps.clone();
        ps.set_page_size(UNMATCHED_PAGE);
        let s = Stmt { name: self.st.read_unmatched.name, ps };
        for day in days.rev() {
            let pager = self
                .session
                .execute_iter(s.ps.clone(), (t, day, from, to))
                .await
                .map_err(|e| fail(&s, e))?;
            let mut rows = pager.rows_stream::<Columns>().map_err(|e| fail(&s, e))?;
            let mut wanted: Vec<(String, String, u64, String)> = Vec::new();
            loop {
                let row = rows.try_next().await.map_err(|e| fail(&s, e))?;
                let exhausted = row.is_none();
                if let Some((_, conversation, seq, Some(owner), Some(message_id))) = row
                    && bot.is_none_or(|b| b.as_str() == owner)
                {
                    wanted.push((owner, conversation, cql_uint(seq)?, message_id));
                }
                if wanted.len() >= limit - out.len() || (exhausted && !wanted.is_empty()) {
                    let found: Vec<Option<(BotId, Message)>> = stream::iter(wanted.drain(..))
                        .map(|(owner, c, seq, id)| async move {
                            let found = self.message_at(t, &c, seq).await?;
                            // A conversation deleted (and its id reused) leaves stale entries.
                            Ok::<_, StoreError>(
                                found.filter(|m| m.id.as_str() == id).map(|m| (BotId(owner), m)),
                            )
                        })
                        .buffered(FETCH_CONCURRENCY)
                        .try_collect()
                        .await?;
                    out.extend(found.into_iter().flatten());
                    if out.len() >= limit {
                        return Ok(out);
                    }
                }
                if exhausted {
                    break;
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_counter_has_a_column_and_reads_back() {
        let fields = serde_json::to_value(Counters::default()).expect("json");
        let fields = fields.as_object().expect("an object");
        assert_eq!(fields.len(), counter_columns().len());
        for name in fields.keys() {
            let column = if name == "sentiment_sum" { "sentiment_micros" } else { name.as_str() };
            assert!(counter_columns().contains(&column), "{name} has no column");
        }
        let schema = include_str!("../../../../schema-cql/0003_analytics.cql");
        for column in counter_columns() {
            assert!(schema.contains(&format!("{column} ")), "{column} is not in the schema");
        }
        let mut values = [0i64; COUNTERS];
        for (i, v) in values.iter_mut().enumerate() {
            *v = i64::try_from(i).expect("small") * 1_000_003 - 7;
        }
        assert_eq!(Counters::from_units(values).units(), values, "a round trip");
        let c = Counters { sentiment_sum: -0.375, sentiment_count: 2, ..Counters::default() };
        assert_eq!(Counters::from_units(c.units()), c, "sentiment in millionths");
    }

    #[test]
    fn a_range_reads_the_days_it_overlaps_and_no_more_than_the_cap() {
        let now = 20_000 * DAY_MS + 5;
        let (from, to, days) = read_range(DAY_MS - 1, 3 * DAY_MS, now).expect("a range");
        assert_eq!((from, to, days), (DAY_MS - 1, 3 * DAY_MS, 0..=2));
        assert!(read_range(5, 5, now).is_none(), "empty");
        let (from, to, days) = read_range(0, i64::MAX, now).expect("everything");
        assert_eq!(to, now + DAY_MS, "ends a day after now");
        assert_eq!(from, to - MAX_RANGE_DAYS * DAY_MS);
        assert_eq!(days.count(), usize::try_from(MAX_RANGE_DAYS + 1).expect("small"));
        let (_, _, days) = read_range(-1, 1, now).expect("around the epoch");
        assert_eq!(days, -1..=0);
    }
}
