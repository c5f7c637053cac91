//! Usage within plan limits, customers, subscriptions and provider events (migration 0006).
//!
//! - **Usage** rows are written only by LWTs: a count reads the row, then inserts it `IF NOT
//!   EXISTS` or updates it `IF count = ?` as read, and reads again when another count came
//!   first. Of racing counts, those that fit the limit are counted, the rest refused.
//! - **Subscriptions** (global, by provider id) likewise, on `event_created`: an older event is
//!   not applied over a newer one whatever order they arrive or race in.
//! - **Events** are claimed `IF NOT EXISTS` (body included), then queued; a redelivery of an
//!   event claimed but not processed queues it again (same key: idempotent), so a crash between
//!   the claim and the queue loses nothing. Processing marks the claim, then dequeues.

use super::{CqlStore, cql_int, cql_uint, decode, encode};
use parla_domain::billing::{StoredEvent, Subscription};
use parla_domain::marketplace::{ConnectAccount, Listing};
use parla_domain::model::{BotId, TenantId};
use parla_domain::store::{Billing, Listings, StoreError, StoreResult};

/// Rounds of a compare-and-set lost to other writes of the same row before giving up.
const ATTEMPTS: usize = 64;

#[async_trait::async_trait]
impl Billing for CqlStore {
    async fn count_within(
        &self,
        tenant: &TenantId,
        month: &str,
        meter: &str,
        n: u64,
        limit: Option<u64>,
    ) -> StoreResult<Option<u64>> {
        let t = tenant.as_str();
        for attempt in 0..ATTEMPTS {
            let held = self.one::<(Option<i64>,)>(&self.st.get_usage, (t, month, meter)).await?;
            let before = match &held {
                Some((Some(count),)) => cql_uint(*count)?,
                _ => 0,
            };
            let total = before.saturating_add(n);
            if limit.is_some_and(|limit| total > limit) {
                return Ok(None);
            }
            let applied = match held {
                None => {
                    let row = (t, month, meter, cql_int(total)?);
                    self.cas(&self.st.insert_usage, row).await?.applied
                }
                Some((count,)) => {
                    let row = (cql_int(total)?, t, month, meter, count);
                    self.cas(&self.st.update_usage, row).await?.applied
                }
            };
            if applied {
                return Ok(Some(total));
            }
            backoff(attempt).await;
        }
        Err(StoreError::Backend("cql: the usage count kept changing".into()))
    }

    async fn uncount(
        &self,
        tenant: &TenantId,
        month: &str,
        meter: &str,
        n: u64,
    ) -> StoreResult<()> {
        let t = tenant.as_str();
        for attempt in 0..ATTEMPTS {
            let held = self.one::<(Option<i64>,)>(&self.st.get_usage, (t, month, meter)).await?;
            let Some((Some(count),)) = held else { return Ok(()) };
            let after = cql_uint(count)?.saturating_sub(n);
            let row = (cql_int(after)?, t, month, meter, Some(count));
            if self.cas(&self.st.update_usage, row).await?.applied {
                return Ok(());
            }
            backoff(attempt).await;
        }
        Err(StoreError::Backend("cql: the usage count kept changing".into()))
    }

    async fn usage(&self, tenant: &TenantId, month: &str) -> StoreResult<Vec<(String, u64)>> {
        let rows = self.all::<(String, Option<i64>)>(&self.st.list_usage, (tenant.as_str(), month));
        rows.await?.into_iter().map(|(meter, n)| Ok((meter, cql_uint(n.unwrap_or(0))?))).collect()
    }

    async fn customer(&self, tenant: &TenantId) -> StoreResult<Option<String>> {
        let row = self.one::<(Option<String>,)>(&self.st.get_customer, (tenant.as_str(),));
        Ok(row.await?.and_then(|(c,)| c))
    }

    async fn set_customer_once(&self, tenant: &TenantId, customer: &str) -> StoreResult<String> {
        let cas = self.cas(&self.st.claim_customer, (tenant.as_str(), customer)).await?;
        if cas.applied {
            return Ok(customer.to_owned());
        }
        cas.text("customer")
            .map(str::to_owned)
            .ok_or_else(|| StoreError::Corrupt("a customer row without its customer".into()))
    }

    async fn put_subscription_if_newer(&self, sub: &Subscription) -> StoreResult<bool> {
        let (id, t) = (sub.id.as_str(), sub.tenant_id.as_str());
        let data = encode(sub)?;
        for attempt in 0..ATTEMPTS {
            let held = self.one::<(Option<String>, Option<i64>, Option<String>)>(
                &self.st.get_subscription_row,
                (id,),
            );
            let applied = match held.await? {
                None => {
                    let row = (id, t, sub.event_created, data.as_str());
                    self.cas(&self.st.insert_subscription, row).await?.applied
                }
                Some((owner, created, _)) => {
                    if owner.as_deref() != Some(t) {
                        return Err(StoreError::Conflict);
                    }
                    if created.unwrap_or(i64::MIN) > sub.event_created {
                        return Ok(false);
                    }
                    let row = (sub.event_created, data.as_str(), id, created);
                    self.cas(&self.st.update_subscription, row).await?.applied
                }
            };
            if applied {
                self.run(&self.st.index_subscription, (t, id)).await?;
                return Ok(true);
            }
            backoff(attempt).await;
        }
        Err(StoreError::Backend("cql: the subscription kept changing".into()))
    }

