//! Who an anonymous client is, for the limits that keep one client from flooding a tenant or
//! the server: the address it connects from (through the operator's trusted proxies only),
//! grouped the way addresses are handed out, and the keyed limiters the transports share.
//!
//! - [`client_ip`]: the socket's peer, or — when the peer is one of `[server] trusted_proxies`
//!   — the right-most `X-Forwarded-For` address that is not (a client can prepend anything to
//!   that header; only what the operator's own proxies appended can be believed).
//! - [`client_group`]: an IPv4 address as is, an IPv6 address by its /64 — one subscriber is
//!   usually given a whole /64, so keying by full address would give an attacker 2^64 keys.
//! - [`KeyedRate`]: a GCRA budget per key (governor) that forgets idle keys now and then, so a
//!   spray of keys cannot grow it without bound.
//! - [`Slots`]: at most N concurrent holders per key (sockets per address), released on drop.
//!
//! These are per process. In a cluster each gateway node enforces them for the clients it
//! serves; a client spreading over nodes gets each node's budget (the load balancer's
//! affinity usually keeps it on one).

use std::{
    collections::HashMap,
    hash::Hash,
    net::{IpAddr, Ipv6Addr},
    num::NonZeroU32,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use governor::{
    DefaultKeyedRateLimiter, Quota, RateLimiter,
    clock::{Clock, DefaultClock},
};
use parking_lot::Mutex;

/// The client behind a request: `peer`, unless `peer` is a trusted proxy, in which case the
/// right-most address of `forwarded_for` that is not itself a trusted proxy (when the header
/// names none that parses, the proxy is the client). `None` only when there is no peer.
pub fn client_ip(
    peer: Option<IpAddr>,
    forwarded_for: Option<&str>,
    trusted: &[ipnet::IpNet],
) -> Option<IpAddr> {
    let peer = canonical(peer?);
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let hops = forwarded_for.unwrap_or_default().rsplit(',');
    for hop in hops.map(str::trim).filter(|h| !h.is_empty()) {
        let Ok(ip) = hop.parse::<IpAddr>().map(canonical) else {
            // Garbage in the chain: whatever is left of it cannot be trusted either.
            break;
        };
        if !is_trusted(&ip) {
            return Some(ip);
        }
    }
    Some(peer)
}

/// Every `X-Forwarded-For` line of a request, in order, as one list: a proxy may append a line
/// of its own rather than extend the client's (HAProxy does), and the first line alone is then
/// whatever the client wrote.
pub fn forwarded_for<'a>(lines: impl Iterator<Item = &'a str>) -> Option<String> {
    let joined = lines.collect::<Vec<_>>().join(",");
    (!joined.is_empty()).then_some(joined)
}

