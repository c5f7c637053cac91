//! The shared-limits port: request budgets and attempt backoffs that every node of a cluster
//! sees alike (the admin API's auth limits, in distributed mode). Keys are the caller's; the
//! adapter (`parla_cluster::RedisLimits`) namespaces them and checks-and-counts atomically on
//! one clock of its own, so nodes' clocks do not matter.

use std::time::Duration;

use async_trait::async_trait;

/// A failure to reach the shared limits (the caller decides whether to allow or refuse).
pub type LimitsError = String;

#[async_trait]
pub trait SharedLimits: Send + Sync + std::fmt::Debug + 'static {
    /// Spends one request of the budget under `key`: `burst` requests at once, then one each
    /// `interval` (GCRA). `None` when allowed, else how long until the next one would be.
    async fn spend(
        &self,
        key: &str,
        interval: Duration,
        burst: u32,
    ) -> Result<Option<Duration>, LimitsError>;

    /// Starts an attempt counted under every `(key, free)`: refused (how long to wait) while the
    /// backoff of any of them runs — none for its first `free` attempts, then 1 s, 2 s, 4 s…
    /// up to `max` since its last attempt —, else counted in all at once. A count is forgotten
    /// `max` after its last attempt.
    async fn begin_attempt(
        &self,
        counts: &[(&str, u32)],
        max: Duration,
    ) -> Result<Option<Duration>, LimitsError>;

    /// Ends an attempt [`SharedLimits::begin_attempt`] counted: the count under `clear` goes
    /// (a success), every count under `give_back` loses one attempt (gone at zero; a count that
    /// is already gone stays gone).
    async fn end_attempt(&self, clear: Option<&str>, give_back: &[&str])
    -> Result<(), LimitsError>;
}
