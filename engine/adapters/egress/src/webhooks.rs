//! Intent webhooks: when a matched intent has a `webhook` action, an `intent.matched` event is
//! POSTed to the tenant's URL once the bot's answer is stored.
//!
//! # Signature
//! Every delivery carries `Parla-Signature: t=<unix seconds>,v1=<hex>` where `<hex>` is
//! HMAC-SHA256, keyed with the action's secret, of `"<t>.<raw body>"` — Stripe's scheme: the
//! timestamp inside the signed bytes lets a receiver refuse replays older than its tolerance
//! ([`verify`] uses 5 minutes). `Parla-Delivery` carries the event id, identical across
//! retries, so a receiver can deduplicate.
//!
//! # Delivery
//! Off the conversation's path: each event gets its own task, up to `webhook_attempts`
//! attempts, backing off 1 s, 4 s, 16 s… on a network error, a timeout, 429 or 5xx; any other
//! status is final. Deliveries are not persisted: events pending when the process stops are
//! lost (a durable outbox is future work). Deliveries follow the rules for a tenant's targets
//! ([`crate::guard`]): no redirect (a 3xx is a final answer), and a target resolving to a
//! non-public address is refused at connection time — finally, without retries — unless
//! `webhook_allow_private_targets` is set (SSRF).

use std::{sync::Arc, time::Duration};

use hmac::{Hmac, Mac};
use parla_config::EngineSettings;
use serde_json::json;
use sha2::Sha256;
use tokio::runtime::Handle;

use parla_domain::{
    hooks::IntentHooks,
    model::{Intent, IntentAction, Message, now_ms},
};

use crate::guard::TenantEgress;

/// Told each delivery's end: `true` delivered, `false` failed for good (the engine counts them:
/// `parla_webhooks_delivered_total`, `parla_webhooks_failed_total`).
pub type Outcome = Arc<dyn Fn(bool) + Send + Sync>;

/// The signature header of a delivery.
pub const SIGNATURE_HEADER: &str = "Parla-Signature";
/// The event id header, the same on every attempt.
pub const DELIVERY_HEADER: &str = "Parla-Delivery";
/// How old a signature [`verify`] accepts.
pub const TOLERANCE_SECS: u64 = 300;

/// `t=…,v1=…` for `body` signed at `timestamp` (Unix seconds).
pub fn sign(secret: &str, timestamp: u64, body: &[u8]) -> String {
    format!("t={timestamp},v1={}", hex(&mac(secret, timestamp, body).finalize().into_bytes()))
}

/// Checks a `Parla-Signature` header value against `body` at `now` (Unix seconds), in
/// constant time. For receivers written in Rust, and the tests.
pub fn verify(secret: &str, header: &str, body: &[u8], now: u64) -> bool {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<u64>().ok(),
            Some(("v1", v)) => signatures.push(v.to_owned()),
            _ => {}
        }
    }
    let Some(timestamp) = timestamp else { return false };
    if now.abs_diff(timestamp) > TOLERANCE_SECS {
        return false;
    }
    signatures.iter().any(|s| {
        unhex(s).is_some_and(|bytes| mac(secret, timestamp, body).verify_slice(&bytes).is_ok())
    })
}

fn mac(secret: &str, timestamp: u64, body: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length: this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

/// Sends intent webhooks, each on its own task of the runtime it was built on.
#[derive(Clone)]
pub struct Webhooks {
    client: reqwest::Client,
    attempts: u32,
    egress: TenantEgress,
    outcome: Outcome,
    runtime: Handle,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhooks").field("attempts", &self.attempts).finish_non_exhaustive()
    }
}

