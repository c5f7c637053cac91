//! The intent-hooks port: what happens outside Parla when a bot answers with an intent that has
//! actions (today, signed webhooks: the egress adapter's `webhooks`).

use crate::model::{Intent, Message};

/// Told each stored answer whose intent has actions. Fire and forget: the conversation never
/// waits for, or hears about, a delivery.
pub trait IntentHooks: Send + Sync + std::fmt::Debug + 'static {
    /// `answer` (stored, with its seq) answered `question` with `intent`, in bot `bot_id`.
    fn intent_matched(&self, bot_id: &str, intent: &Intent, question: &str, answer: &Message);
}

/// No hooks: for engines that deliver nothing (tests, tools).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHooks;

impl IntentHooks for NoHooks {
    fn intent_matched(&self, _: &str, _: &Intent, _: &str, _: &Message) {}
}
