//! Credential primitives: password hashing, access tokens, opaque tokens.
//!
//! - **Passwords**: Argon2id with argon2 0.6's defaults (m = 19 MiB, t = 2, p = 1), which are
//!   OWASP's recommended parameters; the product brief's bcrypt cost 12 is weaker against GPU
//!   cracking for a similar login cost. Stored as PHC strings, so parameters can be raised later
//!   and old hashes still verify.
//! - **Access tokens**: JWT, HS256, short-lived (`exp`), carrying account, tenant and role.
//!   Expired and otherwise invalid tokens are told apart, so clients know to refresh.
//! - **Opaque tokens** (refresh tokens, API keys, reset links): 32 random bytes, base64url, with a
//!   prefix that says what they are (`prt_`, `pk_`…); only their SHA-256 is ever stored.

use argon2::{
    Algorithm as Argon2Algorithm, Argon2, Block, Params, Version,
    password_hash::{
        PasswordHasher, PasswordVerifier,
        phc::{Output, ParamsString, PasswordHash, Salt},
    },
};
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
pub use parla_engine::model::Role;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Shortest password accepted (OWASP ASVS 2.1.1 asks for at least 12 for new systems).
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Longest password accepted: bounds hashing work per request.
pub const MAX_PASSWORD_CHARS: usize = 256;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("password must be {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters")]
    WeakPassword,
    #[error("the access token has expired")]
    TokenExpired,
    #[error("the access token is not valid")]
    TokenInvalid,
    #[error("credential processing failed")]
    Internal,
}

/// Checks a new password against the policy.
pub fn validate_password(password: &str) -> Result<(), AuthError> {
    let n = password.chars().count();
    if !(MIN_PASSWORD_CHARS..=MAX_PASSWORD_CHARS).contains(&n) {
        return Err(AuthError::WeakPassword);
    }
    Ok(())
}

/// Hashes a password with Argon2id and a fresh random salt; returns the PHC string.
pub fn hash_password(password: &str) -> Result<String, AuthError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|_| AuthError::Internal)
}

/// True when `password` matches the stored PHC string. A malformed stored hash never matches.
pub fn verify_password(password: &str, phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else { return false };
    Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok()
}

/// Argon2's working memory (19 MiB with the default parameters), owned by one hashing thread
/// and reused by every hash it computes: allocated afresh per hash, the allocator kept several
/// copies per thread (twenty logins in a row took the process from 37 to 350 MiB), so the
/// memory logins hold now is this buffer per hashing thread and nothing else.
#[derive(Debug, Default)]
pub struct HashMemory(Vec<Block>);

impl HashMemory {
    fn blocks(&mut self, count: usize) -> &mut [Block] {
        if self.0.len() < count {
            self.0.resize(count, Block::default());
        }
        &mut self.0[..count]
    }
}

/// [`hash_password`] in `memory`.
pub fn hash_password_in(memory: &mut HashMemory, password: &str) -> Result<String, AuthError> {
    let argon = Argon2::default();
    let params = argon.params().clone();
    let salt: [u8; 16] = rand::random();
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    let blocks = memory.blocks(params.block_count());
    argon
        .hash_password_into_with_memory(password.as_bytes(), &salt, &mut out, blocks)
        .map_err(|_| AuthError::Internal)?;
    let phc = PasswordHash {
        algorithm: Argon2Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|_| AuthError::Internal)?,
        salt: Some(Salt::new(&salt).map_err(|_| AuthError::Internal)?),
        hash: Some(Output::new(&out).map_err(|_| AuthError::Internal)?),
    };
    Ok(phc.to_string())
}

