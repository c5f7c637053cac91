//! [`TenantHttpClient`]: the domain's [`TenantHttp`] port on the rules for a tenant's targets
//! ([`crate::guard`]): no redirect followed, no proxy, every address judged where the
//! connection goes.

use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use parla_domain::http::{HttpResponse, TenantHttp, Url};

use crate::guard::TenantEgress;

/// GETs for the knowledge base's scraper (or any caller reaching a tenant's target).
#[derive(Debug, Clone)]
pub struct TenantHttpClient {
    client: reqwest::Client,
    egress: TenantEgress,
}

impl TenantHttpClient {
    /// `allow_internal`: the operator's leave to reach non-public addresses (tests, trusted
    /// networks); `timeout`: one request, body included; `user_agent`: who we say we are.
    pub fn new(allow_internal: bool, timeout: Duration, user_agent: &str) -> Self {
        let egress = TenantEgress::new(allow_internal);
        let client =
            egress.client().timeout(timeout).user_agent(user_agent).build().unwrap_or_default();
        Self { client, egress }
    }
}

#[async_trait]
impl TenantHttp for TenantHttpClient {
    fn check_url(&self, url: &str) -> Result<Url, String> {
        self.egress.check_url(url)
    }

    async fn get(&self, url: &Url) -> Result<HttpResponse, String> {
        let response = self.client.get(url.clone()).send().await.map_err(crate::guard::describe)?;
        let header =
            |name| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let location = header(reqwest::header::LOCATION);
        let content_type = header(reqwest::header::CONTENT_TYPE);
        Ok(HttpResponse {
            status: response.status().as_u16(),
            reason: response.status().canonical_reason(),
            location,
            content_type,
            content_length: response.content_length(),
            body: futures_util::stream::unfold(Some(response), |response| async move {
                let mut response = response?;
                match response.chunk().await {
                    Ok(Some(chunk)) => Some((Ok(chunk.to_vec()), Some(response))),
                    Ok(None) => None,
                    Err(e) => Some((Err(e.without_url().to_string()), None)),
                }
            })
            .boxed(),
        })
    }
}
