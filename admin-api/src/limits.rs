//! Abuse limits on the auth endpoints.
//!
//! - **A request budget per client** (the brief: 100 requests per 15 minutes), GCRA.
//! - **A backoff per account and client** after repeated failed logins: no wait for the first
//!   [`FREE_FAILURES`], then 1 s, 2 s, 4 s… up to 15 minutes. Keyed by the account *and* the
//!   client, so a stranger guessing a password backs off only themself: the owner, signing in
//!   from their own network, is not locked out (issue 19). We chose this over OWASP's "device
//!   cookie" scheme: it needs no new cookie or signing key in the API and protects the owner
//!   the same way as long as the attacker is not on the owner's network (whose clients share
//!   the owner's key here). A login counts as a failure from the moment it starts, before
//!   its password is hashed, and is given back if it succeeds or tries no password after all:
//!   logins sent together from one client cannot all pass the check while the count is low.
//! - **Failed logins per client across accounts**: past [`CLIENT_FREE_FAILURES`] within 15
//!   minutes the client backs off on *every* account the same way, so spraying guesses over
//!   many accounts (or over one account from a client that keeps coming back) gets slower and
//!   slower, while a correct login does not reset it.
//! - **Concurrent password hashes** ([`HashGate`]): each Argon2 call holds 19 MiB; unbounded, a
//!   hundred concurrent logins took the process to 1.9 GiB.
//!
//! A client is its IPv4 address, or its IPv6 /64 ([`client`]): a single IPv6 host usually has
//! a whole /64 to pick addresses from, so keying by address would give it billions of budgets.
//!
//! In-process by default; the per-key tables forget keys that no longer matter (a spray of
//! addresses or emails costs memory only while it lasts). In a cluster (`[cluster] redis_url`)
//! every admin node shares them through the domain's `SharedLimits` port (`parla_cluster::
//! RedisLimits`: the budget is GCRA, the failed logins counters that expire with the longest
//! backoff, each checked and counted atomically on Redis's clock). If the shared limits cannot
//! be reached they fail open, with an error logged: the endpoints stay usable, and Argon2 still
//! paces password guessing.

use std::{collections::HashMap, hash::Hash, net::IpAddr, sync::Arc, time::Duration};

use actix_web::http::StatusCode;
use parking_lot::Mutex;
use std::time::Instant;

use parla_domain::limits::SharedLimits;

use crate::error::ApiError;

/// Failed logins of one account from one client before its backoff starts: a person mistyping
/// their password a few times never waits.
pub const FREE_FAILURES: u32 = 5;
/// Failed logins of one client (any accounts) within [`MAX_BACKOFF`] before it backs off on
/// all of them: more than a person mistypes across the few accounts they have, far less than a
/// spray needs.
pub const CLIENT_FREE_FAILURES: u32 = 20;
/// The longest backoff, and how long failures are remembered after the last one.
const MAX_BACKOFF: Duration = Duration::from_secs(15 * 60);
/// The fewest entries a per-key table holds before it sweeps the forgotten ones (then again
/// at twice what the sweep left): sweeping is amortised, and memory follows the live keys.
const SWEEP_AT: usize = 1024;
/// A table is also swept when it last was this long ago, so keys a burst left behind go even
/// if no burst as large follows: one pass over the table a minute at most.
const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// How long a request waits for a password-hash permit before it is refused (429): long
/// enough to ride out a burst of real logins, short enough that a flood is refused instead
/// of piling up.
const HASH_WAIT: Duration = Duration::from_secs(2);

/// The key a client is limited by: its IPv4 address, or its IPv6 /64 (an IPv4-mapped IPv6
/// address is its IPv4 address), as the widget's limits count it.
pub use parla_engine::clients::client_group as client;

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
        let message = match t.code {
            "auth_busy" => "too many sign-ins at once; retry shortly",
            _ => "too many attempts; retry later",
        };
        let mut e = ApiError::new(StatusCode::TOO_MANY_REQUESTS, t.code, message);
        e.details = serde_json::json!({ "retry_after_secs": secs });
        e.retry_after_secs = Some(secs);
        e
    }
}

