//! The [`Coordination`] port.

use async_trait::async_trait;

use super::BusError;
use crate::model::TenantId;

/// What the nodes of a cluster share: agents' presence and leases for tenant-wide jobs (one
/// process: nothing to share).
#[async_trait]
pub trait Coordination: Send + Sync + std::fmt::Debug + 'static {
    /// Records `presence` (an agent's status on this node) for `ttl` unless told again, so
    /// every node sees the agents of every node; `Offline` removes it. One process: nothing to
    /// share.
    fn share_presence(
        &self,
        _tenant: &TenantId,
        _presence: &crate::presence::AgentPresence,
        _ttl: std::time::Duration,
    ) {
    }

    /// The agents of `tenant` online or away on any node, each with the best of its nodes'
    /// statuses; `None` when this bus has a single node (the local presence knows).
    async fn cluster_presence(
        &self,
        _tenant: &TenantId,
    ) -> Option<Vec<crate::presence::AgentPresence>> {
        None
    }

    /// Takes or renews the cluster-wide lease `name` for `ttl`: `Some(Ok(true))` while this
    /// node holds it, so one node at a time does a tenant-wide job (routing a tenant's waiting
    /// conversations, delivering its channel messages); `Some(Err)` when the cluster could not
    /// say; `None` when this bus has a single node (it always holds it).
    async fn lease(
        &self,
        _name: &str,
        _ttl: std::time::Duration,
    ) -> Option<Result<bool, BusError>> {
        None
    }
}
