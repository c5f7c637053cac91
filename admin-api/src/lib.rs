//! Parla's admin REST API, under `/api`.
//!
//! The tenants' API from the product brief: auth (register, login, refresh, logout, password
//! reset, TOTP), tenancy and roles, API keys, bots, intents, knowledge base, conversations and
//! analytics, with an OpenAPI 3.1 document generated from the code. Handlers stay thin: they
//! call the engine's services and its store port, and every query is scoped to the caller's
//! tenant. Dependency direction: `admin-api` → `engine`; never another transport.
//!
//! # Layout
//! - [`auth`]: the credential primitives every endpoint builds on — Argon2id password hashes,
//!   HS256 access tokens (JWT) with their claims, opaque refresh tokens and API keys stored only
//!   as SHA-256 digests. Pure functions, no I/O.
//! - [`error`]: the one error shape and its stable codes.
//! - [`routes`]: auth handlers and the bearer-token extractor: `POST
//!   /api/auth/{register,login,refresh,logout}`, `GET /api/bots`.
//! - [`limits`]: request budget per client (IPv6 by /64), login backoff per account and
//!   client and per client across accounts on `/api/auth/*`, and the bound on concurrent
//!   password hashes.
//! - [`recovery`]: email verification and password reset by single-use mailed links; `me`.
//! - [`conversations`]: list, read (messages paged by seq), open, post a message through the
//!   conversation's actor, delete (by the actor); the writes are integrations' and admins'.
//! - [`routes`]: authentication of every request, and [`routes::Sessions`], the members'
//!   sessions port the agent socket (`parla-gateway`'s `agent_ws`) asks on every change of a
//!   member's account, so it closes when they are removed or their sessions end.
//! - [`handover`]: agents' REST mirrors (claim, reply as `human`, notes, transfer, resolve).
//! - [`members`]: members, roles (compare-and-set; a tenant keeps an owner) and invitations
//!   (list, revoke, expiry; accepted only while their sender may grant the role).
//! - [`mail`]: mail through an SMTP relay when configured, else (or when it fails) an outbox.
//! - [`totp`]: two-factor authentication (enrol, confirm, recovery codes; required at login).
//! - [`keys`]: API keys with scopes (`/api/api-keys`), accepted as `Bearer pk_…` wherever an
//!   access token is.
//! - [`bots`]: bots (create, get, patch, delete, publish, pause) and their intents (CRUD).
//! - [`documents`]: a bot's knowledge base (upload, scrape, list, get, delete, reprocess).
//! - [`workspace`]: the tenant's name, own LLM endpoint and monthly token budget.
//! - [`views`]: the typed response bodies.
//! - [`openapi`]: the OpenAPI 3.1 document, derived from the handlers and types, served at
//!   `/api/openapi.json`.
//!
//! # Concurrency model
//! Handlers run on actix-web's workers; Argon2 runs on `[auth] max_concurrent_hashes` threads
//! of its own ([`limits::HashGate`]), so a login never stalls a worker and logins' memory stays
//! bounded.
//! Account changes are compare-and-set loops over the store ([`parla_engine::accounts`]), so
//! concurrent requests never undo one another.

pub mod analytics;
pub mod audit;
pub mod auth;
pub mod billing;
pub mod body;
pub mod bots;
pub mod canned;
pub mod channels;
pub mod console;
pub mod conversations;
pub mod documents;
pub mod error;
pub mod handover;
pub mod keys;
pub mod limits;
pub mod mail;
pub mod marketplace;
pub mod members;
pub mod openapi;
pub mod recovery;
pub mod routes;
pub mod subjects;
pub mod totp;
pub mod views;
pub mod workspace;

use std::sync::Arc;

use actix_web::web;
use parla_engine::store::Store;

/// What the admin API's handlers share.
#[derive(Debug)]
pub struct AdminState {
    pub store: Arc<dyn Store>,
    /// Told when a bot changes, so live conversations pick the change up.
    pub engine: parla_engine::Engine,
    pub tokens: auth::AccessTokens,
    /// Refresh token lifetime.
    pub refresh_ttl_secs: u64,
    /// How long an invitation link works.
    pub invitation_ttl_secs: u64,
    /// Request budget per IP and login backoff per account, on `/api/auth/*`.
    pub limits: limits::AuthLimits,
    /// The operator's reverse proxies (`[server] trusted_proxies`): a request from one is
    /// limited as the client its `X-Forwarded-For` names.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Bounds concurrent password hashes (19 MiB each): memory stays bounded under a flood of
    /// logins.
    pub hashes: limits::HashGate,
    /// Where mail goes: the SMTP relay, or the outbox.
    pub mailer: Arc<mail::Mailer>,
    /// The server's base URL for links in mail, set once the listener is bound.
    pub public_url: std::sync::OnceLock<String>,
    /// Serialises intent writes: a bot's intents are stored as one set, read-modify-written,
    /// and two concurrent writers must not lose each other's change. (One node; a cluster
    /// needs the store's compare-and-set.)
    pub intent_writes: tokio::sync::Mutex<()>,
    /// The messaging channels (their credentials' sealer, their watchers).
    pub channels: Arc<dyn parla_domain::channels::ChannelAdmin>,
    /// Where checkout and the portal return (`[billing] return_url`); empty: the console.
    pub billing_return_url: String,
    /// Anonymous marketplace reads per client address (IPv6 by /64).
    pub market_reads: parla_engine::clients::KeyedRate<std::net::IpAddr>,
}

