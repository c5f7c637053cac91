//! `parla-retrieval-bench`: recall@1, recall@5 and mean reciprocal rank of Parla's retrieval
//! methods — keyword (BM25), vector (the built-in embedder) and hybrid (their reciprocal rank
//! fusion, what bots use) — on a question set where each question has one answering passage.
//!
//! With a model directory (config.json, model.safetensors, tokenizer.json of all-MiniLM-L6-v2)
//! the sentence-embedding model is measured too, alone and fused with BM25.
//!
//! Usage: `parla-retrieval-bench [SET.json] [MINILM_DIR]` (default set:
//! loadtest/retrieval/aesop.json).

use parla_knowledge::{
    embed::{HashingEmbedder, dot, fuse},
    index::{KeywordIndex, terms},
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
    let path = std::env::args().nth(1).unwrap_or_else(|| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/../retrieval/aesop.json").to_owned()
    });
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
    let minilm = match std::env::args().nth(2) {
        Some(dir) => Some(
            parla_knowledge::minilm::MiniLmEmbedder::load(dir.as_ref())
                .map_err(anyhow::Error::msg)?,
        ),
        None => None,
    };
    let model_vectors = match &minilm {
        Some(m) => m
            .vectors(&set.passages.iter().map(|p| p.text.clone()).collect::<Vec<_>>())
            .map_err(anyhow::Error::msg)?,
        None => Vec::new(),
    };
    let by_model = |q: &str| {
        let Some(m) = &minilm else { return Vec::new() };
        let v = m.vectors(&[q.to_owned()]).ok().and_then(|mut v| v.pop()).unwrap_or_default();
        let mut scored: Vec<(usize, f32)> =
            model_vectors.iter().enumerate().map(|(i, p)| (i, dot(&v, p))).collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1));
        scored.into_iter().map(|(i, _)| i).collect::<Vec<usize>>()
    };
    let model_hybrid = |q: &str| {
        fuse(&[by_keyword(q), by_model(q)], n).into_iter().map(|(i, _)| i).collect::<Vec<_>>()
    };
    let mut methods: Vec<(&str, Ranker<'_>)> = vec![
        ("keyword (BM25)", Box::new(by_keyword)),
        ("vector (hashing embedder)", Box::new(by_vector)),
        ("hybrid: BM25 + hashing (reciprocal rank fusion)", Box::new(hybrid)),
    ];
    // What bots do: the model is consulted only when the best keyword passage does not hold
    // at least 75% of the question's terms.
    let adaptive = |q: &str| {
        let keyword = by_keyword(q);
        let mut wanted = terms(q);
        wanted.sort();
        wanted.dedup();
        let covered = keyword.first().map_or(0.0, |i| {
            let held = terms(&set.passages[*i].text);
            wanted.iter().filter(|t| held.contains(t)).count() as f32 / wanted.len().max(1) as f32
        });
        if covered >= 0.75 { keyword } else { model_hybrid(q) }
    };
    if minilm.is_some() {
        methods.push(("vector (all-MiniLM-L6-v2)", Box::new(by_model)));
        methods.push(("hybrid: BM25 + MiniLM (reciprocal rank fusion)", Box::new(model_hybrid)));
        methods.push((
            "adaptive: BM25 if it covers the question, else BM25 + MiniLM",
            Box::new(adaptive),
        ));
    }
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