/// The key a client's limits are counted under: IPv4 as is, IPv6 by its /64.
pub fn client_group(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(bits))
        }
        v4 => v4,
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:1.2.3.4`, what a dual-stack socket reports) as the
/// IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// A rate per key: `per_minute` sustained, `burst` at once.
#[derive(Debug)]
pub struct KeyedRate<K: Hash + Eq + Clone> {
    limiter: DefaultKeyedRateLimiter<K>,
    /// Checks since the last sweep of idle keys.
    checks: AtomicU64,
}

/// Checks between two sweeps of keys whose budget is full again (they hold no information).
const SWEEP_EVERY: u64 = 4096;

impl<K: Hash + Eq + Clone> KeyedRate<K> {
    pub fn per_minute(per_minute: u32, burst: u32) -> Self {
        let per_minute = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        Self {
            limiter: RateLimiter::keyed(Quota::per_minute(per_minute).allow_burst(burst)),
            checks: AtomicU64::new(0),
        }
    }

    /// Takes one from `key`'s budget, or says how long until it may try again.
    pub fn check(&self, key: &K) -> Result<(), Duration> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
        self.limiter.check_key(key).map_err(|not_until| {
            not_until.wait_time_from(DefaultClock::default().now()).max(Duration::from_millis(1))
        })
    }

    /// Keys tracked now (a test and a metric can see the sweep work).
    pub fn len(&self) -> usize {
        self.limiter.len()
    }

    pub fn is_empty(&self) -> bool {
        self.limiter.is_empty()
    }
}

/// At most `max` concurrent holders per key.
#[derive(Debug)]
pub struct Slots<K: Hash + Eq + Clone> {
    max: usize,
    /// Only keys with a holder are present: the map's size is what is held now.
    held: Mutex<HashMap<K, usize>>,
}

impl<K: Hash + Eq + Clone> Slots<K> {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self { max, held: Mutex::new(HashMap::new()) })
    }

    /// A slot for `key` until the guard is dropped; `None` when `key` holds `max` already.
    pub fn acquire(self: &Arc<Self>, key: K) -> Option<Slot<K>> {
        let mut held = self.held.lock();
        let n = held.entry(key.clone()).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(Slot { slots: self.clone(), key })
    }

    /// Slots `key` holds now.
    pub fn held(&self, key: &K) -> usize {
        self.held.lock().get(key).copied().unwrap_or(0)
    }
}

/// One held slot of [`Slots`].
#[derive(Debug)]
pub struct Slot<K: Hash + Eq + Clone> {
    slots: Arc<Slots<K>>,
    key: K,
}

impl<K: Hash + Eq + Clone> Drop for Slot<K> {
    fn drop(&mut self) {
        let mut held = self.slots.held.lock();
        if let Some(n) = held.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn ipv6_clients_are_grouped_by_their_64_and_mapped_ipv4_is_ipv4() {
        assert_eq!(client_group(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(client_group(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")), ip("2001:db8:1:2::"));
        assert_ne!(client_group(ip("2001:db8:1:3::1")), client_group(ip("2001:db8:1:2::1")));
        assert_eq!(client_group(ip("203.0.113.9")), ip("203.0.113.9"));
        assert_eq!(client_group(ip("::ffff:203.0.113.9")), ip("203.0.113.9"));
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().expect("net")];
        let xff = Some("1.1.1.1, 203.0.113.7, 10.0.0.3");
        // A client that is not a proxy: its own address, whatever it claims.
        assert_eq!(client_ip(Some(ip("198.51.100.1")), xff, &trusted), Some(ip("198.51.100.1")));
        // Through trusted proxies: the right-most address they did not add themselves; the
        // left-most entry (what the client wrote) is never reached.
        assert_eq!(client_ip(Some(ip("10.0.0.2")), xff, &trusted), Some(ip("203.0.113.7")));
        // A proxy with no header, or garbage: the proxy itself.
        assert_eq!(client_ip(Some(ip("10.0.0.2")), None, &trusted), Some(ip("10.0.0.2")));
        assert_eq!(client_ip(Some(ip("10.0.0.2")), Some("junk"), &trusted), Some(ip("10.0.0.2")));
        assert_eq!(client_ip(None, xff, &trusted), None);
        // Two header lines: the client's own, then the proxy's. Both count, in order.
        let lines = forwarded_for(["1.1.1.1", "203.0.113.8"].into_iter());
        assert_eq!(
            client_ip(Some(ip("10.0.0.2")), lines.as_deref(), &trusted),
            Some(ip("203.0.113.8"))
        );
        assert_eq!(forwarded_for(std::iter::empty()), None);
    }

    #[test]
    fn slots_are_counted_per_key_and_freed_on_drop() {
        let slots = Slots::new(2);
        let a1 = slots.acquire("a").expect("first");
        let _a2 = slots.acquire("a").expect("second");
        assert!(slots.acquire("a").is_none(), "a third is refused");
        assert!(slots.acquire("b").is_some(), "another key is not affected");
        drop(a1);
        assert_eq!(slots.held(&"a"), 1);
        assert!(slots.acquire("a").is_some());
    }

    #[test]
    fn a_rate_refuses_past_its_burst_and_says_when_to_return() {
        let rate = KeyedRate::per_minute(60, 3);
        for _ in 0..3 {
            rate.check(&"k").expect("within the burst");
        }
        let wait = rate.check(&"k").expect_err("past the burst");
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1), "{wait:?}");
        rate.check(&"other").expect("keys are apart");
    }
}
