//! Abuse limits on the auth endpoints: a request budget per client IP (the brief: 100 requests
//! per 15 minutes) and an exponential backoff per account after repeated failed logins.
//! In-process; Redis-backed in distributed mode later.

use std::{
    collections::HashMap,
    net::IpAddr,
    num::NonZeroU32,
    time::{Duration, Instant},
};

use actix_web::http::StatusCode;
use governor::{
    DefaultKeyedRateLimiter, Quota, RateLimiter,
    clock::{Clock, DefaultClock},
};
use parking_lot::Mutex;

use crate::error::ApiError;

/// Failed logins allowed before the backoff starts.
const FREE_FAILURES: u32 = 5;
/// The longest backoff.
const MAX_BACKOFF: Duration = Duration::from_secs(15 * 60);
/// Tracked emails before stale entries are swept: bounds memory under a spray of emails.
const SWEEP_AT: usize = 10_000;

/// A refusal that tells the client when to come back.
#[derive(Debug)]
pub struct TooMany {
    pub code: &'static str,
    pub retry_after: Duration,
}

impl std::fmt::Display for TooMany {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: retry after {} s", self.code, self.retry_after.as_secs())
    }
}

impl From<TooMany> for ApiError {
    fn from(t: TooMany) -> Self {
        let secs = t.retry_after.as_secs().max(1);
        let mut e =
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, t.code, "too many attempts; retry later");
        e.details = serde_json::json!({ "retry_after_secs": secs });
        e.retry_after_secs = Some(secs);
        e
    }
}

#[derive(Debug)]
struct Failures {
    count: u32,
    last: Instant,
}

/// The auth endpoints' limits.
pub struct AuthLimits {
    per_ip: DefaultKeyedRateLimiter<IpAddr>,
    failures: Mutex<HashMap<String, Failures>>,
}

impl std::fmt::Debug for AuthLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthLimits").finish_non_exhaustive()
    }
}

impl AuthLimits {
    /// `per_15_minutes` requests per IP, spread evenly, all usable at once.
    pub fn new(per_15_minutes: u32) -> Self {
        let burst = NonZeroU32::new(per_15_minutes).unwrap_or(NonZeroU32::MIN);
        let period = Duration::from_secs(15 * 60) / burst.get();
        let quota =
            Quota::with_period(period).map_or(Quota::per_second(burst), |q| q.allow_burst(burst));
        Self { per_ip: RateLimiter::keyed(quota), failures: Mutex::new(HashMap::new()) }
    }

    /// Spends one request of `ip`'s budget.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), TooMany> {
        self.per_ip.check_key(&ip).map_err(|not_until| TooMany {
            code: "rate_limited",
            retry_after: not_until.wait_time_from(DefaultClock::default().now()),
        })
    }

    /// Refuses a login for `email` while its backoff runs.
    pub fn check_login(&self, email: &str) -> Result<(), TooMany> {
        let failures = self.failures.lock();
        let Some(f) = failures.get(email) else { return Ok(()) };
        let wait = backoff(f.count);
        let elapsed = f.last.elapsed();
        if elapsed < wait {
            return Err(TooMany { code: "login_backoff", retry_after: wait - elapsed });
        }
        Ok(())
    }

    pub fn login_failed(&self, email: &str) {
        let mut failures = self.failures.lock();
        if failures.len() >= SWEEP_AT {
            failures.retain(|_, f| f.last.elapsed() < MAX_BACKOFF);
        }
        let entry =
            failures.entry(email.to_owned()).or_insert(Failures { count: 0, last: Instant::now() });
        entry.count = entry.count.saturating_add(1);
        entry.last = Instant::now();
    }

    pub fn login_succeeded(&self, email: &str) {
        self.failures.lock().remove(email);
    }
}

/// No wait for the first failures, then 1 s, 2 s, 4 s… up to 15 minutes.
fn backoff(failures: u32) -> Duration {
    if failures < FREE_FAILURES {
        return Duration::ZERO;
    }
    let exponent = (failures - FREE_FAILURES).min(20);
    Duration::from_secs(1u64 << exponent).min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_then_caps() {
        assert_eq!(backoff(4), Duration::ZERO);
        assert_eq!(backoff(5), Duration::from_secs(1));
        assert_eq!(backoff(7), Duration::from_secs(4));
        assert_eq!(backoff(100), MAX_BACKOFF);
    }

    #[test]
    fn the_ip_budget_is_per_ip() {
        let limits = AuthLimits::new(3);
        let (a, b) = ("10.0.0.1".parse().expect("ip"), "10.0.0.2".parse().expect("ip"));
        for _ in 0..3 {
            assert!(limits.check_ip(a).is_ok());
        }
        let refused = limits.check_ip(a).expect_err("fourth");
        assert!(refused.retry_after > Duration::ZERO);
        assert!(limits.check_ip(b).is_ok(), "another IP has its own budget");
    }
}
