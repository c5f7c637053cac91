//! The [`Probe`] port.

use async_trait::async_trait;

/// Readiness of the services the bus depends on.
#[async_trait]
pub trait Probe: Send + Sync + std::fmt::Debug + 'static {
    /// Probes the services this bus depends on, each answering within `timeout`, for
    /// readiness (`GET /readyz`): `(service, outcome)`. An in-process bus depends on none.
    async fn probe(
        &self,
        _timeout: std::time::Duration,
    ) -> Vec<(&'static str, Result<(), String>)> {
        Vec::new()
    }
}
