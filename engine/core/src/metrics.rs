//! The engine's metrics, rendered in Prometheus' text format (0.0.4) at `GET /metrics`.
//!
//! One [`prometheus::Registry`] per [`crate::Engine`], never the crate's process-wide default
//! registry: tests start several servers in one process, and each must count only its own.
//!
//! # Series
//! | name | type | labels | what |
//! |---|---|---|---|
//! | `parla_live_conversations` | gauge | | conversation actors alive now |
//! | `parla_tenant_live_conversations` | gauge | `tenant` | actors a tenant's supervisor holds (what its cap counts); sampled at scrape, tenants with none are absent |
//! | `parla_actor_starts_total`, `…_restarts_total`, `…_passivations_total` | counter | | actor lifecycle |
//! | `parla_messages_stored_total` | counter | | messages durably stored |
//! | `parla_messages_total` | counter | `channel` (web, whatsapp, sms, api, push), `direction` (in: the visitor's; out: the bot's or an agent's) | messages stored, by where the conversation came from |
//! | `parla_duplicates_acknowledged_total`, `parla_inbound_rejected_total` | counter | | idempotent resends; refused events |
//! | `parla_webhooks_delivered_total`, `parla_webhooks_failed_total` | counter | | intent webhooks |
//! | `parla_sockets_open` | gauge | `kind` (widget, agent) | WebSockets open now |
//! | `parla_mailbox_depth` | histogram | | messages still queued in an actor's mailbox when it takes one |
//! | `parla_store_operation_seconds` | histogram | `op` (the store method) | store calls made by the engine |
//! | `parla_llm_first_token_seconds`, `parla_llm_reply_seconds` | histogram | | LLM answers: request to first token, to last |
//! | `parla_llm_tokens_total` | counter | `kind` (prompt, completion) | tokens LLM answers cost, as the provider reports them |
//! | `parla_errors_total` | counter | `source` (widget, agent, api), `code` | error frames sent on sockets, error responses of the admin API |
//!
//! # Hot path
//! Every series touched per message is resolved when the engine starts and kept as a handle
//! (an `Arc` around atomics): counting is an atomic add, with no label hashing, lock or
//! allocation. Only error counters are looked up by label when they move (errors are rare, and
//! a lookup of an existing series is a hash and a read lock, no allocation). The per-tenant
//! gauge costs nothing per message: it is read from the supervisors when scraped.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::model::Channel;

/// The content type of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = prometheus::TEXT_FORMAT;

/// A WebSocket's kind, for `parla_sockets_open{kind}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketKind {
    /// A visitor's widget socket (`/v1/widget/ws`).
    Widget,
    /// An agent's socket (`/v1/agent/ws`).
    Agent,
}

impl SocketKind {
    const ALL: [SocketKind; 2] = [SocketKind::Widget, SocketKind::Agent];

    fn label(self) -> &'static str {
        match self {
            SocketKind::Widget => "widget",
            SocketKind::Agent => "agent",
        }
    }
}

/// Who sent an error to a client, for `parla_errors_total{source}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorSource {
    Widget,
    Agent,
    Api,
}

impl ErrorSource {
    fn label(self) -> &'static str {
        match self {
            ErrorSource::Widget => "widget",
            ErrorSource::Agent => "agent",
            ErrorSource::Api => "api",
        }
    }
}

/// A message's direction, for `parla_messages_total{direction}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The visitor's (or customer's) message.
    In,
    /// The bot's or an agent's.
    Out,
}

/// The store calls the engine times (`parla_store_operation_seconds{op}`), named after the
/// `Store` methods. Measured where the engine calls them, so every backend is measured alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOp {
    Append,
    LastSeq,
    MessagesAfter,
    MessageByClientId,
    GetConversation,
    CreateConversation,
    ResolveBot,
    /// `get_bot` and `list_intents` of a bot the cache did not have.
    LoadBot,
    GetTenant,
    TokenUsage,
    AddTokenUsage,
    SetHandling,
    MergeUserData,
    AddNote,
    DeleteConversation,
}

