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
use parla_engine::{
    EngineError,
    model::{Appearance, BotId},
};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::WidgetState;

/// The loader, drawn on the host page at once: small on purpose.
const LOADER_JS: &[u8] = include_bytes!("../../widget/dist/widget.js");
/// The widget itself, fetched on first open.
const APP_JS: &[u8] = include_bytes!("../../widget/dist/app.js");
/// The demo page at `GET /`: the real widget, opened, talking to the demo bot. Its script is a
/// file of its own (`GET /demo.js`): Parla's pages allow no inline script (see the binary's
/// security headers).
const DEMO_HTML: &str = include_str!("../static/index.html");
const DEMO_JS: &str = include_str!("../static/demo.js");

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
        .route("/demo.js", web::get().to(demo_js))
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

async fn demo_js() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/javascript; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(DEMO_JS)
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
    use actix_web::http::StatusCode;
    let origin = req.headers().get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let mut response = match public_bot(&state, BotId(path.into_inner()), origin).await {
        Ok(body) => {
            let mut r = HttpResponse::Ok();
            r.insert_header((header::CACHE_CONTROL, "public, max-age=60"));
            r.json(body)
        }
        Err(e) => {
            // The codes are the socket's (`EngineError::code`): one vocabulary for both doors.
            let status = match e {
                EngineError::BotNotFound | EngineError::BotUnavailable => StatusCode::NOT_FOUND,
                EngineError::OriginNotAllowed => StatusCode::FORBIDDEN,
                _ => {
                    tracing::error!(error = %e, "reading a bot's public settings");
                    StatusCode::INTERNAL_SERVER_ERROR
                }
            };
            let mut r = HttpResponse::build(status);
            r.insert_header((header::CACHE_CONTROL, "no-store"));
            r.json(serde_json::json!({
                "error": { "code": e.code(), "message": e.public_message() }
            }))
        }
    };
    if let Some(origin) = origin.and_then(|o| header::HeaderValue::from_str(o).ok()) {
        // An allowed page reads the settings; a refused one may read why.
        response.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    }
    response.headers_mut().insert(header::VARY, header::HeaderValue::from_static("Origin"));
    response
}

/// The bot's public face, under the rules the socket's `hello` applies: it exists, is active,
/// and allows the page's origin.
async fn public_bot(
    state: &WidgetState,
    bot: BotId,
    origin: Option<&str>,
) -> Result<PublicSettings, EngineError> {
    // The same rule the socket enforces, so a page that may not chat does not even learn how
    // the bot looks.
    let bot = state.engine.embeddable_bot(&bot, origin).await?;
    Ok(PublicSettings {
        id: bot.id.0,
        name: bot.name,
        language: bot.language,
        welcome_message: bot.config.welcome_message,
        appearance: bot.appearance,
    })
}