/// [`verify_password`] in `memory` (the stored hash's own algorithm, version and parameters).
pub fn verify_password_in(memory: &mut HashMemory, password: &str, phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else { return false };
    let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else { return false };
    let Ok(algorithm) = Argon2Algorithm::try_from(parsed.algorithm.as_str()) else { return false };
    let version = match parsed.version.map(Version::try_from).transpose() {
        Ok(version) => version.unwrap_or_default(),
        Err(_) => return false,
    };
    let Ok(params) = Params::try_from(&parsed) else { return false };
    let mut out = vec![0u8; expected.len()];
    let blocks = memory.blocks(params.block_count());
    let argon = Argon2::new(algorithm, version, params);
    if argon.hash_password_into_with_memory(password.as_bytes(), salt, &mut out, blocks).is_err() {
        return false;
    }
    // `Output`'s comparison is constant-time.
    Output::new(&out).is_ok_and(|computed| computed == *expected)
}

/// What an access token asserts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// The account.
    pub sub: String,
    /// The tenant the account acts in: every query is scoped to it.
    pub tid: String,
    pub role: Role,
    /// Issued at, Unix seconds.
    pub iat: u64,
    /// Expires at, Unix seconds.
    pub exp: u64,
    /// Token id, for revocation lists.
    pub jti: String,
    /// The account's session epoch at issue: a token from an older epoch is refused.
    #[serde(default)]
    pub sep: u64,
}

/// Signs and verifies access tokens with one HS256 secret.
pub struct AccessTokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    /// Lifetime of a new token (the brief: 15 minutes).
    ttl_secs: u64,
}

impl std::fmt::Debug for AccessTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("AccessTokens").field("ttl_secs", &self.ttl_secs).finish_non_exhaustive()
    }
}

impl AccessTokens {
    /// `secret` should be at least 32 random bytes.
    pub fn new(secret: &[u8], ttl_secs: u64) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        // Clocks of one deployment agree closely; a long leeway would stretch a 15-minute token.
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl_secs,
        }
    }

    /// A token for `account` in `tenant` with `role` and session `epoch`, valid from `now`
    /// (Unix seconds).
    pub fn issue(
        &self,
        account: &str,
        tenant: &str,
        role: Role,
        epoch: u64,
        now: u64,
    ) -> Result<(String, AccessClaims), AuthError> {
        let claims = AccessClaims {
            sub: account.to_owned(),
            tid: tenant.to_owned(),
            role,
            iat: now,
            exp: now + self.ttl_secs,
            jti: uuid::Uuid::new_v4().simple().to_string(),
            sep: epoch,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|_| AuthError::Internal)?;
        Ok((token, claims))
    }

    /// Checks signature, algorithm and expiry (against the system clock).
    pub fn verify(&self, token: &str) -> Result<AccessClaims, AuthError> {
        match jsonwebtoken::decode::<AccessClaims>(token, &self.decoding, &self.validation) {
            Ok(data) => Ok(data.claims),
            Err(e) if *e.kind() == ErrorKind::ExpiredSignature => Err(AuthError::TokenExpired),
            Err(_) => Err(AuthError::TokenInvalid),
        }
    }
}