impl StoreOp {
    const ALL: [StoreOp; 15] = [
        StoreOp::Append,
        StoreOp::LastSeq,
        StoreOp::MessagesAfter,
        StoreOp::MessageByClientId,
        StoreOp::GetConversation,
        StoreOp::CreateConversation,
        StoreOp::ResolveBot,
        StoreOp::LoadBot,
        StoreOp::GetTenant,
        StoreOp::TokenUsage,
        StoreOp::AddTokenUsage,
        StoreOp::SetHandling,
        StoreOp::MergeUserData,
        StoreOp::AddNote,
        StoreOp::DeleteConversation,
    ];

    fn label(self) -> &'static str {
        match self {
            StoreOp::Append => "append",
            StoreOp::LastSeq => "last_seq",
            StoreOp::MessagesAfter => "messages_after",
            StoreOp::MessageByClientId => "message_by_client_id",
            StoreOp::GetConversation => "get_conversation",
            StoreOp::CreateConversation => "create_conversation",
            StoreOp::ResolveBot => "resolve_bot",
            StoreOp::LoadBot => "load_bot",
            StoreOp::GetTenant => "get_tenant",
            StoreOp::TokenUsage => "token_usage",
            StoreOp::AddTokenUsage => "add_token_usage",
            StoreOp::SetHandling => "set_handling",
            StoreOp::MergeUserData => "merge_user_data",
            StoreOp::AddNote => "add_note",
            StoreOp::DeleteConversation => "delete_conversation",
        }
    }
}

/// Store calls: from a cached read (≈ 10 µs) to an fsync'd append under load, or a CQL round
/// trip.
const STORE_BUCKETS: [f64; 14] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];
/// LLM answers: a local model's first token in tens of milliseconds to a long answer.
const LLM_BUCKETS: [f64; 12] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0];
/// Queued messages, up to past the default mailbox capacity (64).
const MAILBOX_BUCKETS: [f64; 9] = [0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 256.0];

/// The engine's metrics. Built by the engine; transports reach it with `Engine::metrics`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Conversation actors alive now, all tenants.
    pub live_conversations: IntGauge,
    /// Actors started (first start or rehydration after passivation).
    pub actor_starts: IntCounter,
    /// Actors whose handler panicked and that were restarted from the store.
    pub actor_restarts: IntCounter,
    /// Actors stopped for being idle.
    pub actor_passivations: IntCounter,
    /// Messages durably stored.
    pub messages_stored: IntCounter,
    /// Duplicate `client_msg_id`s acknowledged without storing.
    pub duplicates_acknowledged: IntCounter,
    /// Inbound events refused (capacity, store failure, panic).
    pub inbound_rejected: IntCounter,
    /// Intent webhook events delivered (a 2xx answer).
    pub webhooks_delivered: IntCounter,
    /// Intent webhook events given up on (refused target, final status, attempts exhausted).
    pub webhooks_failed: IntCounter,
    /// By [`SocketKind`].
    sockets: [IntGauge; 2],
    /// Set from the tenant supervisors when scraped ([`Metrics::render`]).
    tenant_live: IntGaugeVec,
    /// By channel, then direction (in, out).
    messages: [[IntCounter; 2]; Channel::ALL.len()],
    mailbox_depth: Histogram,
    /// By [`StoreOp`], in `StoreOp::ALL` order.
    store: Vec<Histogram>,
    llm_first_token: Histogram,
    llm_reply: Histogram,
    /// prompt, completion.
    llm_tokens: [IntCounter; 2],
    errors: IntCounterVec,
    /// One scrape at a time: the per-tenant gauge is reset and refilled while it holds it.
    scrape: parking_lot::Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Holds a socket as open in `parla_sockets_open` until dropped.
#[derive(Debug)]
pub struct SocketGuard(IntGauge);

