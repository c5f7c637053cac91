//! The [`Sealing`] port.

use std::sync::Arc;

use async_trait::async_trait;

use super::StoreResult;
use crate::sealing::Sealer;

/// Secrets at rest (see [`crate::sealing`]): the store seals the secret fields of accounts,
/// workspaces and intents with the sealer it is given, and opens them on the way out; it keeps
/// a check value telling which master key its secrets are sealed under.
#[async_trait]
pub trait Sealing: Send + Sync + std::fmt::Debug + 'static {
    /// From now on, seal with `sealer` (and open with it). Until called, secrets are stored as
    /// they are given, and a sealed one read back is refused as unreadable.
    fn use_sealer(&self, sealer: Arc<dyn Sealer>);

    /// The check value ([`crate::sealing::CHECK_TEXT`] sealed under the current key), once one
    /// was written.
    async fn seal_check(&self) -> StoreResult<Option<String>>;

    async fn put_seal_check(&self, sealed: &str) -> StoreResult<()>;

    /// Writes every secret not under the sealer's current key again under it — workspaces'
    /// LLM keys, accounts' TOTP secrets, intents' webhook secrets, channel credentials — each
    /// record compared and swapped as stored, so an edit made meanwhile is never undone (that
    /// record is left for the next pass). Does nothing without a sealer.
    async fn reseal_all(&self) -> StoreResult<crate::sealing::Resealed>;
}
