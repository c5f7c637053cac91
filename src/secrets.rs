//! The master keys at start, and re-sealing every secret under the current one.
//!
//! At start ([`unlock`]) the store's check value says which key its secrets are sealed under:
//! - no check yet (a new store, or one from before sealing): the keys given are used, or, when
//!   none is given, a new key is written to the key file beside the data dir;
//! - a check: the keys given must open it, else the server refuses to start, naming the key it
//!   needs — it never generates a key over secrets it cannot read.
//!
//! [`KeyService::reseal`] writes every secret again under the current key: workspaces' LLM
//! keys, accounts' TOTP secrets, intents' webhook secrets, channel credentials, then the check.
//! It runs at start when anything may be sealed otherwise (a rotated key, a store from before
//! sealing, channel credentials under the data dir's old `channels.key`, which is deleted once
//! nothing needs it), and on `POST /keys/rotate` on the operations listener, which
//! `parla rotate-key` calls after writing a new key first in the key file.

use std::{path::PathBuf, sync::Arc};

use anyhow::Context as _;
use parla_config::Settings;
use parla_domain::sealing::{self, CHECK_CONTEXT, CHECK_TEXT, Sealer as _};
use parla_domain::store::Store;
use parla_keyring::Keyring;
use serde::Serialize;

/// Where the keys come from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// `[secrets] master_key` (or the deprecated `[channels] master_key`).
    Settings,
    /// A key file: `[secrets] master_key_file`, or the default beside the data dir.
    File(PathBuf),
}

/// The keys, where they came from, and the data dir's old channel key if one is there.
#[derive(Debug)]
pub struct Keys {
    pub keyring: Arc<Keyring>,
    pub source: KeySource,
    /// `DATA_DIR/channels.key`, if it exists: its credentials are re-sealed, then it goes.
    legacy_file: Option<PathBuf>,
    /// Whether something may be sealed under another key (or not at all) and needs a sweep.
    pub needs_reseal: bool,
}

/// Reads the keys and checks them against the store; tells the store to seal with them.
pub async fn unlock(settings: &Settings, store: &dyn Store) -> anyhow::Result<Keys> {
    let check = store.seal_check().await.context("reading the store's key check")?;
    let sealed_under = check.as_deref().and_then(sealing::key_of).map(str::to_owned);
    let configured = if settings.secrets.master_key.is_empty() {
        settings.channels.master_key.as_str()
    } else {
        settings.secrets.master_key.as_str()
    };
    if configured.is_empty() && settings.store.backend == "cql" {
        anyhow::bail!(
            "a cluster's nodes must share their master key: give it to every node with \
             PARLA__SECRETS__MASTER_KEY (base64 of 32 bytes, e.g. `openssl rand -base64 32`)"
        );
    }
    let (keys, source) = if configured.is_empty() {
        let path = settings.secrets.key_file(&settings.store.data_dir);
        let keys = match parla_keyring::read_file(&path) {
            Ok(keys) => keys,
            Err(parla_keyring::KeyError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                if let Some(kid) = &sealed_under {
                    anyhow::bail!(
                        "this store's secrets are sealed under master key {kid}, and no key was \
                         given: {} does not exist. Give the key with PARLA__SECRETS__MASTER_KEY \
                         or [secrets] master_key_file (a new key would not open them)",
                        path.display()
                    );
                }
                let key = parla_keyring::generate();
                parla_keyring::write_file(&path, std::slice::from_ref(&key))
                    .context("writing a new master key")?;
                tracing::warn!(
                    file = %path.display(),
                    "generated the master key that seals this server's secrets; keep it apart \
                     from the data (another disk, a secret store), and with the backups' keys"
                );
                parla_keyring::parse(&key)?
            }
            Err(e) => return Err(e).context("reading the master key file"),
        };
        (keys, KeySource::File(path))
    } else {
        (parla_keyring::parse(configured).context("[secrets] master_key")?, KeySource::Settings)
    };
    let mut keyring = Keyring::new(&keys)?;
    let legacy_file = settings.store.data_dir.join("channels.key");
    let legacy_file = legacy_file.exists().then_some(legacy_file);
    if let Some(path) = &legacy_file {
        let key = std::fs::read_to_string(path).context("reading DATA_DIR/channels.key")?;
        keyring = keyring.with_legacy(&key).context("DATA_DIR/channels.key")?;
    } else if !settings.channels.master_key.is_empty() {
        keyring = keyring.with_legacy(&settings.channels.master_key)?;
    }
    if let Some(check) = &check {
        sealing::check_opens(&keyring, check).map_err(|e| {
            anyhow::anyhow!(
                "the master key(s) given ({}) do not open this store's secrets, sealed under {}: \
                 {e}",
                keyring.ids().join(", "),
                sealed_under.as_deref().unwrap_or("an unknown key")
            )
        })?;
    }
    let needs_reseal =
        legacy_file.is_some() || sealed_under.as_deref() != Some(keyring.current_key().as_str());
    if check.is_none() {
        // At once, before anything is sealed: from now on a start without this key refuses,
        // even if the first sweep never finishes.
        store.put_seal_check(&keyring.seal(CHECK_CONTEXT, CHECK_TEXT)).await?;
    }
    let keyring = Arc::new(keyring);
    store.use_sealer(keyring.clone());
    Ok(Keys { keyring, source, legacy_file, needs_reseal })
}

/// What one sweep wrote again, and under which key.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Resealed {
    /// The key everything is sealed under now.
    pub key: String,
    #[serde(flatten)]
    pub counts: sealing::Resealed,
}

/// Re-seals under the current key; shared by the start-up sweep and `POST /keys/rotate`.
#[derive(Debug, Clone)]
pub struct KeyService {
    pub keys: Arc<Keys>,
    pub store: Arc<dyn Store>,
    /// One sweep at a time.
    sweeping: Arc<tokio::sync::Mutex<()>>,
}