impl Webhooks {
    /// Built on a tokio runtime (deliveries are spawned on it, whichever runtime the answer
    /// comes from); `outcome` is told how each delivery ended.
    pub fn new(settings: &EngineSettings, outcome: Outcome) -> Self {
        let egress = TenantEgress::new(settings.webhook_allow_private_targets);
        let client = egress
            .client()
            .timeout(settings.webhook_timeout())
            .user_agent(concat!("Parla-Webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Self {
            client,
            attempts: settings.webhook_attempts.max(1),
            egress,
            outcome,
            runtime: Handle::current(),
        }
    }

    async fn deliver_counted(&self, url: &str, secret: &str, event: &serde_json::Value) {
        let delivered = self.deliver(url, secret, event).await;
        (self.outcome)(delivered);
    }

    /// Delivers `event`, retrying as the module docs say: `true` once delivered.
    async fn deliver(&self, url: &str, secret: &str, event: &serde_json::Value) -> bool {
        let id = event["id"].as_str().unwrap_or_default().to_owned();
        let body = event.to_string().into_bytes();
        if let Err(reason) = self.egress.check_url(url) {
            tracing::warn!(delivery = %id, %reason, "webhook target refused");
            return false;
        }
        let mut backoff = Duration::from_secs(1);
        for attempt in 1..=self.attempts {
            let timestamp = u64::try_from(now_ms() / 1000).unwrap_or(0);
            let result = self
                .client
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(SIGNATURE_HEADER, sign(secret, timestamp, &body))
                .header(DELIVERY_HEADER, &id)
                .body(body.clone())
                .send()
                .await;
            let retry = match result {
                Ok(response) if response.status().is_success() => {
                    return true;
                }
                Ok(response) => {
                    let status = response.status();
                    tracing::warn!(delivery = %id, attempt, %status, "webhook refused");
                    status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS
                }
                Err(e) if crate::guard::refusal(&e).is_some() => {
                    let reason = crate::guard::describe(e);
                    tracing::warn!(delivery = %id, %reason, "webhook target refused");
                    false
                }
                Err(e) => {
                    // Without the URL: it may carry credentials in its query.
                    tracing::warn!(delivery = %id, attempt, error = %e.without_url(), "webhook failed");
                    true
                }
            };
            if !retry || attempt == self.attempts {
                break;
            }
            tokio::time::sleep(backoff).await;
            backoff *= 4;
        }
        false
    }
}

impl IntentHooks for Webhooks {
    /// Starts delivering `intent`'s webhook actions for the bot's `answer` to `question`.
    fn intent_matched(&self, bot_id: &str, intent: &Intent, question: &str, answer: &Message) {
        for action in &intent.actions {
            let IntentAction::Webhook { url, secret } = action;
            let event = json!({
                "id": uuid::Uuid::now_v7().simple().to_string(),
                "type": "intent.matched",
                "created_at": now_ms(),
                "tenant_id": answer.tenant_id,
                "bot_id": bot_id,
                "conversation_id": answer.conversation_id,
                "intent": { "id": intent.id, "name": intent.name },
                "confidence": answer.confidence,
                "question": question,
                "answer": { "id": answer.id, "seq": answer.seq, "text": answer.text },
            });
            let (this, url, secret) = (self.clone(), url.clone(), secret.clone());
            self.runtime.spawn(async move { this.deliver_counted(&url, &secret, &event).await });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_once_and_only_for_its_body_secret_and_time() {
        let header = sign("s3cret-s3cret-s3cret", 1_700_000_000, b"{\"a\":1}");
        assert!(verify("s3cret-s3cret-s3cret", &header, b"{\"a\":1}", 1_700_000_010));
        assert!(!verify("s3cret-s3cret-s3cret", &header, b"{\"a\":2}", 1_700_000_010));
        assert!(!verify("other-secret-other", &header, b"{\"a\":1}", 1_700_000_010));
        assert!(!verify("s3cret-s3cret-s3cret", &header, b"{\"a\":1}", 1_700_000_400), "stale");
        assert!(!verify("s3cret-s3cret-s3cret", "t=1700000000,v1=zz", b"{}", 1_700_000_000));
        assert!(!verify("s3cret-s3cret-s3cret", "garbage", b"{}", 1_700_000_000));
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let header = sign("Jefe", 0, b"what do ya want for nothing?");
        // Our data is "0." + body, so compute the reference the same way by hand.
        let mut reference = <Hmac<Sha256> as Mac>::new_from_slice(b"Jefe").expect("key");
        reference.update(b"0.what do ya want for nothing?");
        let expected = hex(&reference.finalize().into_bytes());
        assert_eq!(header, format!("t=0,v1={expected}"));
        let mut rfc = <Hmac<Sha256> as Mac>::new_from_slice(b"Jefe").expect("key");
        rfc.update(b"what do ya want for nothing?");
        assert_eq!(
            hex(&rfc.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
