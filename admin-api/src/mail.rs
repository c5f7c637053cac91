//! Outgoing mail. With an SMTP relay configured (`[mail] smtp_url`), mail goes through it
//! (lettre, rustls); without one — or when the relay refuses or cannot be reached — it goes to
//! an outbox file the operator can read, `DATA_DIR/outbox.jsonl` (one JSON object per line,
//! with the relay's error when there was one). Never silently dropped. The log says a mail was
//! sent or queued, never its content (it holds tokens) nor the SMTP password.

use std::{io::Write as _, path::PathBuf, time::Duration};

use lettre::{
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{Mailbox, header::ContentType},
    transport::smtp::authentication::Credentials,
};
use parking_lot::Mutex;
use parla_config::MailSettings;
use serde_json::json;

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
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&self.path)?;
        writeln!(file, "{line}")?;
        file.sync_data()?;
        tracing::info!(subject, "mail queued in the outbox");
        Ok(())
    }
}
