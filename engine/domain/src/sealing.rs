//! Secrets at rest: the [`Sealer`] port, and which fields of which records it seals.
//!
//! A store seals a record's secret fields on the way in and opens them on the way out, so the
//! rest of the server sees them in clear and the disk (or Cassandra) never does:
//! - an account's TOTP secret ([`Account::totp`]);
//! - a workspace's LLM key ([`Tenant::llm`]);
//! - an intent webhook's signing secret ([`IntentAction::Webhook`]).
//!
//! Channel credentials are sealed whole by the channels themselves, with the same sealer.
//!
//! A sealed value reads `pk1.{key id}.{base64(nonce ‖ ciphertext ‖ tag)}`: the key id says which
//! master key opens it, so keys can be rotated while old values stay readable. Each value is
//! bound to the record it belongs to (its *context*, AEAD associated data), so a sealed secret
//! copied onto another record does not open. A value without the prefix was stored before
//! sealing existed: it reads as it is, and the next write (or `parla rotate-key`) seals it.

use crate::model::{Account, Intent, IntentAction, Tenant};

/// What every sealed value starts with.
pub const PREFIX: &str = "pk1.";

/// Why a sealed value does not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("sealed under master key {0}, which this server was not given")]
    UnknownKey(String),
    #[error("a sealed secret does not open (tampered with, or moved from another record)")]
    Unreadable,
    #[error("a sealed secret was found but this store has no master key to open it")]
    NoKey,
}

/// Seals and opens secrets under the server's master keys (AES-256-GCM in `parla-keyring`; a
/// KMS would be another adapter of this port).
pub trait Sealer: Send + Sync + std::fmt::Debug + 'static {
    /// Seals `plain` under the current key, bound to `context`.
    fn seal(&self, context: &str, plain: &[u8]) -> String;
    /// Opens a value sealed under any key this sealer holds, for the same `context`.
    fn open(&self, context: &str, sealed: &str) -> Result<Vec<u8>, SealError>;
    /// The id of the key new values are sealed under.
    fn current_key(&self) -> String;
}

/// The key id a sealed value names, if it is one.
pub fn key_of(stored: &str) -> Option<&str> {
    stored.strip_prefix(PREFIX)?.split_once('.').map(|(kid, _)| kid)
}

/// Seals one text field.
fn seal_text(sealer: &dyn Sealer, context: &str, clear: &str) -> String {
    sealer.seal(context, clear.as_bytes())
}

/// Opens one text field as stored: sealed values with the sealer, older clear ones as they are.
fn open_text(
    sealer: Option<&dyn Sealer>,
    context: &str,
    stored: &str,
) -> Result<String, SealError> {
    if !stored.starts_with(PREFIX) {
        return Ok(stored.to_owned());
    }
    let sealer = sealer.ok_or(SealError::NoKey)?;
    let plain = sealer.open(context, stored)?;
    String::from_utf8(plain).map_err(|_| SealError::Unreadable)
}

fn totp_context(account: &Account) -> String {
    format!("totp:{}/{}", account.tenant_id, account.id)
}

fn llm_context(tenant: &Tenant) -> String {
    format!("llm:{}", tenant.id)
}

fn webhook_context(tenant: &str, intent: &Intent) -> String {
    format!("webhook:{tenant}/{}/{}", intent.bot_id, intent.id)
}

/// The account as it is stored: its TOTP secret sealed.
pub fn seal_account(sealer: &dyn Sealer, account: &Account) -> Account {
    let mut sealed = account.clone();
    if let Some(totp) = sealed.totp.as_mut() {
        totp.secret_base32 = seal_text(sealer, &totp_context(account), &totp.secret_base32);
    }
    sealed
}

/// The account as the server uses it.
pub fn open_account(
    sealer: Option<&dyn Sealer>,
    mut account: Account,
) -> Result<Account, SealError> {
    let context = totp_context(&account);
    if let Some(totp) = account.totp.as_mut() {
        totp.secret_base32 = open_text(sealer, &context, &totp.secret_base32)?;
    }
    Ok(account)
}

/// The workspace as it is stored: its LLM key sealed.
pub fn seal_tenant(sealer: &dyn Sealer, tenant: &Tenant) -> Tenant {
    let mut sealed = tenant.clone();
    if let Some(llm) = sealed.llm.as_mut() {
        llm.api_key = seal_text(sealer, &llm_context(tenant), &llm.api_key);
    }
    sealed
}

/// The workspace as the server uses it.
pub fn open_tenant(sealer: Option<&dyn Sealer>, mut tenant: Tenant) -> Result<Tenant, SealError> {
    let context = llm_context(&tenant);
    if let Some(llm) = tenant.llm.as_mut() {
        llm.api_key = open_text(sealer, &context, &llm.api_key)?;
    }
    Ok(tenant)
}

/// A bot's intents as they are stored: their webhook secrets sealed.
pub fn seal_intents(sealer: &dyn Sealer, tenant: &str, intents: &[Intent]) -> Vec<Intent> {
    intents
        .iter()
        .map(|intent| {
            let context = webhook_context(tenant, intent);
            let mut sealed = intent.clone();
            for action in &mut sealed.actions {
                let IntentAction::Webhook { secret, .. } = action;
                *secret = seal_text(sealer, &context, secret);
            }
            sealed
        })
        .collect()
}

/// A bot's intents as the server uses them.
pub fn open_intents(
    sealer: Option<&dyn Sealer>,
    tenant: &str,
    mut intents: Vec<Intent>,
) -> Result<Vec<Intent>, SealError> {
    for intent in &mut intents {
        let context = webhook_context(tenant, intent);
        for action in &mut intent.actions {
            let IntentAction::Webhook { secret, .. } = action;
            *secret = open_text(sealer, &context, secret)?;
        }
    }
    Ok(intents)
}

