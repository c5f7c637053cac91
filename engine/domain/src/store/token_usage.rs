//! The [`TokenUsage`] port.

use async_trait::async_trait;

use super::StoreResult;
use crate::model::TenantId;

/// LLM tokens used per tenant and month (the budget the responder checks).
#[async_trait]
pub trait TokenUsage: Send + Sync + std::fmt::Debug + 'static {
    /// Adds `tokens` to the tenant's LLM usage in `month` (`YYYY-MM`); returns the new total.
    async fn add_token_usage(
        &self,
        tenant: &TenantId,
        month: &str,
        tokens: u64,
    ) -> StoreResult<u64>;

    async fn token_usage(&self, tenant: &TenantId, month: &str) -> StoreResult<u64>;
}
