//! The knowledge-base port: a bot's documents turned into passages the bot brain can quote.
//! The engine's core searches it when a visitor asks and forgets a deleted bot's indexes; the
//! admin API submits and deletes documents through it. Its adapter (`parla-knowledge`) extracts,
//! chunks, indexes (BM25 and vectors) and scrapes.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{
    model::{BotId, SourceRef, TenantId},
    store::StoreResult,
};

/// A retrieved passage, with what a citation needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Passage {
    pub document_id: String,
    pub title: String,
    pub text: String,
    /// Fused rank score: comparable within one query only.
    pub score: f32,
    /// Share of the query's terms the passage holds, 0..=1: comparable across queries.
    pub coverage: f32,
    /// The embedder judges the passage close enough in meaning to answer (see the knowledge
    /// adapter's `Embedder::answer_similarity`).
    pub close_in_meaning: bool,
}

impl Passage {
    /// The document it comes from, as a message cites it.
    pub fn source(&self) -> SourceRef {
        SourceRef { document_id: self.document_id.clone(), title: self.title.clone() }
    }
}

/// What `passages` cite, in their order (best first): each document and heading once (two
/// passages of one section are one source).
pub fn sources<'a>(passages: impl IntoIterator<Item = &'a Passage>) -> Vec<SourceRef> {
    let mut sources: Vec<SourceRef> = Vec::new();
    for passage in passages.into_iter().map(Passage::source) {
        if !sources.contains(&passage) {
            sources.push(passage);
        }
    }
    sources
}

/// What to scrape for a WEB_PAGE document: stored as the document's bytes, so reprocessing
/// fetches again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScrapeRequest {
    pub url: String,
    /// Pages to read at most, the first included (1 = that page only).
    pub max_pages: u32,
    /// Link hops from the first page (0 = that page only).
    pub max_depth: u32,
}

/// The bots' knowledge bases.
#[async_trait]
pub trait KnowledgeBase: Send + Sync + std::fmt::Debug + 'static {
    /// The largest document accepted, in bytes (an upload's, or a scrape's pages together).
    fn max_document_bytes(&self) -> usize;

    /// Queues a stored document for processing. Never waits for it.
    async fn submit(&self, tenant: &TenantId, document_id: &str);

    /// Deletes a document with its bytes, chunks and vectors; whether it existed.
    async fn delete_document(&self, tenant: &TenantId, document_id: &str) -> StoreResult<bool>;

    /// Forgets a deleted bot's indexes and vectors (the store deletes its documents with it).
    async fn forget_bot(&self, tenant: &TenantId, bot: &BotId);

    /// The passages of `bot`'s documents that best match `query`, best first (as many as the
    /// adapter's settings say).
    async fn search(
        &self,
        tenant: &TenantId,
        bot: &BotId,
        query: &str,
    ) -> StoreResult<Vec<Passage>>;

    /// Probes the remote pieces retrieval depends on, each within `timeout`, for readiness:
    /// `(service, outcome)`. Local pieces are left out.
    async fn probe(&self, timeout: Duration) -> Vec<(&'static str, Result<(), String>)>;

    /// Drops anything kept from these questions (their cached vectors): a person's words are
    /// being erased.
    fn forget_questions(&self, _questions: &[String]) {}
}

/// No knowledge base: nothing stored, nothing found (for engines that answer from intents
/// alone: tests, tools).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoKnowledge;

#[async_trait]
impl KnowledgeBase for NoKnowledge {
    fn max_document_bytes(&self) -> usize {
        0
    }

    async fn submit(&self, _: &TenantId, _: &str) {}

    async fn delete_document(&self, _: &TenantId, _: &str) -> StoreResult<bool> {
        Ok(false)
    }

    async fn forget_bot(&self, _: &TenantId, _: &BotId) {}

    async fn search(&self, _: &TenantId, _: &BotId, _: &str) -> StoreResult<Vec<Passage>> {
        Ok(Vec::new())
    }

    async fn probe(&self, _: Duration) -> Vec<(&'static str, Result<(), String>)> {
        Vec::new()
    }
}
