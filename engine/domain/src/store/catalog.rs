//! The [`Catalog`] port.

use async_trait::async_trait;

use super::StoreResult;
use crate::model::{Bot, BotId, Intent, Tenant, TenantId};

/// Tenants, bots with their intents and canned responses: what a workspace has built.
#[async_trait]
pub trait Catalog: Send + Sync + std::fmt::Debug + 'static {
    async fn put_tenant(&self, tenant: &Tenant) -> StoreResult<()>;

    async fn get_tenant(&self, id: &TenantId) -> StoreResult<Option<Tenant>>;

    /// Every workspace's id (an operator's sweep: re-sealing secrets under a new key).
    async fn list_tenants(&self) -> StoreResult<Vec<TenantId>>;

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

    /// Creates or replaces a canned response (shortcut uniqueness is the caller's to check).
    async fn put_canned(&self, canned: &crate::model::CannedResponse) -> StoreResult<()>;

    /// The tenant's canned responses, by id.
    async fn list_canned(
        &self,
        tenant: &TenantId,
    ) -> StoreResult<Vec<crate::model::CannedResponse>>;

    /// Deletes one; returns whether it existed.
    async fn delete_canned(&self, tenant: &TenantId, id: &str) -> StoreResult<bool>;
}
