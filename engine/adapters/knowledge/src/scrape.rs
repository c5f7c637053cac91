//! Web pages for a WEB_PAGE document: fetch a URL, honour the site's robots.txt, and
//! optionally follow same-site links breadth-first within page and depth limits. The pages'
//! text is extracted afterwards, like an upload's (bounded, in a child process).
//!
//! # Bounds
//! Only `http(s)` pages of `text/html` or `text/plain` are read; all the pages of one scrape
//! together hold at most `max_bytes` (one document's worth: a page that does not fit ends the
//! crawl), and the crawl stops at its deadline, keeping the pages read (or failing when none
//! was).
//!
//! # Where it may go (SSRF)
//! Under the rules for a tenant's targets (the domain's [`TenantHttp`] port, the egress
//! adapter's guard behind it): every request — each page, each
//! redirect hop, robots.txt — is checked, and a host name is judged by the address actually
//! connected to, so a name re-pointed at an internal address after the first page (DNS
//! rebinding) reaches nothing. The client follows no redirect: [`Scraper`] follows them by
//! hand, within the site, checking each hop. Non-public addresses are refused unless the
//! operator allows them.

use std::{collections::HashSet, sync::Arc, time::Duration};

use futures_util::StreamExt;
use parla_domain::http::{TenantHttp, Url};
use tokio::time::Instant;

use super::extract;

pub use parla_domain::knowledge::ScrapeRequest;

/// The user agent we fetch as, and the robots.txt group we obey first.
pub const USER_AGENT: &str = concat!("ParlaBot/", env!("CARGO_PKG_VERSION"));

/// Time one request may take (a page, a hop, robots.txt), within the crawl's deadline: the
/// [`TenantHttp`] client handed to [`Scraper::new`] is built with it.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// A page read: its URL (after redirects), its title (or URL), its text, and whether it is
/// HTML.
#[derive(Debug, Clone)]
pub struct Page {
    pub url: Url,
    pub title: String,
    pub body: String,
    pub html: bool,
}

/// Fetches pages for WEB_PAGE documents.
pub struct Scraper {
    http: Arc<dyn TenantHttp>,
    /// The most bytes one scrape reads, all pages together.
    max_bytes: usize,
    /// The time one scrape may take.
    deadline: Duration,
}

impl std::fmt::Debug for Scraper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scraper")
            .field("max_bytes", &self.max_bytes)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

/// Why a crawl ended early.
enum Stop {
    Deadline,
    Full,
}

impl Scraper {
    /// `http` reaches the pages under the rules for a tenant's targets (built with
    /// [`REQUEST_TIMEOUT`] and [`USER_AGENT`]).
    pub fn new(http: Arc<dyn TenantHttp>, max_bytes: usize, deadline: Duration) -> Self {
        Self { http, max_bytes, deadline }
    }

