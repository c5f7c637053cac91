//! The conformance suite every [`VectorIndex`] adapter must pass.
//!
//! Call [`run_all`] with a fresh, empty index; each check uses its own tenant ids so checks
//! cannot see each other's points. Vectors are 4-dimensional unit vectors.

use super::{Hit, Point, VectorError, VectorIndex};
use parla_domain::model::{BotId, TenantId};

/// Runs every check. Panics, naming the check, on the first failure.
pub async fn run_all(index: &dyn VectorIndex) {
    nearest_first_with_cosine_scores(index).await;
    limit_and_threshold_are_honoured(index).await;
    search_never_crosses_tenant_or_bot(index).await;
    replace_swaps_a_documents_points(index).await;
    removal_by_document_and_by_bot(index).await;
    wrong_dimensions_are_refused(index).await;
    nothing_stored_finds_nothing(index).await;
}

fn unit(v: [f32; 4]) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter().map(|x| x / norm).collect()
}

fn point(position: u32, v: [f32; 4]) -> Point {
    Point { position, vector: unit(v) }
}

fn ids(hits: &[Hit]) -> Vec<(String, u32)> {
    hits.iter().map(|h| (h.document_id.clone(), h.position)).collect()
}

fn scope(tenant: &str, bot: &str) -> (TenantId, BotId) {
    (TenantId::from(tenant), BotId::from(bot))
}

async fn nearest_first_with_cosine_scores(index: &dyn VectorIndex) {
    let (t, b) = scope("t-vec-near", "b");
    let points = [point(0, [1.0, 0.0, 0.0, 0.0]), point(1, [1.0, 1.0, 0.0, 0.0])];
    index.replace(&t, &b, "d1", &points).await.expect("replace d1");
    index.replace(&t, &b, "d2", &[point(0, [0.0, 0.0, 1.0, 0.0])]).await.expect("replace d2");
    let hits = index.search(&t, &b, &unit([1.0, 0.2, 0.0, 0.0]), 10, -1.0).await.expect("search");
    assert_eq!(
        ids(&hits),
        vec![("d1".into(), 0), ("d1".into(), 1), ("d2".into(), 0)],
        "nearest first: {hits:?}"
    );
    let expected = unit([1.0, 0.2, 0.0, 0.0])[0];
    assert!((hits[0].score - expected).abs() < 1e-3, "the score is the cosine: {hits:?}");
    assert!(hits[2].score.abs() < 1e-3, "an orthogonal point scores 0: {hits:?}");
    assert!(index.holds(&t, &b, "d1").await.expect("holds"));
    assert!(!index.holds(&t, &b, "d3").await.expect("holds"), "an unknown document");
}

async fn limit_and_threshold_are_honoured(index: &dyn VectorIndex) {
    let (t, b) = scope("t-vec-limit", "b");
    let points: Vec<Point> =
        (0..20u8).map(|i| point(u32::from(i), [1.0, f32::from(i) / 10.0, 0.0, 0.0])).collect();
    index.replace(&t, &b, "d", &points).await.expect("replace");
    let query = unit([1.0, 0.0, 0.0, 0.0]);
    let hits = index.search(&t, &b, &query, 3, -1.0).await.expect("search");
    assert_eq!(ids(&hits), vec![("d".into(), 0), ("d".into(), 1), ("d".into(), 2)], "top 3");
    let close = index.search(&t, &b, &query, 100, 0.9).await.expect("search");
    assert!(!close.is_empty() && close.len() < 20, "a threshold drops far points: {close:?}");
    assert!(close.iter().all(|h| h.score >= 0.9 - 1e-4), "{close:?}");
    assert!(close.windows(2).all(|w| w[0].score >= w[1].score), "ordered: {close:?}");
}

