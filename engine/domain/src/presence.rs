//! An agent's presence as the others see it (the registry that keeps it is the engine's).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::model::AgentRef;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PresenceStatus {
    /// Takes new conversations.
    Online,
    /// Connected, but not taking new conversations.
    Away,
    Offline,
}

/// One agent's presence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AgentPresence {
    pub agent: AgentRef,
    pub status: PresenceStatus,
}
