//! WhatsApp Cloud API: the webhook (`/v1/channels/whatsapp/{connection}`) and the sender.
//!
//! Meta's rules: the webhook is verified once with `GET ?hub.mode=subscribe&hub.verify_token=…
//! &hub.challenge=…` (answer the challenge); every `POST` carries `X-Hub-Signature-256:
//! sha256=HEX(HMAC-SHA256(app secret, raw body))`; messages are sent with `POST
//! {base}/{phone-number-id}/messages` and a bearer token; text messages hold at most 4,096
//! characters.
//!
//! The outbound side (ordering, cursor, retries) is the shared sink (`sink.rs`); this module
//! turns a message into WhatsApp's text or template shape.
//!
//! Written on reqwest rather than the `whatsapp` crate (the maintained successor of
//! `whatsapp-cloud-api`): that crate hard-codes `https://graph.facebook.com` (only the API
//! version can be set), so it cannot be pointed at a test server, and it does not verify
//! webhook signatures. The wire shapes below are the documented ones.

mod client;
mod webhook;

use std::time::Duration;

/// How long a webhook waits for each message to be stored.
const STORE_WAIT: Duration = Duration::from_secs(10);

/// The connection's credentials, sealed at rest (the domain's type: the admin API builds them).
pub use parla_domain::channels::WhatsAppSecrets as Secrets;

pub(crate) use webhook::routes;
