//! Parla's gateway: the HTTP and WebSocket doors visitors come through.
//!
//! Transports are thin: handlers decode, call the [`parla_engine::Engine`], encode.
//!
//! # Layout
//! - [`protocol`]: widget protocol v1 wire types (documented in `docs/protocol.md`).
//! - [`widget_ws`]: `GET /v1/widget/ws`, one task per socket.
//! - [`agent_ws`]: `GET /v1/agent/ws`, the agents' socket: their inbox and the conversations
//!   they watch, with commands run in each conversation's actor; mounted by the binary where
//!   the console is served ([`configure_agents`]).
//! - [`widget_assets`]: the embeddable widget's files (`GET /widget.js`, `GET /widget/app.js`),
//!   its public bot settings, and `GET /` (a demo page embedding it).
//! - [`configure`]: mounts every route (the binary adds `/healthz`, `/readyz` and `/metrics`
//!   on every role's listener).
//!
//! # Concurrency model
//! actix-web runs one single-threaded runtime per worker; each socket is a task on its worker.
//! Conversation actors live on the engine's own multi-threaded runtime; the two meet only
//! through bounded channels (actor mailboxes) and the bus's broadcast subscriptions.

/// Widget protocol v1: the `parla-protocol` crate's frames (`gateway/protocol`), with the one
/// conversion that needs the engine's model ([`frames::message_frame`]).
pub mod protocol {
    pub use parla_protocol::widget::*;
}
pub mod agent_ws;
mod frames;
pub mod widget_assets;
pub mod widget_ws;

use std::sync::Arc;

use actix_web::web;
use parla_config::GatewaySettings;
use parla_engine::Engine;

pub use agent_ws::AgentState;
pub use widget_ws::{VisitorLimits, WidgetState};

/// Mounts the gateway's routes. `shutdown` turns true when the server begins to stop;
/// `limits` are shared by every worker of the process (one budget per client, not one per
/// worker).
pub fn configure(
    engine: Engine,
    settings: GatewaySettings,
    limits: Arc<VisitorLimits>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> impl FnOnce(&mut web::ServiceConfig) {
    let state = WidgetState { engine, settings: Arc::new(settings), limits, shutdown };
    move |cfg| {
        cfg.app_data(web::Data::new(state))
            .configure(widget_assets::configure)
            .route("/v1/widget/ws", web::get().to(widget_ws::widget_ws));
    }
}

/// Mounts the agent socket (`/v1/agent/ws`). The binary puts it beside the console, on the
/// admin role's listener: agents' pages and their socket share an origin.
pub fn configure_agents(state: AgentState) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.service(
            web::resource("/v1/agent/ws")
                .app_data(web::Data::new(state))
                .route(web::get().to(agent_ws::agent_ws)),
        );
    }
}
