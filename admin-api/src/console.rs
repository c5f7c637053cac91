//! The tenant console, compiled into the binary: its page at `/console` and its assets under
//! `/console/assets/` (built by `widget/build.mjs` into `widget/dist/console/`; the build writes
//! the asset table included here, each file named by its content hash).
//!
//! The page is revalidated on every load (`no-cache` + `ETag`), so a new release shows at once;
//! an asset's name changes with its content, so it is cached for a year. Both go out gzipped to
//! a browser that accepts it.

use std::sync::LazyLock;

use actix_web::{
    HttpRequest, HttpResponse, ResponseError, http::header, middleware::Compress, web,
};
use sha2::{Digest, Sha256};

const INDEX_HTML: &[u8] = include_bytes!("../../widget/dist/console/index.html");
/// `(file name, content type, bytes)` of every asset.
const ASSETS: &[(&str, &str, &[u8])] = include!("../../widget/dist/console/assets.rs.in");

/// An asset's name never changes its content.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// The page's validator: the first 16 hex digits of its SHA-256, quoted.
static INDEX_ETAG: LazyLock<String> = LazyLock::new(|| {
    let digest = Sha256::digest(INDEX_HTML);
    format!("\"{}\"", digest.iter().take(8).map(|b| format!("{b:02x}")).collect::<String>())
});

/// Mounts `/console` and `/console/assets/{file}`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/console").wrap(Compress::default()).get(page))
        .service(web::resource("/console/assets/{file}").wrap(Compress::default()).get(asset));
}

async fn page(req: HttpRequest) -> HttpResponse {
    let etag = INDEX_ETAG.as_str();
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut response = if fresh { HttpResponse::NotModified() } else { HttpResponse::Ok() };
    response.insert_header((header::CACHE_CONTROL, "no-cache")).insert_header((header::ETAG, etag));
    if fresh {
        return response.finish();
    }
    response.insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8")).body(INDEX_HTML)
}

async fn asset(file: web::Path<String>) -> HttpResponse {
    match ASSETS.iter().find(|(name, _, _)| *name == file.as_str()) {
        Some((_, content_type, body)) => HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, *content_type))
            .insert_header((header::CACHE_CONTROL, IMMUTABLE))
            .body(*body),
        None => crate::error::ApiError::new(
            actix_web::http::StatusCode::NOT_FOUND,
            "not_found",
            "no such console asset",
        )
        .error_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_names_only_assets_that_are_served() {
        let html = std::str::from_utf8(INDEX_HTML).expect("utf-8");
        let named: Vec<&str> = html
            .split("/console/assets/")
            .skip(1)
            .map(|rest| rest.split('"').next().unwrap_or_default())
            .collect();
        assert!(named.len() >= 2, "a stylesheet and a module at least: {named:?}");
        for name in named {
            assert!(ASSETS.iter().any(|(n, _, _)| *n == name), "{name} is not in the asset table");
        }
    }
}
