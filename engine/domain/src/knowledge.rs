//! What retrieval from a bot's knowledge base hands the bot brain.

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
