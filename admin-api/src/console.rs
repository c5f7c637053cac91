//! The tenant console, compiled into the binary: its page at `/console` and its assets under
//! `/console/assets/` (built by `widget/build.mjs` into `widget/dist/console/`; the build writes
//! the asset table included here, each file named by its content hash).
//!
//! The page is revalidated on every load (`no-cache` + `ETag`), so a new release shows at once;
//! an asset's name changes with its content, so it is cached for a year. Both go out gzipped to
//! a browser that accepts it: compressed once, at the highest level, on the first request — not
//! per response (a compressing middleware would redo it on each).

use std::{collections::HashMap, io::Write, sync::LazyLock};

use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder, ResponseError, http::header, web};
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

/// Each file gzipped, by name (`index.html` for the page).
static GZIPPED: LazyLock<HashMap<&'static str, Vec<u8>>> = LazyLock::new(|| {
    let assets = ASSETS.iter().map(|(name, _, body)| (*name, *body));
    std::iter::once(("index.html", INDEX_HTML)).chain(assets).map(|(n, b)| (n, gzip(b))).collect()
});

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    // Writing into a Vec does not fail; an empty result is served uncompressed.
    encoder.write_all(bytes).and_then(|()| encoder.finish()).unwrap_or_default()
}

/// Whether the request's `Accept-Encoding` takes gzip (named or `*`, and not refused by `q=0`).
fn accepts_gzip(req: &HttpRequest) -> bool {
    let Some(value) = req.headers().get(header::ACCEPT_ENCODING).and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    // Each coding with whether it is refused (`q=0`). Named gzip decides; else `*` does.
    let codings: Vec<(&str, bool)> = value
        .split(',')
        .map(|part| {
            let mut pieces = part.split(';').map(str::trim);
            let coding = pieces.next().unwrap_or_default();
            let refused = pieces.any(|p| {
                p.strip_prefix("q=").and_then(|q| q.trim().parse::<f32>().ok()) == Some(0.0)
            });
            (coding, refused)
        })
        .collect();
    let named = codings.iter().find(|(c, _)| c.eq_ignore_ascii_case("gzip"));
    let any = codings.iter().find(|(c, _)| *c == "*");
    match named.or(any) {
        Some((_, refused)) => !refused,
        None => false,
    }
}

/// `body` as the request takes it: gzipped when accepted, else as is.
fn respond(
    req: &HttpRequest,
    mut response: HttpResponseBuilder,
    name: &str,
    body: &'static [u8],
) -> HttpResponse {
    response.insert_header((header::VARY, "Accept-Encoding"));
    match GZIPPED.get(name).filter(|gz| !gz.is_empty() && accepts_gzip(req)) {
        Some(gz) => response.insert_header((header::CONTENT_ENCODING, "gzip")).body(gz.as_slice()),
        None => response.body(body),
    }
}

/// Mounts `/console` and `/console/assets/{file}`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/console", web::get().to(page))
        .route("/console/assets/{file}", web::get().to(asset));
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
    response.insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"));
    respond(&req, response, "index.html", INDEX_HTML)
}

async fn asset(req: HttpRequest, file: web::Path<String>) -> HttpResponse {
    let Some((name, content_type, body)) = ASSETS.iter().find(|(n, _, _)| *n == file.as_str())
    else {
        return crate::error::ApiError::new(
            actix_web::http::StatusCode::NOT_FOUND,
            "not_found",
            "no such console asset",
        )
        .error_response();
    };
    let mut response = HttpResponse::Ok();
    response
        .insert_header((header::CONTENT_TYPE, *content_type))
        .insert_header((header::CACHE_CONTROL, IMMUTABLE));
    respond(&req, response, name, body)
}

#[cfg(test)]
mod tests {
    use std::io::Read;

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

    #[test]
    fn gzip_goes_only_to_who_takes_it() {
        let with = |value: &str| {
            let req = actix_web::test::TestRequest::default()
                .insert_header((header::ACCEPT_ENCODING, value))
                .to_http_request();
            accepts_gzip(&req)
        };
        assert!(with("gzip, deflate, br"));
        assert!(with("br;q=1.0, gzip;q=0.8"));
        assert!(with("*"));
        assert!(!with("br"));
        assert!(!with("gzip;q=0"));
        assert!(!with("gzip; q=0.0, identity"));
        assert!(!with("gzip;q=0, *"), "named gzip refused: * does not bring it back");
        assert!(!with("*;q=0"));
        assert!(!accepts_gzip(&actix_web::test::TestRequest::default().to_http_request()));
    }

    #[test]
    fn every_file_gunzips_to_itself() {
        let files = std::iter::once(("index.html", INDEX_HTML))
            .chain(ASSETS.iter().map(|(n, _, b)| (*n, *b)));
        for (name, body) in files {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(GZIPPED[name].as_slice())
                .read_to_end(&mut out)
                .expect("gunzip");
            assert_eq!(out.as_slice(), body, "{name}");
        }
    }
}
