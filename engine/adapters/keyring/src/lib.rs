//! The master keys that seal Parla's secrets at rest (the [`Sealer`] port): AES-256-GCM, a fresh
//! 96-bit nonce per value, the value's record as associated data.
//!
//! A keyring holds one or more 32-byte keys. The first seals; every one opens, so a key can be
//! rotated without downtime: put the new key first, keep the old one after it until
//! `parla rotate-key` has re-sealed everything, then drop it. Each key is named by its id, the
//! first 8 hex digits of its SHA-256, which every sealed value carries (`pk1.{id}.…`).
//!
//! Keys come from the environment or a file outside the data dir (one base64 key per line,
//! `#` comments allowed), never from the data dir itself: a copy of the data (a backup, a
//! stolen disk) does not carry what opens its secrets.
//!
//! Values sealed before key ids existed (channel credentials under the data dir's
//! `channels.key`: `base64(nonce ‖ ciphertext ‖ tag)`, no prefix) open with a *legacy* key, until
//! the re-sealing sweep has written them again under the current key.

use std::path::Path;

use aes_gcm::{
    Aes256Gcm, KeyInit, Nonce,
    aead::{Aead, Payload},
};
use base64::{Engine as _, engine::general_purpose::STANDARD};
use parking_lot::RwLock;
use parla_domain::sealing::{PREFIX, SealError, Sealer};
use sha2::{Digest, Sha256};

/// Why keys could not be read.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("a master key must be the base64 of 32 bytes (e.g. `openssl rand -base64 32`)")]
    BadKey,
    #[error("no master key given")]
    Empty,
    #[error("master key file {path}: {source}")]
    Io { path: String, source: std::io::Error },
}

/// One master key and its id.
#[derive(Clone)]
struct Key {
    id: String,
    cipher: Aes256Gcm,
}

impl Key {
    fn new(bytes: &[u8]) -> Result<Self, KeyError> {
        let cipher = Aes256Gcm::new_from_slice(bytes).map_err(|_| KeyError::BadKey)?;
        Ok(Self { id: key_id(bytes), cipher })
    }
}

/// The id a key is known by: the first 8 hex digits of its SHA-256.
pub fn key_id(key: &[u8]) -> String {
    Sha256::digest(key).iter().take(4).map(|b| format!("{b:02x}")).collect()
}

/// A new random key, base64.
pub fn generate() -> String {
    STANDARD.encode(rand::random::<[u8; 32]>())
}

/// The keys in `text`: base64 keys separated by commas, spaces or lines; `#` starts a comment.
pub fn parse(text: &str) -> Result<Vec<Vec<u8>>, KeyError> {
    let keys: Vec<Vec<u8>> = text
        .lines()
        .map(|line| line.split('#').next().unwrap_or(""))
        .flat_map(|line| line.split([',', ' ', '\t']))
        .filter(|word| !word.is_empty())
        .map(|word| match STANDARD.decode(word) {
            Ok(bytes) if bytes.len() == 32 => Ok(bytes),
            _ => Err(KeyError::BadKey),
        })
        .collect::<Result<_, _>>()?;
    if keys.is_empty() {
        return Err(KeyError::Empty);
    }
    Ok(keys)
}

/// The keys in the file at `path`.
pub fn read_file(path: &Path) -> Result<Vec<Vec<u8>>, KeyError> {
    let io = |source| KeyError::Io { path: path.display().to_string(), source };
    parse(&std::fs::read_to_string(path).map_err(io)?)
}

/// Writes `keys` (base64, the sealing one first) to `path` atomically, readable by its owner
/// alone: a temporary file beside it, synced, then renamed over it.
pub fn write_file(path: &Path, keys: &[String]) -> Result<(), KeyError> {
    use std::io::Write as _;
    let io = |source| KeyError::Io { path: path.display().to_string(), source };
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("master.key");
    // A fresh name each time, created new: nothing already there (a link planted beside the
    // file) is followed or reused.
    let fresh = path.with_file_name(format!(".{name}.{:016x}.new", rand::random::<u64>()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&fresh).map_err(io)?;
    let mut text = String::from("# Parla master keys: the first seals, every one opens.\n");
    for key in keys {
        text.push_str(key);
        text.push('\n');
    }
    file.write_all(text.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&fresh, path).map_err(io)
}

/// The server's master keys.
pub struct Keyring {
    keys: RwLock<Vec<Key>>,
    /// Opens values sealed before key ids (no prefix).
    legacy: Option<Aes256Gcm>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring").field("keys", &self.ids()).finish_non_exhaustive()
    }
}

