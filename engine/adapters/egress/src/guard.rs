//! Outbound HTTP: who may be reached, and how, when the target is one a tenant chose (its LLM
//! endpoint, its intent webhooks, the pages it asks to scrape) or one the operator configured
//! (the server's LLM, the embeddings API, Qdrant).
//!
//! # The rules for a tenant's targets ([`TenantEgress`])
//! - **No redirects.** The HTTP client never follows one: the URL was checked, and a redirect
//!   would send the request — a prompt, an API key, a webhook's payload — to an address nobody
//!   checked. The scraper, whose job includes following a site's redirects, follows them
//!   itself, checking each hop like a new URL.
//! - **The address checked is the address connected to.** A host name is resolved once, by
//!   [`TenantEgress`]'s resolver, which refuses the name when any of its addresses is not
//!   allowed and hands the connector exactly the addresses it checked: a name answering a
//!   public address to a check and a private one to the connection (DNS rebinding) has nothing
//!   to slip through. IP literals never reach a resolver (the connector parses them), so
//!   [`TenantEgress::check_url`] judges them before the call.
//! - **No proxy from the environment**: through a proxy the connection goes to the proxy, and
//!   the check would judge the wrong address.
//!
//! # Address classes ([`classify`])
//! - [`Reach::Never`]: "this network" (`0.0.0.0/8` — a connection to `0.0.0.0` reaches the
//!   local host on Linux), link-local (`169.254/16`, `fe80::/10`: cloud metadata services),
//!   multicast, broadcast and reserved (`240/4`), `::`, and IPv6 outside the global unicast
//!   `2000::/3` that is not listed below. Refused even when internal targets are allowed: no
//!   LLM, webhook or web page lives there.
//! - [`Reach::Internal`]: loopback, RFC 1918, CGNAT `100.64/10`, `192.0.0/24`, benchmarking
//!   `198.18/15`, documentation ranges, the 6to4 relay `192.88.99/24`, ULA `fc00::/7`,
//!   site-local `fec0::/10`, discard `100::/64`, `2001::/23` (Teredo, benchmarking, ORCHID),
//!   `2001:db8::/32` and `3fff::/20`; and IPv6 forms that carry an IPv4 address (mapped
//!   `::ffff:0:0/96`, compatible `::/96`, NAT64 `64:ff9b::/96` and `64:ff9b:1::/48`, 6to4
//!   `2002::/16`), at least as restricted as the IPv4 address inside. Allowed only when the
//!   operator says so (`llm.tenant_endpoints_allow_private`,
//!   `engine.webhook_allow_private_targets`, `knowledge.scrape_allow_private_targets`: tests on
//!   loopback, trusted networks); a tenant cannot set those.
//! - [`Reach::Public`]: everything else.
//!
//! # The operator's endpoints ([`operator_client`])
//! They may be anywhere (Qdrant or a model server on a private network is normal) and may use
//! the environment's proxy, but follow no redirect either: a redirect could carry the API key
//! (Qdrant's `api-key` header is not one the client strips on a cross-host redirect) elsewhere.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
};

use futures_util::future::BoxFuture;
use reqwest::Url;

/// How far an address is from the public Internet; ordered, so the stricter of two is the
/// larger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reach {
    /// Globally routable.
    Public,
    /// The operator's network or the local host: reachable only with the operator's leave.
    Internal,
    /// Never a legitimate target.
    Never,
}

/// The class of `ip` (see the module documentation).
pub fn classify(ip: IpAddr) -> Reach {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Reach {
    let [a, b, c, _] = ip.octets();
    let never = a == 0 // "this network"; 0.0.0.0 reaches the local host
        || (a == 169 && b == 254) // link-local: cloud metadata
        || a >= 224; // multicast 224/4, reserved 240/4, broadcast
    let internal = a == 127
        || a == 10
        || (a == 172 && (16..32).contains(&b))
        || (a == 192 && b == 168)
        || (a == 100 && (64..128).contains(&b)) // CGNAT
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2) // documentation
        || (a == 198 && b == 51 && c == 100) // documentation
        || (a == 203 && b == 0 && c == 113) // documentation
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || (a == 192 && b == 88 && c == 99); // 6to4 relay anycast
    if never {
        Reach::Never
    } else if internal {
        Reach::Internal
    } else {
        Reach::Public
    }
}

