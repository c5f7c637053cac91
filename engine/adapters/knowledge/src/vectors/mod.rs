//! The vector index port: where chunk vectors live and are searched, always within one
//! tenant's bot.
//!
//! An index holds one vector space (one [`Embedder`](super::embed::Embedder) id): its points
//! are keyed by (tenant, bot, document, position) — the chunk they stand for — and a search
//! never crosses the (tenant, bot) it is given.
//!
//! Adapters: [`embedded::EmbeddedVectors`] (a redb file in the data dir, the default) and
//! [`qdrant::QdrantVectors`] (Qdrant's REST API). Both pass [`conformance`].
//!
//! The store's chunks stay the source of truth: points are derived from them. A document's
//! points are written before its chunks are committed (a crash in between leaves it
//! PROCESSING, and the resumed run writes them again); a hit whose chunk is gone (deleted
//! meanwhile) is dropped by the caller.

pub mod conformance;
pub mod embedded;
#[cfg(feature = "qdrant")]
pub mod qdrant;

use async_trait::async_trait;

use parla_domain::model::{BotId, TenantId};

/// Why the index failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VectorError {
    /// A vector's length differs from the space's.
    #[error("vector of {got} dimensions in a space of {expected}")]
    Dimensions { expected: usize, got: usize },
    /// The backend failed (I/O, network, an unexpected answer).
    #[error("vector index: {0}")]
    Backend(String),
}

pub type VectorResult<T> = Result<T, VectorError>;

/// A chunk's vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// The chunk's position in its document.
    pub position: u32,
    /// Unit length (embedders normalise), so dot product = cosine.
    pub vector: Vec<f32>,
}

/// A search result: which chunk, and its cosine with the query.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub document_id: String,
    pub position: u32,
    pub score: f32,
}

/// Stores and searches chunk vectors, scoped by tenant and bot.
#[async_trait]
pub trait VectorIndex: Send + Sync + std::fmt::Debug {
    /// Replaces every point of a document with `points` (none: the document has no vectors).
    async fn replace(
        &self,
        tenant: &TenantId,
        bot: &BotId,
        document: &str,
        points: &[Point],
    ) -> VectorResult<()>;
    /// Removes a document's points.
    async fn remove_document(
        &self,
        tenant: &TenantId,
        bot: &BotId,
        document: &str,
    ) -> VectorResult<()>;
    /// Removes every point of a bot.
    async fn remove_bot(&self, tenant: &TenantId, bot: &BotId) -> VectorResult<()>;
    /// Whether the document has points in this space.
    async fn holds(&self, tenant: &TenantId, bot: &BotId, document: &str) -> VectorResult<bool>;
    /// At most `k` of the bot's points with cosine ≥ `min_score` to `query`, best first.
    async fn search(
        &self,
        tenant: &TenantId,
        bot: &BotId,
        query: &[f32],
        k: usize,
        min_score: f32,
    ) -> VectorResult<Vec<Hit>>;
    /// Whether a remote index answers, for readiness (`GET /readyz`); `None` for an embedded
    /// one (nothing to reach).
    async fn probe(&self) -> Option<VectorResult<()>> {
        None
    }
}

/// Checks that every point has `dimensions` (or the first point's) dimensions; returns them.
pub(crate) fn dimensions_of(points: &[Point], expected: Option<usize>) -> VectorResult<usize> {
    let want = expected.or_else(|| points.first().map(|p| p.vector.len())).unwrap_or(0);
    match points.iter().find(|p| p.vector.len() != want || want == 0) {
        Some(p) => Err(VectorError::Dimensions { expected: want, got: p.vector.len() }),
        None => Ok(want),
    }
}