/// The largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Mounts `/api`. Malformed bodies and queries, and unknown paths, are answered in the API's
/// error shape.
/// Counts every error the API answers in `parla_errors_total{source="api",code}`: the
/// [`error::ApiError`] a handler or extractor returned travels with its response.
async fn count_errors(
    engine: parla_engine::Engine,
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    let api_error = |e: &actix_web::Error| e.as_error::<error::ApiError>().map(|e| e.code);
    let result = next.call(req).await;
    let code = match &result {
        Ok(response) => response.response().error().and_then(api_error),
        Err(e) => api_error(e),
    };
    if let Some(code) = code {
        engine.metrics().error(parla_engine::metrics::ErrorSource::Api, code);
    }
    result
}

pub fn configure(state: Arc<AdminState>) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        use actix_web::{error::JsonPayloadError, http::StatusCode};
        let json = web::JsonConfig::default().limit(MAX_BODY_BYTES).error_handler(|err, _| {
            match err {
                JsonPayloadError::Overflow { .. }
                | JsonPayloadError::OverflowKnownLength { .. } => error::ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    format!("the body is larger than {MAX_BODY_BYTES} bytes"),
                ),
                other => error::ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "malformed_body",
                    format!("invalid JSON body: {other}"),
                ),
            }
            .into()
        });
        let query = web::QueryConfig::default().error_handler(|err, _| {
            error::ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed_query",
                format!("invalid query string: {err}"),
            )
            .into()
        });
        let engine = state.engine.clone();
        let count_errors = actix_web::middleware::from_fn(move |req, next| {
            count_errors(engine.clone(), req, next)
        });
        let audited = state.clone();
        let audit = actix_web::middleware::from_fn(move |req, next| {
            audit::record(audited.clone(), req, next)
        });
        console::configure(cfg);
        // Stripe's events: no bearer token (the signature is checked), a body of its own size.
        cfg.service(
            web::resource("/v1/billing/stripe/webhook")
                .app_data(web::Data::from(state.clone()))
                .app_data(web::PayloadConfig::new(billing::MAX_EVENT_BYTES))
                .route(web::post().to(billing::webhook)),
        );
        cfg.service(
            web::scope("/api")
                .wrap(audit)
                .wrap(count_errors)
                .app_data(web::Data::from(state))
                .app_data(json)
                .app_data(query)
                .route("/openapi.json", web::get().to(openapi::serve))
                .route("/auth/register", web::post().to(routes::register))
                .route("/auth/login", web::post().to(routes::login))
                .route("/auth/refresh", web::post().to(routes::refresh))
                .route("/auth/logout", web::post().to(routes::logout))
                .route("/auth/forgot-password", web::post().to(recovery::forgot_password))
                .route("/auth/reset-password", web::post().to(recovery::reset_password))
                .route("/auth/verify-email", web::post().to(recovery::verify_email))
                .route("/auth/resend-verification", web::post().to(recovery::resend_verification))
                .route("/auth/me", web::get().to(recovery::me))
                .route("/auth/accept-invitation", web::post().to(members::accept))
                .route("/workspace", web::get().to(workspace::get))
                .route("/workspace", web::patch().to(workspace::update))
                .route("/members", web::get().to(members::list))
                .route("/members/invitations", web::post().to(members::invite))
                .route("/members/invitations", web::get().to(members::list_invitations))
                .route("/members/invitations/{id}", web::delete().to(members::revoke_invitation))
                .route("/members/{id}", web::patch().to(members::set_role))
                .route("/members/{id}", web::delete().to(members::remove))
                .route("/auth/totp/enroll", web::post().to(totp::enroll))
                .route("/auth/totp/confirm", web::post().to(totp::confirm))
                .route("/api-keys", web::post().to(keys::create))
                .route("/api-keys", web::get().to(keys::list))
                .route("/api-keys/{id}", web::delete().to(keys::revoke))
                .route("/bots", web::get().to(routes::list_bots))
                .route("/bots", web::post().to(bots::create))
                .route("/bots/{id}", web::get().to(bots::get))
                .route("/bots/{id}", web::patch().to(bots::update))
                .route("/bots/{id}", web::delete().to(bots::delete))
                .route("/bots/{id}/publish", web::post().to(bots::publish))
                .route("/bots/{id}/pause", web::post().to(bots::pause))
                .route("/bots/{id}/conversations", web::get().to(conversations::list))
                .route("/conversations", web::post().to(conversations::open))
                .route("/analytics/overview", web::get().to(analytics::overview_handler))
                .route("/analytics/bots/{id}", web::get().to(analytics::bot_handler))
                .route("/analytics/conversations", web::get().to(analytics::conversations_handler))
                .route("/analytics/intents", web::get().to(analytics::intents_handler))
                .route("/analytics/export", web::get().to(analytics::export_handler))
                .route("/conversations/{id}", web::get().to(conversations::get))
                .route("/conversations/{id}", web::delete().to(conversations::delete))
                .route("/conversations/{id}/messages", web::post().to(conversations::post_message))
                .route("/conversations/{id}/claim", web::post().to(handover::claim))
                .route("/conversations/{id}/release", web::post().to(handover::release))
                .route("/conversations/{id}/transfer", web::post().to(handover::transfer))
                .route("/conversations/{id}/resolve", web::post().to(handover::resolve))
                .route("/conversations/{id}/replies", web::post().to(handover::reply))
                .route("/conversations/{id}/notes", web::post().to(handover::add_note))
                .route("/conversations/{id}/notes", web::get().to(handover::list_notes))
                .route("/inbox", web::get().to(handover::inbox))
                .route("/agents", web::get().to(handover::agents))
                .route("/bots/{id}/channels", web::get().to(channels::list))
                .route("/bots/{id}/channels", web::post().to(channels::create))
                .route("/bots/{id}/channels/{channel_id}", web::delete().to(channels::delete))
                .route("/audit-log", web::get().to(audit::list))
                .route("/data-subjects", web::get().to(subjects::find))
                .route("/data-subjects/export", web::post().to(subjects::export))
                .route("/data-subjects/erase", web::post().to(subjects::erase))
                .route("/billing/plans", web::get().to(billing::plans))
                .route("/billing/usage", web::get().to(billing::usage))
                .route("/billing/checkout", web::post().to(billing::checkout))
                .route("/billing/portal", web::post().to(billing::portal))
                .route("/subscriptions", web::get().to(billing::subscriptions))
                .route("/subscriptions/{id}/cancel", web::post().to(marketplace::cancel))
                .route("/marketplace/bots", web::get().to(marketplace::browse))
                .route("/marketplace/bots/{id}", web::get().to(marketplace::get))
                .route("/marketplace/connect", web::post().to(marketplace::connect))
                .route("/marketplace/connect", web::get().to(marketplace::connect_status))
                .route("/marketplace/subscribe", web::post().to(marketplace::subscribe))
                .route("/bots/{id}/listing", web::put().to(marketplace::put_listing))
                .route("/bots/{id}/listing", web::get().to(marketplace::get_listing))
                .route("/bots/{id}/listing", web::delete().to(marketplace::delete_listing))
                .route("/canned-responses", web::get().to(canned::list))
                .route("/canned-responses", web::post().to(canned::create))
                .route("/canned-responses/{id}", web::patch().to(canned::update))
                .route("/canned-responses/{id}", web::delete().to(canned::delete))
                .route("/bots/{id}/intents", web::get().to(bots::list_intents))
                .route("/bots/{id}/intents", web::post().to(bots::create_intent))
                .route("/bots/{id}/intents/{intent_id}", web::get().to(bots::get_intent))
                .route("/bots/{id}/intents/{intent_id}", web::patch().to(bots::update_intent))
                .route("/bots/{id}/intents/{intent_id}", web::delete().to(bots::delete_intent))
                .route("/bots/{id}/intents/{intent_id}/examples", web::post().to(bots::add_example))
                .route("/bots/{id}/documents", web::get().to(documents::list))
                .route("/bots/{id}/documents/upload", web::post().to(documents::upload))
                .route("/bots/{id}/documents/scrape", web::post().to(documents::scrape))
                .route("/bots/{id}/documents/{doc_id}", web::get().to(documents::get))
                .route("/bots/{id}/documents/{doc_id}", web::delete().to(documents::delete))
                .route(
                    "/bots/{id}/documents/{doc_id}/reprocess",
                    web::post().to(documents::reprocess),
                )
                .default_service(web::to(|| async {
                    Err::<actix_web::HttpResponse, _>(error::ApiError::new(
                        StatusCode::NOT_FOUND,
                        "not_found",
                        "no such endpoint",
                    ))
                })),
        );
    }
}
