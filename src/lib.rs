//! The `parla` binary's library half: wires the crates into a running server, so that tests
//! start exactly what `parla serve` starts.
//!
//! # Layout
//! - [`start`]: opens the store, seeds the demo, builds the engine and the HTTP server.
//! - [`Running`]: the running server: its bound address, its engine, how to stop it.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use actix_web::{App, HttpServer, dev::ServerHandle};
use anyhow::Context;
use parla_config::Settings;
use parla_engine::{
    Engine,
    bus::memory::InProcessBus,
    demo,
    responder::builtin::BuiltinResponder,
    store::{Store, redb::RedbStore},
};

/// A started server.
#[derive(Debug)]
pub struct Running {
    /// The address actually bound (useful with port 0).
    pub addr: SocketAddr,
    pub engine: Engine,
    /// True when this start created the demo tenant and bot.
    pub demo_created: bool,
    handle: ServerHandle,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// Stops accepting, lets open work finish within the grace period, and waits.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.handle.stop(true).await;
        self.task.await.context("server task")?.context("server")
    }

    /// Waits until the server ends on its own.
    pub async fn wait(self) -> anyhow::Result<()> {
        self.task.await.context("server task")?.context("server")
    }

    /// A handle that can stop the server from elsewhere (e.g. a signal handler).
    pub fn handle(&self) -> ServerHandle {
        self.handle.clone()
    }
}

/// Starts Parla with `settings` on the current tokio runtime, which also hosts the engine's
/// conversation actors.
pub async fn start(settings: Settings) -> anyhow::Result<Running> {
    let store = RedbStore::open(
        &settings.store.data_dir,
        settings.store.group_commit_max_batch,
        settings.store.writer_queue,
    )
    .with_context(|| format!("opening the store in {}", settings.store.data_dir.display()))?;
    let store: Arc<dyn Store> = Arc::new(store);
    let demo_created = if settings.demo.enabled {
        demo::ensure_demo(&*store).await.context("seeding the demo")?
    } else {
        false
    };

    let bus = Arc::new(InProcessBus::new(settings.engine.subscriber_buffer));
    let responder = Arc::new(BuiltinResponder::new(
        Duration::from_millis(settings.responder.token_delay_ms),
        settings.responder.min_confidence,
    ));
    let engine = Engine::new(store, bus, responder, settings.engine.clone());

    let (app_engine, gateway) = (engine.clone(), settings.gateway.clone());
    let mut server = HttpServer::new(move || {
        App::new().configure(parla_gateway::configure(app_engine.clone(), gateway.clone()))
    })
    // Token frames are tiny and must leave at once: without TCP_NODELAY, Nagle's algorithm holds
    // each one until the client's delayed ACK (~40 ms) arrives.
    .on_connect(|conn, _| {
        if let Some(tcp) = conn.downcast_ref::<actix_web::rt::net::TcpStream>()
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
    let server = server
        .bind(settings.server.listen)
        .with_context(|| format!("binding {}", settings.server.listen))?;
    let addr = *server.addrs().first().context("the server bound no address")?;
    let server = server.run();
    let handle = server.handle();
    let task = tokio::spawn(server);
    Ok(Running { addr, engine, demo_created, handle, task })
}
