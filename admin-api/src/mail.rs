//! Outgoing mail. Without an SMTP relay configured (a later step), every mail goes to an
//! outbox file the operator can read, `DATA_DIR/outbox.jsonl` (one JSON object per line) —
//! never silently dropped. The log says a mail was queued, never its content (it holds tokens).

use std::{io::Write as _, path::PathBuf};

use parking_lot::Mutex;
use serde_json::json;

/// An append-only mail outbox.
#[derive(Debug)]
pub struct Outbox {
    path: PathBuf,
    /// Serialises appends so lines never interleave.
    lock: Mutex<()>,
}

impl Outbox {
    pub fn new(path: PathBuf) -> Self {
        Self { path, lock: Mutex::new(()) }
    }

    /// Appends one mail, durably.
    pub fn send(&self, to: &str, subject: &str, body: &str) -> std::io::Result<()> {
        let line = json!({
            "to": to, "subject": subject, "body": body,
            "queued_at": parla_engine::model::now_ms(),
        });
        let _guard = self.lock.lock();
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&self.path)?;
        writeln!(file, "{line}")?;
        file.sync_data()?;
        tracing::info!(subject, "mail queued in the outbox");
        Ok(())
    }
}