impl Drop for SocketGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("a valid counter");
            registry.register(Box::new(c.clone())).expect("registered once");
            c
        };
        let histogram = |name: &str, help: &str, buckets: &[f64]| {
            let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))
                .expect("a valid histogram");
            registry.register(Box::new(h.clone())).expect("registered once");
            h
        };
        let live_conversations =
            IntGauge::new("parla_live_conversations", "Conversation actors alive now")
                .expect("a valid gauge");
        registry.register(Box::new(live_conversations.clone())).expect("registered once");

        let sockets = IntGaugeVec::new(
            Opts::new("parla_sockets_open", "WebSockets open now, by kind"),
            &["kind"],
        )
        .expect("a valid gauge");
        registry.register(Box::new(sockets.clone())).expect("registered once");
        let tenant_live = IntGaugeVec::new(
            Opts::new(
                "parla_tenant_live_conversations",
                "Live conversation actors a tenant's supervisor holds (what its cap counts)",
            ),
            &["tenant"],
        )
        .expect("a valid gauge");
        registry.register(Box::new(tenant_live.clone())).expect("registered once");
        let messages = IntCounterVec::new(
            Opts::new(
                "parla_messages_total",
                "Messages stored, by the conversation's channel; in = the visitor's, out = the \
                 bot's or an agent's",
            ),
            &["channel", "direction"],
        )
        .expect("a valid counter");
        registry.register(Box::new(messages.clone())).expect("registered once");
        let store = HistogramVec::new(
            HistogramOpts::new(
                "parla_store_operation_seconds",
                "Store calls made by the engine, by store method",
            )
            .buckets(STORE_BUCKETS.to_vec()),
            &["op"],
        )
        .expect("a valid histogram");
        registry.register(Box::new(store.clone())).expect("registered once");
        let llm_tokens = IntCounterVec::new(
            Opts::new("parla_llm_tokens_total", "Tokens LLM answers cost, as the provider reports"),
            &["kind"],
        )
        .expect("a valid counter");
        registry.register(Box::new(llm_tokens.clone())).expect("registered once");
        let errors = IntCounterVec::new(
            Opts::new(
                "parla_errors_total",
                "Error frames sent on sockets and error responses of the admin API, by code",
            ),
            &["source", "code"],
        )
        .expect("a valid counter");
        registry.register(Box::new(errors.clone())).expect("registered once");

        Self {
            actor_starts: counter("parla_actor_starts_total", "Conversation actors started"),
            actor_restarts: counter(
                "parla_actor_restarts_total",
                "Conversation actors restarted after a panic",
            ),
            actor_passivations: counter(
                "parla_actor_passivations_total",
                "Conversation actors stopped for being idle",
            ),
            messages_stored: counter("parla_messages_stored_total", "Messages durably stored"),
            duplicates_acknowledged: counter(
                "parla_duplicates_acknowledged_total",
                "Duplicate client_msg_id acknowledged, not stored",
            ),
            inbound_rejected: counter("parla_inbound_rejected_total", "Inbound events refused"),
            webhooks_delivered: counter(
                "parla_webhooks_delivered_total",
                "Intent webhook events delivered",
            ),
            webhooks_failed: counter(
                "parla_webhooks_failed_total",
                "Intent webhook events given up on",
            ),
            mailbox_depth: histogram(
                "parla_mailbox_depth",
                "Messages still queued in a conversation actor's mailbox when it takes one",
                &MAILBOX_BUCKETS,
            ),
            llm_first_token: histogram(
                "parla_llm_first_token_seconds",
                "LLM answers: from the request to the first token",
                &LLM_BUCKETS,
            ),
            llm_reply: histogram(
                "parla_llm_reply_seconds",
                "LLM answers: from the request to the last token",
                &LLM_BUCKETS,
            ),
            live_conversations,
            sockets: SocketKind::ALL.map(|k| sockets.with_label_values(&[k.label()])),
            tenant_live,
            messages: Channel::ALL
                .map(|c| ["in", "out"].map(|d| messages.with_label_values(&[c.as_str(), d]))),
            store: StoreOp::ALL.iter().map(|op| store.with_label_values(&[op.label()])).collect(),
            llm_tokens: ["prompt", "completion"].map(|k| llm_tokens.with_label_values(&[k])),
            errors,
            scrape: parking_lot::Mutex::new(()),
            registry,
        }
    }

    /// Counts a socket as open until the guard is dropped.
    pub fn socket_opened(&self, kind: SocketKind) -> SocketGuard {
        let gauge = self.sockets[kind as usize].clone();
        gauge.inc();
        SocketGuard(gauge)
    }

    /// A message stored in a conversation of `channel`.
    pub fn message_stored(&self, channel: Channel, direction: Direction) {
        self.messages_stored.inc();
        self.messages[channel.index()][direction as usize].inc();
    }

    /// An actor took a message and `queued` more wait behind it.
    pub fn mailbox_depth(&self, queued: usize) {
        self.mailbox_depth.observe(queued as f64);
    }

    /// Awaits a store call, timing it as `op`.
    pub async fn store_call<T>(&self, op: StoreOp, call: impl Future<Output = T>) -> T {
        let started = Instant::now();
        let out = call.await;
        self.store_took(op, started.elapsed());
        out
    }

    /// A store call (or several, as one `op`) took `took`.
    pub fn store_took(&self, op: StoreOp, took: Duration) {
        if let Some(h) = self.store.get(op as usize) {
            h.observe(took.as_secs_f64());
        }
    }

    /// An LLM answer's first token came `after` its request.
    /// Counts an intent webhook's delivery (`true`) or failure, as told by the webhooks adapter.
    pub fn webhook_outcome(self: &Arc<Self>) -> Arc<dyn Fn(bool) + Send + Sync> {
        let metrics = self.clone();
        Arc::new(move |delivered| {
            if delivered {
                metrics.webhooks_delivered.inc();
            } else {
                metrics.webhooks_failed.inc();
            }
        })
    }

    pub fn llm_first_token(&self, after: Duration) {
        self.llm_first_token.observe(after.as_secs_f64());
    }

    /// An LLM answer's last token came `after` its request.
    pub fn llm_reply(&self, after: Duration) {
        self.llm_reply.observe(after.as_secs_f64());
    }

    /// Tokens an LLM answer cost.
    pub fn llm_tokens(&self, prompt: u32, completion: u32) {
        self.llm_tokens[0].inc_by(u64::from(prompt));
        self.llm_tokens[1].inc_by(u64::from(completion));
    }

    /// An error with `code` sent to a client (a frame) or answered (an API response).
    pub fn error(&self, source: ErrorSource, code: &str) {
        self.errors.with_label_values(&[source.label(), code]).inc();
    }

    /// Every series in Prometheus' text format ([`CONTENT_TYPE`]); `tenants` are the live
    /// actors of each tenant now (tenants with none are left out).
    pub fn render(&self, tenants: impl IntoIterator<Item = (String, usize)>) -> String {
        let _one_at_a_time = self.scrape.lock();
        self.tenant_live.reset();
        for (tenant, live) in tenants {
            if live > 0 {
                let live = i64::try_from(live).unwrap_or(i64::MAX);
                self.tenant_live.with_label_values(&[tenant.as_str()]).set(live);
            }
        }
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "could not encode the metrics");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_channel_indexes_its_own_series() {
        for (i, channel) in Channel::ALL.into_iter().enumerate() {
            assert_eq!(channel.index(), i, "{channel:?}");
        }
    }

    #[test]
    fn every_series_renders_in_the_text_format() {
        let m = Metrics::new();
        m.live_conversations.inc();
        m.message_stored(Channel::Whatsapp, Direction::Out);
        let _socket = m.socket_opened(SocketKind::Agent);
        m.error(ErrorSource::Widget, "malformed_frame");
        m.llm_tokens(3, 2);
        m.mailbox_depth(0);
        m.store_took(StoreOp::Append, Duration::from_millis(2));
        let text = m.render([("t1".to_owned(), 2), ("t2".to_owned(), 0)]);
        for line in [
            "# TYPE parla_live_conversations gauge",
            "parla_live_conversations 1",
            "parla_messages_stored_total 1",
            "parla_messages_total{channel=\"whatsapp\",direction=\"out\"} 1",
            "parla_messages_total{channel=\"web\",direction=\"in\"} 0",
            "parla_sockets_open{kind=\"agent\"} 1",
            "parla_sockets_open{kind=\"widget\"} 0",
            "parla_errors_total{code=\"malformed_frame\",source=\"widget\"} 1",
            "parla_llm_tokens_total{kind=\"prompt\"} 3",
            "parla_tenant_live_conversations{tenant=\"t1\"} 2",
            "parla_mailbox_depth_bucket{le=\"0\"} 1",
            "parla_store_operation_seconds_count{op=\"append\"} 1",
            "# TYPE parla_store_operation_seconds histogram",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
        assert!(!text.contains("t2"), "a tenant without live actors is left out");
        drop(_socket);
        let text = m.render([]);
        assert!(text.contains("parla_sockets_open{kind=\"agent\"} 0"));
        assert!(!text.contains("parla_tenant_live_conversations{"), "reset when scraped");
    }
}
