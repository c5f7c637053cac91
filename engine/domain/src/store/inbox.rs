//! The [`InboxIndex`] port.

use async_trait::async_trait;

use super::StoreResult;
use crate::model::{Conversation, ConversationId, TenantId};

/// The agents' inbox: conversations of a tenant by what they need.
#[async_trait]
pub trait InboxIndex: Send + Sync + std::fmt::Debug + 'static {
    /// The tenant's conversations that wait for an agent or are held by one (ESCALATED or
    /// ASSIGNED), whatever their age, in id order after `after` (the last id of the previous
    /// page), at most `limit`: an index kept by `set_handling` (and `delete_conversation`), so
    /// the inbox and the dispatcher find every one of them however many other conversations
    /// there are.
    async fn attention_conversations(
        &self,
        tenant: &TenantId,
        after: Option<&ConversationId>,
        limit: usize,
    ) -> StoreResult<Vec<Conversation>>;

    /// The tenant's conversations across its bots, newest first, before `before` (a cursor).
    async fn list_tenant_conversations(
        &self,
        tenant: &TenantId,
        before: Option<&ConversationId>,
        limit: usize,
    ) -> StoreResult<Vec<Conversation>>;
}
