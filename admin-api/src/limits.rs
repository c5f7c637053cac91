//! Abuse limits on the auth endpoints: a request budget per client IP (the brief: 100 requests
//! per 15 minutes) and an exponential backoff per account after repeated failed logins.
//!
//! In-process by default (`governor`). In a cluster (`[cluster] redis_url`) every admin node
//! shares them through Redis: the IP budget is GCRA in one Lua script (atomic, one round trip,
//! Redis's own clock), the failed logins a counter per account that expires with the longest
//! backoff. If Redis cannot be reached the limits fail open, with an error logged: the
//! endpoints stay usable, and argon2 still paces password guessing.

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
    /// Shared limits (distributed mode).
    shared: Option<Shared>,
}

/// The limits kept in Redis.
struct Shared {
    conn: redis::aio::ConnectionManager,
    prefix: String,
    /// Milliseconds between two requests of one IP's budget at the sustained rate.
    interval_ms: u64,
    burst: u64,
    gcra: redis::Script,
}

/// GCRA: the key holds the budget's theoretical arrival time (ms). A request is allowed if
/// spending it keeps that time within `burst` intervals of now; else it returns how long to
/// wait. Uses Redis's clock, so nodes' clocks do not matter.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local over = new_tat - now - interval * burst
if over > 0 then return over end
redis.call('SET', KEYS[1], new_tat, 'PX', new_tat - now)
return 0
";

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
        Self {
            per_ip: RateLimiter::keyed(quota),
            failures: Mutex::new(HashMap::new()),
            shared: None,
        }
    }

    /// The same limits, shared by every node through Redis (`prefix` names the keys).
    pub async fn shared(
        per_15_minutes: u32,
        redis_url: &str,
        prefix: &str,
    ) -> Result<Self, redis::RedisError> {
        let client = redis::Client::open(redis_url)?;
        let conn = client.get_connection_manager().await?;
        let burst = u64::from(per_15_minutes.max(1));
        let mut limits = Self::new(per_15_minutes);
        limits.shared = Some(Shared {
            conn,
            prefix: prefix.to_owned(),
            interval_ms: (15 * 60 * 1000 / burst).max(1),
            burst,
            gcra: redis::Script::new(GCRA),
        });
        Ok(limits)
    }

    /// Spends one request of `ip`'s budget.
    pub async fn check_ip(&self, ip: IpAddr) -> Result<(), TooMany> {
        if let Some(shared) = &self.shared {
            let key = format!("{}:limit:ip:{ip}", shared.prefix);
            let mut conn = shared.conn.clone();
            let wait: redis::RedisResult<u64> = shared
                .gcra
                .key(key)
                .arg(shared.interval_ms)
                .arg(shared.burst)
                .invoke_async(&mut conn)
                .await;
            return match wait {
                Ok(0) => Ok(()),
                Ok(ms) => {
                    Err(TooMany { code: "rate_limited", retry_after: Duration::from_millis(ms) })
                }
                Err(e) => {
                    tracing::error!(error = %e, "shared rate limit unavailable; allowing");
                    Ok(())
                }
            };
        }
        self.per_ip.check_key(&ip).map_err(|not_until| TooMany {
            code: "rate_limited",
            retry_after: not_until.wait_time_from(DefaultClock::default().now()),
        })
    }

    /// Refuses a login for `email` while its backoff runs.
    pub async fn check_login(&self, email: &str) -> Result<(), TooMany> {
        if let Some(shared) = &self.shared {
            let mut conn = shared.conn.clone();
            let read: redis::RedisResult<(Option<u32>, Option<u64>)> = redis::cmd("HMGET")
                .arg(shared.login_key(email))
                .arg("count")
                .arg("last")
                .query_async(&mut conn)
                .await;
            let (count, last) = match read {
                Ok((Some(count), Some(last))) => (count, last),
                Ok(_) => return Ok(()),
                Err(e) => {
                    tracing::error!(error = %e, "shared login backoff unavailable; allowing");
                    return Ok(());
                }
            };
            let elapsed = Duration::from_millis(now_ms().saturating_sub(last));
            let wait = backoff(count);
            if elapsed < wait {
                return Err(TooMany { code: "login_backoff", retry_after: wait - elapsed });
            }
            return Ok(());
        }
        let failures = self.failures.lock();
        let Some(f) = failures.get(email) else { return Ok(()) };
        let wait = backoff(f.count);
        let elapsed = f.last.elapsed();
        if elapsed < wait {
            return Err(TooMany { code: "login_backoff", retry_after: wait - elapsed });
        }
        Ok(())
    }

    pub async fn login_failed(&self, email: &str) {
        if let Some(shared) = &self.shared {
            let key = shared.login_key(email);
            let mut conn = shared.conn.clone();
            let written: redis::RedisResult<()> = redis::pipe()
                .atomic()
                .cmd("HINCRBY")
                .arg(&key)
                .arg("count")
                .arg(1)
                .ignore()
                .cmd("HSET")
                .arg(&key)
                .arg("last")
                .arg(now_ms())
                .ignore()
                .cmd("PEXPIRE")
                .arg(&key)
                .arg(MAX_BACKOFF.as_millis() as u64)
                .ignore()
                .query_async(&mut conn)
                .await;
            if let Err(e) = written {
                tracing::error!(error = %e, "could not record a failed login in redis");
            }
            return;
        }
        let mut failures = self.failures.lock();
        if failures.len() >= SWEEP_AT {
            failures.retain(|_, f| f.last.elapsed() < MAX_BACKOFF);
        }
        let entry =
            failures.entry(email.to_owned()).or_insert(Failures { count: 0, last: Instant::now() });
        entry.count = entry.count.saturating_add(1);
        entry.last = Instant::now();
    }

    pub async fn login_succeeded(&self, email: &str) {
        if let Some(shared) = &self.shared {
            let mut conn = shared.conn.clone();
            let deleted: redis::RedisResult<()> =
                redis::cmd("DEL").arg(shared.login_key(email)).query_async(&mut conn).await;
            if let Err(e) = deleted {
                tracing::error!(error = %e, "could not clear failed logins in redis");
            }
            return;
        }
        self.failures.lock().remove(email);
    }
}