/// Per-key state in memory that forgets what [`Entry::live`] says no longer matters.
struct Forgetful<K, V> {
    /// One short lock per check (a hash-map lookup, an occasional sweep): never held across
    /// an await, so a plain mutex shared by the workers is enough.
    inner: Mutex<ForgetfulInner<K, V>>,
}

struct ForgetfulInner<K, V> {
    entries: HashMap<K, V>,
    /// Entries at which the next sweep runs.
    sweep_at: usize,
    /// When the last sweep ran.
    swept: Instant,
}

trait Entry {
    /// Whether the entry still changes anything at `now` (if not it is as good as absent).
    fn live(&self, now: Instant) -> bool;
}

impl<K: Eq + Hash, V: Entry> Forgetful<K, V> {
    fn new() -> Self {
        let inner =
            ForgetfulInner { entries: HashMap::new(), sweep_at: SWEEP_AT, swept: Instant::now() };
        Self { inner: Mutex::new(inner) }
    }

    /// Runs `f` on `key`'s live entry (`None`: none), keeping what it leaves there.
    fn with<T>(&self, key: K, now: Instant, f: impl FnOnce(&mut Option<V>) -> T) -> T {
        let mut inner = self.inner.lock();
        let mut entry = inner.entries.remove(&key).filter(|e| e.live(now));
        let out = f(&mut entry);
        if let Some(entry) = entry {
            inner.entries.insert(key, entry);
            if inner.entries.len() >= inner.sweep_at
                || now.duration_since(inner.swept) >= SWEEP_EVERY
            {
                inner.entries.retain(|_, e| e.live(now));
                inner.sweep_at = (inner.entries.len() * 2).max(SWEEP_AT);
                inner.swept = now;
            }
        }
        out
    }

    fn len(&self) -> usize {
        self.inner.lock().entries.len()
    }
}

/// A client's theoretical arrival time (GCRA).
struct Tat(Instant);

impl Entry for Tat {
    fn live(&self, now: Instant) -> bool {
        self.0 > now
    }
}

#[derive(Debug)]
struct Failures {
    count: u32,
    last: Instant,
}

impl Entry for Failures {
    fn live(&self, now: Instant) -> bool {
        now.duration_since(self.last) < MAX_BACKOFF
    }
}

/// The auth endpoints' limits.
pub struct AuthLimits {
    /// Time between two requests of a client's budget at the sustained rate.
    interval: Duration,
    /// Requests a client may make at once.
    burst: u32,
    /// Each client's budget (GCRA), keyed by [`client`].
    per_client: Forgetful<IpAddr, Tat>,
    /// Failed logins per (email, client).
    failures: Forgetful<(String, IpAddr), Failures>,
    /// Failed logins per client, any account.
    client_failures: Forgetful<IpAddr, Failures>,
    /// Shared by every node (distributed mode): the same budget and backoffs, kept there.
    shared: Option<Arc<dyn SharedLimits>>,
}

impl std::fmt::Debug for AuthLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthLimits").finish_non_exhaustive()
    }
}

impl AuthLimits {
    /// `per_15_minutes` requests per client, spread evenly, all usable at once.
    pub fn new(per_15_minutes: u32) -> Self {
        let burst = per_15_minutes.max(1);
        Self {
            interval: Duration::from_secs(15 * 60) / burst,
            burst,
            per_client: Forgetful::new(),
            failures: Forgetful::new(),
            client_failures: Forgetful::new(),
            shared: None,
        }
    }

    /// The same limits, kept in `shared` so that every node sees them alike.
    pub fn shared(per_15_minutes: u32, shared: Arc<dyn SharedLimits>) -> Self {
        Self { shared: Some(shared), ..Self::new(per_15_minutes) }
    }

    /// Keys held in memory (budgets and failure counts): what the sweeps keep bounded.
    pub fn tracked(&self) -> usize {
        self.per_client.len() + self.failures.len() + self.client_failures.len()
    }