/// A new opaque token with `prefix` (e.g. `prt_`): returns (token for the client, SHA-256 hex
/// digest to store).
pub fn new_opaque_token(prefix: &str) -> (String, String) {
    let bytes: [u8; 32] = rand::random();
    let token =
        format!("{prefix}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes));
    let digest = token_digest(&token);
    (token, digest)
}

/// The SHA-256 hex digest under which an opaque token is stored and looked up.
pub fn token_digest(token: &str) -> String {
    Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// The access-token secret kept in `dir/jwt-secret`, created (32 random bytes, mode 0600) on
/// first use so that tokens survive restarts without the operator configuring anything.
pub fn load_or_create_secret(dir: &std::path::Path) -> std::io::Result<Vec<u8>> {
    use std::io::Write as _;
    let path = dir.join("jwt-secret");
    match std::fs::read(&path) {
        Ok(secret) if secret.len() >= 32 => return Ok(secret),
        Ok(_) => {
            return Err(std::io::Error::other(format!(
                "{} is shorter than 32 bytes",
                path.display()
            )));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::create_dir_all(dir)?;
    let bytes: [u8; 32] = rand::random();
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes).into_bytes();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&path)?;
    file.write_all(&secret)?;
    file.sync_all()?;
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs()
    }

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let phc = hash_password("correct horse battery staple").expect("hash");
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify_password("correct horse battery staple", &phc));
        assert!(!verify_password("correct horse battery stapler", &phc));
        assert!(!verify_password("anything", "not a phc string"));
        let again = hash_password("correct horse battery staple").expect("hash");
        assert_ne!(phc, again, "a fresh salt every time");
    }

    #[test]
    fn hashes_in_reused_memory_match_the_library_s_own() {
        let mut memory = HashMemory::default();
        let phc = hash_password_in(&mut memory, "correct horse battery staple").expect("hash");
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify_password("correct horse battery staple", &phc), "the library agrees");
        let theirs = hash_password("correct horse battery staple").expect("hash");
        assert!(verify_password_in(&mut memory, "correct horse battery staple", &theirs));
        assert!(!verify_password_in(&mut memory, "correct horse battery stapler", &theirs));
        assert!(!verify_password_in(&mut memory, "anything", "not a phc string"));
        assert_eq!(memory.0.len(), 19_456, "one buffer, reused");
    }

    #[test]
    fn the_password_policy_counts_characters() {
        assert_eq!(validate_password("short"), Err(AuthError::WeakPassword));
        assert_eq!(validate_password(&"x".repeat(257)), Err(AuthError::WeakPassword));
        assert_eq!(validate_password("twelve chars"), Ok(()));
        assert_eq!(validate_password(&"é".repeat(12)), Ok(()), "characters, not bytes");
    }

    #[test]
    fn access_tokens_round_trip_and_carry_the_tenant() {
        let tokens = AccessTokens::new(b"0123456789abcdef0123456789abcdef", 900);
        let (token, claims) =
            tokens.issue("acc-1", "tenant-a", Role::Admin, 0, now()).expect("issue");
        let verified = tokens.verify(&token).expect("verify");
        assert_eq!(verified, claims);
        assert_eq!((verified.tid.as_str(), verified.role), ("tenant-a", Role::Admin));
        assert_eq!(verified.exp - verified.iat, 900);
    }

    #[test]
    fn expired_tampered_and_foreign_tokens_are_refused() {
        let tokens = AccessTokens::new(b"0123456789abcdef0123456789abcdef", 900);
        let (old, _) = tokens.issue("acc-1", "t", Role::Viewer, 0, now() - 3600).expect("issue");
        assert_eq!(tokens.verify(&old), Err(AuthError::TokenExpired));

        let (token, _) = tokens.issue("acc-1", "t", Role::Viewer, 0, now()).expect("issue");
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        // Claim to be an owner of another tenant, keeping the original signature.
        let forged = AccessClaims {
            sub: "acc-1".into(),
            tid: "other".into(),
            role: Role::Owner,
            iat: now(),
            exp: now() + 900,
            jti: "x".into(),
            sep: 0,
        };
        parts[1] = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(&forged).expect("json"));
        assert_eq!(tokens.verify(&parts.join(".")), Err(AuthError::TokenInvalid));

        let other = AccessTokens::new(b"another secret, another deployment", 900);
        let (foreign, _) = other.issue("acc-1", "t", Role::Owner, 0, now()).expect("issue");
        assert_eq!(tokens.verify(&foreign), Err(AuthError::TokenInvalid));

        // alg "none": header {"alg":"none"}, no signature.
        let none = format!("eyJhbGciOiJub25lIn0.{}.", parts[1]);
        assert_eq!(tokens.verify(&none), Err(AuthError::TokenInvalid));
        assert_eq!(tokens.verify("garbage"), Err(AuthError::TokenInvalid));
        assert_eq!(tokens.verify(""), Err(AuthError::TokenInvalid));
    }

    #[test]
    fn opaque_tokens_are_prefixed_random_and_stored_as_digests() {
        let (a, digest_a) = new_opaque_token("prt_");
        let (b, _) = new_opaque_token("prt_");
        assert!(a.starts_with("prt_") && a.len() == 4 + 43);
        assert_ne!(a, b);
        assert_eq!(digest_a, token_digest(&a));
        assert_eq!(digest_a.len(), 64);
    }
}
