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
    /// A visitor's submitted form does not fit the form it answers (the detail says which
    /// field and why).
    #[error("invalid form: {0}")]
    InvalidForm(String),
    /// A visitor's input out of shape (see [`crate::input::VisitorInput::check`]).
    #[error(transparent)]
    InvalidInput(#[from] crate::input::InputError),
    /// A posted visitor message was not confirmed stored in time: it may still be; retry
    /// with the same `client_msg_id`.
    #[error("the message was not confirmed in time; retry with the same client_msg_id")]
    NotConfirmed,
    /// A posted visitor message was refused by its conversation because it could not be
    /// stored (a store failure): retry with the same `client_msg_id`.
    #[error("the message was not stored; retry with the same client_msg_id")]
    NotStored,
    /// The workspace's plan allows no more of this (the upgrade path is the billing API).
    #[error("the workspace's plan allows no more {}: upgrade the plan", .0.as_str())]
    PlanLimitReached(crate::billing::Limit),
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
            Self::InvalidForm(_) => "invalid_form",
            Self::InvalidInput(e) => e.code,
            Self::NotConfirmed => "timeout",
            Self::NotStored => "not_stored",
            Self::PlanLimitReached(_) => "plan_limit_reached",
            Self::Internal | Self::Store(_) => "internal",
        }
    }

    /// Whether trying the same thing again cannot succeed (input out of shape), as opposed to
    /// a refusal that a retry may get past (capacity, a store failure, a timeout).
    pub fn is_permanent(&self) -> bool {
        matches!(self, Self::InvalidInput(_) | Self::InvalidForm(_))
    }

    /// A message safe to show a visitor: store errors are not described.
    pub fn public_message(&self) -> String {
        match self {
            Self::Store(_) => "temporary storage problem; retry with the same client_msg_id".into(),
            other => other.to_string(),
        }
    }

    /// The error as it crosses nodes: its code, and the agent's name for `already_claimed`.
    pub fn to_wire(&self) -> WireError {
        let detail = match self {
            Self::AlreadyClaimed(name) | Self::InvalidForm(name) => Some(name.clone()),
            Self::PlanLimitReached(limit) => Some(limit.as_str().to_owned()),
            _ => None,
        };
        WireError { code: self.code().to_owned(), detail }
    }

    /// Back from [`EngineError::to_wire`] (a store failure arrives as `Internal`: its detail
    /// never leaves its node; a visitor's input is checked, and a post confirmed, on the node
    /// it came in on, so `InvalidInput`, `NotConfirmed` and `NotStored` never cross).
    pub fn from_wire(wire: WireError) -> Self {
        match wire.code.as_str() {
            "bot_not_found" => Self::BotNotFound,
            "bot_unavailable" => Self::BotUnavailable,
            "origin_not_allowed" => Self::OriginNotAllowed,
            "conversation_not_found" => Self::ConversationNotFound,
            "invalid_resume_token" => Self::InvalidResumeToken,
            "tenant_at_capacity" => Self::TenantAtCapacity,
            "conversation_busy" => Self::ConversationBusy,
            "shutting_down" => Self::ShuttingDown,
            "already_claimed" => Self::AlreadyClaimed(wire.detail.unwrap_or_default()),
            "not_assigned" => Self::NotAssigned,
            "invalid_form" => Self::InvalidForm(wire.detail.unwrap_or_default()),
            "plan_limit_reached" => {
                match wire.detail.as_deref().and_then(crate::billing::Limit::parse) {
                    Some(limit) => Self::PlanLimitReached(limit),
                    None => Self::Internal,
                }
            }
            _ => Self::Internal,
        }
    }
}

/// An [`EngineError`] on the wire between nodes.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WireError {
    pub code: String,
    pub detail: Option<String>,
}
