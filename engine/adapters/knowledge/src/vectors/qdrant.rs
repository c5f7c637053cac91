//! The Qdrant adapter, over Qdrant's REST API.
//!
//! One collection per vector space (`{prefix}_{space}`, cosine distance), created on the first
//! write with the space's dimensions and keyword payload indexes on `tenant` (marked as the
//! tenant key, so Qdrant co-locates a tenant's points), `bot` and `document`. A point's id is a
//! UUID derived from (tenant, bot, document, position), so writing a chunk again overwrites
//! it; every read and delete carries a `tenant` + `bot` filter.
//!
//! Why REST and not the `qdrant-client` crate (gRPC): the same operations, without tonic and
//! prost in the build, without a second rustls crypto provider (which makes some clients
//! panic at construction, see STACK-NOTES), and with a wire format simple enough that the test
//! suite exercises this adapter on every run against a server speaking it
//! (`tests/integration/vectors.rs`), and against a real Qdrant when `PARLA_TEST_QDRANT_URL` is set.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use super::{Hit, Point, VectorError, VectorIndex, VectorResult, dimensions_of};
use parla_domain::model::{BotId, TenantId};

/// Points per upsert request.
const BATCH: usize = 256;

/// See the module documentation.
#[derive(Debug)]
pub struct QdrantVectors {
    http: reqwest::Client,
    base: String,
    collection: String,
    api_key: ApiKey,
    /// The collection's dimensions, once known to exist.
    ready: OnceCell<usize>,
}

/// Never printed.
struct ApiKey(String);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() { "<empty>" } else { "<set>" })
    }
}

fn backend(e: impl std::fmt::Display) -> VectorError {
    VectorError::Backend(e.to_string())
}

impl QdrantVectors {
    /// `base`: Qdrant's REST address (`http://host:6333`); `prefix` + the space name the
    /// collection.
    pub fn new(
        base: &str,
        api_key: &str,
        prefix: &str,
        space: &str,
        timeout: Duration,
    ) -> VectorResult<Self> {
        // The operator's Qdrant: anywhere, but no redirect, which would carry the `api-key`
        // header (not one the client strips on a cross-host redirect) to another host.
        // The operator's Qdrant: anywhere, but no redirect (its `api-key` header would follow it
        // to another host).
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .build()
            .map_err(backend)?;
        let space: String = space
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' })
            .collect();
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            collection: format!("{prefix}_{space}"),
            api_key: ApiKey(api_key.to_owned()),
            ready: OnceCell::new(),
        })
    }

    /// Sends a request; `Ok(None)` when Qdrant answers 404 (no such collection).
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> VectorResult<Option<Value>> {
        let url = format!("{}/collections/{}{path}", self.base, self.collection);
        let mut request = self.http.request(method, &url);
        if !self.api_key.0.is_empty() {
            request = request.header("api-key", &self.api_key.0);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|e| backend(e.without_url()))?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let error = body["status"]["error"].as_str().unwrap_or("no reason given");
            return Err(VectorError::Backend(format!("qdrant answered {status}: {error}")));
        }
        Ok(Some(body["result"].clone()))
    }

    /// Creates the collection and its payload indexes unless they exist.
    async fn ensure(&self, dimensions: usize) -> VectorResult<usize> {
        let known = self
            .ready
            .get_or_try_init(|| async {
                let info = self.call(reqwest::Method::GET, "", None).await?;
                if let Some(info) = info {
                    let size = &info["config"]["params"]["vectors"]["size"];
                    return size
                        .as_u64()
                        .and_then(|s| usize::try_from(s).ok())
                        .ok_or_else(|| backend("the collection's vector size is unreadable"));
                }
                let spec = json!({"vectors": {"size": dimensions, "distance": "Cosine"}});
                self.call(reqwest::Method::PUT, "", Some(spec)).await?;
                for (field, schema) in [
                    ("tenant", json!({"type": "keyword", "is_tenant": true})),
                    ("bot", json!({"type": "keyword"})),
                    ("document", json!({"type": "keyword"})),
                ] {
                    let body = json!({"field_name": field, "field_schema": schema});
                    self.call(reqwest::Method::PUT, "/index?wait=true", Some(body)).await?;
                }
                Ok(dimensions)
            })
            .await?;
        Ok(*known)
    }
}

fn filter(tenant: &TenantId, bot: &BotId, document: Option<&str>) -> Value {
    let mut must = vec![
        json!({"key": "tenant", "match": {"value": tenant.as_str()}}),
        json!({"key": "bot", "match": {"value": bot.as_str()}}),
    ];
    if let Some(document) = document {
        must.push(json!({"key": "document", "match": {"value": document}}));
    }
    json!({"must": must})
}

