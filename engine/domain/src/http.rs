//! The tenant-HTTP port: GET requests to targets a tenant chose (the pages it asks to scrape),
//! under the egress rules (the egress adapter's `guard`: no redirect followed, the address
//! judged is the address connected to, non-public addresses refused unless the operator
//! allows them). The knowledge adapter crawls through it without knowing how the rules hold.
//!
//! Also the rule for a URL a tenant saves (a webhook, an LLM endpoint, a page): [`check_url`].

use async_trait::async_trait;
use futures_util::stream::BoxStream;
pub use url::Url;

/// Why a URL a tenant saves is refused: not an absolute http(s) URL with a host, or longer than
/// 2048 bytes. (Where it points is judged at each call, by the egress rules.)
pub fn check_url(url: &str) -> Result<(), &'static str> {
    let parsed = Url::parse(url).map_err(|_| "not a valid absolute URL")?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err("must be an http or https URL with a host");
    }
    if url.len() > 2048 {
        return Err("at most 2048 bytes");
    }
    Ok(())
}

/// A response's head, and its body as it arrives (never buffered whole by the port: the caller
/// stops reading at its own limit).
pub struct HttpResponse {
    pub status: u16,
    /// The status's canonical reason phrase, when it has one (`Not Found`).
    pub reason: Option<&'static str>,
    /// The `Location` header, as sent (a redirect is returned, never followed).
    pub location: Option<String>,
    pub content_type: Option<String>,
    pub content_length: Option<u64>,
    pub body: BoxStream<'static, Result<Vec<u8>, String>>,
}

impl std::fmt::Debug for HttpResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpResponse")
            .field("status", &self.status)
            .field("reason", &self.reason)
            .field("location", &self.location)
            .field("content_type", &self.content_type)
            .field("content_length", &self.content_length)
            .finish_non_exhaustive()
    }
}

/// GETs under the rules for a tenant's targets.
#[async_trait]
pub trait TenantHttp: Send + Sync + std::fmt::Debug + 'static {
    /// Parses `url` and refuses it unless it is http(s) with a host and, when that host is an
    /// IP literal, an address the rules allow (names are judged when the call resolves them).
    fn check_url(&self, url: &str) -> Result<Url, String>;

    /// GETs `url` (a redirect comes back as a 3xx response); the error is the refusal or the
    /// network failure, said without the URL's query.
    async fn get(&self, url: &Url) -> Result<HttpResponse, String>;
}