fn classify_v6(ip: Ipv6Addr) -> Reach {
    let s = ip.segments();
    let embedded = |hi: u16, lo: u16| {
        Ipv4Addr::new((hi >> 8) as u8, (hi & 0xff) as u8, (lo >> 8) as u8, (lo & 0xff) as u8)
    };
    // IPv4-mapped: on a dual-stack socket it *is* that IPv4 address.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    if ip.is_unspecified() {
        return Reach::Never;
    }
    if ip.is_loopback() {
        return Reach::Internal;
    }
    let carries_v4 = |v4: Ipv4Addr| classify_v4(v4).max(Reach::Internal);
    match s {
        // IPv4-compatible (deprecated).
        [0, 0, 0, 0, 0, 0, hi, lo] => return carries_v4(embedded(hi, lo)),
        // NAT64, well-known prefix.
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => return carries_v4(embedded(hi, lo)),
        // NAT64, local-use prefix.
        [0x64, 0xff9b, 0x1, ..] => return Reach::Internal,
        // 6to4: the IPv4 address follows the prefix.
        [0x2002, hi, lo, ..] => return carries_v4(embedded(hi, lo)),
        _ => {}
    }
    let first = s[0];
    if first & 0xffc0 == 0xfe80 || first & 0xff00 == 0xff00 {
        return Reach::Never; // link-local, multicast
    }
    let internal = first & 0xfe00 == 0xfc00 // unique local
        || first & 0xffc0 == 0xfec0 // site-local (deprecated)
        || (s[0] == 0x100 && s[1] == 0 && s[2] == 0 && s[3] == 0) // discard-only
        || (first == 0x2001 && s[1] < 0x200) // 2001::/23: Teredo, benchmarking, ORCHID
        || (first == 0x2001 && s[1] == 0xdb8) // documentation
        || first & 0xfff0 == 0x3ff0; // documentation 3fff::/20
    if internal {
        Reach::Internal
    } else if first & 0xe000 == 0x2000 {
        Reach::Public // global unicast 2000::/3
    } else {
        Reach::Never // not allocated for unicast
    }
}

/// The message a refused target gets (for people; never the address it resolved to, which
/// would map the operator's network for whoever asks).
fn not_public(host: &str) -> String {
    format!("{host} is not a public address")
}

/// A refusal carried through the HTTP client's error chain, so it can be told apart from a
/// network failure ([`refusal`]).
#[derive(Debug)]
struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// The refusal inside `error`'s chain of causes, if the call failed because the target is not
/// allowed (rather than on the network): such a failure is final, never worth a retry.
pub fn refusal(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if let Some(refused) = e.downcast_ref::<Refused>() {
            return Some(refused.0.clone());
        }
        cause = e.source();
    }
    None
}

/// What a failed call to a tenant's target says: the refusal if there was one, else the
/// network error without its URL (which may carry credentials in its query).
pub fn describe(error: reqwest::Error) -> String {
    refusal(&error).unwrap_or_else(|| error.without_url().to_string())
}

/// Looks up a host's addresses (the system resolver; tests substitute their own).
type Lookup = Arc<dyn Fn(String) -> LookupFuture + Send + Sync>;
type LookupFuture = BoxFuture<'static, std::io::Result<Vec<IpAddr>>>;

/// The rules for targets a tenant chose (see the module documentation).
#[derive(Clone)]
pub struct TenantEgress {
    allow_internal: bool,
    lookup: Lookup,
}

impl std::fmt::Debug for TenantEgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantEgress").field("allow_internal", &self.allow_internal).finish()
    }
}

impl TenantEgress {
    /// `allow_internal`: the operator's leave to reach [`Reach::Internal`] addresses.
    pub fn new(allow_internal: bool) -> Self {
        let lookup: Lookup = Arc::new(|host: String| -> LookupFuture {
            Box::pin(async move {
                let found = tokio::net::lookup_host((host.as_str(), 0)).await?;
                Ok(found.map(|a| a.ip()).collect())
            })
        });
        Self { allow_internal, lookup }
    }

    /// Whether an address of this class may be reached.
    pub fn allows(&self, ip: IpAddr) -> bool {
        match classify(ip) {
            Reach::Public => true,
            Reach::Internal => self.allow_internal,
            Reach::Never => false,
        }
    }