/// A stable UUID for a chunk: writing it again overwrites it.
fn point_id(tenant: &TenantId, bot: &BotId, document: &str, position: u32) -> String {
    let mut hash = Sha256::new();
    for part in [tenant.as_str(), bot.as_str(), document] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    hash.update(position.to_be_bytes());
    let digest = hash.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(bytes).into_uuid().to_string()
}

#[async_trait]
impl VectorIndex for QdrantVectors {
    /// Reads the collection's info (an answer of 404 — not created yet — counts as up).
    async fn probe(&self) -> Option<VectorResult<()>> {
        Some(self.call(reqwest::Method::GET, "", None).await.map(drop))
    }

    async fn replace(
        &self,
        tenant: &TenantId,
        bot: &BotId,
        document: &str,
        points: &[Point],
    ) -> VectorResult<()> {
        if !points.is_empty() {
            let dimensions = dimensions_of(points, None)?;
            let size = self.ensure(dimensions).await?;
            if size != dimensions {
                return Err(VectorError::Dimensions { expected: size, got: dimensions });
            }
        }
        self.remove_document(tenant, bot, document).await?;
        for batch in points.chunks(BATCH) {
            let points: Vec<Value> = batch
                .iter()
                .map(|p| {
                    json!({
                        "id": point_id(tenant, bot, document, p.position),
                        "vector": p.vector,
                        "payload": {
                            "tenant": tenant.as_str(),
                            "bot": bot.as_str(),
                            "document": document,
                            "position": p.position,
                        },
                    })
                })
                .collect();
            let body = json!({"points": points});
            self.call(reqwest::Method::PUT, "/points?wait=true", Some(body))
                .await?
                .ok_or_else(|| backend("the collection disappeared"))?;
        }
        Ok(())
    }

    async fn remove_document(
        &self,
        tenant: &TenantId,
        bot: &BotId,
        document: &str,
    ) -> VectorResult<()> {
        let body = json!({"filter": filter(tenant, bot, Some(document))});
        self.call(reqwest::Method::POST, "/points/delete?wait=true", Some(body)).await.map(drop)
    }

    async fn remove_bot(&self, tenant: &TenantId, bot: &BotId) -> VectorResult<()> {
        let body = json!({"filter": filter(tenant, bot, None)});
        self.call(reqwest::Method::POST, "/points/delete?wait=true", Some(body)).await.map(drop)
    }

    async fn holds(&self, tenant: &TenantId, bot: &BotId, document: &str) -> VectorResult<bool> {
        let body = json!({"filter": filter(tenant, bot, Some(document)), "exact": true});
        let result = self.call(reqwest::Method::POST, "/points/count", Some(body)).await?;
        Ok(result.is_some_and(|r| r["count"].as_u64().unwrap_or(0) > 0))
    }

    async fn search(
        &self,
        tenant: &TenantId,
        bot: &BotId,
        query: &[f32],
        k: usize,
        min_score: f32,
    ) -> VectorResult<Vec<Hit>> {
        if k == 0 {
            return Ok(Vec::new());
        }
        if let Some(size) = self.ready.get()
            && *size != query.len()
        {
            return Err(VectorError::Dimensions { expected: *size, got: query.len() });
        }
        let body = json!({
            "query": query,
            "filter": filter(tenant, bot, None),
            "limit": k,
            "score_threshold": min_score,
            "with_payload": ["document", "position"],
        });
        let Some(result) = self.call(reqwest::Method::POST, "/points/query", Some(body)).await?
        else {
            return Ok(Vec::new()); // No collection yet: nothing was ever written.
        };
        let points =
            result["points"].as_array().ok_or_else(|| backend("no points in the answer"))?;
        points
            .iter()
            .map(|p| {
                let document = p["payload"]["document"].as_str();
                let position =
                    p["payload"]["position"].as_u64().and_then(|v| u32::try_from(v).ok());
                let score = p["score"].as_f64();
                match (document, position, score) {
                    #[allow(clippy::cast_possible_truncation)]
                    (Some(d), Some(position), Some(score)) => {
                        Ok(Hit { document_id: d.to_owned(), position, score: score as f32 })
                    }
                    _ => Err(backend("a point without its document, position or score")),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn point_ids_are_stable_uuids_that_differ_per_chunk() {
        let (t, b) = (TenantId::from("t"), BotId::from("b"));
        let id = point_id(&t, &b, "d", 0);
        assert_eq!(id, point_id(&t, &b, "d", 0));
        assert!(uuid::Uuid::parse_str(&id).is_ok());
        assert_ne!(id, point_id(&t, &b, "d", 1));
        assert_ne!(id, point_id(&TenantId::from("u"), &b, "d", 0));
        // Parts are delimited: ("ab", "c") and ("a", "bc") differ.
        assert_ne!(
            point_id(&TenantId::from("ab"), &BotId::from("c"), "d", 0),
            point_id(&TenantId::from("a"), &BotId::from("bc"), "d", 0)
        );
    }
}