impl Keyring {
    /// From raw keys, the sealing one first.
    pub fn new(keys: &[Vec<u8>]) -> Result<Self, KeyError> {
        let keys: Vec<Key> = keys.iter().map(|k| Key::new(k)).collect::<Result<_, _>>()?;
        if keys.is_empty() {
            return Err(KeyError::Empty);
        }
        Ok(Self { keys: RwLock::new(keys), legacy: None })
    }

    /// Also opens values sealed before key ids, under `key` (the data dir's old
    /// `channels.key`, base64).
    pub fn with_legacy(mut self, key: &str) -> Result<Self, KeyError> {
        let bytes = STANDARD.decode(key.trim()).map_err(|_| KeyError::BadKey)?;
        self.legacy = Some(Aes256Gcm::new_from_slice(&bytes).map_err(|_| KeyError::BadKey)?);
        Ok(self)
    }

    /// Whether values without a key id can be opened.
    pub fn has_legacy(&self) -> bool {
        self.legacy.is_some()
    }

    /// The keys' ids, the sealing one first.
    pub fn ids(&self) -> Vec<String> {
        self.keys.read().iter().map(|k| k.id.clone()).collect()
    }

    /// Replaces the keys (a rotation read from the key file), the sealing one first. Values
    /// sealed under a key no longer given stop opening: keep old keys until re-sealed.
    pub fn replace(&self, keys: &[Vec<u8>]) -> Result<(), KeyError> {
        let keys: Vec<Key> = keys.iter().map(|k| Key::new(k)).collect::<Result<_, _>>()?;
        if keys.is_empty() {
            return Err(KeyError::Empty);
        }
        *self.keys.write() = keys;
        Ok(())
    }

    fn open_with(cipher: &Aes256Gcm, context: &str, bytes: &[u8]) -> Result<Vec<u8>, SealError> {
        if bytes.len() < 12 + 16 {
            return Err(SealError::Unreadable);
        }
        let (nonce, body) = bytes.split_at(12);
        let payload = Payload { msg: body, aad: context.as_bytes() };
        cipher.decrypt(Nonce::from_slice(nonce), payload).map_err(|_| SealError::Unreadable)
    }
}

impl Sealer for Keyring {
    fn seal(&self, context: &str, plain: &[u8]) -> String {
        let keys = self.keys.read();
        let key = &keys[0];
        let nonce: [u8; 12] = rand::random();
        let payload = Payload { msg: plain, aad: context.as_bytes() };
        // Encryption fails only past GCM's 64 GiB per message.
        let sealed = key.cipher.encrypt(Nonce::from_slice(&nonce), payload).unwrap_or_default();
        let mut bytes = nonce.to_vec();
        bytes.extend(sealed);
        format!("{PREFIX}{}.{}", key.id, STANDARD.encode(bytes))
    }

    fn open(&self, context: &str, sealed: &str) -> Result<Vec<u8>, SealError> {
        let Some(rest) = sealed.strip_prefix(PREFIX) else {
            // Sealed before key ids: under the data dir's old key, or under the key an operator
            // gave as `[channels] master_key` — which may now be given as a master key.
            let bytes = STANDARD.decode(sealed).map_err(|_| SealError::Unreadable)?;
            let keys = self.keys.read();
            let ciphers = self.legacy.iter().chain(keys.iter().map(|k| &k.cipher));
            return ciphers
                .map(|cipher| Self::open_with(cipher, context, &bytes))
                .find(Result::is_ok)
                .unwrap_or(Err(SealError::UnknownKey("legacy".into())));
        };
        let (id, body) = rest.split_once('.').ok_or(SealError::Unreadable)?;
        let bytes = STANDARD.decode(body).map_err(|_| SealError::Unreadable)?;
        let keys = self.keys.read();
        let key = keys.iter().find(|k| k.id == id).ok_or(SealError::UnknownKey(id.into()))?;
        Self::open_with(&key.cipher, context, &bytes)
    }

