//! The embedder port and the built-in local embedder.
//!
//! [`HashingEmbedder`] needs no model and no network: a text becomes a 512-dimension vector of
//! hashed features — its index terms (as BM25 sees them) and their character trigrams, which
//! catch inflections and typos ("spedizioni"/"spedizione", "recieve"/"receive") — with
//! sublinear term frequency, a sign hash to spread collisions, and unit length, so the dot
//! product is the cosine. It is lexical: synonyms with no shared letters ("rodent"/"mouse")
//! stay apart. It was chosen by the retrieval benchmark (BENCHMARKS.md) as what ships today.
//!
//! [`OpenAiEmbedder`] calls any OpenAI-compatible `POST {base}/embeddings`. Its vectors are
//! stored with the chunks (computing them costs a call), tagged with [`Embedder::id`], so a
//! change of model is noticed and the document can be reprocessed.

use std::collections::HashMap;

use async_trait::async_trait;
use serde_json::{Value, json};

/// Turns texts into unit vectors, comparable by dot product.
#[async_trait]
pub trait Embedder: Send + Sync + std::fmt::Debug {
    /// Names the vector space: vectors with different ids are not comparable.
    fn id(&self) -> String;
    /// Whether embedding is cheap and local (then stored vectors of another id are recomputed
    /// rather than skipped).
    fn local(&self) -> bool;
    /// The cosine from which a passage answers a question by meaning alone (no shared words);
    /// `None` for embedders whose similarity is not meaningful enough for that.
    fn answer_similarity(&self) -> Option<f32> {
        None
    }
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, String>;
    /// Whether a remote embedder's service answers, for readiness (`GET /readyz`); `None` for
    /// a local one (nothing to reach).
    async fn probe(&self, _timeout: std::time::Duration) -> Option<Result<(), String>> {
        None
    }
}

#[derive(Debug, Clone)]
pub struct HashingEmbedder {
    dimensions: usize,
}

impl Default for HashingEmbedder {
    fn default() -> Self {
        Self { dimensions: 512 }
    }
}

/// FNV-1a: stable across runs and platforms (vectors may be stored).
fn fnv(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3))
}

#[async_trait]
impl Embedder for HashingEmbedder {
    fn id(&self) -> String {
        format!("hashing-{}", self.dimensions)
    }

    fn local(&self) -> bool {
        true
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, String> {
        Ok(texts.iter().map(|t| self.vector(t)).collect())
    }
}

impl HashingEmbedder {
    /// The vector of one text.
    pub fn vector(&self, text: &str) -> Vec<f32> {
        let mut features: HashMap<String, f32> = HashMap::new();
        for term in super::index::terms(text) {
            *features.entry(format!("w:{term}")).or_default() += 1.0;
            let padded: Vec<char> = format!(" {term} ").chars().collect();
            for gram in padded.windows(3) {
                *features.entry(format!("c:{}", gram.iter().collect::<String>())).or_default() +=
                    0.5;
            }
        }
        let mut vector = vec![0.0f32; self.dimensions];
        for (feature, tf) in features {
            let h = fnv(feature.as_bytes());
            let slot = (h % self.dimensions as u64) as usize;
            let sign = if (h >> 63) == 0 { 1.0 } else { -1.0 };
            vector[slot] += sign * (1.0 + tf.ln_1p());
        }
        normalized(vector)
    }
}

/// Scales `vector` to unit length (a zero vector stays zero).
fn normalized(mut vector: Vec<f32>) -> Vec<f32> {
    let norm = vector.iter().map(|v| v * v).sum::<f32>().sqrt();
    if norm > 0.0 {
        vector.iter_mut().for_each(|v| *v /= norm);
    }
    vector
}

/// Embeddings from an OpenAI-compatible API.
pub struct OpenAiEmbedder {
    client: reqwest::Client,
    base_url: String,
    model: String,
    api_key: String,
    batch: usize,
}

impl std::fmt::Debug for OpenAiEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("OpenAiEmbedder").field("model", &self.model).finish_non_exhaustive()
    }
}