    /// Spends one request of `ip`'s client's budget.
    pub async fn check_ip(&self, ip: IpAddr) -> Result<(), TooMany> {
        let client = client(ip);
        if let Some(shared) = &self.shared {
            let key = format!("ip:{client}");
            return match shared.spend(&key, self.interval, self.burst).await {
                Ok(None) => Ok(()),
                Ok(Some(wait)) => Err(TooMany { code: "rate_limited", retry_after: wait }),
                Err(e) => {
                    tracing::error!(error = %e, "shared rate limit unavailable; allowing");
                    Ok(())
                }
            };
        }
        self.local_check_ip(client, Instant::now())
    }

    /// The in-process budget at `now` (time is a parameter: the tests move it).
    fn local_check_ip(&self, client: IpAddr, now: Instant) -> Result<(), TooMany> {
        let (interval, tolerance) = (self.interval, self.interval * self.burst);
        self.per_client.with(client, now, |tat| {
            let new_tat = tat.as_ref().map_or(now, |t| t.0.max(now)) + interval;
            let ahead = new_tat.duration_since(now);
            if ahead > tolerance {
                return Err(TooMany { code: "rate_limited", retry_after: ahead - tolerance });
            }
            *tat = Some(Tat(new_tat));
            Ok(())
        })
    }

    /// Starts a login for `email` from `ip`. Refused while the backoff of that account from
    /// that client, or of that client on every account, runs; otherwise counted at once, as a
    /// failure of both, before the password is hashed. Counted when it starts rather than when
    /// its hash ends, so attempts sent together cannot all pass the check while the count is
    /// still low: at most [`FREE_FAILURES`] attempts at one account from one client (and
    /// [`CLIENT_FREE_FAILURES`] of one client) are failed or in flight before the backoff
    /// starts. [`AuthLimits::login_succeeded`] and [`AuthLimits::login_abandoned`] give the
    /// attempt back; a failed one, or one whose request went away, stays counted.
    pub async fn begin_login(&self, email: &str, ip: IpAddr) -> Result<LoginAttempt, TooMany> {
        let client = client(ip);
        let attempt = LoginAttempt { email: email.to_owned(), client };
        if let Some(shared) = &self.shared {
            let (login, everywhere) = (login_key(email, client), client_key(client));
            let counts =
                [(login.as_str(), FREE_FAILURES), (everywhere.as_str(), CLIENT_FREE_FAILURES)];
            return match shared.begin_attempt(&counts, MAX_BACKOFF).await {
                Ok(None) => Ok(attempt),
                Ok(Some(wait)) => Err(backed_off(wait)),
                Err(e) => {
                    tracing::error!(error = %e, "shared login backoff unavailable; allowing");
                    Ok(attempt)
                }
            };
        }
        self.local_begin(email, client, Instant::now()).map(|()| attempt)
    }

    /// The in-process [`AuthLimits::begin_login`] at `now`. Each table checks and counts
    /// under its lock; an attempt the account's backoff refuses after the client's count took
    /// it gives that back as it was.
    fn local_begin(&self, email: &str, client: IpAddr, now: Instant) -> Result<(), TooMany> {
        let everywhere =
            self.client_failures.with(client, now, |f| reserve(f, CLIENT_FREE_FAILURES, now));
        let before = everywhere.map_err(backed_off)?;
        let account =
            self.failures.with((email.to_owned(), client), now, |f| reserve(f, FREE_FAILURES, now));
        account.map(drop).map_err(|wait| {
            self.client_failures.with(client, now, |f| give_back(f, Some(before)));
            backed_off(wait)
        })
    }

    /// The attempt failed (a wrong password or second factor): it stays counted. Says so where
    /// the login ends, so that every way out of a login names what it does to the count.
    pub fn login_failed(&self, attempt: LoginAttempt) {
        drop(attempt);
    }

    /// The password (and second factor) was right: clears the backoff of that account from
    /// that client, and gives the client's count back this attempt (only this one: signing in
    /// to one's own account must not wash a spray away).
    pub async fn login_succeeded(&self, attempt: LoginAttempt) {
        self.end_login(attempt, true).await;
    }

