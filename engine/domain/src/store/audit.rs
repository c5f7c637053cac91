//! The [`AuditLog`] port.

use async_trait::async_trait;

use super::StoreResult;
use crate::audit::AuditEntry;
use crate::model::TenantId;

/// Each workspace's audit log: appended, never updated.
#[async_trait]
pub trait AuditLog: Send + Sync + std::fmt::Debug + 'static {
    /// Appends `entry` (ids are unique: a repeated id is stored once).
    async fn append_audit(&self, entry: &AuditEntry) -> StoreResult<()>;

    /// The tenant's entries, newest first, strictly older than `before` (an entry id, the
    /// previous page's last) when given, at most `limit`.
    async fn list_audit(
        &self,
        tenant: &TenantId,
        before: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<AuditEntry>>;
}
