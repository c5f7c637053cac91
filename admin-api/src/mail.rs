//! Outgoing mail. With an SMTP relay configured (`[mail] smtp_url`), mail goes through it
//! (lettre, rustls); without one — or when the relay refuses or cannot be reached — it goes to
//! an outbox file the operator can read, `DATA_DIR/outbox.jsonl` (one JSON object per line,
//! with the relay's error when there was one). Never silently dropped. The log says a mail was
//! sent or queued, never its content (it holds tokens) nor the SMTP password.
//!
//! With a relay, the outbox is a queue, not an archive: [`Mailer::retry_outbox`] offers its
//! mail to the relay again every `[mail] outbox_retry_secs`, and what the relay takes leaves the
//! file (rewritten whole, owner-only), so live reset and invitation links do not sit on disk
//! once they were mailed. Mail older than [`OUTBOX_KEEP_MS`] is dropped: its links expired.

use std::{io::Write as _, path::PathBuf, time::Duration};

use lettre::{
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{Mailbox, header::ContentType},
    transport::smtp::authentication::Credentials,
};
use parking_lot::Mutex;
use parla_config::MailSettings;
use serde_json::json;

/// How long a queued mail is worth keeping: longer than any one-time link it can hold lives.
pub const OUTBOX_KEEP_MS: i64 = 7 * 24 * 3600 * 1000;

/// Where one mail went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Accepted by the SMTP relay.
    Relayed,
    /// Written to the outbox file (no relay, or the relay failed).
    Queued,
}

/// Sends mail through the relay, or into the outbox.
#[derive(Debug)]
pub struct Mailer {
    outbox: std::sync::Arc<Outbox>,
    smtp: Option<Smtp>,
}

struct Smtp {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl std::fmt::Debug for Smtp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Smtp").field("from", &self.from).finish_non_exhaustive()
    }
}

impl Mailer {
    /// A mailer writing its outbox at `outbox`. Fails on an unusable `smtp_url` or `from`.
    pub fn new(outbox: PathBuf, settings: &MailSettings) -> Result<Self, String> {
        let outbox = std::sync::Arc::new(Outbox::new(outbox));
        if settings.smtp_url.is_empty() {
            return Ok(Self { outbox, smtp: None });
        }
        let from: Mailbox =
            settings.from.parse().map_err(|e| format!("mail.from is not a mailbox: {e}"))?;
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(&settings.smtp_url)
            .map_err(|e| format!("mail.smtp_url: {e}"))?
            .timeout(Some(Duration::from_millis(settings.smtp_timeout_ms)));
        if !settings.smtp_username.is_empty() {
            builder = builder.credentials(Credentials::new(
                settings.smtp_username.clone(),
                settings.smtp_password.clone(),
            ));
        }
        Ok(Self { outbox, smtp: Some(Smtp { transport: builder.build(), from }) })
    }

    /// Sends one plain-text mail: through the relay if there is one, else — or if it fails —
    /// into the outbox. Errs only when the outbox cannot be written either.
    pub async fn send(&self, to: &str, subject: &str, body: &str) -> std::io::Result<Delivery> {
        let mut relay_error = None;
        if let Some(smtp) = &self.smtp {
            match smtp.send(to, subject, body).await {
                Ok(()) => {
                    tracing::info!(subject, "mail relayed over SMTP");
                    return Ok(Delivery::Relayed);
                }
                Err(e) => {
                    tracing::warn!(subject, error = %e, "SMTP relay failed; mail kept in the outbox");
                    relay_error = Some(e);
                }
            }
        }
        let (outbox, to, subject, body) =
            (self.outbox.clone(), to.to_owned(), subject.to_owned(), body.to_owned());
        tokio::task::spawn_blocking(move || {
            outbox.append(&to, &subject, &body, relay_error.as_deref())
        })
        .await
        .map_err(std::io::Error::other)??;
        Ok(Delivery::Queued)
    }

