//! Keyword retrieval: Okapi BM25 (k1 = 1.2, b = 0.75) over a bot's chunks, with a small
//! English and Italian stop-word list and a light suffix stemmer so "shipping" finds "ship" and
//! "spedizioni" finds "spedizione". Built in memory per bot from the store; rebuilt when the
//! bot's documents change.

use std::collections::HashMap;

const K1: f32 = 1.2;
const B: f32 = 0.75;

pub use parla_domain::text::terms;

/// BM25 over a set of passages.
#[derive(Debug, Default)]
pub struct KeywordIndex {
    docs: Vec<HashMap<String, u32>>,
    lengths: Vec<u32>,
    df: HashMap<String, u32>,
    avg_len: f32,
}

impl KeywordIndex {
    pub fn new<'a>(texts: impl IntoIterator<Item = &'a str>) -> Self {
        let mut index = Self::default();
        for text in texts {
            let mut counts: HashMap<String, u32> = HashMap::new();
            let terms = terms(text);
            for term in &terms {
                *counts.entry(term.clone()).or_default() += 1;
            }
            for term in counts.keys() {
                *index.df.entry(term.clone()).or_default() += 1;
            }
            index.lengths.push(u32::try_from(terms.len()).unwrap_or(u32::MAX));
            index.docs.push(counts);
        }
        let total: u64 = index.lengths.iter().map(|l| u64::from(*l)).sum();
        index.avg_len =
            if index.docs.is_empty() { 0.0 } else { total as f32 / index.docs.len() as f32 };
        index
    }

    pub fn len(&self) -> usize {
        self.docs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.docs.is_empty()
    }

    /// Whether passage `i` holds the index term `term` (as [`terms`] makes them).
    pub fn holds(&self, i: usize, term: &str) -> bool {
        self.docs.get(i).is_some_and(|counts| counts.contains_key(term))
    }

    /// The `k` best passages for `query`: (passage index, score), best first; only passages
    /// sharing a term with the query.
    pub fn search(&self, query: &str, k: usize) -> Vec<(usize, f32)> {
        let mut query_terms = terms(query);
        query_terms.sort();
        query_terms.dedup();
        let n = self.docs.len() as f32;
        let mut scored: Vec<(usize, f32)> = self
            .docs
            .iter()
            .enumerate()
            .filter_map(|(i, counts)| {
                let len = self.lengths[i] as f32;
                let score: f32 = query_terms
                    .iter()
                    .filter_map(|t| {
                        let tf = *counts.get(t)? as f32;
                        let df = *self.df.get(t)? as f32;
                        let idf = ((n - df + 0.5) / (df + 0.5) + 1.0).ln();
                        let norm = K1 * (1.0 - B + B * len / self.avg_len.max(1.0));
                        Some(idf * tf * (K1 + 1.0) / (tf + norm))
                    })
                    .sum();
                (score > 0.0).then_some((i, score))
            })
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1));
        scored.truncate(k);
        scored
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_passage_that_answers_ranks_first() {
        let passages = [
            "We ship to 40 countries; shipping takes 3 to 5 days.",
            "Returns are free within 30 days of delivery.",
            "Our shop in Rome is open from 9 to 18, Monday to Friday.",
        ];
        let index = KeywordIndex::new(passages);
        assert_eq!(index.search("how long does shipping take?", 3)[0].0, 0);
        assert_eq!(index.search("can I return an item?", 3)[0].0, 1, "return ~ returns");
        assert_eq!(index.search("when is the Rome shop open", 3)[0].0, 2);
        assert!(index.search("the and of", 3).is_empty(), "stop words match nothing");
        let italian =
            KeywordIndex::new(["Le spedizioni arrivano in tre giorni.", "Il reso è gratuito."]);
        assert_eq!(italian.search("quanto ci mette la spedizione?", 2)[0].0, 0);
    }
}