impl KeyService {
    pub fn new(keys: Keys, store: Arc<dyn Store>) -> Self {
        Self { keys: Arc::new(keys), store, sweeping: Arc::default() }
    }

    /// Reads the key file again (a rotation put a new key first), then re-seals. With keys
    /// from the settings, re-seals under the current one (the last step of a rolling rotation).
    pub async fn rotate(&self) -> anyhow::Result<Resealed> {
        if let KeySource::File(path) = &self.keys.source {
            let keys = parla_keyring::read_file(path).context("reading the master key file")?;
            // The new set must still open what is stored (a file edited by hand might not).
            if let Some(check) = self.store.seal_check().await? {
                let trial = Keyring::new(&keys)?;
                if let Err(e) = sealing::check_opens(&trial, &check) {
                    anyhow::bail!("the key file's keys do not open the store's secrets: {e}");
                }
            }
            self.keys.keyring.replace(&keys)?;
            tracing::info!(key = %self.keys.keyring.current_key(), "master keys reloaded");
        }
        self.reseal().await
    }

    /// Writes every secret not under the current key again (the store compares and swaps each
    /// record, so no edit made meanwhile is undone), then the check; deletes the data dir's old
    /// `channels.key` once nothing needs it.
    pub async fn reseal(&self) -> anyhow::Result<Resealed> {
        let Ok(_one) = self.sweeping.try_lock() else {
            anyhow::bail!("a re-sealing sweep is already running");
        };
        let key = self.keys.keyring.current_key();
        let counts = self.store.reseal_all().await?;
        if counts.unreadable > 0 {
            anyhow::bail!(
                "{} secret(s) did not open with the keys given (see the log); nothing else is \
                 wrong, and the next sweep tries them again",
                counts.unreadable
            );
        }
        self.store.put_seal_check(&self.keys.keyring.seal(CHECK_CONTEXT, CHECK_TEXT)).await?;
        if let Some(path) = &self.keys.legacy_file
            && path.exists()
        {
            std::fs::remove_file(path).context("deleting DATA_DIR/channels.key")?;
            tracing::info!(
                "channel credentials re-sealed under the master key; channels.key deleted"
            );
        }
        tracing::info!(key = %key, ?counts, "secrets re-sealed under the current master key");
        Ok(Resealed { key, counts })
    }
}

/// `parla rotate-key`: a new key first in the key file, then the running server re-seals (see
/// [`KeyService::rotate`]); `retire` keeps only the new key once it has. `reseal` only asks the
/// server to re-seal under its current key.
pub fn rotate_key_command(
    settings: &Settings,
    ops: &str,
    retire: bool,
    reseal: bool,
) -> anyhow::Result<()> {
    let configured =
        !settings.secrets.master_key.is_empty() || !settings.channels.master_key.is_empty();
    if reseal {
        return match post(ops, "/keys/rotate") {
            Ok((200, body)) => {
                println!("parla: re-sealed: {body}");
                Ok(())
            }
            Ok((status, body)) => anyhow::bail!("the server refused ({status}): {body}"),
            Err(e) => anyhow::bail!("no server answered on {ops}: {e}"),
        };
    }
    if configured {
        let key = parla_keyring::generate();
        println!(
            "parla: the master keys come from the settings (PARLA__SECRETS__MASTER_KEY), which \
             this command cannot change. A new key: {key}\n\
             1. On every node set PARLA__SECRETS__MASTER_KEY=\"<the current key>,{key}\" and restart \
             them one at a time (the current key still seals; every node can open the new one).\n\
             2. Then set PARLA__SECRETS__MASTER_KEY=\"{key},<the current key>\" on every node, \
             restarting them one at a time.\n\
             3. Then run `parla rotate-key --reseal` once against an admin node, and only then \
             drop the old key."
        );
        return Ok(());
    }
    let path = settings.secrets.key_file(&settings.store.data_dir);
    let old = std::fs::read_to_string(&path).with_context(|| {
        format!("reading the key file {} (start the server once)", path.display())
    })?;
    let old_keys: Vec<String> = old
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect();
    parla_keyring::parse(&old_keys.join("\n")).context("the key file")?;
    let new = parla_keyring::generate();
    let mut keys = vec![new.clone()];
    keys.extend(old_keys.iter().cloned());
    parla_keyring::write_file(&path, &keys)?;
    let new_id = parla_keyring::key_id(&parla_keyring::parse(&new)?[0]);
    println!("parla: key {new_id} written first in {}", path.display());
    match post(ops, "/keys/rotate") {
        Ok((200, body)) => {
            println!("parla: the server re-sealed every secret under {new_id}: {body}");
            if retire {
                parla_keyring::write_file(&path, std::slice::from_ref(&new))?;
                println!("parla: the old keys are gone from {}", path.display());
            }
            Ok(())
        }
        Ok((status, body)) => anyhow::bail!("the server refused the rotation ({status}): {body}"),
        Err(e) => {
            println!(
                "parla: no server answered on {ops} ({e}); the next start re-seals every secret \
                 under {new_id}. The old keys stay in the file until then."
            );
            Ok(())
        }
    }
}

/// A bodiless `POST` over plain HTTP/1.1 to the operations listener; (status, body).
fn post(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    use std::io::{Read as _, Write as _};
    if addr.is_empty() {
        return Err(std::io::Error::other("no operations listener is configured"));
    }
    let mut stream = std::net::TcpStream::connect(addr)?;
    // A sweep of a large store takes a while; a hang does not wait forever.
    stream.set_read_timeout(Some(std::time::Duration::from_secs(600)))?;
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw)?;
    let status = raw.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = raw.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    Ok((status, body))
}
