//! The engine's errors, and the one place they get stable wire codes.

use crate::store::StoreError;

/// Everything that can go wrong in the engine, as callers need to tell it apart.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EngineError {
    #[error("unknown bot")]
    BotNotFound,
    #[error("this bot is not accepting conversations")]
    BotUnavailable,
    #[error("this bot may not be embedded on this site")]
    OriginNotAllowed,
    #[error("unknown conversation")]
    ConversationNotFound,
    #[error("the resume token does not match this conversation")]
    InvalidResumeToken,
    #[error("this workspace has too many live conversations; try again shortly")]
    TenantAtCapacity,
    #[error("this conversation is overloaded; retry shortly with the same client_msg_id")]
    ConversationBusy,
    #[error("the engine is shutting down")]
    ShuttingDown,
    #[error("the conversation failed to process this event; it was not stored")]
    Internal,
    #[error("another agent ({0}) has this conversation")]
    AlreadyClaimed(String),
    #[error("you do not hold this conversation; claim it first")]
    NotAssigned,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl EngineError {
    /// The stable snake_case code clients switch on. Never carries internal detail.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BotNotFound => "bot_not_found",
            Self::BotUnavailable => "bot_unavailable",
            Self::OriginNotAllowed => "origin_not_allowed",
            Self::ConversationNotFound => "conversation_not_found",
            Self::InvalidResumeToken => "invalid_resume_token",
            Self::TenantAtCapacity => "tenant_at_capacity",
            Self::ConversationBusy => "conversation_busy",
            Self::ShuttingDown => "shutting_down",
            Self::AlreadyClaimed(_) => "already_claimed",
            Self::NotAssigned => "not_assigned",
            Self::Internal | Self::Store(_) => "internal",
        }
    }

    /// A message safe to show a visitor: store errors are not described.
    pub fn public_message(&self) -> String {
        match self {
            Self::Store(_) => "temporary storage problem; retry with the same client_msg_id".into(),
            other => other.to_string(),
        }
    }
}
