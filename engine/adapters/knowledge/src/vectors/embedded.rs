//! The embedded vector index: a redb file in the data dir, searched exactly.
//!
//! Points are stored as little-endian `f32`s under (tenant, bot, document, position), one table
//! per vector space, so a change of embedder starts an empty space instead of mixing vectors.
//! A search loads the bot's points into one contiguous matrix (cached until the bot's points
//! change) and scores every row: exact, and for the few thousand chunks of a bot's knowledge
//! base faster than building a graph (10,000 chunks × 384 dimensions ≈ 4 M multiply-adds,
//! about a millisecond). A bot with millions of chunks wants the Qdrant adapter.

use std::{collections::HashMap, path::Path, sync::Arc};

use async_trait::async_trait;
use parking_lot::Mutex;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::{Hit, Point, VectorError, VectorIndex, VectorResult, dimensions_of};
use parla_domain::model::{BotId, TenantId};

/// Vector space → its dimensions.
const SPACES: TableDefinition<&str, u64> = TableDefinition::new("spaces");

type PointKey<'a> = (&'a str, &'a str, &'a str, u32);

/// Bots whose matrices stay in memory at most.
const MAX_CACHED_BOTS: usize = 1000;
type Key = (TenantId, BotId);

fn backend(e: impl std::fmt::Display) -> VectorError {
    VectorError::Backend(e.to_string())
}

/// One bot's points, row after row.
#[derive(Debug, Default)]
struct Matrix {
    ids: Vec<(String, u32)>,
    dimensions: usize,
    values: Vec<f32>,
}

#[derive(Debug, Default)]
struct Cache {
    matrices: HashMap<Key, Arc<Matrix>>,
    /// Bumped by every write to a bot: a matrix read before it is not cached.
    generations: HashMap<Key, u64>,
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct EmbeddedVectors {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    db: Database,
    space: String,
    table: String,
    cache: Mutex<Cache>,
}

impl Inner {
    fn points(&self) -> TableDefinition<'_, PointKey<'static>, &'static [u8]> {
        TableDefinition::new(&self.table)
    }

    fn dimensions(&self) -> VectorResult<Option<usize>> {
        let txn = self.db.begin_read().map_err(backend)?;
        let table = match txn.open_table(SPACES) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(backend(e)),
        };
        let dims = table.get(self.space.as_str()).map_err(backend)?.map(|v| v.value());
        Ok(dims.map(|d| usize::try_from(d).unwrap_or(usize::MAX)))
    }

    /// Removes a bot's points (`document` None) or a document's, then inserts `points`.
    fn write(
        &self,
        (tenant, bot): &Key,
        document: Option<&str>,
        points: &[Point],
    ) -> VectorResult<()> {
        let dimensions =
            if points.is_empty() { 0 } else { dimensions_of(points, self.dimensions()?)? };
        let txn = self.db.begin_write().map_err(backend)?;
        {
            let (t, b) = (tenant.as_str(), bot.as_str());
            let mut table = txn.open_table(self.points()).map_err(backend)?;
            let range = match document {
                Some(d) => (t, b, d, 0)..=(t, b, d, u32::MAX),
                None => (t, b, "", 0)..=(t, b, "\u{10FFFF}", u32::MAX),
            };
            let doomed: Vec<(String, u32)> = table
                .range(range)
                .map_err(backend)?
                .map(|entry| {
                    entry.map(|(k, _)| (k.value().2.to_owned(), k.value().3)).map_err(backend)
                })
                .collect::<VectorResult<_>>()?;
            for (d, position) in &doomed {
                table.remove((t, b, d.as_str(), *position)).map_err(backend)?;
            }
            if let Some(d) = document {
                for point in points {
                    let bytes: Vec<u8> =
                        point.vector.iter().flat_map(|v| v.to_le_bytes()).collect();
                    table.insert((t, b, d, point.position), bytes.as_slice()).map_err(backend)?;
                }
            }
            if dimensions > 0 {
                let mut spaces = txn.open_table(SPACES).map_err(backend)?;
                spaces.insert(self.space.as_str(), dimensions as u64).map_err(backend)?;
            }
        }
        txn.commit().map_err(backend)?;
        Ok(())
    }

    fn load(&self, (tenant, bot): &Key) -> VectorResult<Matrix> {
        let txn = self.db.begin_read().map_err(backend)?;
        let table = match txn.open_table(self.points()) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Matrix::default()),
            Err(e) => return Err(backend(e)),
        };
        let (t, b) = (tenant.as_str(), bot.as_str());
        let mut matrix = Matrix::default();
        for entry in table.range((t, b, "", 0)..=(t, b, "\u{10FFFF}", u32::MAX)).map_err(backend)? {
            let (key, value) = entry.map_err(backend)?;
            let bytes = value.value();
            if bytes.len() % 4 != 0 {
                return Err(VectorError::Backend("a stored vector is truncated".into()));
            }
            let row = bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]));
            let before = matrix.values.len();
            matrix.values.extend(row);
            let dims = matrix.values.len() - before;
            if matrix.dimensions == 0 {
                matrix.dimensions = dims;
            } else if dims != matrix.dimensions {
                return Err(VectorError::Backend("stored vectors differ in length".into()));
            }
            matrix.ids.push((key.value().2.to_owned(), key.value().3));
        }
        Ok(matrix)
    }
}

