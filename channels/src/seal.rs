//! Channel credentials at rest: AES-256-GCM under the server's master key.
//!
//! A sealed value is `base64(nonce ‖ ciphertext ‖ tag)` with a fresh random 96-bit nonce; the
//! connection id is the associated data, so a sealed blob moved onto another connection does
//! not open.

use std::path::Path;

use aes_gcm::{
    Aes256Gcm, KeyInit, Nonce,
    aead::{Aead, Payload},
};
use base64::{Engine as _, engine::general_purpose::STANDARD};

/// Why a key or a sealed value is unusable.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("the channel master key must be base64 of 32 bytes")]
    BadKey,
    #[error("sealed credentials do not open with this key (wrong key, or tampered)")]
    Unreadable,
    #[error("channel key file: {0}")]
    Io(#[from] std::io::Error),
}

/// Seals and opens credentials.
#[derive(Clone)]
pub struct Sealer {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(<key>)")
    }
}

impl Sealer {
    /// From base64 of a 32-byte key.
    pub fn from_base64(key: &str) -> Result<Self, SealError> {
        let bytes = STANDARD.decode(key.trim()).map_err(|_| SealError::BadKey)?;
        let cipher = Aes256Gcm::new_from_slice(&bytes).map_err(|_| SealError::BadKey)?;
        Ok(Self { cipher })
    }

    /// The configured key, or the one in `dir/channels.key` (created, mode 0600, on first use).
    pub fn load_or_create(configured: &str, dir: &Path) -> Result<Self, SealError> {
        if !configured.is_empty() {
            return Self::from_base64(configured);
        }
        let path = dir.join("channels.key");
        match std::fs::read_to_string(&path) {
            Ok(key) => Self::from_base64(&key),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = STANDARD.encode(rand::random::<[u8; 32]>());
                std::fs::create_dir_all(dir)?;
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                std::io::Write::write_all(&mut options.open(&path)?, key.as_bytes())?;
                Self::from_base64(&key)
            }
            Err(e) => Err(e.into()),
        }
    }

    pub fn seal(&self, connection: &str, plain: &[u8]) -> String {
        let nonce: [u8; 12] = rand::random();
        let payload = Payload { msg: plain, aad: connection.as_bytes() };
        // Encryption only fails for messages beyond GCM's 64 GiB limit.
        let sealed = self.cipher.encrypt(Nonce::from_slice(&nonce), payload).unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend(sealed);
        STANDARD.encode(out)
    }

    pub fn open(&self, connection: &str, sealed: &str) -> Result<Vec<u8>, SealError> {
        let bytes = STANDARD.decode(sealed).map_err(|_| SealError::Unreadable)?;
        if bytes.len() < 12 + 16 {
            return Err(SealError::Unreadable);
        }
        let (nonce, body) = bytes.split_at(12);
        let payload = Payload { msg: body, aad: connection.as_bytes() };
        self.cipher.decrypt(Nonce::from_slice(nonce), payload).map_err(|_| SealError::Unreadable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_credentials_open_only_with_their_key_and_connection() {
        let dir = tempfile::tempdir().expect("dir");
        let sealer = Sealer::load_or_create("", dir.path()).expect("generated");
        let again = Sealer::load_or_create("", dir.path()).expect("reloaded");
        let sealed = sealer.seal("c1", b"secret-token");
        assert!(!sealed.contains("secret"), "not in clear");
        assert_ne!(sealed, sealer.seal("c1", b"secret-token"), "fresh nonce each time");
        assert_eq!(again.open("c1", &sealed).expect("opens"), b"secret-token");
        assert!(again.open("c2", &sealed).is_err(), "bound to its connection");
        let other = Sealer::from_base64(&STANDARD.encode([7u8; 32])).expect("key");
        assert!(other.open("c1", &sealed).is_err(), "another key cannot open it");
        let mut tampered = STANDARD.decode(&sealed).expect("b64");
        tampered[20] ^= 1;
        assert!(sealer.open("c1", &STANDARD.encode(tampered)).is_err(), "tampering is caught");
        assert!(Sealer::from_base64("c2hvcnQ=").is_err(), "a short key is refused");
    }
}