    /// Crawls `request`; `progress` is told each page read (pages done, pages at most).
    pub async fn scrape(
        &self,
        request: &ScrapeRequest,
        mut progress: impl FnMut(u32, u32),
    ) -> Result<Vec<Page>, String> {
        let deadline = Instant::now() + self.deadline;
        let start = self.http.check_url(&request.url)?;
        let too_slow =
            || format!("the site did not answer within {} s", self.deadline.as_secs().max(1));
        let robots = match tokio::time::timeout_at(deadline, self.robots(&start)).await {
            Ok(robots) => robots,
            Err(_) => return Err(too_slow()),
        };
        let max_pages = request.max_pages.clamp(1, 100);
        let mut queue = std::collections::VecDeque::from([(start.clone(), 0u32)]);
        let mut seen = HashSet::from([start.to_string()]);
        let (mut pages, mut refused, mut stop) = (Vec::new(), Vec::new(), None);
        let mut room = self.max_bytes;
        while let Some((url, depth)) = queue.pop_front() {
            if pages.len() >= max_pages as usize {
                break;
            }
            if !robots.allows(url.path()) {
                refused.push(url.to_string());
                continue;
            }
            let page = match tokio::time::timeout_at(deadline, self.fetch(&url, room)).await {
                Err(_) => {
                    stop = Some(Stop::Deadline);
                    break;
                }
                Ok(Ok(page)) => page,
                Ok(Err(Fetch::TooLarge)) if !pages.is_empty() => {
                    stop = Some(Stop::Full);
                    break;
                }
                Ok(Err(e)) if pages.is_empty() && queue.is_empty() => return Err(e.to_string()),
                Ok(Err(e)) => {
                    tracing::info!(url = %url, error = %e, "page skipped");
                    continue;
                }
            };
            room = room.saturating_sub(page.body.len());
            progress(u32::try_from(pages.len() + 1).unwrap_or(u32::MAX), max_pages);
            if depth < request.max_depth {
                for link in links(&page.body, &url) {
                    if same_site(&link, &start) && seen.insert(link.to_string()) {
                        queue.push_back((link, depth + 1));
                    }
                }
            }
            pages.push(page);
        }
        match stop {
            Some(Stop::Deadline) if pages.is_empty() => return Err(too_slow()),
            Some(Stop::Deadline) => {
                tracing::info!(url = %start, pages = pages.len(), "scrape deadline: pages read kept");
            }
            Some(Stop::Full) => {
                tracing::info!(url = %start, pages = pages.len(), "scrape size limit: pages read kept");
            }
            None => {}
        }
        if pages.is_empty() && !refused.is_empty() {
            return Err(format!("robots.txt disallows {}", refused.join(", ")));
        }
        if pages.is_empty() {
            return Err("no text found on the page".into());
        }
        Ok(pages)
    }

    /// One page, following redirects within the site (each hop checked), at most `room`
    /// bytes.
    async fn fetch(&self, url: &Url, room: usize) -> Result<Page, Fetch> {
        let mut url = url.clone();
        for _ in 0..5 {
            self.http.check_url(url.as_str()).map_err(Fetch::Failed)?;
            let response = self.http.get(&url).await.map_err(Fetch::Failed)?;
            if (300..400).contains(&response.status) {
                let next = response
                    .location
                    .as_deref()
                    .and_then(|l| url.join(l).ok())
                    .ok_or_else(|| Fetch::Failed("a redirect without a location".into()))?;
                if !same_site(&next, &url) {
                    return Err(Fetch::Failed("redirected to another site".into()));
                }
                url = next;
                continue;
            }
            if !(200..300).contains(&response.status) {
                let reason = response.reason.map(|r| format!(" {r}")).unwrap_or_default();
                return Err(Fetch::Failed(format!(
                    "the page answered {}{reason}",
                    response.status
                )));
            }
            let media =
                response.content_type.as_deref().unwrap_or("text/html").to_ascii_lowercase();
            let html = media.starts_with("text/html") || media.starts_with("application/xhtml");
            if !html && !media.starts_with("text/plain") {
                return Err(Fetch::Failed(format!("not a web page ({media})")));
            }
            if response.content_length.is_some_and(|n| n > room as u64) {
                return Err(Fetch::TooLarge);
            }
            let mut body = Vec::new();
            let mut chunks = response.body;
            while let Some(chunk) = chunks.next().await {
                let chunk = chunk.map_err(Fetch::Failed)?;
                if body.len() + chunk.len() > room {
                    return Err(Fetch::TooLarge);
                }
                body.extend_from_slice(&chunk);
            }
            let body = String::from_utf8_lossy(&body).into_owned();
            let title = html
                .then(|| extract::html_title(&body))
                .flatten()
                .unwrap_or_else(|| url.to_string());
            return Ok(Page { url, title, body, html });
        }
        Err(Fetch::Failed("too many redirects".into()))
    }

    /// The site's robots.txt rules for us; none (everything allowed) when it has none.
    async fn robots(&self, site: &Url) -> Robots {
        let Ok(url) = site.join("/robots.txt") else { return Robots::default() };
        match self.fetch(&url, self.max_bytes).await {
            Ok(page) => Robots::parse(&page.body, "ParlaBot"),
            Err(_) => Robots::default(),
        }
    }
}

/// Why a page was not read.
enum Fetch {
    /// It does not fit in what the scrape may still read.
    TooLarge,
    Failed(String),
}

impl std::fmt::Display for Fetch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooLarge => f.write_str("the page is larger than the document size limit"),
            Self::Failed(reason) => f.write_str(reason),
        }
    }
}