    /// No password was tried after all (the hash was refused as busy, the store failed, the
    /// second factor is still to come): gives the attempt back to both counts.
    pub async fn login_abandoned(&self, attempt: LoginAttempt) {
        self.end_login(attempt, false).await;
    }

    async fn end_login(&self, attempt: LoginAttempt, succeeded: bool) {
        let LoginAttempt { email, client } = attempt;
        if let Some(shared) = &self.shared {
            let (login, everywhere) = (login_key(&email, client), client_key(client));
            let ended = if succeeded {
                shared.end_attempt(Some(&login), &[&everywhere]).await
            } else {
                shared.end_attempt(None, &[&login, &everywhere]).await
            };
            if let Err(e) = ended {
                tracing::error!(error = %e, "could not end a login attempt in the shared limits");
            }
            return;
        }
        self.local_end(&email, client, succeeded, Instant::now());
    }

    fn local_end(&self, email: &str, client: IpAddr, succeeded: bool, now: Instant) {
        self.failures.with((email.to_owned(), client), now, |f| match succeeded {
            true => *f = None,
            false => give_back(f, None),
        });
        self.client_failures.with(client, now, |f| give_back(f, None));
    }
}

/// A login counted as failed until it ends otherwise ([`AuthLimits::begin_login`]).
#[derive(Debug)]
#[must_use = "end it with login_succeeded, login_failed or login_abandoned"]
pub struct LoginAttempt {
    email: String,
    client: IpAddr,
}

/// Counts one attempt in `f` if its backoff is over at `now`; returns the time of the last
/// attempt counted before (to give this one back exactly), or how long to wait.
fn reserve(f: &mut Option<Failures>, free: u32, now: Instant) -> Result<Option<Instant>, Duration> {
    let (count, last) = f.as_ref().map_or((0, None), |f| (f.count, Some(f.last)));
    let wait = last.map_or(Duration::ZERO, |last| {
        backoff(count, free).saturating_sub(now.duration_since(last))
    });
    if !wait.is_zero() {
        return Err(wait);
    }
    *f = Some(Failures { count: count.saturating_add(1), last: now });
    Ok(last)
}

/// Takes one attempt off `f` (forgotten at none), and puts back the time of the last one
/// when it is known (`Some`: an attempt given back at once, as if it never came).
fn give_back(f: &mut Option<Failures>, last: Option<Option<Instant>>) {
    let Some(failures) = f.as_mut() else { return };
    failures.count = failures.count.saturating_sub(1);
    match last {
        _ if failures.count == 0 => *f = None,
        Some(Some(last)) => failures.last = last,
        _ => {}
    }
}

/// The shared key of an account's failures from a client: a digest, so the shared limits never
/// hold the email itself.
fn login_key(email: &str, client: IpAddr) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(email.as_bytes());
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("login:{hex}:{client}")
}

/// The shared key of a client's failures on any account.
fn client_key(client: IpAddr) -> String {
    format!("login-client:{client}")
}

fn backed_off(wait: Duration) -> TooMany {
    TooMany { code: "login_backoff", retry_after: wait }
}

/// No wait for the first `free` failures, then 1 s, 2 s, 4 s… up to 15 minutes.
fn backoff(failures: u32, free: u32) -> Duration {
    if failures < free {
        return Duration::ZERO;
    }
    let exponent = (failures - free).min(20);
    Duration::from_secs(1u64 << exponent).min(MAX_BACKOFF)
}

