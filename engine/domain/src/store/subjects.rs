//! The [`Subjects`] port.

use async_trait::async_trait;

use super::StoreResult;
use crate::model::{ConversationId, TenantId};

/// Where a person's data is: the conversations holding an identifier of them (see
/// [`crate::subjects`]). The store indexes the keys itself where it writes what carries them —
/// [`ChannelState::contact_conversation`](super::ChannelState::contact_conversation) (the
/// contact) and [`Conversations::merge_user_data`](super::Conversations::merge_user_data) (a
/// form's fields) — and drops them in
/// [`Conversations::delete_conversation`](super::Conversations::delete_conversation).
#[async_trait]
pub trait Subjects: Send + Sync + std::fmt::Debug + 'static {
    /// The tenant's conversations holding `key`, oldest first.
    async fn subject_conversations(
        &self,
        tenant: &TenantId,
        key: &str,
    ) -> StoreResult<Vec<ConversationId>>;

    /// Makes what was deleted unrecoverable from the store's own files where the backend can
    /// (the embedded store rewrites its file without the freed pages). A distributed backend
    /// keeps tombstones until its own compaction; there this does nothing.
    async fn reclaim_deleted(&self) -> StoreResult<()>;
}
