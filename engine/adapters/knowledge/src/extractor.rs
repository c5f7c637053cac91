//! Extraction bounded in memory and time: every document — uploaded in any format, or a page
//! of a scrape — is extracted ([`super::extract`]) in a child process, never in the server.
//!
//! # Why a process
//! The parsers of PDF (pdf-extract on lopdf) and DOCX (zip) inflate what they read, and no cap
//! can be put inside them: a 400 KiB PDF whose streams inflate a thousandfold took the server's
//! peak memory up by 800 MiB. Our own text parsers (CSV, JSON, HTML) hold a few times their
//! input too. In a child, a bomb or a parser's bug (a loop, a stack overflow, an abort) ends
//! that child: the document FAILS with the reason, and every tenant's conversations go on.
//!
//! # The child
//! `PROGRAM extract --kind KIND --memory-bytes N --cpu-secs S` ([`child_main`]) first limits
//! itself — `RLIMIT_DATA` (heap and every private writable mapping, since Linux 4.7; the
//! executable's code, which a debug build makes large, does not count), `RLIMIT_CPU`, no core
//! dump (it would hold the tenant's document) — with the `rlimit` crate's safe API (the
//! workspace forbids `unsafe`, so no `pre_exec` in the parent), then reads the document from
//! stdin and writes `{"sections": …}` or `{"error": …}` as JSON on stdout. An allocation past
//! the limit aborts it.
//!
//! # The parent
//! [`Extractor::extract`] writes the bytes, reads at most [`Extractor::max_output_bytes`] of
//! answer, and kills the child past its time (`kill_on_drop`). `PROGRAM` is the running
//! executable (`/proc/self/exe`, which still works after an upgrade replaced the file), or
//! `knowledge.extractor_program` — tests that run the server inside a test executable point it
//! at the `parla` binary. The engine library's own tests, which have no such binary, extract
//! in-process (`knowledge.extract_in_process`): never in production.

use std::{
    io::{Read as _, Write as _},
    path::PathBuf,
    process::Stdio,
    time::Duration,
};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::{KnowledgeSettings, extract::Section};
use parla_domain::model::DocumentType;

/// How documents are extracted (see the module documentation).
#[derive(Debug, Clone)]
pub enum Extractor {
    /// In a child process, bounded.
    Process {
        program: PathBuf,
        memory_bytes: u64,
        timeout: Duration,
        /// The most answer read back (text of one document).
        max_output_bytes: usize,
    },
    /// In this process, unbounded: the engine library's tests only.
    InProcess,
}

/// What the child writes on stdout.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Answer {
    Sections(Vec<Section>),
    Error(String),
}

/// The subcommand the child is run with.
pub const SUBCOMMAND: &str = "extract";

impl Extractor {
    pub fn from_settings(settings: &KnowledgeSettings) -> Self {
        if settings.extract_in_process {
            return Self::InProcess;
        }
        let program = if settings.extractor_program.is_empty() {
            let proc_exe = PathBuf::from("/proc/self/exe");
            if proc_exe.exists() { proc_exe } else { std::env::current_exe().unwrap_or(proc_exe) }
        } else {
            PathBuf::from(&settings.extractor_program)
        };
        Self::Process {
            program,
            memory_bytes: settings.extract_memory_bytes,
            timeout: Duration::from_millis(settings.extract_timeout_ms),
            max_output_bytes: Self::max_output_bytes(settings.max_document_bytes),
        }
    }

    /// The most extracted text (as JSON) taken back for one document: four times the largest
    /// upload (a CSV's rows repeat their column names) and 1 MiB more for small limits. A
    /// document whose text is larger fails: its chunks and vectors would not be bounded.
    pub fn max_output_bytes(max_document_bytes: usize) -> usize {
        max_document_bytes.saturating_mul(4).saturating_add(1 << 20)
    }

    /// The sections of `bytes` of `kind`; the error says why, for people.
    pub async fn extract(
        &self,
        kind: DocumentType,
        bytes: Vec<u8>,
    ) -> Result<Vec<Section>, String> {
        match self {
            Self::InProcess => {
                tokio::task::spawn_blocking(move || super::extract::extract(kind, &bytes))
                    .await
                    .unwrap_or_else(|_| Err("the extractor crashed on this document".into()))
            }
            Self::Process { program, memory_bytes, timeout, max_output_bytes } => {
                let run =
                    run_child(program, kind, &bytes, *memory_bytes, *timeout, *max_output_bytes);
                match tokio::time::timeout(*timeout, run).await {
                    Ok(result) => result,
                    // Dropping the run kills the child (`kill_on_drop`).
                    Err(_) => Err(format!(
                        "extracting the document took longer than {} s",
                        timeout.as_secs().max(1)
                    )),
                }
            }
        }
    }
}

