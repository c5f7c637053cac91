//! Web pages into sections: fetch a URL, honour the site's robots.txt, keep the page's main
//! text, and optionally follow same-site links breadth-first within page and depth limits.
//!
//! Only `http(s)` pages of `text/html` or `text/plain` are read, each at most `max_bytes`;
//! redirects are followed only within the site. Hosts resolving to non-public addresses are
//! refused unless allowed (server-side request forgery), as for webhooks.

use std::{collections::HashSet, time::Duration};

use reqwest::Url;
use serde::{Deserialize, Serialize};

use super::extract::{self, Section};

/// What to scrape: stored as the document's bytes, so reprocessing fetches again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScrapeRequest {
    pub url: String,
    /// Pages to read at most, the first included (1 = that page only).
    pub max_pages: u32,
    /// Link hops from the first page (0 = that page only).
    pub max_depth: u32,
}

/// The user agent we fetch as, and the robots.txt group we obey first.
pub const USER_AGENT: &str = concat!("ParlaBot/", env!("CARGO_PKG_VERSION"));

/// Fetches pages and turns them into sections titled by page (and heading).
pub struct Scraper {
    client: reqwest::Client,
    max_bytes: usize,
    allow_private: bool,
}

impl std::fmt::Debug for Scraper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scraper").field("max_bytes", &self.max_bytes).finish_non_exhaustive()
    }
}

impl Scraper {
    pub fn new(max_bytes: usize, allow_private: bool) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(USER_AGENT)
            .build()
            .unwrap_or_default();
        Self { client, max_bytes, allow_private }
    }

    /// Crawls `request`; `progress` is told each page read (pages done, pages at most).
    pub async fn scrape(
        &self,
        request: &ScrapeRequest,
        mut progress: impl FnMut(u32, u32),
    ) -> Result<Vec<Section>, String> {
        let start = Url::parse(&request.url).map_err(|e| format!("not a valid URL: {e}"))?;
        if !matches!(start.scheme(), "http" | "https") || start.host_str().is_none() {
            return Err("only http and https URLs can be scraped".into());
        }
        crate::webhook::check_public_url(start.as_str(), self.allow_private).await?;
        let robots = self.robots(&start).await;
        let max_pages = request.max_pages.clamp(1, 100);
        let mut queue = std::collections::VecDeque::from([(start.clone(), 0u32)]);
        let mut seen = HashSet::from([start.to_string()]);
        let (mut sections, mut read, mut refused) = (Vec::new(), 0u32, Vec::new());
        while let Some((url, depth)) = queue.pop_front() {
            if read >= max_pages {
                break;
            }
            if !robots.allows(url.path()) {
                refused.push(url.to_string());
                continue;
            }
            let page = match self.fetch(&url).await {
                Ok(page) => page,
                Err(e) if read == 0 && queue.is_empty() => return Err(e),
                Err(e) => {
                    tracing::info!(url = %url, error = %e, "page skipped");
                    continue;
                }
            };
            read += 1;
            progress(read, max_pages);
            if depth < request.max_depth {
                for link in links(&page.body, &url) {
                    if same_site(&link, &start) && seen.insert(link.to_string()) {
                        queue.push_back((link, depth + 1));
                    }
                }
            }
            let page_title = page
                .html
                .then(|| extract::html_title(&page.body))
                .flatten()
                .unwrap_or_else(|| url.to_string());
            let kind = if page.html {
                crate::model::DocumentType::Html
            } else {
                crate::model::DocumentType::Txt
            };
            if let Ok(found) = extract::extract(kind, page.body.as_bytes()) {
                sections.extend(found.into_iter().map(|s| Section {
                    title: Some(match s.title {
                        Some(heading) if heading != page_title => {
                            format!("{page_title} — {heading}")
                        }
                        _ => page_title.clone(),
                    }),
                    paragraphs: s.paragraphs,
                }));
            }
        }
        if read == 0 && !refused.is_empty() {
            return Err(format!("robots.txt disallows {}", refused.join(", ")));
        }
        if sections.is_empty() {
            return Err("no text found on the page".into());
        }
        Ok(sections)
    }

    async fn fetch(&self, url: &Url) -> Result<Page, String> {
        let mut url = url.clone();
        for _ in 0..5 {
            let response = self
                .client
                .get(url.clone())
                .send()
                .await
                .map_err(|e| e.without_url().to_string())?;
            if response.status().is_redirection() {
                let next = response
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .and_then(|l| url.join(l).ok())
                    .ok_or("a redirect without a location")?;
                if !same_site(&next, &url) {
                    return Err("redirected to another site".into());
                }
                url = next;
                continue;
            }
            if !response.status().is_success() {
                return Err(format!("the page answered {}", response.status()));
            }
            let media = response
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("text/html")
                .to_ascii_lowercase();
            let html = media.starts_with("text/html") || media.starts_with("application/xhtml");
            if !html && !media.starts_with("text/plain") {
                return Err(format!("not a web page ({media})"));
            }
            if response.content_length().is_some_and(|n| n > self.max_bytes as u64) {
                return Err(format!("the page is larger than {} bytes", self.max_bytes));
            }
            let mut body = Vec::new();
            let mut response = response;
            while let Some(chunk) =
                response.chunk().await.map_err(|e| e.without_url().to_string())?
            {
                if body.len() + chunk.len() > self.max_bytes {
                    return Err(format!("the page is larger than {} bytes", self.max_bytes));
                }
                body.extend_from_slice(&chunk);
            }
            return Ok(Page { body: String::from_utf8_lossy(&body).into_owned(), html });
        }
        Err("too many redirects".into())
    }

    /// The site's robots.txt rules for us; none (everything allowed) when it has none.
    async fn robots(&self, site: &Url) -> Robots {
        let Ok(url) = site.join("/robots.txt") else { return Robots::default() };
        match self.fetch(&url).await {
            Ok(page) => Robots::parse(&page.body, "ParlaBot"),
            Err(_) => Robots::default(),
        }
    }
}

struct Page {
    body: String,
    html: bool,
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
