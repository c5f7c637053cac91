//! The audit log: who in a workspace did what, when, from where — every admin write, each
//! data-subject export and erasure — appended, never changed, readable by the workspace's
//! owners and admins. An entry names what was acted on, never its content (an erasure records
//! how many conversations and messages it deleted, not what they said).

use serde::{Deserialize, Serialize};

use crate::model::TenantId;

/// Who acted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum AuditActor {
    /// A member, by account id.
    Account(String),
    /// An integration, by API key id.
    ApiKey(String),
}

/// One entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEntry {
    /// Time-ordered (a UUIDv7): newer entries sort after older ones.
    pub id: String,
    #[schema(value_type = String)]
    pub tenant_id: TenantId,
    /// Unix milliseconds.
    pub at: i64,
    pub actor: AuditActor,
    /// The client's address as the server saw it (through trusted proxies).
    pub ip: Option<String>,
    /// What was done: the route (`PATCH /api/bots/{id}`) or a named action
    /// (`data_subject.erase`).
    pub action: String,
    /// What it was done to: the request's path with its ids (`/api/bots/b_123`).
    pub target: String,
    /// The answer's status, and what the action reports (counts, never content).
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}
