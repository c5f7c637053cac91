//! The operations endpoints, on every role's listener: liveness, readiness and metrics.
//!
//! - `GET /healthz`: liveness. The process answers: 200 always, nothing checked (a restart
//!   would not fix a database that is down).
//! - `GET /readyz`: readiness. 200 `{"status":"ready","checks":{…}}` when every port this node
//!   depends on answered in time (`"degraded"`, still 200, when only an optional one — a remote
//!   embeddings API, Qdrant — did not), else 503 with `"status":"unavailable"` and the failed checks
//!   marked `failed` (see [`parla_engine::health`]; cached for a second, so polling is cheap).
//! - `GET /metrics`: Prometheus' text format 0.0.4 (see [`parla_engine::metrics`]).

use actix_web::{HttpResponse, http::header, web};
use parla_engine::Engine;

/// What the handlers share: the engine, under a type of our own (no clash with other crates'
/// app data).
#[derive(Debug, Clone)]
struct Ops {
    engine: Engine,
}

/// Mounts `/healthz`, and `/readyz` and `/metrics` unless `only_liveness` (they have a
/// listener of their own: `[server] ops_listen`).
pub fn configure(engine: Engine, only_liveness: bool) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.route("/healthz", web::get().to(healthz));
        if !only_liveness {
            cfg.app_data(web::Data::new(Ops { engine }))
                .route("/readyz", web::get().to(readyz))
                .route("/metrics", web::get().to(metrics));
        }
    }
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

async fn readyz(ops: web::Data<Ops>) -> HttpResponse {
    let readiness = ops.engine.readiness().await;
    let mut response =
        if readiness.ready() { HttpResponse::Ok() } else { HttpResponse::ServiceUnavailable() };
    response.insert_header((header::CACHE_CONTROL, "no-store")).json(&*readiness)
}

async fn metrics(ops: web::Data<Ops>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, parla_engine::metrics::CONTENT_TYPE))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(ops.engine.render_metrics())
}

/// Mounts `POST /keys/rotate` (admin nodes' operations listener only): the key file is read
/// again and every secret re-sealed under its first key; answers what was written again.
pub fn configure_keys(
    keys: Option<crate::secrets::KeyService>,
) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        if let Some(keys) = keys {
            cfg.app_data(web::Data::new(keys)).route("/keys/rotate", web::post().to(rotate));
        }
    }
}

async fn rotate(keys: web::Data<crate::secrets::KeyService>) -> HttpResponse {
    match keys.rotate().await {
        Ok(resealed) => HttpResponse::Ok().json(resealed),
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "key rotation failed");
            HttpResponse::Conflict().json(serde_json::json!({ "error": format!("{e:#}") }))
        }
    }
}
