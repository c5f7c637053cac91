//! The [`Credentials`] port.

use async_trait::async_trait;

use super::StoreResult;
use crate::model::{AccountId, ApiKey, OneTimeToken, RefreshToken, TenantId};

/// Sessions (refresh-token families), API keys and one-time tokens, each found by its digest: the
/// store never sees a secret.
#[async_trait]
pub trait Credentials: Send + Sync + std::fmt::Debug + 'static {
    async fn put_refresh_token(&self, token: &RefreshToken) -> StoreResult<()>;

    /// Marks the token with this digest used and returns it as it was before (so `used: true`
    /// means this is a reuse). Atomic: two concurrent uses see one `false` and one `true`.
    async fn use_refresh_token(&self, digest: &str) -> StoreResult<Option<RefreshToken>>;

    /// Deletes every token of a family (logout, or reuse detected).
    async fn revoke_refresh_family(&self, family: &str) -> StoreResult<()>;

    /// Deletes every refresh token of an account (password reset, removal): all its sessions.
    async fn revoke_account_sessions(
        &self,
        tenant: &TenantId,
        account: &AccountId,
    ) -> StoreResult<()>;

    /// Stores a new API key. Nothing rewrites a stored key: revocation and last use change one
    /// field each, with [`Store::revoke_api_key`] and [`Store::touch_api_key`], so no write
    /// undoes another (a whole-record write would put back whatever it read).
    async fn put_api_key(&self, key: &ApiKey) -> StoreResult<()>;

    /// Finds a key by the digest of its value: the authentication entry point.
    async fn api_key_by_digest(&self, digest: &str) -> StoreResult<Option<ApiKey>>;

    async fn list_api_keys(&self, tenant: &TenantId) -> StoreResult<Vec<ApiKey>>;

    async fn put_one_time_token(&self, token: &OneTimeToken) -> StoreResult<()>;

    /// Removes and returns the token with this digest: a second take finds nothing.
    async fn take_one_time_token(&self, digest: &str) -> StoreResult<Option<OneTimeToken>>;

    /// Revokes a key of `tenant` for good (field-level: a concurrent last-use write cannot
    /// undo it); returns whether the key exists.
    async fn revoke_api_key(&self, tenant: &TenantId, id: &str) -> StoreResult<bool>;

    /// Records that a key was used at `at` (ms), keeping the latest time; changes nothing
    /// else of the key (its revocation above all), nothing if there is no such key.
    async fn touch_api_key(&self, tenant: &TenantId, id: &str, at: i64) -> StoreResult<()>;

    /// The one-time token with this digest, read only (as [`Store::invitation_by_digest`]);
    /// [`Store::take_one_time_token`] still decides who gets it.
    async fn one_time_token_by_digest(&self, digest: &str) -> StoreResult<Option<OneTimeToken>>;
}