impl OpenAiEmbedder {
    pub fn new(
        base_url: &str,
        model: &str,
        api_key: &str,
        batch: usize,
        timeout: std::time::Duration,
    ) -> Self {
        // The operator's endpoint: anywhere, but no redirect (which could carry the key away).
        // The operator's endpoint: anywhere, but no redirect (it could carry the API key
        // elsewhere; the egress adapter's guard says why).
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .build()
            .unwrap_or_default();
        Self {
            client,
            base_url: base_url.trim_end_matches('/').to_owned(),
            model: model.to_owned(),
            api_key: api_key.to_owned(),
            batch: batch.max(1),
        }
    }
}

#[async_trait]
impl Embedder for OpenAiEmbedder {
    fn id(&self) -> String {
        format!("openai:{}", self.model)
    }

    fn local(&self) -> bool {
        false
    }

    /// `GET …/models`, which costs no tokens: any answer below 500 (even 401 or 404) shows the
    /// service is up and reachable.
    async fn probe(&self, timeout: std::time::Duration) -> Option<Result<(), String>> {
        let mut call = self.client.get(format!("{}/models", self.base_url)).timeout(timeout);
        if !self.api_key.is_empty() {
            call = call.bearer_auth(&self.api_key);
        }
        Some(match call.send().await {
            Ok(response) if response.status().is_server_error() => {
                Err(format!("the embeddings API answered {}", response.status()))
            }
            Ok(_) => Ok(()),
            Err(e) => Err(e.without_url().to_string()),
        })
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, String> {
        let mut out = Vec::with_capacity(texts.len());
        for batch in texts.chunks(self.batch) {
            let mut call = self
                .client
                .post(format!("{}/embeddings", self.base_url))
                .json(&json!({"model": self.model, "input": batch}));
            if !self.api_key.is_empty() {
                call = call.bearer_auth(&self.api_key);
            }
            let response = call.send().await.map_err(|e| e.without_url().to_string())?;
            if !response.status().is_success() {
                return Err(format!("the embeddings API answered {}", response.status()));
            }
            let body: Value = response.json().await.map_err(|e| e.without_url().to_string())?;
            let mut data: Vec<(u64, Vec<f32>)> = body["data"]
                .as_array()
                .ok_or("the embeddings API sent no data")?
                .iter()
                .map(|d| {
                    let vector = d["embedding"]
                        .as_array()
                        .map(|v| v.iter().filter_map(Value::as_f64).map(|x| x as f32).collect());
                    (d["index"].as_u64().unwrap_or(0), vector.unwrap_or_default())
                })
                .collect();
            if data.len() != batch.len() || data.iter().any(|(_, v)| v.is_empty()) {
                return Err("the embeddings API sent the wrong number of vectors".into());
            }
            data.sort_by_key(|(i, _)| *i);
            out.extend(data.into_iter().map(|(_, v)| normalized(v)));
        }
        Ok(out)
    }
}

/// The dot product (the cosine, for unit vectors).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Reciprocal rank fusion (Cormack et al. 2009, k = 60) of rankings of the same items: each
/// item scores the sum of 1 / (k + rank) over the rankings it appears in. Best first.
pub fn fuse(rankings: &[Vec<usize>], k: usize) -> Vec<(usize, f32)> {
    let mut scores: HashMap<usize, f32> = HashMap::new();
    for ranking in rankings {
        for (rank, item) in ranking.iter().enumerate() {
            *scores.entry(*item).or_default() += 1.0 / (60.0 + rank as f32 + 1.0);
        }
    }
    let mut fused: Vec<(usize, f32)> = scores.into_iter().collect();
    fused.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    fused.truncate(k);
    fused
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn similar_texts_are_closer_than_unrelated_ones() {
        let e = HashingEmbedder::default();
        let a = e.vector("When are the shipments delivered?");
        let b = e.vector("Shipment delivery takes three days");
        let c = e.vector("Our cats sleep on the sofa");
        assert!((dot(&a, &a) - 1.0).abs() < 1e-4, "unit length");
        assert!(dot(&a, &b) > dot(&a, &c) + 0.1, "{} vs {}", dot(&a, &b), dot(&a, &c));
        assert_eq!(e.vector("same text"), e.vector("same text"), "deterministic");
        assert!(e.vector("").iter().all(|v| *v == 0.0));
    }

    #[test]
    fn fusion_rewards_agreement() {
        let fused = fuse(&[vec![1, 2, 3], vec![2, 3, 1], vec![2, 1]], 3);
        assert_eq!(fused[0].0, 2, "first or second everywhere");
        assert_eq!(fused.len(), 3);
    }
}