    /// An HTTP client builder that follows no redirect, uses no proxy and connects only to
    /// addresses it resolved and allowed. Finish it with the caller's timeouts.
    pub fn client(&self) -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(self.clone()))
    }

    /// Parses `url` and refuses it unless it is http(s) with a host, and — when that host is
    /// an IP literal, which no resolver sees — an allowed address. Host names are judged when
    /// the client resolves them.
    pub fn check_url(&self, url: &str) -> Result<Url, String> {
        let parsed = Url::parse(url).map_err(|e| format!("bad URL: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err("not http(s)".into());
        }
        let host = parsed.host_str().filter(|h| !h.is_empty()).ok_or("no host")?;
        // The parser has normalised numeric forms (`2130706433`, `0x7f.1`) to dotted quads and
        // bracketed IPv6: a host that parses as an address is a literal.
        let literal = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>();
        if let Ok(ip) = literal
            && !self.allows(ip)
        {
            return Err(not_public(host));
        }
        Ok(parsed)
    }

    /// Resolves `host` and returns its addresses, or the refusal when any is not allowed
    /// (a name mixing public and internal answers is refused whole).
    async fn vetted(&self, host: String) -> Result<Vec<IpAddr>, String> {
        let found =
            (self.lookup)(host.clone()).await.map_err(|e| format!("cannot resolve {host}: {e}"))?;
        if found.is_empty() {
            return Err(format!("cannot resolve {host}"));
        }
        if found.iter().any(|ip| !self.allows(*ip)) {
            return Err(not_public(&host));
        }
        Ok(found)
    }
}

impl reqwest::dns::Resolve for TenantEgress {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let (this, host) = (self.clone(), name.as_str().to_owned());
        Box::pin(async move {
            match this.vetted(host).await {
                // Port 0: the connector puts the URL's port in.
                Ok(found) => {
                    let addrs = found.into_iter().map(|ip| SocketAddr::new(ip, 0));
                    Ok(Box::new(addrs) as reqwest::dns::Addrs)
                }
                Err(reason) => {
                    Err(Box::new(Refused(reason)) as Box<dyn std::error::Error + Send + Sync>)
                }
            }
        })
    }
}