/// The kind's name on the child's command line (its wire name, e.g. `PDF`).
fn kind_name(kind: DocumentType) -> String {
    serde_json::to_value(kind).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

async fn run_child(
    program: &std::path::Path,
    kind: DocumentType,
    bytes: &[u8],
    memory_bytes: u64,
    timeout: Duration,
    max_output_bytes: usize,
) -> Result<Vec<Section>, String> {
    // CPU seconds: the wall-clock limit is the parent's; this one stops a child the parent lost.
    let cpu_secs = timeout.as_secs().saturating_add(1);
    let mut child = tokio::process::Command::new(program)
        .arg(SUBCOMMAND)
        .args(["--kind", &kind_name(kind)])
        .args(["--memory-bytes", &memory_bytes.to_string()])
        .args(["--cpu-secs", &cpu_secs.to_string()])
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            tracing::error!(program = %program.display(), error = %e, "cannot start the extractor");
            "the extractor could not be started".to_owned()
        })?;
    let (Some(mut stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err("the extractor could not be started".into());
    };
    let feed = async move {
        // A child that stops reading (it died) makes this fail: its exit status says why.
        let _ = stdin.write_all(bytes).await;
        drop(stdin);
    };
    let limit = u64::try_from(max_output_bytes).unwrap_or(u64::MAX);
    let answer = async move {
        let mut out = Vec::new();
        let read = stdout.take(limit.saturating_add(1)).read_to_end(&mut out).await;
        read.map(|_| out)
    };
    // Its first 4 KiB say why it failed; the rest is drained, so the child never blocks on a
    // full pipe. On a task of its own: it ends with the child, however that ends.
    let complaint = tokio::spawn(async move {
        let mut err = Vec::new();
        let mut stderr = stderr;
        let _ = (&mut stderr).take(4096).read_to_end(&mut err).await;
        let _ = tokio::io::copy(&mut stderr, &mut tokio::io::sink()).await;
        String::from_utf8_lossy(&err).into_owned()
    });
    let ((), answer) = tokio::join!(feed, answer);
    let answer = answer.map_err(|e| format!("the extractor's answer could not be read: {e}"))?;
    if answer.len() > max_output_bytes {
        // Returning drops the child, which kills it (`kill_on_drop`).
        return Err(format!(
            "the document's text is larger than {} MB",
            max_output_bytes / 1_000_000
        ));
    }
    let status = child.wait().await.map_err(|e| format!("the extractor was lost: {e}"))?;
    let complaint = complaint.await.unwrap_or_default();
    if !status.success() {
        return Err(if complaint.contains("memory allocation") {
            out_of_memory(memory_bytes)
        } else {
            tracing::warn!(?status, stderr = %complaint.trim(), "the extractor failed");
            "the extractor crashed on this document".to_owned()
        });
    }
    match serde_json::from_slice::<Answer>(&answer) {
        Ok(Answer::Sections(sections)) => Ok(sections),
        Ok(Answer::Error(reason)) => Err(reason),
        Err(_) => {
            tracing::error!(program = %program.display(), "the extractor's answer is unreadable");
            Err("the extractor is not available".into())
        }
    }
}

/// Why a document failed that needs more than `memory_bytes` to extract.
fn out_of_memory(memory_bytes: u64) -> String {
    format!(
        "extracting the document needs more than {} MiB of memory (a compressed stream that \
         inflates too far?)",
        memory_bytes >> 20
    )
}

/// The child's side of [`Extractor`]: limits itself, reads the document from stdin, writes
/// the answer on stdout. Returns the process exit code.
pub fn child_main(kind: &str, memory_bytes: u64, cpu_secs: u64) -> i32 {
    let limits = [
        (rlimit::Resource::DATA, memory_bytes),
        (rlimit::Resource::CPU, cpu_secs.max(1)),
        (rlimit::Resource::CORE, 0),
    ];
    for (resource, value) in limits {
        if let Err(e) = rlimit::setrlimit(resource, value, value) {
            // Unbounded extraction is what this process exists to prevent: refuse instead.
            let _ = writeln!(std::io::stderr(), "parla extract: cannot limit {resource:?}: {e}");
            return 2;
        }
    }
    let answer = match serde_json::from_value::<DocumentType>(serde_json::Value::from(kind)) {
        Err(_) => Answer::Error(format!("unknown document type {kind}")),
        Ok(kind) => {
            let mut bytes = Vec::new();
            match std::io::stdin().lock().read_to_end(&mut bytes) {
                Err(e) if e.kind() == std::io::ErrorKind::OutOfMemory => {
                    Answer::Error(out_of_memory(memory_bytes))
                }
                Err(e) => Answer::Error(format!("the document could not be read: {e}")),
                Ok(_) => match super::extract::extract(kind, &bytes) {
                    Ok(sections) => Answer::Sections(sections),
                    // Allocations that fail gracefully (std's `read_to_end`) rather than abort.
                    Err(reason) if reason == super::extract::OUT_OF_MEMORY => {
                        Answer::Error(out_of_memory(memory_bytes))
                    }
                    Err(reason) => Answer::Error(reason),
                },
            }
        }
    };
    let mut stdout = std::io::stdout().lock();
    let written = serde_json::to_writer(&mut stdout, &answer).is_ok() && stdout.flush().is_ok();
    if written { 0 } else { 1 }
}
