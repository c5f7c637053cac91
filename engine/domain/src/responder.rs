//! The responder port: the bot brain that turns a visitor's message into a streamed reply.
//!
//! Adapters (in `parla-engine`'s `responder` today):
//! - `builtin::BuiltinResponder`: matches the bot's intents, then the knowledge base, then the
//!   bot's fallback message, streamed word by word. No network, no model.
//! - `llm::LlmResponder`: any OpenAI-compatible chat-completions API, through the same [`Reply`]
//!   stream.

use std::sync::Arc;

use async_trait::async_trait;
use futures_util::stream::BoxStream;

use crate::model::{Bot, Intent, Message, SourceRef};

/// Everything a responder may use to answer.
#[derive(Debug, Clone)]
pub struct ReplyRequest {
    pub bot: Arc<Bot>,
    pub intents: Arc<Vec<Intent>>,
    /// The visitor's message being answered.
    pub text: String,
    /// The best of `intents` for `text` (its position) and its confidence: classified once, by
    /// the actor, when the message arrived.
    pub best_intent: Option<(usize, f32)>,
    /// Recent messages, oldest first, for context-aware responders.
    pub history: Vec<Message>,
    /// Passages of the bot's knowledge base retrieved for `text`, best first.
    pub passages: Vec<crate::knowledge::Passage>,
    /// The tenant's own LLM endpoint, if it set one.
    pub llm: Option<crate::model::TenantLlm>,
    /// False once the tenant's monthly token budget is spent: answer without the LLM.
    pub llm_allowed: bool,
}

impl ReplyRequest {
    /// The best intent for the message, with its confidence.
    pub fn matched_intent(&self) -> Option<(&Intent, f32)> {
        self.best_intent.and_then(|(i, score)| self.intents.get(i).map(|intent| (intent, score)))
    }
}

/// A reply being produced: its classification and its token stream.
pub struct Reply {
    /// The matched intent's name, if any.
    pub intent: Option<String>,
    /// Confidence of the classification, 0..=1.
    pub confidence: Option<f32>,
    /// The knowledge-base passages the reply is drawn from (see
    /// [`crate::knowledge::sources`]); empty for an intent's answer or the fallback. Stored on
    /// the answer's message.
    pub sources: Vec<SourceRef>,
    /// The reply's pieces, in order; concatenated they are the whole reply.
    pub tokens: BoxStream<'static, Result<String, ResponderError>>,
    /// Filled by an LLM responder's stream once the provider reports it (after the last token).
    pub usage: Option<Arc<parking_lot::Mutex<Option<Usage>>>>,
}

/// Tokens an LLM call cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reply")
            .field("intent", &self.intent)
            .field("confidence", &self.confidence)
            .field("sources", &self.sources)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ResponderError {
    #[error("responder backend: {0}")]
    Backend(String),
}

/// The responder port.
#[async_trait]
pub trait Responder: Send + Sync + std::fmt::Debug + 'static {
    async fn reply(&self, request: ReplyRequest) -> Result<Reply, ResponderError>;

    /// How many recent messages this responder wants as [`ReplyRequest::history`]. Reading
    /// them costs a store read per message, so a responder that ignores history says 0.
    fn history_len(&self) -> usize {
        20
    }

    /// The confidence an intent needs for this responder to answer with it. Below it, the
    /// visitor's message counts as unmatched (analytics, the console's "unmatched messages"),
    /// whatever intent came closest.
    fn min_confidence(&self) -> f32 {
        0.0
    }
}
