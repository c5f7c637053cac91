//! The embeddable widget's static files and its public settings, for pages on any site.
//!
//! - `GET /widget.js`: the loader (`widget/dist/widget.js`). Embedders reference this URL, so
//!   it cannot carry a version: it is revalidated (ETag, `max-age=300`).
//! - `GET /widget/app.js?v=HASH`: the rest of the widget, pulled by the loader on first open.
//!   The loader asks for the hash it was built with; when `v` matches the file served, the
//!   response is immutable for a year, so a returning visitor loads nothing.
//! - `GET /v1/widget/bots/{bot_id}/settings`: the bot's public face (name, language, welcome
//!   message, appearance). Read-only, no secrets, refused to pages whose origin the bot does
//!   not allow.
//!
//! The files are compiled in (`include_bytes!`), so `cargo build` needs no npm; the widget's
//! test step fails when the committed `widget/dist` is not what its sources build to.

use std::sync::LazyLock;

use actix_web::{HttpRequest, HttpResponse, http::header, web};
use parla_engine::model::{Appearance, BotId, BotStatus};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::WidgetState;

/// The loader, drawn on the host page at once: small on purpose.
const LOADER_JS: &[u8] = include_bytes!("../../widget/dist/widget.js");
/// The widget itself, fetched on first open.
const APP_JS: &[u8] = include_bytes!("../../widget/dist/app.js");
/// The demo page at `GET /`: the real widget, opened, talking to the demo bot.
const DEMO_HTML: &str = include_str!("../static/index.html");

/// A static file with its validator.
struct Asset {
    body: &'static [u8],
    /// First 16 hex digits of the body's SHA-256 (the same the build gives the loader).
    hash: String,
}

impl Asset {
    fn new(body: &'static [u8]) -> Self {
        let digest = Sha256::digest(body);
        let hash = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        Self { body, hash }
    }
    fn etag(&self) -> String {
        format!("\"{}\"", self.hash)
    }
}

static LOADER: LazyLock<Asset> = LazyLock::new(|| Asset::new(LOADER_JS));
static APP: LazyLock<Asset> = LazyLock::new(|| Asset::new(APP_JS));

/// How long a browser may use the loader without asking again. Short: a new release reaches
/// embedding sites within minutes, and a revalidation costs a 304.
const LOADER_MAX_AGE: &str = "public, max-age=300";
/// A versioned app file never changes.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(demo))
        .route("/widget.js", web::get().to(loader))
        .route("/widget/app.js", web::get().to(app))
        .route("/v1/widget/bots/{bot_id}/settings", web::get().to(settings));
}

async fn demo() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(DEMO_HTML)
}

async fn loader(req: HttpRequest) -> HttpResponse {
    script(&req, &LOADER, LOADER_MAX_AGE)
}

#[derive(serde::Deserialize)]
struct Version {
    v: Option<String>,
}

async fn app(req: HttpRequest, query: web::Query<Version>) -> HttpResponse {
    let cache = if query.v.as_deref() == Some(APP.hash.as_str()) { IMMUTABLE } else { "no-cache" };
    script(&req, &APP, cache)
}

/// A script for third-party pages: any origin may load it (no credentials involved), and it
/// is revalidated by ETag.
fn script(req: &HttpRequest, asset: &Asset, cache: &'static str) -> HttpResponse {
    let etag = asset.etag();
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut response = if fresh { HttpResponse::NotModified() } else { HttpResponse::Ok() };
    response
        .insert_header((header::CACHE_CONTROL, cache))
        .insert_header((header::ETAG, etag))
        .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
        .insert_header(("cross-origin-resource-policy", "cross-origin"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"));
    if fresh {
        return response.finish();
    }
    response
        .insert_header((header::CONTENT_TYPE, "text/javascript; charset=utf-8"))
        .body(asset.body)
}

/// What any visitor's browser may know about a bot: what the widget shows anyway.
#[derive(Debug, Serialize)]
struct PublicSettings {
    id: String,
    name: String,
    language: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    welcome_message: Option<String>,
    appearance: Appearance,
}

async fn settings(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<WidgetState>,
) -> HttpResponse {
    let origin = req.headers().get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let refuse = |status: actix_web::http::StatusCode, code: &str, message: &str| {
        let mut r = HttpResponse::build(status);
        if let Some(origin) = origin {
            // The page may read the refusal, so it can say why the chat is missing.
            r.insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.to_owned()));
        }
        r.insert_header((header::VARY, "Origin"))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(serde_json::json!({ "error": { "code": code, "message": message } }))
    };
    use actix_web::http::StatusCode;
    let bot = match state.engine.store().resolve_bot(&BotId(path.into_inner())).await {
        Ok(Some(bot)) => bot,
        Ok(None) => return refuse(StatusCode::NOT_FOUND, "bot_not_found", "no such bot"),
        Err(e) => {
            tracing::error!(error = %e, "reading a bot's public settings");
            return refuse(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error");
        }
    };
    if bot.status != BotStatus::Active {
        return refuse(StatusCode::NOT_FOUND, "bot_unavailable", "this bot is not active");
    }
    // The same rule the socket enforces (`origin_not_allowed`), so a page that may not chat
    // does not even learn how the bot looks.
    if !bot.integration.allows(origin) {
        return refuse(
            StatusCode::FORBIDDEN,
            "origin_not_allowed",
            "this page may not embed the bot",
        );
    }
    let body = PublicSettings {
        id: bot.id.0,
        name: bot.name,
        language: bot.language,
        welcome_message: bot.config.welcome_message,
        appearance: bot.appearance,
    };
    let mut r = HttpResponse::Ok();
    if let Some(origin) = origin {
        r.insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.to_owned()));
    }
    r.insert_header((header::VARY, "Origin"))
        .insert_header((header::CACHE_CONTROL, "public, max-age=60"))
        .json(body)
}
