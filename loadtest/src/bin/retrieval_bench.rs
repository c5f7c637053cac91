//! `parla-retrieval-bench`: recall@1, recall@5 and mean reciprocal rank of Parla's retrieval
//! methods — keyword (BM25), vector (the built-in embedder) and hybrid (their reciprocal rank
//! fusion, what bots use) — on a question set where each question has one answering passage.
//!
//! Usage: `parla-retrieval-bench [SET.json]` (default: loadtest/retrieval/aesop.json).

use parla_engine::knowledge::{
    embed::{HashingEmbedder, dot, fuse},
    index::KeywordIndex,
};
use serde::Deserialize;

/// Ranks every passage for a question, best first.
type Ranker<'a> = Box<dyn Fn(&str) -> Vec<usize> + 'a>;

#[derive(Deserialize)]
struct Set {
    source: String,
    passages: Vec<Passage>,
    questions: Vec<Question>,
}

#[derive(Deserialize)]
struct Passage {
    id: String,
    text: String,
}

#[derive(Deserialize)]
struct Question {
    q: String,
    answer: String,
}

fn main() -> anyhow::Result<()> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/retrieval/aesop.json").to_owned());
    let set: Set = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
    let keywords = KeywordIndex::new(set.passages.iter().map(|p| p.text.as_str()));
    let embedder = HashingEmbedder::default();
    let vectors: Vec<Vec<f32>> = set.passages.iter().map(|p| embedder.vector(&p.text)).collect();
    let n = set.passages.len();
    let by_vector = |q: &str| {
        let v = embedder.vector(q);
        let mut scored: Vec<(usize, f32)> =
            vectors.iter().enumerate().map(|(i, p)| (i, dot(&v, p))).collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1));
        scored.into_iter().map(|(i, _)| i).collect::<Vec<usize>>()
    };
    let by_keyword =
        |q: &str| keywords.search(q, n).into_iter().map(|(i, _)| i).collect::<Vec<usize>>();
    let hybrid = |q: &str| {
        fuse(&[by_keyword(q), by_vector(q)], n).into_iter().map(|(i, _)| i).collect::<Vec<_>>()
    };
    let methods: [(&str, Ranker<'_>); 3] = [
        ("keyword (BM25)", Box::new(by_keyword)),
        ("vector (hashing embedder)", Box::new(by_vector)),
        ("hybrid (reciprocal rank fusion)", Box::new(hybrid)),
    ];
    println!("# {} passages, {} questions: {}", n, set.questions.len(), set.source);
    println!("| method | recall@1 | recall@5 | MRR |");
    println!("|---|---:|---:|---:|");
    for (name, rank) in &methods {
        let (mut at1, mut at5, mut rr) = (0usize, 0usize, 0.0f64);
        for question in &set.questions {
            let ranking = rank(&question.q);
            let gold = set.passages.iter().position(|p| p.id == question.answer);
            if let Some(position) = gold.and_then(|g| ranking.iter().position(|i| *i == g)) {
                at1 += usize::from(position == 0);
                at5 += usize::from(position < 5);
                rr += 1.0 / (position as f64 + 1.0);
            }
        }
        let total = set.questions.len() as f64;
        println!(
            "| {name} | {:.2} | {:.2} | {:.3} |",
            at1 as f64 / total,
            at5 as f64 / total,
            rr / total
        );
    }
    Ok(())
}
