//! The [`Conversations`] port.

use async_trait::async_trait;

use super::{Appended, StoreResult};
use crate::model::{BotId, Conversation, ConversationId, Message, TenantId};

/// Conversations and their transcripts, handling state, user data and notes. The actor is the only
/// writer of a conversation's transcript.
#[async_trait]
pub trait Conversations: Send + Sync + std::fmt::Debug + 'static {
    /// Creates a conversation; fails with [`StoreError::ConversationExists`](super::StoreError::ConversationExists) if the id is taken.
    async fn create_conversation(&self, conversation: &Conversation) -> StoreResult<()>;

    async fn get_conversation(
        &self,
        tenant: &TenantId,
        id: &ConversationId,
    ) -> StoreResult<Option<Conversation>>;

    /// Deletes a conversation of `tenant` with all its messages; returns whether it existed.
    /// Only the conversation's actor calls this (it is the single writer).
    async fn delete_conversation(
        &self,
        tenant: &TenantId,
        id: &ConversationId,
    ) -> StoreResult<bool>;

    /// A bot's conversations, newest first (ids are time-ordered), strictly before `before`
    /// when given (the cursor of the previous page), at most `limit`.
    async fn list_conversations(
        &self,
        tenant: &TenantId,
        bot: &BotId,
        before: Option<&ConversationId>,
        limit: usize,
    ) -> StoreResult<Vec<Conversation>>;

    /// Appends a message, durable when this returns `Ok`. Idempotent by `client_msg_id`: a
    /// second message with the same one is not stored and the first comes back as
    /// [`Appended::Duplicate`]. `seq` must be the conversation's last seq + 1.
    async fn append(&self, message: &Message) -> StoreResult<Appended>;

    /// Messages with `seq > after_seq`, in seq order, at most `limit`.
    async fn messages_after(
        &self,
        tenant: &TenantId,
        conversation: &ConversationId,
        after_seq: u64,
        limit: usize,
    ) -> StoreResult<Vec<Message>>;

    /// The message stored with `client_msg_id` in the conversation, if any (what `append`
    /// would answer as [`Appended::Duplicate`]).
    async fn message_by_client_id(
        &self,
        tenant: &TenantId,
        conversation: &ConversationId,
        client_msg_id: &str,
    ) -> StoreResult<Option<Message>>;

    /// The highest stored seq of a conversation, 0 if it has none.
    async fn last_seq(&self, tenant: &TenantId, conversation: &ConversationId) -> StoreResult<u64>;

    /// Replaces how a conversation is handled (status, assignee, resolution…), keeping the
    /// rest of its record; returns whether it exists. Only the conversation's actor calls it.
    async fn set_handling(
        &self,
        tenant: &TenantId,
        id: &ConversationId,
        handling: &crate::model::Handling,
    ) -> StoreResult<bool>;

    /// Merges `fields` into the conversation's user data (what its forms collected): a key
    /// already there takes the new value, the others stay. Returns whether the conversation
    /// exists (nothing is written if not). Only the conversation's actor calls it.
    async fn merge_user_data(
        &self,
        tenant: &TenantId,
        id: &ConversationId,
        fields: &std::collections::BTreeMap<String, String>,
    ) -> StoreResult<bool>;

    /// The conversation's user data (empty when nothing was collected); `None` if the
    /// conversation does not exist for `tenant`.
    async fn user_data(
        &self,
        tenant: &TenantId,
        id: &ConversationId,
    ) -> StoreResult<Option<std::collections::BTreeMap<String, String>>>;

    /// Adds an agent's note to an existing conversation; returns whether it exists.
    async fn add_note(&self, note: &crate::model::Note) -> StoreResult<bool>;

    /// A conversation's notes, oldest first.
    async fn list_notes(
        &self,
        tenant: &TenantId,
        id: &ConversationId,
    ) -> StoreResult<Vec<crate::model::Note>>;

    /// A conversation's last stored message.
    async fn last_message(
        &self,
        tenant: &TenantId,
        id: &ConversationId,
    ) -> StoreResult<Option<Message>>;
}