/// Bounds concurrent password hashes (Argon2id, 19 MiB each for its duration), so memory stays
/// bounded whatever the number of logins in flight: they run on a few threads of their own, and
/// a request waits up to 2 s for a turn, then is refused with 429 `auth_busy` and
/// `Retry-After`.
///
/// Threads of their own rather than tokio's blocking pool, each with its Argon2 memory
/// allocated once and reused ([`crate::auth::HashMemory`]): allocated per hash on the
/// blocking pool's many threads, freed memory stayed with the allocator (a hundred concurrent
/// logins peaked at 610 MiB even four at a time). Here logins hold `concurrent` buffers.
pub struct HashGate {
    /// One permit per hashing thread; a permit travels with its job, so a request that goes
    /// away mid-hash still holds it until the hash ends.
    permits: Arc<tokio::sync::Semaphore>,
    /// To the hashing threads; bounded by the permits (a job is sent only with one), so it
    /// never fills. Dropping it ends the threads.
    jobs: std::sync::mpsc::SyncSender<HashJob>,
}

/// A job gets its thread's Argon2 memory ([`crate::auth::HashMemory`]).
type HashJob = Box<dyn FnOnce(&mut crate::auth::HashMemory) + Send>;

impl std::fmt::Debug for HashGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashGate").finish_non_exhaustive()
    }
}

impl HashGate {
    /// At most `concurrent` hashes at once (at least one), on as many threads.
    pub fn new(concurrent: usize) -> std::io::Result<Self> {
        let threads = concurrent.max(1);
        let (jobs, queue) = std::sync::mpsc::sync_channel::<HashJob>(threads);
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..threads {
            let queue = queue.clone();
            std::thread::Builder::new().name(format!("parla-hash-{n}")).spawn(move || {
                let mut memory = crate::auth::HashMemory::default();
                loop {
                    let job = queue.lock().recv();
                    match job {
                        Ok(job) => job(&mut memory),
                        Err(_) => return, // The gate is gone.
                    }
                }
            })?;
        }
        Ok(Self { permits: Arc::new(tokio::sync::Semaphore::new(threads)), jobs })
    }

