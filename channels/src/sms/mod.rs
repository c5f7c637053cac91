//! SMS through Twilio: the webhook (`/v1/channels/sms/{connection}`) and the Messages API.
//!
//! Twilio's rules: an incoming message is a form-encoded `POST` signed with
//! `X-Twilio-Signature: base64(HMAC-SHA1(auth token, full URL + every POST parameter's name
//! and value, sorted by name))`; the answer is TwiML (`<Response/>`: we reply through the API,
//! not in the webhook); messages are sent with `POST {api}/2010-04-01/Accounts/{sid}/Messages.json`
//! (form: `To`, `From`, `Body`, at most 1,600 characters, which Twilio cuts into segments),
//! with the account SID and auth token as basic auth. `STOP` (and its synonyms) opts a
//! contact out; nothing is sent to them again until `START`.

mod client;
mod webhook;

use std::time::Duration;

pub use webhook::signature;

/// Longest body Twilio accepts in one message.
pub(crate) const MAX_SMS_CHARS: usize = 1600;
const STORE_WAIT: Duration = Duration::from_secs(10);
/// Keywords carriers and Twilio treat as opting out, and back in.
const STOP: &[&str] = &["STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"];
const START: &[&str] = &["START", "YES", "UNSTOP"];

/// The connection's credentials, sealed at rest (the domain's type: the admin API builds them).
pub use parla_domain::channels::SmsSecrets as Secrets;

pub(crate) use webhook::routes;