    fn current_key(&self) -> String {
        self.keys.read()[0].id.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(n: u8) -> Vec<Vec<u8>> {
        (1..=n).map(|i| vec![i; 32]).collect()
    }

    #[test]
    fn a_sealed_value_opens_only_with_its_key_and_its_record() {
        let ring = Keyring::new(&keys(1)).expect("ring");
        let sealed = ring.seal("c1", b"secret-token");
        assert!(!sealed.contains("secret"), "not in clear");
        assert!(sealed.starts_with(&format!("pk1.{}.", key_id(&[1; 32]))), "{sealed}");
        assert_ne!(sealed, ring.seal("c1", b"secret-token"), "a fresh nonce each time");
        assert_eq!(ring.open("c1", &sealed).expect("opens"), b"secret-token");
        assert_eq!(ring.open("c2", &sealed), Err(SealError::Unreadable), "bound to its record");
        let other = Keyring::new(&[vec![9; 32]]).expect("ring");
        assert!(matches!(other.open("c1", &sealed), Err(SealError::UnknownKey(_))));
        let (head, body) = sealed.rsplit_once('.').expect("dot");
        let mut tampered = STANDARD.decode(body).expect("b64");
        tampered[20] ^= 1;
        let tampered = format!("{head}.{}", STANDARD.encode(tampered));
        assert_eq!(ring.open("c1", &tampered), Err(SealError::Unreadable), "tampering is caught");
    }

    #[test]
    fn after_a_rotation_old_values_open_and_new_ones_are_sealed_under_the_new_key() {
        let ring = Keyring::new(&keys(1)).expect("ring");
        let old = ring.seal("t", b"v");
        ring.replace(&[vec![2; 32], vec![1; 32]]).expect("rotate");
        assert_eq!(ring.open("t", &old).expect("old opens"), b"v");
        let new = ring.seal("t", b"v");
        assert_eq!(parla_domain::sealing::key_of(&new), Some(key_id(&[2; 32]).as_str()));
        ring.replace(&[vec![2; 32]]).expect("retire");
        assert!(matches!(ring.open("t", &old), Err(SealError::UnknownKey(_))));
        assert_eq!(ring.open("t", &new).expect("new opens"), b"v");
    }

    #[test]
    fn values_sealed_under_the_data_dirs_old_channel_key_open_with_it() {
        // The format `channels::seal` wrote: base64(nonce ‖ ciphertext ‖ tag), the connection
        // id as associated data.
        let legacy = STANDARD.encode([5u8; 32]);
        let cipher = Aes256Gcm::new_from_slice(&[5u8; 32]).expect("key");
        let nonce = [3u8; 12];
        let payload = Payload { msg: b"{\"token\":\"t\"}".as_slice(), aad: b"conn-1".as_slice() };
        let mut bytes = nonce.to_vec();
        bytes.extend(cipher.encrypt(Nonce::from_slice(&nonce), payload).expect("seal"));
        let old = STANDARD.encode(bytes);
        let ring = Keyring::new(&keys(1)).expect("ring");
        assert!(matches!(ring.open("conn-1", &old), Err(SealError::UnknownKey(_))));
        let ring = ring.with_legacy(&legacy).expect("legacy");
        assert_eq!(ring.open("conn-1", &old).expect("opens"), b"{\"token\":\"t\"}");
        // The old `[channels] master_key`, now given as a master key: it opens them too.
        let ring = Keyring::new(&[vec![1; 32], vec![5; 32]]).expect("ring");
        assert_eq!(ring.open("conn-1", &old).expect("opens"), b"{\"token\":\"t\"}");
        assert_eq!(ring.open("conn-2", &old), Err(SealError::UnknownKey("legacy".into())));
    }

    #[test]
    fn key_text_takes_lines_commas_and_comments_and_refuses_short_keys() {
        let (a, b) = (STANDARD.encode([1u8; 32]), STANDARD.encode([2u8; 32]));
        assert_eq!(parse(&format!("# keys\n{a}\n{b} # old\n")).expect("file"), keys(2));
        assert_eq!(parse(&format!("{a},{b}")).expect("env"), keys(2));
        assert!(matches!(parse("c2hvcnQ="), Err(KeyError::BadKey)));
        assert!(matches!(parse("# nothing\n"), Err(KeyError::Empty)));
    }

    #[test]
    fn the_key_file_is_written_whole_and_for_its_owner_only() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("master.key");
        let (a, b) = (generate(), generate());
        write_file(&path, &[a.clone(), b.clone()]).expect("write");
        let read = read_file(&path).expect("read");
        assert_eq!(read, parse(&format!("{a}\n{b}")).expect("parse"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