impl EmbeddedVectors {
    /// Opens (or creates) `vectors.redb` in `dir`, for the vector space `space`.
    pub fn open(dir: &Path, space: &str) -> VectorResult<Self> {
        std::fs::create_dir_all(dir).map_err(backend)?;
        let db = Database::create(dir.join("vectors.redb")).map_err(backend)?;
        // Table names are the space's id, kept readable but safe.
        let table = format!(
            "points:{}",
            space
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' })
                .collect::<String>()
        );
        let inner = Inner { db, space: space.to_owned(), table, cache: Mutex::default() };
        Ok(Self { inner: Arc::new(inner) })
    }

    async fn write(
        &self,
        key: Key,
        document: Option<String>,
        points: Vec<Point>,
    ) -> VectorResult<()> {
        let inner = self.inner.clone();
        let written = tokio::task::spawn_blocking(move || {
            let result = inner.write(&key, document.as_deref(), &points);
            let mut cache = inner.cache.lock();
            cache.matrices.remove(&key);
            *cache.generations.entry(key).or_default() += 1;
            result
        })
        .await;
        written.unwrap_or_else(|e| Err(backend(e)))
    }

    async fn matrix(&self, key: Key) -> VectorResult<Arc<Matrix>> {
        let generation = {
            let cache = self.inner.cache.lock();
            if let Some(matrix) = cache.matrices.get(&key) {
                return Ok(matrix.clone());
            }
            cache.generations.get(&key).copied().unwrap_or(0)
        };
        let inner = self.inner.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            let matrix = Arc::new(inner.load(&key)?);
            let mut cache = inner.cache.lock();
            if cache.generations.get(&key).copied().unwrap_or(0) == generation {
                if cache.matrices.len() >= MAX_CACHED_BOTS {
                    cache.matrices.clear(); // Bounded memory; busy bots come straight back.
                }
                cache.matrices.insert(key, matrix.clone());
            }
            Ok(matrix)
        })
        .await;
        loaded.unwrap_or_else(|e| Err(backend(e)))
    }
}

fn key(tenant: &TenantId, bot: &BotId) -> Key {
    (tenant.clone(), bot.clone())
}

#[async_trait]
impl VectorIndex for EmbeddedVectors {
    async fn replace(
        &self,
        tenant: &TenantId,
        bot: &BotId,
        document: &str,
        points: &[Point],
    ) -> VectorResult<()> {
        self.write(key(tenant, bot), Some(document.to_owned()), points.to_vec()).await
    }

    async fn remove_document(
        &self,
        tenant: &TenantId,
        bot: &BotId,
        document: &str,
    ) -> VectorResult<()> {
        self.write(key(tenant, bot), Some(document.to_owned()), Vec::new()).await
    }

    async fn remove_bot(&self, tenant: &TenantId, bot: &BotId) -> VectorResult<()> {
        self.write(key(tenant, bot), None, Vec::new()).await
    }

    async fn holds(&self, tenant: &TenantId, bot: &BotId, document: &str) -> VectorResult<bool> {
        let matrix = self.matrix(key(tenant, bot)).await?;
        Ok(matrix.ids.iter().any(|(d, _)| d == document))
    }

    async fn search(
        &self,
        tenant: &TenantId,
        bot: &BotId,
        query: &[f32],
        k: usize,
        min_score: f32,
    ) -> VectorResult<Vec<Hit>> {
        let matrix = self.matrix(key(tenant, bot)).await?;
        if matrix.ids.is_empty() || k == 0 {
            return Ok(Vec::new());
        }
        if query.len() != matrix.dimensions {
            return Err(VectorError::Dimensions { expected: matrix.dimensions, got: query.len() });
        }
        let mut scored: Vec<(usize, f32)> = matrix
            .values
            .chunks_exact(matrix.dimensions)
            .map(|row| row.iter().zip(query).map(|(a, b)| a * b).sum::<f32>())
            .enumerate()
            .filter(|(_, score)| *score >= min_score)
            .collect();
        if scored.len() > k {
            scored.select_nth_unstable_by(k - 1, |a, b| b.1.total_cmp(&a.1));
            scored.truncate(k);
        }
        scored.sort_by(|a, b| b.1.total_cmp(&a.1));
        Ok(scored
            .into_iter()
            .map(|(row, score)| {
                let (document_id, position) = matrix.ids[row].clone();
                Hit { document_id, position, score }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn embedded_vectors_pass_the_conformance_suite() {
        let dir = tempfile::tempdir().expect("dir");
        let index = EmbeddedVectors::open(dir.path(), "test-space").expect("open");
        super::super::conformance::run_all(&index).await;
    }

    #[tokio::test]
    async fn points_survive_a_reopen_and_spaces_stay_apart() {
        let dir = tempfile::tempdir().expect("dir");
        let (t, b) = (TenantId::from("t"), BotId::from("b"));
        {
            let index = EmbeddedVectors::open(dir.path(), "space-a").expect("open");
            let point = Point { position: 0, vector: vec![1.0, 0.0] };
            index.replace(&t, &b, "d", &[point]).await.expect("replace");
        }
        {
            let index = EmbeddedVectors::open(dir.path(), "space-a").expect("reopen");
            let hits = index.search(&t, &b, &[1.0, 0.0], 5, 0.0).await.expect("search");
            assert_eq!(hits.len(), 1);
        }
        let other = EmbeddedVectors::open(dir.path(), "space/b").expect("open");
        assert!(!other.holds(&t, &b, "d").await.expect("holds"), "another space is empty");
        let point = Point { position: 0, vector: vec![0.0, 0.0, 1.0] };
        other.replace(&t, &b, "d", &[point]).await.expect("its own dimensions");
    }
}