/// What one re-sealing pass wrote again (see [`crate::store::Sealing::reseal_all`]).
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Resealed {
    pub workspaces: u64,
    pub accounts: u64,
    pub intent_sets: u64,
    pub connections: u64,
    /// Records whose secret did not open (named in the log); left as they are.
    pub unreadable: u64,
}

/// Whether a stored field must be written again: in clear, or under another key.
fn stale(sealer: &dyn Sealer, stored: &str) -> bool {
    key_of(stored) != Some(sealer.current_key().as_str())
}

/// The stored workspace with its LLM key under the current key, if it was not.
pub fn reseal_tenant(sealer: &dyn Sealer, stored: &Tenant) -> Result<Option<Tenant>, SealError> {
    let Some(llm) = &stored.llm else { return Ok(None) };
    if !stale(sealer, &llm.api_key) {
        return Ok(None);
    }
    Ok(Some(seal_tenant(sealer, &open_tenant(Some(sealer), stored.clone())?)))
}

/// The stored account with its TOTP secret under the current key, if it was not.
pub fn reseal_account(sealer: &dyn Sealer, stored: &Account) -> Result<Option<Account>, SealError> {
    let Some(totp) = &stored.totp else { return Ok(None) };
    if !stale(sealer, &totp.secret_base32) {
        return Ok(None);
    }
    Ok(Some(seal_account(sealer, &open_account(Some(sealer), stored.clone())?)))
}

/// A bot's stored intents with their webhook secrets under the current key, if any was not.
pub fn reseal_intents(
    sealer: &dyn Sealer,
    tenant: &str,
    stored: &[Intent],
) -> Result<Option<Vec<Intent>>, SealError> {
    let any = stored.iter().flat_map(|i| &i.actions).any(|action| {
        let IntentAction::Webhook { secret, .. } = action;
        stale(sealer, secret)
    });
    if !any {
        return Ok(None);
    }
    Ok(Some(seal_intents(sealer, tenant, &open_intents(Some(sealer), tenant, stored.to_vec())?)))
}

/// A channel connection's credentials under the current key, if they were not (they are
/// sealed whole by the channels, the connection id bound to them).
pub fn reseal_connection(
    sealer: &dyn Sealer,
    stored: &crate::model::ChannelConnection,
) -> Result<Option<crate::model::ChannelConnection>, SealError> {
    if !stale(sealer, &stored.sealed_secrets) {
        return Ok(None);
    }
    let plain = sealer.open(&stored.id, &stored.sealed_secrets)?;
    let mut fresh = stored.clone();
    fresh.sealed_secrets = sealer.seal(&stored.id, &plain);
    Ok(Some(fresh))
}

/// What a store keeps to tell, at start, whether it is given the key its secrets are sealed
/// under: a known text sealed under the current key.
pub const CHECK_CONTEXT: &str = "parla:key-check";
pub const CHECK_TEXT: &[u8] = b"parla";

/// Whether `sealer` opens the store's check value.
pub fn check_opens(sealer: &dyn Sealer, check: &str) -> Result<(), SealError> {
    match sealer.open(CHECK_CONTEXT, check)? {
        plain if plain == CHECK_TEXT => Ok(()),
        _ => Err(SealError::Unreadable),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sealer for the tests: "seals" by tagging with the context, so a wrong context fails.
    #[derive(Debug)]
    struct Tagging;

    impl Sealer for Tagging {
        fn seal(&self, context: &str, plain: &[u8]) -> String {
            format!("{PREFIX}k1.{context}|{}", String::from_utf8_lossy(plain))
        }
        fn open(&self, context: &str, sealed: &str) -> Result<Vec<u8>, SealError> {
            let body = sealed.strip_prefix("pk1.k1.").ok_or(SealError::UnknownKey("?".into()))?;
            let (ctx, plain) = body.split_once('|').ok_or(SealError::Unreadable)?;
            if ctx != context {
                return Err(SealError::Unreadable);
            }
            Ok(plain.as_bytes().to_vec())
        }
        fn current_key(&self) -> String {
            "k1".into()
        }
    }

    #[test]
    fn an_intents_webhook_secret_is_sealed_to_its_intent_and_opens_back() {
        let intent: Intent = serde_json::from_value(serde_json::json!({
            "id": "i1", "bot_id": "b1", "name": "hello", "description": null, "examples": [],
            "response": {"text": "hi", "quick_replies": []},
            "actions": [{"type": "webhook", "url": "https://example.com", "secret": "s3cret"}],
        }))
        .expect("intent");
        let sealed = seal_intents(&Tagging, "t1", std::slice::from_ref(&intent));
        let IntentAction::Webhook { secret, .. } = &sealed[0].actions[0];
        assert!(secret.starts_with(PREFIX) && key_of(secret) == Some("k1"), "{secret}");
        assert_eq!(
            open_intents(Some(&Tagging), "t1", sealed.clone()).expect("opens"),
            vec![intent]
        );
        assert_eq!(open_intents(Some(&Tagging), "t2", sealed.clone()), Err(SealError::Unreadable));
        assert_eq!(open_intents(None, "t1", sealed), Err(SealError::NoKey));
    }

    #[test]
    fn a_value_stored_before_sealing_reads_as_it_is() {
        assert_eq!(open_text(None, "x", "clear"), Ok("clear".to_owned()));
        assert_eq!(open_text(Some(&Tagging), "x", "clear"), Ok("clear".to_owned()));
        assert_eq!(key_of("clear"), None);
    }
}
