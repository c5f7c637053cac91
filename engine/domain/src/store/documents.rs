//! The [`Documents`] port.

use async_trait::async_trait;

use super::StoreResult;
use crate::model::{BotId, Chunk, Document, TenantId};

/// The knowledge base's documents, their content and chunks, and the queue of unfinished
/// processing.
#[async_trait]
pub trait Documents: Send + Sync + std::fmt::Debug + 'static {
    /// Creates a document with its original bytes, or replaces the record (status, progress)
    /// when `content` is `None`. A document that is PENDING or PROCESSING is listed by
    /// [`Store::unfinished_documents`] until it is not.
    async fn put_document(&self, document: &Document, content: Option<&[u8]>) -> StoreResult<()>;

    async fn get_document(&self, tenant: &TenantId, id: &str) -> StoreResult<Option<Document>>;

    async fn list_documents(&self, tenant: &TenantId, bot: &BotId) -> StoreResult<Vec<Document>>;

    /// The bytes a document was created with.
    async fn document_content(&self, tenant: &TenantId, id: &str) -> StoreResult<Option<Vec<u8>>>;

    /// Replaces a document's chunks and its record in one transaction (processing done).
    async fn put_chunks(&self, document: &Document, chunks: &[Chunk]) -> StoreResult<()>;

    /// Every chunk of a bot's documents, by document then position.
    async fn list_chunks(&self, tenant: &TenantId, bot: &BotId) -> StoreResult<Vec<Chunk>>;

    /// Deletes a document with its bytes and chunks; returns whether it existed.
    async fn delete_document(&self, tenant: &TenantId, id: &str) -> StoreResult<bool>;

    /// Documents of every tenant still PENDING or PROCESSING: the work a restart resumes.
    async fn unfinished_documents(&self) -> StoreResult<Vec<Document>>;
}
