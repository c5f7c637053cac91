//! Engine counters, rendered in Prometheus' text format at `GET /metrics`.
//!
//! Plain atomics: incremented on the hot path without locks; read only when scraped.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

#[derive(Debug, Default)]
pub struct Metrics {
    /// Conversation actors alive now, all tenants.
    pub live_conversations: AtomicI64,
    /// Actors started (first start or rehydration after passivation).
    pub actor_starts: AtomicU64,
    /// Actors whose handler panicked and that were restarted from the store.
    pub actor_restarts: AtomicU64,
    /// Actors stopped for being idle.
    pub actor_passivations: AtomicU64,
    /// Messages durably stored.
    pub messages_stored: AtomicU64,
    /// Duplicate `client_msg_id`s acknowledged without storing.
    pub duplicates_acknowledged: AtomicU64,
    /// Inbound events refused (capacity, store failure, panic).
    pub inbound_rejected: AtomicU64,
    /// Intent webhook events delivered (a 2xx answer).
    pub webhooks_delivered: AtomicU64,
    /// Intent webhook events given up on (refused target, final status, attempts exhausted).
    pub webhooks_failed: AtomicU64,
}

impl Metrics {
    pub fn render_prometheus(&self) -> String {
        let rows: [(&str, &str, &str, i64); 9] = [
            (
                "parla_live_conversations",
                "gauge",
                "Conversation actors alive now",
                self.live_conversations.load(Relaxed),
            ),
            (
                "parla_actor_starts_total",
                "counter",
                "Conversation actors started",
                load(&self.actor_starts),
            ),
            (
                "parla_actor_restarts_total",
                "counter",
                "Conversation actors restarted after a panic",
                load(&self.actor_restarts),
            ),
            (
                "parla_actor_passivations_total",
                "counter",
                "Conversation actors stopped for being idle",
                load(&self.actor_passivations),
            ),
            (
                "parla_messages_stored_total",
                "counter",
                "Messages durably stored",
                load(&self.messages_stored),
            ),
            (
                "parla_duplicates_acknowledged_total",
                "counter",
                "Duplicate client_msg_id acknowledged, not stored",
                load(&self.duplicates_acknowledged),
            ),
            (
                "parla_inbound_rejected_total",
                "counter",
                "Inbound events refused",
                load(&self.inbound_rejected),
            ),
            (
                "parla_webhooks_delivered_total",
                "counter",
                "Intent webhook events delivered",
                load(&self.webhooks_delivered),
            ),
            (
                "parla_webhooks_failed_total",
                "counter",
                "Intent webhook events given up on",
                load(&self.webhooks_failed),
            ),
        ];
        let mut out = String::new();
        for (name, kind, help, value) in rows {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"));
        }
        out
    }
}

fn load(counter: &AtomicU64) -> i64 {
    i64::try_from(counter.load(Relaxed)).unwrap_or(i64::MAX)
}