/// An HTTP client builder for the operator's own endpoints: any address, the environment's
/// proxy if any, no redirect. Finish it with the caller's timeouts.
pub fn operator_client() -> reqwest::ClientBuilder {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn reach(ip: &str) -> Reach {
        classify(ip.parse().unwrap_or_else(|_| panic!("{ip} is an address")))
    }

    #[test]
    fn addresses_fall_in_their_class() {
        for never in [
            "0.0.0.0",
            "0.1.2.3",
            "169.254.169.254",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "fe80::1",
            "febf::1",
            "ff02::1",
            "::ffff:169.254.169.254",
            "::ffff:0.0.0.0",
            "64:ff9b::a9fe:a9fe", // NAT64 of 169.254.169.254
            "2002:a9fe:a9fe::1",  // 6to4 of 169.254.169.254
            "::a9fe:a9fe",        // IPv4-compatible 169.254.169.254
            "4000::1",            // outside 2000::/3
            "5f00::1",
        ] {
            assert_eq!(reach(never), Reach::Never, "{never}");
        }
        for internal in [
            "127.0.0.1",
            "127.255.255.254",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "100.127.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.9",
            "198.18.0.1",
            "198.19.255.255",
            "192.88.99.1",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fec0::1",
            "100::1",
            "2001::1",     // Teredo
            "2001:2::1",   // benchmarking
            "2001:db8::1", // documentation
            "3fff::1",     // documentation
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::808:808", // NAT64 of a public address: still not direct
            "64:ff9b::7f00:1",  // NAT64 of loopback
            "64:ff9b:1::1",
            "2002:7f00:1::1",  // 6to4 of loopback
            "2002:808:808::1", // 6to4 of a public address
            "::7f00:1",        // IPv4-compatible loopback
        ] {
            assert_eq!(reach(internal), Reach::Internal, "{internal}");
        }
        for public in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "198.20.0.1",
            "192.0.1.1",
            "223.255.255.255",
            "::ffff:8.8.8.8",
            "2001:4860:4860::8888",
            "2a00:1450::1",
            "2001:200::1", // just past 2001::/23
        ] {
            assert_eq!(reach(public), Reach::Public, "{public}");
        }
    }

    #[test]
    fn the_operator_allowance_opens_internal_addresses_only() {
        let strict = TenantEgress::new(false);
        let lenient = TenantEgress::new(true);
        for (ip, strict_ok, lenient_ok) in [
            ("8.8.8.8", true, true),
            ("127.0.0.1", false, true),
            ("::ffff:192.168.0.1", false, true),
            ("0.0.0.0", false, false),
            ("169.254.169.254", false, false),
            ("fe80::1", false, false),
        ] {
            let ip: IpAddr = ip.parse().expect("ip");
            assert_eq!((strict.allows(ip), lenient.allows(ip)), (strict_ok, lenient_ok), "{ip}");
        }
    }

    #[test]
    fn ip_literals_are_judged_before_the_call() {
        let strict = TenantEgress::new(false);
        for bad in [
            "http://127.0.0.1:8080/",
            "http://[::1]/",
            "http://[::ffff:7f00:1]/",
            "http://2130706433/", // 127.0.0.1 in decimal: the URL parser normalises it
            "http://0x7f.1/",
            "http://0/",
            "http://[64:ff9b::a9fe:a9fe]/",
            "ftp://example.com/",
            "file:///etc/passwd",
        ] {
            assert!(strict.check_url(bad).is_err(), "{bad}");
        }
        assert!(strict.check_url("https://example.com/v1").is_ok(), "names wait for the resolver");
        assert!(strict.check_url("http://8.8.8.8/").is_ok());
        assert!(TenantEgress::new(true).check_url("http://127.0.0.1:1/").is_ok());
        assert!(TenantEgress::new(true).check_url("http://0.0.0.0:1/").is_err());
    }

    /// A resolver answering `answer` for every name, counting its lookups.
    fn egress_with(allow_internal: bool, answer: IpAddr) -> (TenantEgress, Arc<AtomicUsize>) {
        let lookups = Arc::new(AtomicUsize::new(0));
        let counter = lookups.clone();
        let lookup: Lookup = Arc::new(move |_host: String| -> LookupFuture {
            counter.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move { Ok(vec![answer]) })
        });
        (TenantEgress { allow_internal, lookup }, lookups)
    }

    /// A listener answering every connection with `200 OK`; returns its port and how many
    /// connections it accepted.
    async fn listener() -> (u16, Arc<AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = socket.local_addr().expect("addr").port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = socket.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let mut buf = [0u8; 1024];
                let _ = stream.read(&mut buf).await;
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
            }
        });
        (port, accepted)
    }

    #[tokio::test]
    async fn a_name_is_resolved_once_and_the_connection_goes_where_the_check_looked() {
        let (port, accepted) = listener().await;
        // "rebind.invalid" exists in no DNS: reaching the listener proves the connection used
        // the vetted answer, and the count that no other lookup happened.
        let url = format!("http://rebind.invalid:{port}/");
        let (allowed, lookups) = egress_with(true, "127.0.0.1".parse().expect("ip"));
        let client = allowed.client().build().expect("client");
        let response = client.get(&url).send().await.expect("reaches the listener");
        assert_eq!(response.status(), 200);
        assert_eq!(lookups.load(Ordering::SeqCst), 1, "resolved once");
        assert_eq!(accepted.load(Ordering::SeqCst), 1);

        // Without the operator's leave the same answer is refused at connection time: the
        // listener sees nothing, and the refusal is told apart from a network error.
        let (strict, lookups) = egress_with(false, "127.0.0.1".parse().expect("ip"));
        let client = strict.client().build().expect("client");
        let error = client.get(&url).send().await.expect_err("refused");
        assert_eq!(lookups.load(Ordering::SeqCst), 1);
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "no connection was made");
        assert_eq!(describe(error), "rebind.invalid is not a public address");

        // A link-local answer is refused even with the leave.
        let (lenient, _) = egress_with(true, "169.254.169.254".parse().expect("ip"));
        let client = lenient.client().build().expect("client");
        let error = client.get(&url).send().await.expect_err("refused");
        assert!(refusal(&error).is_some(), "{error:?}");
    }

    #[tokio::test]
    async fn redirects_are_not_followed() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (elsewhere, accepted) = listener().await;
        let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = socket.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = socket.accept().await {
                let mut buf = [0u8; 1024];
                let _ = stream.read(&mut buf).await;
                let answer = format!(
                    "HTTP/1.1 307 Temporary Redirect\r\nlocation: http://127.0.0.1:{elsewhere}/\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            }
        });
        let url = format!("http://127.0.0.1:{port}/");
        for client in [TenantEgress::new(true).client(), operator_client()] {
            let response = client.build().expect("client").post(&url).send().await.expect("answer");
            assert_eq!(response.status(), 307, "handed back, not followed");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 0, "the redirect target saw no request");
    }
}