    /// With a relay: offers the outbox's mail to it every `every`, until the mailer is dropped.
    /// Without one, does nothing (the outbox is how the operator gets the mail).
    pub fn retry_outbox(self: &std::sync::Arc<Self>, every: Duration) {
        if self.smtp.is_none() {
            return;
        }
        let weak = std::sync::Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(mailer) = weak.upgrade() else { return };
                if let Err(e) = mailer.flush_outbox().await {
                    tracing::warn!(error = %e, "could not retry the mail outbox");
                }
            }
        });
    }

    /// One pass: every queued mail offered to the relay once; what it took, and what is too old
    /// to matter, leaves the file. Mail queued meanwhile is kept (the file is re-read under the
    /// lock before it is rewritten).
    async fn flush_outbox(&self) -> std::io::Result<()> {
        let Some(smtp) = &self.smtp else { return Ok(()) };
        let outbox = self.outbox.clone();
        let queued = tokio::task::spawn_blocking(move || outbox.read())
            .await
            .map_err(std::io::Error::other)??;
        if queued.is_empty() {
            return Ok(());
        }
        let now = parla_engine::model::now_ms();
        let mut done = std::collections::HashSet::new();
        for mail in &queued {
            let field = |k: &str| mail.get(k).and_then(|v| v.as_str()).unwrap_or_default();
            let age = now - mail.get("queued_at").and_then(|v| v.as_i64()).unwrap_or(0);
            if age > OUTBOX_KEEP_MS {
                done.insert(mail.to_string());
                continue;
            }
            match smtp.send(field("to"), field("subject"), field("body")).await {
                Ok(()) => {
                    tracing::info!(subject = field("subject"), "queued mail relayed over SMTP");
                    done.insert(mail.to_string());
                }
                // The relay is still down: the rest would fail alike.
                Err(e) => {
                    tracing::debug!(error = %e, "the relay still refuses queued mail");
                    break;
                }
            }
        }
        if done.is_empty() {
            return Ok(());
        }
        let outbox = self.outbox.clone();
        tokio::task::spawn_blocking(move || outbox.remove(&done))
            .await
            .map_err(std::io::Error::other)?
    }
}

impl Smtp {
    async fn send(&self, to: &str, subject: &str, body: &str) -> Result<(), String> {
        let to: Mailbox = to.parse().map_err(|e| format!("bad recipient: {e}"))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body.to_owned())
            .map_err(|e| format!("could not build the mail: {e}"))?;
        self.transport.send(message).await.map(drop).map_err(|e| e.to_string())
    }
}

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

    /// Appends one mail, durably; `relay_error` says why the relay did not take it.
    pub fn append(
        &self,
        to: &str,
        subject: &str,
        body: &str,
        relay_error: Option<&str>,
    ) -> std::io::Result<()> {
        let mut line = json!({
            "to": to, "subject": subject, "body": body,
            "queued_at": parla_engine::model::now_ms(),
        });
        if let Some(error) = relay_error {
            line["relay_error"] = json!(error);
        }
        let _guard = self.lock.lock();
        let mut options = std::fs::OpenOptions::new();
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.create(true).append(true).open(&self.path)?;
        writeln!(file, "{line}")?;
        file.sync_data()?;
        tracing::info!(subject, "mail queued in the outbox");
        Ok(())
    }

    /// Every queued mail (a line that does not parse is skipped: it is kept by [`Self::remove`]).
    fn read(&self) -> std::io::Result<Vec<serde_json::Value>> {
        let _guard = self.lock.lock();
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        Ok(text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect())
    }

    /// Rewrites the outbox without the mails in `done` (by their JSON text), atomically: a new
    /// owner-only file renamed over the old one, so a crash leaves one or the other whole.
    fn remove(&self, done: &std::collections::HashSet<String>) -> std::io::Result<()> {
        let _guard = self.lock.lock();
        let text = std::fs::read_to_string(&self.path)?;
        let kept: Vec<&str> = text
            .lines()
            .filter(|l| {
                serde_json::from_str::<serde_json::Value>(l)
                    .map_or(true, |m| !done.contains(&m.to_string()))
            })
            .collect();
        let fresh = self.path.with_extension("jsonl.tmp");
        {
            let mut options = std::fs::OpenOptions::new();
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.create(true).write(true).truncate(true).open(&fresh)?;
            for line in &kept {
                writeln!(file, "{line}")?;
            }
            file.sync_all()?;
        }
        std::fs::rename(&fresh, &self.path)?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}
