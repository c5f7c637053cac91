//! The [`Billing`] port.

use async_trait::async_trait;

use super::StoreResult;
use crate::billing::{StoredEvent, Subscription};
use crate::model::TenantId;

/// Usage counted against plans, the workspaces' customers and subscriptions, and the payment
/// provider's events waiting to be applied.
#[async_trait]
pub trait Billing: Send + Sync + std::fmt::Debug + 'static {
    /// Counts `n` of `meter` in `month` (`YYYY-MM`) if the total stays within `limit`
    /// (atomically: of racing counts, those that fit are counted): the new total, or `None`
    /// when it would pass the limit (nothing counted). `limit` `None`: no limit.
    async fn count_within(
        &self,
        tenant: &TenantId,
        month: &str,
        meter: &str,
        n: u64,
        limit: Option<u64>,
    ) -> StoreResult<Option<u64>>;

    /// Takes back `n` counted by [`Billing::count_within`] (never below zero).
    async fn uncount(&self, tenant: &TenantId, month: &str, meter: &str, n: u64)
    -> StoreResult<()>;

    /// Every meter counted for the tenant in `month`, by name.
    async fn usage(&self, tenant: &TenantId, month: &str) -> StoreResult<Vec<(String, u64)>>;

    /// The workspace's customer at the payment provider.
    async fn customer(&self, tenant: &TenantId) -> StoreResult<Option<String>>;

    /// Records the workspace's customer unless it has one: the one it keeps (of two racing
    /// first checkouts, both get the first recorded).
    async fn set_customer_once(&self, tenant: &TenantId, customer: &str) -> StoreResult<String>;

    /// Stores `subscription` unless the stored one was written from a newer event
    /// (`event_created` greater): whether it was written. Subscription ids are unique across
    /// tenants ([`StoreError::Conflict`](super::StoreError::Conflict) if another tenant holds it).
    async fn put_subscription_if_newer(&self, subscription: &Subscription) -> StoreResult<bool>;

    async fn get_subscription(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> StoreResult<Option<Subscription>>;

    /// Every tenant's subscriptions that are not over (neither `canceled` nor
    /// `incomplete_expired`): what reconciliation re-reads from the provider.
    async fn live_subscriptions(&self) -> StoreResult<Vec<Subscription>>;

    /// The tenant's subscriptions (workspace plan and marketplace bots), any status.
    async fn list_subscriptions(&self, tenant: &TenantId) -> StoreResult<Vec<Subscription>>;

    /// Stores a verified event for processing unless its id was received before: whether it
    /// is new.
    async fn record_event(&self, event: &StoredEvent) -> StoreResult<bool>;

    /// Events received and not yet processed, oldest first, at most `limit`.
    async fn pending_events(&self, limit: usize) -> StoreResult<Vec<StoredEvent>>;

    /// The event is processed: out of the queue (its id stays known, so a redelivery is not
    /// applied again).
    async fn finish_event(&self, id: &str) -> StoreResult<()>;
}