impl Shared {
    /// The account's key: a digest, so Redis never holds the email itself.
    fn login_key(&self, email: &str) -> String {
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(email.as_bytes());
        let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
        format!("{}:limit:login:{hex}", self.prefix)
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
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

    #[tokio::test]
    async fn the_ip_budget_is_per_ip() {
        let limits = AuthLimits::new(3);
        let (a, b) = ("10.0.0.1".parse().expect("ip"), "10.0.0.2".parse().expect("ip"));
        for _ in 0..3 {
            assert!(limits.check_ip(a).await.is_ok());
        }
        let refused = limits.check_ip(a).await.expect_err("fourth");
        assert!(refused.retry_after > Duration::ZERO);
        assert!(limits.check_ip(b).await.is_ok(), "another IP has its own budget");
    }

    /// Two admin nodes share one budget and one backoff through a real Redis
    /// (`PARLA_TEST_REDIS`, from `scripts/services.sh start redis`).
    #[tokio::test]
    async fn nodes_share_the_limits_through_redis() {
        let Some(url) = std::env::var("PARLA_TEST_REDIS").ok().filter(|u| !u.is_empty()) else {
            println!("skipped: PARLA_TEST_REDIS is not set (scripts/services.sh start redis)");
            return;
        };
        let prefix = format!("parla-test-{}", uuid::Uuid::new_v4().simple());
        let a = AuthLimits::shared(3, &url, &prefix).await.expect("node a");
        let b = AuthLimits::shared(3, &url, &prefix).await.expect("node b");
        let ip: IpAddr = "10.0.0.1".parse().expect("ip");
        assert!(a.check_ip(ip).await.is_ok());
        assert!(b.check_ip(ip).await.is_ok());
        assert!(a.check_ip(ip).await.is_ok());
        let refused = b.check_ip(ip).await.expect_err("the fourth, on the other node");
        // 3 per 15 minutes: the next request frees up in about 5 minutes.
        assert!(refused.retry_after > Duration::from_secs(250), "{refused}");
        assert!(refused.retry_after <= Duration::from_secs(300), "{refused}");
        assert!(a.check_ip("10.0.0.2".parse().expect("ip")).await.is_ok(), "per IP");

        for _ in 0..FREE_FAILURES {
            assert!(a.check_login("x@example.com").await.is_ok());
            a.login_failed("x@example.com").await;
        }
        let backoff = b.check_login("x@example.com").await.expect_err("seen by node b");
        assert_eq!(backoff.code, "login_backoff");
        assert!(b.check_login("y@example.com").await.is_ok(), "per account");
        b.login_succeeded("x@example.com").await;
        assert!(a.check_login("x@example.com").await.is_ok(), "cleared for every node");
    }
}
