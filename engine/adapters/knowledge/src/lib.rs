//! Parla's knowledge-base adapter (the domain's `KnowledgeBase` port): documents turned into
//! chunks by background workers, and retrieval over them for the bot brain.
//!
//! # Processing
//! An upload stores the document (PENDING) with its bytes, then queues its id. `workers`
//! worker tasks take ids fairly ([`schedule`]: round robin across tenants, a tenant holding at
//! most half the workers): PROCESSING → extract, in a child process bounded in memory and time
//! ([`extractor`] running [`extract`]) → chunk ([`chunk`]) → chunks and COMPLETED in one store
//! transaction, or FAILED with the reason. A scrape ([`scrape`]) fetches its pages within
//! `scrape_deadline_ms`, then extracts each page the same way. The queue in memory is bounded
//! per tenant; the store's list of unfinished documents is the durable one — on start every
//! PENDING or PROCESSING document is queued again, so work survives a restart, and ids that did
//! not fit in memory are read back from it when the queues run dry.
//!
//! # Retrieval
//! Hybrid: keyword (BM25, [`index`], built on first use and cached per bot until its documents
//! change) and vector (the [`embed::Embedder`]'s cosine, searched in the [`vectors`] index)
//! rankings of the bot's chunks, fused by reciprocal rank ([`embed::fuse`]). Only passages
//! sharing a term with the question or close in vector space are candidates.
//!
//! # Seams of its own
//! [`embed::Embedder`] (hashing, an OpenAI-compatible API, or the built-in MiniLM model in
//! [`minilm`]) and [`vectors::VectorIndex`] (embedded redb, or Qdrant) are this adapter's inner
//! ports, not the domain's: the engine's core never sees a vector. The binary picks the
//! implementations.

pub mod chunk;
pub mod embed;
pub mod extract;
pub mod extractor;
pub mod index;
#[cfg(feature = "minilm")]
pub mod minilm;
mod schedule;
pub mod scrape;
pub mod vectors;

use std::{collections::HashMap, sync::Arc};

use parking_lot::Mutex;

use parla_domain::{
    knowledge::KnowledgeBase,
    model::{BotId, Chunk, Document, ProcessStatus, TenantId, now_ms},
    store::{Documents, StoreResult},
};

pub use parla_config::KnowledgeSettings;

pub use parla_domain::knowledge::Passage;

/// A bot's chunks and their keyword index.
#[derive(Debug)]
struct BotIndex {
    chunks: Vec<Chunk>,
    keywords: index::KeywordIndex,
    /// (document, position) → index in `chunks`, to place vector hits.
    positions: HashMap<(String, u32), usize>,
}

/// How many candidates each ranking contributes to the fusion.
const CANDIDATES: usize = 50;
/// Below this cosine a vector match is not a candidate.
const MIN_COSINE: f32 = 0.15;
/// A best keyword passage holding this share of the question's terms makes the vector search
/// unnecessary.
const KEYWORDS_SUFFICE: f32 = 0.75;

type Key = (TenantId, BotId);

/// Processes documents and answers retrieval queries.
#[derive(Debug)]
pub struct Knowledge {
    store: Arc<dyn Documents>,
    settings: KnowledgeSettings,
    scraper: scrape::Scraper,
    /// Runs every extraction, bounded (see [`extractor`]).
    extractor: extractor::Extractor,
    /// The documents waiting and running, taken fairly by the workers.
    schedule: Arc<schedule::Schedule>,
    indexes: Mutex<HashMap<Key, Arc<BotIndex>>>,
    embedder: Arc<dyn embed::Embedder>,
    vectors: Arc<dyn vectors::VectorIndex>,
    /// Recent questions' vectors: visitors ask the same things in the same words, and the
    /// model costs ≈ 20 ms of CPU a question.
    questions: Mutex<HashMap<String, Arc<Vec<f32>>>>,
}