    async fn get_subscription(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> StoreResult<Option<Subscription>> {
        let held = self.one::<(Option<String>, Option<i64>, Option<String>)>(
            &self.st.get_subscription_row,
            (id,),
        );
        match held.await? {
            Some((Some(owner), _, Some(data))) if owner == tenant.as_str() => {
                decode(&data).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// A paged scan of the global table: reconciliation runs every few hours.
    async fn live_subscriptions(&self) -> StoreResult<Vec<Subscription>> {
        let scan = super::scanning(&self.st.scan_subscriptions);
        let all: Vec<Subscription> = self.records(&scan, ()).await?;
        Ok(all.into_iter().filter(Subscription::is_live).collect())
    }

    async fn list_subscriptions(&self, tenant: &TenantId) -> StoreResult<Vec<Subscription>> {
        let ids = self.all::<(String,)>(&self.st.list_subscription_ids, (tenant.as_str(),));
        let mut out = Vec::new();
        for (id,) in ids.await? {
            if let Some(sub) = self.get_subscription(tenant, &id).await? {
                out.push(sub);
            }
        }
        Ok(out)
    }

    async fn record_event(&self, event: &StoredEvent) -> StoreResult<bool> {
        let data = encode(event)?;
        let claim = (event.id.as_str(), event.received_at, data.as_str());
        let cas = self.cas(&self.st.claim_event, claim).await?;
        if cas.applied {
            let row = (event.received_at, event.id.as_str(), data.as_str());
            self.run(&self.st.queue_event, row).await?;
            return Ok(true);
        }
        // Received before: queued again unless processed (a crash may have come between the
        // claim and the queue), under its first arrival's key.
        if cas.boolean("processed") != Some(true) {
            let at = cas.bigint("received_at").unwrap_or(event.received_at);
            let first = cas.text("data").unwrap_or(data.as_str());
            self.run(&self.st.queue_event, (at, event.id.as_str(), first)).await?;
        }
        Ok(false)
    }

    async fn pending_events(&self, limit: usize) -> StoreResult<Vec<StoredEvent>> {
        let limit = i32::try_from(limit.max(1)).unwrap_or(i32::MAX);
        self.records(&self.st.pending_events, (limit,)).await
    }

    async fn finish_event(&self, id: &str) -> StoreResult<()> {
        let row = self.one::<(Option<i64>,)>(&self.st.get_event, (id,)).await?;
        self.run(&self.st.event_processed, (id,)).await?;
        if let Some((Some(at),)) = row {
            self.run(&self.st.dequeue_event, (at, id)).await?;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Listings for CqlStore {
    async fn put_listing(&self, listing: &Listing) -> StoreResult<()> {
        let row = (listing.bot_id.as_str(), listing.tenant_id.as_str(), encode(listing)?);
        self.run(&self.st.put_listing, row).await.map(drop)
    }

    async fn get_listing(&self, bot: &BotId) -> StoreResult<Option<Listing>> {
        self.record(&self.st.get_listing, (bot.as_str(),)).await
    }

    async fn public_listings(&self) -> StoreResult<Vec<Listing>> {
        let scan = super::scanning(&self.st.scan_listings);
        let all: Vec<Listing> = self.records(&scan, ()).await?;
        Ok(all.into_iter().filter(|l| l.public).collect())
    }

    /// Only the listing's own tenant deletes it (`IF tenant_id = ?`).
    async fn delete_listing(&self, tenant: &TenantId, bot: &BotId) -> StoreResult<bool> {
        let cas = self.cas(&self.st.delete_listing, (bot.as_str(), tenant.as_str())).await?;
        Ok(cas.applied)
    }

    async fn put_connect_account(&self, account: &ConnectAccount) -> StoreResult<()> {
        let row = (account.tenant_id.as_str(), encode(account)?);
        self.run(&self.st.put_connect_account, row).await.map(drop)
    }

    async fn connect_account(&self, tenant: &TenantId) -> StoreResult<Option<ConnectAccount>> {
        self.record(&self.st.get_connect_account, (tenant.as_str(),)).await
    }
}

/// A short, growing, jittered pause after a lost compare-and-set, so racing writers spread out.
async fn backoff(attempt: usize) {
    let cap = 2u64.saturating_pow(attempt.min(6) as u32);
    let ms = uuid::Uuid::new_v4().as_u128() as u64 % cap.max(1);
    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
}
