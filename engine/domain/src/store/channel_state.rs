//! The [`ChannelState`] port.

use async_trait::async_trait;

use super::StoreResult;
use crate::model::{Conversation, ConversationId, TenantId};

/// What the channels remember per contact and conversation: the contact's conversation, delivery
/// records, push devices, opt-outs and each conversation's delivery cursor.
#[async_trait]
pub trait ChannelState: Send + Sync + std::fmt::Debug + 'static {
    /// The conversation of `contact` on `connection`: the existing one, or `fresh`, created
    /// with the mapping in one transaction (so two first messages open one conversation).
    async fn contact_conversation(
        &self,
        connection: &str,
        contact: &str,
        fresh: &Conversation,
    ) -> StoreResult<Conversation>;

    /// The existing conversation of `contact` on `connection` (a read; see
    /// [`Store::contact_conversation`] to create it).
    async fn find_contact_conversation(
        &self,
        tenant: &TenantId,
        connection: &str,
        contact: &str,
    ) -> StoreResult<Option<Conversation>>;

    /// The (connection, contact) a channel conversation belongs to; `None` for widget ones.
    async fn conversation_contact(
        &self,
        tenant: &TenantId,
        id: &ConversationId,
    ) -> StoreResult<Option<(String, String)>>;

    /// The tenant's channel conversations (WhatsApp, SMS), whatever their age.
    async fn channel_conversations(&self, tenant: &TenantId) -> StoreResult<Vec<ConversationId>>;

    /// Records a stored message's delivery, merged with what it had (provider ids accumulate,
    /// the status never moves back), and indexes the ids under `connection` (so a provider's
    /// status report finds it); returns whether the message exists.
    async fn set_delivery(
        &self,
        tenant: &TenantId,
        id: &ConversationId,
        seq: u64,
        connection: &str,
        delivery: &crate::model::Delivery,
    ) -> StoreResult<bool>;

    /// A provider's report on the message its id stands for, in one transaction: moves the
    /// message's delivery to `status` only if that is further on (a late "delivered" after
    /// "read" changes nothing). Returns the message's key and seq when the report moved it.
    async fn advance_delivery(
        &self,
        connection: &str,
        provider_id: &str,
        status: crate::model::DeliveryStatus,
        error: Option<String>,
    ) -> StoreResult<Option<(TenantId, ConversationId, u64)>>;

    /// Registers a device token for notifications about a conversation (idempotent).
    async fn add_push_token(
        &self,
        tenant: &TenantId,
        id: &ConversationId,
        token: &str,
    ) -> StoreResult<()>;

    async fn remove_push_token(
        &self,
        tenant: &TenantId,
        id: &ConversationId,
        token: &str,
    ) -> StoreResult<()>;

    async fn push_tokens(&self, tenant: &TenantId, id: &ConversationId)
    -> StoreResult<Vec<String>>;

    /// Records that `contact` opted out of (`true`) or back into messages on `connection`.
    async fn set_opted_out(&self, connection: &str, contact: &str, out: bool) -> StoreResult<()>;

    async fn opted_out(&self, connection: &str, contact: &str) -> StoreResult<bool>;

    /// Highest seq of a conversation delivered to its channel (0: none).
    async fn channel_cursor(&self, tenant: &TenantId, id: &ConversationId) -> StoreResult<u64>;

    async fn set_channel_cursor(
        &self,
        tenant: &TenantId,
        id: &ConversationId,
        seq: u64,
    ) -> StoreResult<()>;
}