/// How a question is kept in the cache: its words, lower case, single-spaced.
fn question_key(query: &str) -> String {
    query.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

/// Question vectors kept; past it the cache starts afresh (cheap, and popular questions come
/// straight back).
const QUESTION_CACHE: usize = 10_000;

impl Knowledge {
    pub fn settings(&self) -> &KnowledgeSettings {
        &self.settings
    }

    /// Probes the remote pieces retrieval depends on (an embeddings API, Qdrant), each within
    /// `timeout`, for readiness: `(service, outcome)`. Local ones are left out.
    pub async fn probe(
        &self,
        timeout: std::time::Duration,
    ) -> Vec<(&'static str, Result<(), String>)> {
        let embedder = self.embedder.probe(timeout);
        let vectors = async {
            match tokio::time::timeout(timeout, self.vectors.probe()).await {
                Ok(outcome) => outcome.map(|o| o.map_err(|e| e.to_string())),
                Err(_) => Some(Err(format!("no answer in {} ms", timeout.as_millis()))),
            }
        };
        let (embedder, vectors) = tokio::join!(embedder, vectors);
        let mut probes = Vec::new();
        if let Some(outcome) = embedder {
            probes.push(("embeddings", outcome));
        }
        if let Some(outcome) = vectors {
            probes.push(("vectors", outcome));
        }
        probes
    }

    /// Starts the workers on the current runtime. `vectors` must hold `embedder`'s space.
    pub fn start(
        store: Arc<dyn Documents>,
        settings: KnowledgeSettings,
        embedder: Arc<dyn embed::Embedder>,
        vectors: Arc<dyn vectors::VectorIndex>,
        http: Arc<dyn parla_domain::http::TenantHttp>,
    ) -> Arc<Self> {
        let scraper = scrape::Scraper::new(
            http,
            settings.max_document_bytes,
            std::time::Duration::from_millis(settings.scrape_deadline_ms),
        );
        let workers = settings.workers.max(1);
        let schedule = Arc::new(schedule::Schedule::new(settings.queue, workers.div_ceil(2)));
        let knowledge = Arc::new(Self {
            store,
            extractor: extractor::Extractor::from_settings(&settings),
            settings,
            scraper,
            schedule: schedule.clone(),
            indexes: Mutex::new(HashMap::new()),
            embedder,
            vectors,
            questions: Mutex::new(HashMap::new()),
        });
        for _ in 0..workers {
            tokio::spawn(worker(Arc::downgrade(&knowledge), schedule.clone()));
        }
        knowledge
    }

    /// Queues again every document a previous run left unfinished.
    pub async fn resume(&self) -> StoreResult<usize> {
        let unfinished = self.store.unfinished_documents().await?;
        let n = unfinished.len();
        for document in unfinished {
            self.submit(&document.tenant_id, &document.id).await;
        }
        Ok(n)
    }

    /// Queues a stored document for processing. Never waits: past the in-memory bound the
    /// document waits PENDING in the store, read back when the queues run dry.
    pub async fn submit(&self, tenant: &TenantId, id: &str) {
        self.schedule.push(tenant, id);
    }

    /// Queues again the documents the schedule let overflow to the store: the unfinished ones
    /// of `tenants` not queued or running here. (In a cluster one may be running on another
    /// node, as at a start's resume: processing again rewrites the same chunks.)
    async fn refill(&self, tenants: &[TenantId]) {
        match self.store.unfinished_documents().await {
            Ok(unfinished) => {
                for document in unfinished {
                    let (tenant, id) = (&document.tenant_id, &document.id);
                    if tenants.contains(tenant) && !self.schedule.holds(tenant, id) {
                        self.schedule.push(tenant, id);
                    }
                }
            }
            // Left in the store: the next overflow or the next start tries again.
            Err(e) => tracing::warn!(error = %e, "could not read the unfinished documents"),
        }
    }

    /// Forgets a bot's cached index (its documents changed).
    pub fn invalidate(&self, tenant: &TenantId, bot: &BotId) {
        self.indexes.lock().remove(&(tenant.clone(), bot.clone()));
    }

    /// Deletes a document with its bytes, chunks and vectors; returns whether it existed.
    pub async fn delete_document(&self, tenant: &TenantId, id: &str) -> StoreResult<bool> {
        let Some(document) = self.store.get_document(tenant, id).await? else {
            return Ok(false);
        };
        let existed = self.store.delete_document(tenant, id).await?;
        self.invalidate(tenant, &document.bot_id);
        // A failure here leaves points no chunk backs: searches skip them.
        if let Err(e) = self.vectors.remove_document(tenant, &document.bot_id, id).await {
            tracing::warn!(document = %id, error = %e, "could not remove the document's vectors");
        }
        Ok(existed)
    }

    /// Forgets a deleted bot's vectors (the store removed its documents with it).
    pub async fn forget_bot(&self, tenant: &TenantId, bot: &BotId) {
        self.invalidate(tenant, bot);
        if let Err(e) = self.vectors.remove_bot(tenant, bot).await {
            tracing::warn!(bot = %bot, error = %e, "could not remove the bot's vectors");
        }
    }

    /// The `k` passages of `bot`'s documents that best match `query`, best first.
    pub async fn search(
        &self,
        tenant: &TenantId,
        bot: &BotId,
        query: &str,
        k: usize,
    ) -> StoreResult<Vec<Passage>> {
        let index = self.index(tenant, bot).await?;
        if index.chunks.is_empty() {
            return Ok(Vec::new()); // No documents: spare the question's embedding.
        }
        let mut wanted = index::terms(query);
        wanted.sort();
        wanted.dedup();
        let keyword: Vec<usize> =
            index.keywords.search(query, CANDIDATES).into_iter().map(|(i, _)| i).collect();
        // The keyword index already holds each chunk's terms (heading included).
        let coverage = |i: usize| {
            let held = wanted.iter().filter(|t| index.keywords.holds(i, t)).count();
            held as f32 / wanted.len().max(1) as f32
        };
        // The best keyword passage already holds the question's words: the model (≈ 20 ms of
        // CPU a question) would not change the answer, so it is spared.
        let keywords_suffice = keyword.first().is_some_and(|i| coverage(*i) >= KEYWORDS_SUFFICE);
        let question = if keywords_suffice { Arc::default() } else { self.question(query).await };
        let hits = if question.is_empty() {
            Vec::new()
        } else {
            self.vectors
                .search(tenant, bot, &question, CANDIDATES, MIN_COSINE)
                .await
                .unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "vector search failed; keyword retrieval only");
                    Vec::new()
                })
        };
        // Hits whose chunk is gone (deleted meanwhile) are dropped.
        let by_vector: Vec<(usize, f32)> = hits
            .into_iter()
            .filter_map(|hit| {
                index.positions.get(&(hit.document_id, hit.position)).map(|i| (*i, hit.score))
            })
            .collect();
        let threshold = self.embedder.answer_similarity();
        let close: std::collections::HashSet<usize> = by_vector
            .iter()
            .filter(|(_, cosine)| threshold.is_some_and(|t| *cosine >= t))
            .map(|(i, _)| *i)
            .collect();
        let vector: Vec<usize> = by_vector.into_iter().take(CANDIDATES).map(|(i, _)| i).collect();
        Ok(embed::fuse(&[keyword, vector], k)
            .into_iter()
            .map(|(i, score)| {
                let chunk = &index.chunks[i];
                Passage {
                    document_id: chunk.document_id.clone(),
                    title: chunk.title.clone(),
                    text: chunk.text.clone(),
                    score,
                    coverage: coverage(i),
                    close_in_meaning: close.contains(&i),
                }
            })
            .collect())
    }

    /// The question's vector, from the cache or the embedder (empty when embedding failed).
    async fn question(&self, query: &str) -> Arc<Vec<f32>> {
        let key = question_key(query);
        if let Some(vector) = self.questions.lock().get(&key) {
            return vector.clone();
        }
        match self.embedder.embed(&[query.to_owned()]).await {
            Ok(mut vectors) => {
                let vector = Arc::new(vectors.pop().unwrap_or_default());
                let mut cache = self.questions.lock();
                if cache.len() >= QUESTION_CACHE {
                    cache.clear();
                }
                cache.insert(key, vector.clone());
                vector
            }
            Err(e) => {
                tracing::warn!(error = %e, "embedding the question failed; keyword retrieval only");
                Arc::default()
            }
        }
    }

    async fn index(&self, tenant: &TenantId, bot: &BotId) -> StoreResult<Arc<BotIndex>> {
        let key = (tenant.clone(), bot.clone());
        if let Some(index) = self.indexes.lock().get(&key) {
            return Ok(index.clone());
        }
        let chunks = self.store.list_chunks(tenant, bot).await?;
        // Headings count as words of their chunk ("Breakfast" over "Served from seven").
        let searchable: Vec<String> =
            chunks.iter().map(|c| embedding_text(&c.title, &c.text)).collect();
        let keywords = index::KeywordIndex::new(searchable.iter().map(String::as_str));
        let positions = chunks
            .iter()
            .enumerate()
            .map(|(i, c)| ((c.document_id.clone(), c.position), i))
            .collect();
        self.backfill(tenant, bot, &chunks).await;
        let built = Arc::new(BotIndex { chunks, keywords, positions });
        self.indexes.lock().insert(key, built.clone());
        Ok(built)
    }

    /// Embeds the documents that have no vectors in this embedder's space (they were processed
    /// under another embedder) when embedding is local; otherwise they are found by keywords
    /// only until reprocessed.
    async fn backfill(&self, tenant: &TenantId, bot: &BotId, chunks: &[Chunk]) {
        let mut documents: Vec<&str> = chunks.iter().map(|c| c.document_id.as_str()).collect();
        documents.dedup();
        for document in documents {
            if self.vectors.holds(tenant, bot, document).await.unwrap_or(true) {
                continue;
            }
            if !self.embedder.local() {
                tracing::warn!(document, embedder = %self.embedder.id(), "document has no vectors from this embedder; reprocess it");
                continue;
            }
            let mine: Vec<&Chunk> = chunks.iter().filter(|c| c.document_id == document).collect();
            let texts: Vec<String> =
                mine.iter().map(|c| embedding_text(&c.title, &c.text)).collect();
            let Ok(vectors) = self.embedder.embed(&texts).await else { continue };
            let points: Vec<vectors::Point> = mine
                .iter()
                .zip(vectors)
                .map(|(c, vector)| vectors::Point { position: c.position, vector })
                .collect();
            if let Err(e) = self.vectors.replace(tenant, bot, document, &points).await {
                tracing::warn!(document, error = %e, "could not store the document's vectors");
            }
        }
    }

    /// Processes one document: extract, chunk, store (or record the failure).
    async fn process(&self, tenant: &TenantId, id: &str) -> StoreResult<()> {
        let Some(mut document) = self.store.get_document(tenant, id).await? else {
            return Ok(()); // Deleted while queued.
        };
        document.status = ProcessStatus::Processing;
        document.progress = 10;
        document.error = None;
        document.updated_at = now_ms();
        self.store.put_document(&document, None).await?;
        let Some(bytes) = self.store.document_content(tenant, id).await? else {
            return self.fail(document, "the document's content is missing").await;
        };
        let (kind, title) = (document.kind, document.title.clone());
        let (max, overlap) = (self.settings.chunk_chars, self.settings.chunk_overlap_chars);
        let sections = if kind == parla_domain::model::DocumentType::WebPage {
            match self.scrape(&mut document, &bytes).await? {
                Ok(pages) => self.page_sections(pages).await,
                Err(reason) => Err(reason),
            }
        } else {
            self.extractor.extract(kind, bytes).await
        };
        let pieces = match sections {
            Ok(sections) => {
                tokio::task::spawn_blocking(move || chunk::chunk(&sections, &title, max, overlap))
                    .await
                    .map_err(|_| "chunking failed on this document".to_owned())
            }
            Err(reason) => Err(reason),
        };
        let pieces = match pieces {
            Ok(pieces) => pieces,
            Err(reason) => return self.fail(document, &reason).await,
        };
        // Deleted meanwhile? Then do not resurrect it.
        if self.store.get_document(tenant, id).await?.is_none() {
            return Ok(());
        }
        let texts: Vec<String> = pieces.iter().map(|p| embedding_text(&p.title, &p.text)).collect();
        let vectors = match self.embedder.embed(&texts).await {
            Ok(vectors) if vectors.len() == pieces.len() => vectors,
            Ok(_) => return self.fail(document, "embedding failed: wrong number of vectors").await,
            Err(e) => return self.fail(document, &format!("embedding failed: {e}")).await,
        };
        let position = |i: usize| u32::try_from(i).unwrap_or(u32::MAX);
        let points: Vec<vectors::Point> = vectors
            .into_iter()
            .enumerate()
            .map(|(i, vector)| vectors::Point { position: position(i), vector })
            .collect();
        // Before the chunks: a crash in between leaves the document PROCESSING, and the
        // resumed run writes both again.
        if let Err(e) = self.vectors.replace(tenant, &document.bot_id, id, &points).await {
            return self.fail(document, &format!("indexing failed: {e}")).await;
        }
        let chunks: Vec<Chunk> = pieces
            .into_iter()
            .enumerate()
            .map(|(i, piece)| Chunk {
                document_id: document.id.clone(),
                position: position(i),
                title: piece.title,
                text: piece.text,
            })
            .collect();
        document.status = ProcessStatus::Completed;
        document.progress = 100;
        document.chunks = u32::try_from(chunks.len()).unwrap_or(u32::MAX);
        document.updated_at = now_ms();
        self.store.put_chunks(&document, &chunks).await?;
        self.invalidate(tenant, &document.bot_id);
        tracing::info!(document = %document.id, chunks = chunks.len(), "document processed");
        Ok(())
    }

    /// Crawls what a WEB_PAGE document asks for, recording progress.
    async fn scrape(
        &self,
        document: &mut Document,
        request: &[u8],
    ) -> StoreResult<Result<Vec<scrape::Page>, String>> {
        let Ok(request) = serde_json::from_slice::<scrape::ScrapeRequest>(request) else {
            return Ok(Err("the scrape request is unreadable".into()));
        };
        let mut pages = (0, 1);
        let result = self.scraper.scrape(&request, |done, max| pages = (done, max)).await;
        document.progress = u8::try_from(10 + 80 * pages.0 / pages.1.max(1)).unwrap_or(90);
        document.updated_at = now_ms();
        self.store.put_document(document, None).await?;
        Ok(result)
    }

    /// The sections of scraped pages, each extracted like an upload and titled by its page
    /// (and heading); a page that yields nothing is skipped.
    async fn page_sections(
        &self,
        pages: Vec<scrape::Page>,
    ) -> Result<Vec<extract::Section>, String> {
        let mut sections = Vec::new();
        for page in pages {
            let kind = if page.html {
                parla_domain::model::DocumentType::Html
            } else {
                parla_domain::model::DocumentType::Txt
            };
            let found = match self.extractor.extract(kind, page.body.into_bytes()).await {
                Ok(found) => found,
                Err(e) => {
                    tracing::info!(url = %page.url, error = %e, "page yielded no text");
                    continue;
                }
            };
            sections.extend(found.into_iter().map(|s| extract::Section {
                title: Some(match s.title {
                    Some(heading) if heading != page.title => format!("{} — {heading}", page.title),
                    _ => page.title.clone(),
                }),
                paragraphs: s.paragraphs,
            }));
        }
        if sections.is_empty() {
            return Err("no text found on the page".into());
        }
        Ok(sections)
    }

    async fn fail(&self, mut document: Document, reason: &str) -> StoreResult<()> {
        tracing::info!(document = %document.id, reason, "document failed");
        document.status = ProcessStatus::Failed;
        document.progress = 100;
        document.error = Some(reason.to_owned());
        document.updated_at = now_ms();
        self.store.put_chunks(&document, &[]).await?;
        self.invalidate(&document.tenant_id, &document.bot_id);
        let (tenant, bot) = (&document.tenant_id, &document.bot_id);
        if let Err(e) = self.vectors.remove_document(tenant, bot, &document.id).await {
            tracing::warn!(document = %document.id, error = %e, "could not remove the document's vectors");
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl KnowledgeBase for Knowledge {
    fn max_document_bytes(&self) -> usize {
        self.settings.max_document_bytes
    }

    async fn submit(&self, tenant: &TenantId, document_id: &str) {
        Knowledge::submit(self, tenant, document_id).await;
    }

    async fn delete_document(&self, tenant: &TenantId, document_id: &str) -> StoreResult<bool> {
        Knowledge::delete_document(self, tenant, document_id).await
    }

    async fn forget_bot(&self, tenant: &TenantId, bot: &BotId) {
        Knowledge::forget_bot(self, tenant, bot).await;
    }

    async fn search(
        &self,
        tenant: &TenantId,
        bot: &BotId,
        query: &str,
    ) -> StoreResult<Vec<Passage>> {
        Knowledge::search(self, tenant, bot, query, self.settings.top_k).await
    }

    async fn probe(&self, timeout: std::time::Duration) -> Vec<(&'static str, Result<(), String>)> {
        Knowledge::probe(self, timeout).await
    }

    fn forget_questions(&self, questions: &[String]) {
        let mut cache = self.questions.lock();
        for question in questions {
            cache.remove(&question_key(question));
        }
    }
}

/// What a chunk's vector is made from: its heading helps place it.
fn embedding_text(title: &str, text: &str) -> String {
    format!("{title}\n{text}")
}

impl Drop for Knowledge {
    fn drop(&mut self) {
        self.schedule.close(); // The workers stop.
    }
}

/// One processing worker: takes documents from the schedule until the knowledge base is gone.
async fn worker(knowledge: std::sync::Weak<Knowledge>, schedule: Arc<schedule::Schedule>) {
    loop {
        match schedule.next().await {
            schedule::Take::Closed => break,
            schedule::Take::Refill(tenants) => {
                let Some(knowledge) = knowledge.upgrade() else { break };
                knowledge.refill(&tenants).await;
            }
            schedule::Take::Job(tenant, id) => {
                let Some(knowledge) = knowledge.upgrade() else { break };
                let processed = std::panic::AssertUnwindSafe(knowledge.process(&tenant, &id));
                match futures_util::FutureExt::catch_unwind(processed).await {
                    Ok(Ok(())) => {}
                    // Left PENDING/PROCESSING in the store: the next start retries it.
                    Ok(Err(e)) => {
                        tracing::warn!(document = %id, error = %e, "document processing failed on the store");
                    }
                    // The worker lives on; the document is retried at the next start.
                    Err(_) => tracing::error!(document = %id, "document processing panicked"),
                }
                schedule.done(&tenant, &id);
            }
        }
    }
}
