//! The [`Feed`] port.

use std::sync::Arc;

use async_trait::async_trait;

use super::{Event, Subscription, TenantEvent};
use crate::model::{BotId, ConnId, ConversationKey, TenantId};

/// Fanning events out to a conversation's readers and a tenant's inbox watchers, on every node.
#[async_trait]
pub trait Feed: Send + Sync + std::fmt::Debug + 'static {
    /// Fans an event out to the conversation's current subscribers, or, when the event has a
    /// [`Event::target`], to that connection's subscription alone. Never blocks: a subscriber
    /// that falls behind sees [`RecvError::Lagged`] and recovers from the store.
    fn publish(&self, key: &ConversationKey, event: Event);

    /// Live events of `key` from now on, plus those addressed to `conn`.
    /// Returns once the subscription is live: every event published after it returns reaches
    /// it (a remote route has confirmed it).
    async fn subscribe(&self, key: &ConversationKey, conn: Option<ConnId>) -> Subscription;

    /// Fans a tenant-wide event out to the tenant's inbox watchers. Never blocks.
    fn publish_tenant(&self, tenant: &TenantId, event: TenantEvent);

    /// Tenant-wide events from now on. A watcher that falls behind gets `Lagged` and re-reads
    /// the inbox from the store.
    async fn subscribe_tenant(
        &self,
        tenant: &TenantId,
    ) -> tokio::sync::broadcast::Receiver<Arc<TenantEvent>>;

    /// Tells the other nodes that a bot or its intents changed (this node already knows).
    fn announce_bot_changed(&self, _tenant: &TenantId, _bot: &BotId) {}
}
