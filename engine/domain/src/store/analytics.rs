//! The [`Analytics`] port.

use async_trait::async_trait;

use super::StoreResult;
use crate::model::{BotId, Message, TenantId};

/// Analytics counters, kept by every write of the other ports in the same transaction (see
/// `crate::analytics`), read here.
#[async_trait]
pub trait Analytics: Send + Sync + std::fmt::Debug + 'static {
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

    /// Forgets the unmatched-messages entries stored before `before_ms` (a retention policy);
    /// returns how many went, where the backend can tell (else 0).
    async fn forget_unmatched(&self, tenant: &TenantId, before_ms: i64) -> StoreResult<u64>;
}