async fn search_never_crosses_tenant_or_bot(index: &dyn VectorIndex) {
    let (a, b) = scope("t-vec-iso-a", "bot");
    let other_tenant = TenantId::from("t-vec-iso-b");
    let other_bot = BotId::from("bot-2");
    index.replace(&a, &b, "d", &[point(0, [0.0, 1.0, 0.0, 0.0])]).await.expect("replace");
    let query = unit([0.0, 1.0, 0.0, 0.0]);
    assert_eq!(index.search(&a, &b, &query, 5, -1.0).await.expect("own").len(), 1);
    let hits = index.search(&other_tenant, &b, &query, 5, -1.0).await.expect("search");
    assert!(hits.is_empty(), "another tenant's bot with the same id sees nothing: {hits:?}");
    assert!(!index.holds(&other_tenant, &b, "d").await.expect("holds"));
    let hits = index.search(&a, &other_bot, &query, 5, -1.0).await.expect("search");
    assert!(hits.is_empty(), "another bot of the tenant sees nothing: {hits:?}");
    // A document id reused by another tenant does not touch the first tenant's points.
    index.remove_document(&other_tenant, &b, "d").await.expect("remove elsewhere");
    assert!(index.holds(&a, &b, "d").await.expect("holds"), "untouched");
}

async fn replace_swaps_a_documents_points(index: &dyn VectorIndex) {
    let (t, b) = scope("t-vec-replace", "b");
    let before: Vec<Point> = (0..3).map(|i| point(i, [1.0, 0.0, 0.0, 0.0])).collect();
    index.replace(&t, &b, "d", &before).await.expect("first");
    index.replace(&t, &b, "keep", &[point(0, [0.0, 0.0, 0.0, 1.0])]).await.expect("other doc");
    index.replace(&t, &b, "d", &[point(0, [0.0, 1.0, 0.0, 0.0])]).await.expect("second");
    let hits = index.search(&t, &b, &unit([1.0, 1.0, 1.0, 1.0]), 10, -1.0).await.expect("search");
    let mut found = ids(&hits);
    found.sort();
    assert_eq!(found, vec![("d".into(), 0), ("keep".into(), 0)], "old positions are gone");
    let hit = hits.iter().find(|h| h.document_id == "d").expect("d");
    assert!((hit.score - 0.5).abs() < 1e-3, "the new vector, not the old one: {hits:?}");
    index.replace(&t, &b, "d", &[]).await.expect("emptied");
    assert!(!index.holds(&t, &b, "d").await.expect("holds"), "no points left");
}

async fn removal_by_document_and_by_bot(index: &dyn VectorIndex) {
    let (t, b) = scope("t-vec-remove", "b");
    let other_bot = BotId::from("b2");
    for document in ["d1", "d2"] {
        index.replace(&t, &b, document, &[point(0, [1.0, 0.0, 0.0, 0.0])]).await.expect("put");
    }
    index.replace(&t, &other_bot, "d9", &[point(0, [1.0, 0.0, 0.0, 0.0])]).await.expect("put");
    index.remove_document(&t, &b, "d1").await.expect("remove d1");
    let query = unit([1.0, 0.0, 0.0, 0.0]);
    let hits = index.search(&t, &b, &query, 10, -1.0).await.expect("search");
    assert_eq!(ids(&hits), vec![("d2".into(), 0)], "d1's points are gone");
    index.remove_document(&t, &b, "d1").await.expect("removing again is fine");
    index.remove_bot(&t, &b).await.expect("remove bot");
    assert!(index.search(&t, &b, &query, 10, -1.0).await.expect("search").is_empty());
    let kept = index.search(&t, &other_bot, &query, 10, -1.0).await.expect("search");
    assert_eq!(kept.len(), 1, "another bot keeps its points");
}

async fn wrong_dimensions_are_refused(index: &dyn VectorIndex) {
    let (t, b) = scope("t-vec-dims", "b");
    index.replace(&t, &b, "d", &[point(0, [1.0, 0.0, 0.0, 0.0])]).await.expect("put");
    let short = Point { position: 0, vector: vec![1.0, 0.0] };
    let refused = index.replace(&t, &b, "e", &[short]).await;
    assert!(refused.is_err(), "a vector of another length is refused: {refused:?}");
    let refused = index.search(&t, &b, &[1.0, 0.0], 5, -1.0).await;
    assert!(
        matches!(refused, Err(VectorError::Dimensions { .. } | VectorError::Backend(_))),
        "a query of another length is refused: {refused:?}"
    );
    assert!(index.holds(&t, &b, "d").await.expect("holds"), "what was there is kept");
}

async fn nothing_stored_finds_nothing(index: &dyn VectorIndex) {
    let (t, b) = scope("t-vec-empty", "b");
    let hits = index.search(&t, &b, &unit([1.0, 0.0, 0.0, 0.0]), 5, -1.0).await.expect("search");
    assert!(hits.is_empty());
    index.remove_bot(&t, &b).await.expect("removing nothing is fine");
}
