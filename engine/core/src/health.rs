//! Readiness: whether this node can do its work now (`GET /readyz`).
//!
//! Each port the node depends on answers one cheap request within [`PROBE_TIMEOUT`]: the store
//! (a read of a tenant that does not exist), the bus's services (in a cluster: Kafka's metadata
//! for the inbound topic, and a Redis `PING`), and the remote pieces of retrieval when
//! configured (an embeddings API, Qdrant). The probes run concurrently, so an answer takes at
//! most one timeout; its result is kept for [`CACHE_FOR`] and concurrent callers share one
//! probe, so a load balancer polling every node cannot turn readiness into load.
//! Liveness (`GET /healthz`) is not here: it checks nothing but that the process answers.

use std::{sync::Arc, time::Duration};

use serde::Serialize;

use crate::engine::Deps;

/// Time each probe has: under a second, so that `/readyz` answers within a typical probe
/// timeout (Kubernetes' default is 1 s) even when a service hangs.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(750);

/// How long a probe's result is served before the next probe.
pub const CACHE_FOR: Duration = Duration::from_secs(1);

/// The outcome of one round of probes.
#[derive(Debug, Clone, Serialize)]
pub struct Readiness {
    /// `ready`; `degraded` (still ready) when an optional service (the remote embeddings API,
    /// Qdrant) failed; `unavailable` when a service the node cannot work without failed.
    pub status: &'static str,
    /// By service: `store`, and where they apply `kafka`, `redis`, `embeddings`, `vectors`.
    pub checks: std::collections::BTreeMap<&'static str, Check>,
}

/// One service's probe. Why it failed is logged, not answered: `/readyz` is served on the
/// public listener, and errors may name internal hosts.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// `ok`, `failed` (the node is not ready) or `degraded` (an optional service).
    pub status: &'static str,
    /// How long it took, in milliseconds (a failure near the probe timeout is a timeout).
    pub ms: u64,
    #[serde(skip)]
    pub error: Option<String>,
}

impl Readiness {
    pub fn ready(&self) -> bool {
        self.status != "unavailable"
    }
}

/// Probes every port of `deps`, concurrently.
pub(crate) async fn probe(deps: &Arc<Deps>) -> Readiness {
    let started = std::time::Instant::now();
    let store = async {
        let probe = crate::model::TenantId("parla-readiness-probe".to_owned());
        let outcome = match tokio::time::timeout(PROBE_TIMEOUT, deps.store.get_tenant(&probe)).await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(timed_out()),
        };
        (outcome, started.elapsed())
    };
    let bus = async {
        let probes = deps.bus.probe(PROBE_TIMEOUT);
        let outcomes = tokio::time::timeout(PROBE_TIMEOUT + Duration::from_millis(100), probes)
            .await
            .unwrap_or_else(|_| vec![("bus", Err(timed_out()))]);
        (outcomes, started.elapsed())
    };
    let knowledge = async {
        let probes = deps.knowledge.probe(PROBE_TIMEOUT);
        let outcomes = tokio::time::timeout(PROBE_TIMEOUT + Duration::from_millis(100), probes)
            .await
            .unwrap_or_else(|_| vec![("knowledge", Err(timed_out()))]);
        (outcomes, started.elapsed())
    };
    let ((store, store_took), (bus, bus_took), (knowledge, knowledge_took)) =
        tokio::join!(store, bus, knowledge);
    let mut checks = std::collections::BTreeMap::new();
    // The store and the bus are needed for any work; the knowledge base's remote pieces are
    // not (answers go on without passages), so their failure degrades, never unreadies: a
    // Qdrant outage must not take every node out of its Service.
    let mut add = |name: &'static str, outcome: Result<(), String>, took: Duration, hard: bool| {
        let ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX);
        let check = match outcome {
            Ok(()) => Check { status: "ok", ms, error: None },
            Err(e) if hard => Check { status: "failed", ms, error: Some(e) },
            Err(e) => Check { status: "degraded", ms, error: Some(e) },
        };
        checks.insert(name, check);
    };
    add("store", store, store_took, true);
    for (name, outcome) in bus {
        add(name, outcome, bus_took, true);
    }
    for (name, outcome) in knowledge {
        add(name, outcome, knowledge_took, false);
    }
    let status = if checks.values().any(|c| c.status == "failed") {
        "unavailable"
    } else if checks.values().any(|c| c.status == "degraded") {
        "degraded"
    } else {
        "ready"
    };
    Readiness { status, checks }
}

/// Logs what changed since the `previous` round: each check that started failing (with why),
/// and recoveries. Only changes: a node polled every second while a service is down logs once.
pub(crate) fn log_changes(previous: Option<&Readiness>, now: &Readiness) {
    for (name, check) in &now.checks {
        let was_failing =
            previous.and_then(|p| p.checks.get(name)).is_some_and(|c| c.error.is_some());
        match (&check.error, was_failing) {
            (Some(e), false) => tracing::warn!(check = name, error = %e, "readiness check failed"),
            (None, true) => tracing::info!(check = name, "readiness check recovered"),
            _ => {}
        }
    }
}

fn timed_out() -> String {
    format!("no answer in {} ms", PROBE_TIMEOUT.as_millis())
}