fn same_site(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// The `href`s of `<a>` tags, resolved against `base`, without fragments.
fn links(html: &str, base: &Url) -> Vec<Url> {
    let lower = html.to_ascii_lowercase();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = lower[from..].find("<a ") {
        let tag_start = from + i;
        let Some(tag_len) = lower[tag_start..].find('>') else { break };
        let tag = &html[tag_start..tag_start + tag_len];
        from = tag_start + tag_len;
        let Some(h) = tag.to_ascii_lowercase().find("href=") else { continue };
        let value = &tag[h + 5..];
        let href = match value.chars().next() {
            Some(q @ ('"' | '\'')) => value[1..].split(q).next().unwrap_or_default(),
            _ => value.split(|c: char| c.is_whitespace()).next().unwrap_or_default(),
        };
        if let Ok(mut url) = base.join(href.trim()) {
            url.set_fragment(None);
            if matches!(url.scheme(), "http" | "https") {
                out.push(url);
            }
        }
    }
    out
}

/// robots.txt rules of the group that applies to us: our own (`ParlaBot`), else `*`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Robots {
    /// (path prefix, allowed); the longest matching prefix wins (RFC 9309), Allow on a tie.
    rules: Vec<(String, bool)>,
}

impl Robots {
    pub fn parse(text: &str, agent: &str) -> Self {
        let agent = agent.to_ascii_lowercase();
        let (mut ours, mut any) = (Vec::new(), Vec::new());
        let mut group_agents: Vec<String> = Vec::new();
        let mut in_rules = false;
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or_default().trim();
            let Some((key, value)) = line.split_once(':') else { continue };
            let (key, value) = (key.trim().to_ascii_lowercase(), value.trim());
            match key.as_str() {
                "user-agent" => {
                    if in_rules {
                        group_agents.clear();
                        in_rules = false;
                    }
                    group_agents.push(value.to_ascii_lowercase());
                }
                "allow" | "disallow" => {
                    in_rules = true;
                    if value.is_empty() {
                        continue; // `Disallow:` with nothing allows everything.
                    }
                    let rule = (value.to_owned(), key == "allow");
                    if group_agents.iter().any(|a| agent.starts_with(a.as_str())) {
                        ours.push(rule.clone());
                    }
                    if group_agents.iter().any(|a| a == "*") {
                        any.push(rule);
                    }
                }
                _ => {}
            }
        }
        Self { rules: if ours.is_empty() { any } else { ours } }
    }

    pub fn allows(&self, path: &str) -> bool {
        self.rules
            .iter()
            .filter(|(prefix, _)| path.starts_with(prefix.trim_end_matches('*')))
            .max_by_key(|(prefix, allow)| (prefix.len(), *allow))
            .is_none_or(|(_, allow)| *allow)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn robots_rules_follow_the_longest_match_and_our_own_group() {
        let robots = Robots::parse(
            "User-agent: *\nDisallow: /private\nAllow: /private/faq\n\nUser-agent: OtherBot\nDisallow: /\n",
            "ParlaBot",
        );
        assert!(robots.allows("/"));
        assert!(!robots.allows("/private/x"));
        assert!(robots.allows("/private/faq.html"));
        let ours = Robots::parse(
            "User-agent: *\nDisallow: /\n\nUser-agent: ParlaBot\nDisallow: /admin\n",
            "ParlaBot",
        );
        assert!(ours.allows("/help"), "our group replaces *");
        assert!(!ours.allows("/admin/x"));
        assert!(Robots::parse("", "ParlaBot").allows("/anything"));
    }

    #[test]
    fn links_resolve_and_drop_fragments() {
        let base = Url::parse("http://site.test/docs/a.html").expect("url");
        let found = links(
            r#"<p><a href="b.html#top">B</a> <A HREF='/c'>C</A> <a class="x" href=http://other.test/d>D</a> <a href="mailto:x@y">m</a></p>"#,
            &base,
        );
        let found: Vec<String> = found.iter().map(Url::to_string).collect();
        assert_eq!(
            found,
            ["http://site.test/docs/b.html", "http://site.test/c", "http://other.test/d"]
        );
    }
}
