//! The embedder port and the built-in local embedder.
//!
//! [`HashingEmbedder`] needs no model and no network: a text becomes a 512-dimension vector of
//! hashed features — its index terms (as BM25 sees them) and their character trigrams, which
//! catch inflections and typos ("spedizioni"/"spedizione", "recieve"/"receive") — with
//! sublinear term frequency, a sign hash to spread collisions, and unit length, so the dot
//! product is the cosine. It is lexical: synonyms with no shared letters ("rodent"/"mouse")
//! stay apart. It was chosen by the retrieval benchmark (BENCHMARKS.md) as what ships today;
//! a sentence-embedding model and OpenAI-compatible embeddings are the next adapters.

use std::collections::HashMap;

/// Turns texts into vectors of [`Embedder::dimensions`] floats, comparable by dot product.
pub trait Embedder: Send + Sync + std::fmt::Debug {
    fn dimensions(&self) -> usize;
    fn embed(&self, text: &str) -> Vec<f32>;
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

impl Embedder for HashingEmbedder {
    fn dimensions(&self) -> usize {
        self.dimensions
    }

    fn embed(&self, text: &str) -> Vec<f32> {
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
        let norm = vector.iter().map(|v| v * v).sum::<f32>().sqrt();
        if norm > 0.0 {
            vector.iter_mut().for_each(|v| *v /= norm);
        }
        vector
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
        let a = e.embed("When are the shipments delivered?");
        let b = e.embed("Shipment delivery takes three days");
        let c = e.embed("Our cats sleep on the sofa");
        assert!((dot(&a, &a) - 1.0).abs() < 1e-4, "unit length");
        assert!(dot(&a, &b) > dot(&a, &c) + 0.1, "{} vs {}", dot(&a, &b), dot(&a, &c));
        assert_eq!(e.embed("same text"), e.embed("same text"), "deterministic");
        assert!(e.embed("").iter().all(|v| *v == 0.0));
    }

    #[test]
    fn fusion_rewards_agreement() {
        let fused = fuse(&[vec![1, 2, 3], vec![2, 3, 1], vec![2, 1]], 3);
        assert_eq!(fused[0].0, 2, "first or second everywhere");
        assert_eq!(fused.len(), 3);
    }
}