    /// Runs `work` (a hash or a verification, in the thread's memory) on a hashing thread once
    /// one is free.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut crate::auth::HashMemory) -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let internal =
            || ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error");
        let permit =
            match tokio::time::timeout(HASH_WAIT, self.permits.clone().acquire_owned()).await {
                Ok(Ok(permit)) => permit,
                Ok(Err(_)) => return Err(internal()),
                Err(_) => {
                    return Err(
                        TooMany { code: "auth_busy", retry_after: Duration::from_secs(1) }.into()
                    );
                }
            };
        let (done, result) = tokio::sync::oneshot::channel();
        let job: HashJob = Box::new(move |memory| {
            let _permit = permit;
            let _ = done.send(work(memory)); // The request may have gone away.
        });
        self.jobs.try_send(job).map_err(|_| internal())?;
        result.await.map_err(|_| internal())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("ip")
    }

    #[test]
    fn backoff_grows_then_caps() {
        assert_eq!(backoff(4, FREE_FAILURES), Duration::ZERO);
        assert_eq!(backoff(5, FREE_FAILURES), Duration::from_secs(1));
        assert_eq!(backoff(7, FREE_FAILURES), Duration::from_secs(4));
        assert_eq!(backoff(100, FREE_FAILURES), MAX_BACKOFF);
    }

    #[test]
    fn ipv6_clients_are_grouped_by_their_64() {
        assert_eq!(client(ip("2001:db8:1:2:aaaa::1")), client(ip("2001:db8:1:2:ffff::9")));
        assert_ne!(client(ip("2001:db8:1:2::1")), client(ip("2001:db8:1:3::1")));
        assert_eq!(client(ip("::ffff:10.0.0.1")), ip("10.0.0.1"), "mapped IPv4 is IPv4");
        assert_ne!(client(ip("10.0.0.1")), client(ip("10.0.0.2")), "IPv4 by address");
    }

    /// The in-process rules, with time as a parameter (`t0` plus what a test says).
    #[test]
    fn the_budget_is_per_client_and_an_ipv6_64_is_one_client() {
        let (limits, t0) = (AuthLimits::new(3), Instant::now());
        for n in 1..=3 {
            // Three addresses of one /64: one budget.
            assert!(limits.local_check_ip(client(ip(&format!("2001:db8::{n}"))), t0).is_ok());
        }
        let refused = limits.local_check_ip(client(ip("2001:db8::ffff")), t0).expect_err("4th");
        assert_eq!(refused.retry_after, Duration::from_secs(300), "one request per 5 minutes");
        assert!(limits.local_check_ip(client(ip("2001:db8:0:1::1")), t0).is_ok(), "another /64");
        assert!(limits.local_check_ip(client(ip("10.0.0.2")), t0).is_ok(), "another client");
        let later = t0 + Duration::from_secs(300);
        assert!(limits.local_check_ip(client(ip("2001:db8::7")), later).is_ok(), "it refills");
    }

    #[test]
    fn a_strangers_failures_back_off_the_stranger_not_the_owner() {
        let (limits, t0) = (AuthLimits::new(1000), Instant::now());
        let (owner, stranger) = (client(ip("10.0.0.1")), client(ip("2001:db8::1")));
        let ann = "ann@example.com";
        for _ in 0..FREE_FAILURES {
            // Each attempt fails: it stays counted.
            assert!(limits.local_begin(ann, stranger, t0).is_ok());
        }
        // The same /64 is the same stranger.
        let first = limits.local_begin(ann, client(ip("2001:db8::2")), t0);
        assert_eq!(first.expect_err("backed off").retry_after, Duration::from_secs(1));
        assert!(limits.local_begin(ann, owner, t0).is_ok(), "the owner signs in");
        limits.local_end(ann, owner, true, t0);
        // The stranger's own wait doubles with each failure after it.
        let mut secs = Vec::new();
        for minute in 1..=3 {
            let at = t0 + Duration::from_secs(60 * minute);
            assert!(limits.local_begin(ann, stranger, at).is_ok(), "the wait is over");
            let wait = limits.local_begin(ann, stranger, at).expect_err("wait");
            secs.push(wait.retry_after.as_secs());
        }
        assert_eq!(secs, [2, 4, 8]);
        let at = t0 + Duration::from_secs(181);
        assert!(limits.local_begin(ann, stranger, at).is_err(), "still theirs");
        // Forgotten after 15 quiet minutes.
        let quiet = t0 + Duration::from_secs(180) + MAX_BACKOFF;
        assert!(limits.local_begin(ann, stranger, quiet).is_ok());
    }

    /// Attempts count when they start: of those in flight together only the free ones pass.
    /// One that succeeds clears its account's count and gives the client's back its own
    /// attempt; one that tried no password gives both back.
    #[test]
    fn attempts_count_when_they_start_and_end_as_they_went() {
        let (limits, t0) = (AuthLimits::new(1000), Instant::now());
        let (tab, ann) = (client(ip("10.0.0.1")), "ann@example.com");
        for _ in 0..FREE_FAILURES {
            assert!(limits.local_begin(ann, tab, t0).is_ok(), "in flight together");
        }
        assert!(limits.local_begin(ann, tab, t0).is_err(), "one more is not");
        limits.local_end(ann, tab, true, t0);
        assert!(limits.local_begin(ann, tab, t0).is_ok(), "a success cleared the account's");
        limits.local_end(ann, tab, false, t0);

        // An office signs many people in from one address, all day: successes never add up.
        let office = client(ip("192.0.2.1"));
        for n in 0..3 * CLIENT_FREE_FAILURES {
            let email = format!("user{n}@example.com");
            assert!(limits.local_begin(&email, office, t0).is_ok(), "login {n}");
            limits.local_end(&email, office, true, t0);
        }
        // Nor do attempts that tried no password (a busy hashing gate).
        for n in 0..3 * FREE_FAILURES {
            assert!(limits.local_begin(ann, office, t0).is_ok(), "attempt {n}");
            limits.local_end(ann, office, false, t0);
        }
        assert_eq!(limits.client_failures.len(), 1, "the tab's failure is all that is left");
    }

    /// An attempt the account's backoff refuses gives the client's count back as it was: the
    /// client may still try its other accounts.
    #[test]
    fn an_attempt_refused_by_its_account_leaves_the_client_as_it_was() {
        let (limits, t0) = (AuthLimits::new(1000), Instant::now());
        let (sprayer, ann) = (client(ip("192.0.2.7")), "ann@example.com");
        let secs = |s| t0 + Duration::from_secs(s);
        for at in [0, 0, 0, 0, 0, 1, 3] {
            assert!(limits.local_begin(ann, sprayer, secs(at)).is_ok(), "at {at} s");
        }
        for n in 0..CLIENT_FREE_FAILURES - 7 {
            assert!(limits.local_begin(&format!("u{n}@example.com"), sprayer, secs(3)).is_ok());
        }
        // Ann's count (7) waits 4 s from 3 s, the client's (20) only 1 s.
        let refused = limits.local_begin(ann, sprayer, secs(5)).expect_err("ann's backoff");
        assert_eq!(refused.retry_after, Duration::from_secs(2));
        assert!(limits.local_begin("bob@example.com", sprayer, secs(5)).is_ok());
    }

    #[test]
    fn spraying_many_accounts_backs_the_client_off_on_all_of_them() {
        let (limits, t0) = (AuthLimits::new(1000), Instant::now());
        let sprayer = client(ip("192.0.2.7"));
        for n in 0..CLIENT_FREE_FAILURES {
            let email = format!("user{n}@example.com");
            assert!(limits.local_begin(&email, sprayer, t0).is_ok(), "guess {n}");
        }
        let refused = limits.local_begin("fresh@example.com", sprayer, t0).expect_err("x");
        assert_eq!((refused.code, refused.retry_after), ("login_backoff", Duration::from_secs(1)));
        let neighbour = client(ip("192.0.2.8"));
        assert!(limits.local_begin("fresh@example.com", neighbour, t0).is_ok());
        let quiet = t0 + MAX_BACKOFF;
        assert!(limits.local_begin("fresh@example.com", sprayer, quiet).is_ok());
    }

    #[test]
    fn the_tables_forget_clients_that_no_longer_matter() {
        let (limits, t0) = (AuthLimits::new(100), Instant::now());
        for n in 0..5000u32 {
            let addr = IpAddr::from(n.to_be_bytes());
            assert!(limits.local_check_ip(addr, t0).is_ok());
            assert!(limits.local_begin("x@example.com", addr, t0).is_ok());
        }
        assert_eq!(limits.tracked(), 15_000, "each client's budget and failures");
        // Fifteen minutes on, the next keys sweep the old ones away.
        let later = t0 + MAX_BACKOFF;
        for n in 5000..7000u32 {
            let addr = IpAddr::from(n.to_be_bytes());
            assert!(limits.local_check_ip(addr, later).is_ok());
            assert!(limits.local_begin("x@example.com", addr, later).is_ok());
        }
        assert_eq!(limits.tracked(), 6_000, "only the new clients are kept");
    }

    /// Real time (a blocking task holds the permit): the refusal comes after the 2 s wait,
    /// which nothing here measures.
    #[tokio::test]
    async fn hashes_wait_for_a_permit_then_are_refused() {
        let gate = Arc::new(HashGate::new(1).expect("a hashing thread"));
        let started = Arc::new(tokio::sync::Notify::new());
        let release = Arc::new(std::sync::Barrier::new(2));
        let holder = {
            let (gate, started, release) = (gate.clone(), started.clone(), release.clone());
            tokio::spawn(async move {
                gate.run(move |_| {
                    started.notify_one();
                    release.wait();
                })
                .await
            })
        };
        started.notified().await;
        let refused = gate.run(|_| ()).await.expect_err("no permit within the wait");
        assert_eq!((refused.status.as_u16(), refused.code), (429, "auth_busy"));
        assert_eq!(refused.retry_after_secs, Some(1));
        tokio::task::spawn_blocking(move || release.wait()).await.expect("released");
        holder.await.expect("holder").expect("ran");
        assert!(gate.run(|_| 7).await.is_ok_and(|v| v == 7), "free again");
    }
}
