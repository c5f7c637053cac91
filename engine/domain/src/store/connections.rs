//! The [`Connections`] port.

use async_trait::async_trait;

use super::StoreResult;
use crate::model::{BotId, TenantId};

/// Channel connections (a WhatsApp number, an SMS sender, push credentials) of a tenant's bots.
#[async_trait]
pub trait Connections: Send + Sync + std::fmt::Debug + 'static {
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

    /// Every channel connection, of every tenant (the channels start their watchers from it).
    async fn all_channels(&self) -> StoreResult<Vec<crate::model::ChannelConnection>>;
}
