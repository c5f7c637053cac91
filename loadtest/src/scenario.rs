//! The scenarios, and what every simulated visitor is told to do: the [`Plan`] and the
//! [`Endpoint`]s, which the parent sends to each worker process as JSON.
//!
//! - `idle`: N conversations opened and held; memory per connection, connect rate/latency.
//! - `chat`: each conversation sends a message every `interval` (± jitter), open loop (the
//!   timer does not wait for replies) with at most `max_in_flight` unanswered; latencies and
//!   throughput.
//! - `burst`: every conversation sends at the same instant, K rounds, each drained before the
//!   next; time to drain.
//! - `reconnect`: chat, and after a warm-up a share of the sockets is dropped abruptly (TCP
//!   close, no WebSocket close) and resumes: hello with `last_seq`, then the unconfirmed
//!   messages again with the same `client_msg_id`.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    Idle,
    Chat,
    Burst,
    Reconnect,
}

impl Scenario {
    pub const ALL: [Scenario; 4] =
        [Scenario::Idle, Scenario::Chat, Scenario::Burst, Scenario::Reconnect];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Idle => "idle",
            Scenario::Chat => "chat",
            Scenario::Burst => "burst",
            Scenario::Reconnect => "reconnect",
        }
    }
}

/// `--scenario` values: one scenario or `all`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ScenarioArg {
    Idle,
    Chat,
    Burst,
    Reconnect,
    All,
}

/// The scenarios to run, in the order given, each once.
pub fn expand(args: &[ScenarioArg]) -> Vec<Scenario> {
    let mut out = Vec::new();
    for a in args {
        let add: &[Scenario] = match a {
            ScenarioArg::Idle => &[Scenario::Idle],
            ScenarioArg::Chat => &[Scenario::Chat],
            ScenarioArg::Burst => &[Scenario::Burst],
            ScenarioArg::Reconnect => &[Scenario::Reconnect],
            ScenarioArg::All => &Scenario::ALL,
        };
        for s in add {
            if !out.contains(s) {
                out.push(*s);
            }
        }
    }
    out
}

/// How a target speaks and what it does on a reconnect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// Parla's widget protocol v1; resume by `hello` with `conversation_id`, `resume_token`,
    /// `last_seq`, which must work (Parla).
    WidgetResume,
    /// The same frames from the raw baseline, which has no store: a reconnect gets a fresh
    /// conversation and the client resends every unanswered message.
    WidgetFresh,
    /// Socket.IO; resume by connection state recovery (`40{"pid","offset"}`) when the server
    /// has it, else a fresh session as with the raw baseline.
    SocketIo,
}

/// One server address the clients connect to; the i-th client uses endpoint i mod len, and a
/// reconnect moves to the next one (a cluster must resume on any node).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Endpoint {
    pub addr: SocketAddr,
    /// The full `ws://` URL for the handshake.
    pub url: String,
}

/// What every client of a run does.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    pub scenario: Scenario,
    pub protocol: Protocol,
    pub endpoints: Vec<Endpoint>,
    pub bot: String,
    /// The message text; `{n}` becomes a number unique to the message.
    pub text: String,
    /// Chat: time between two messages of one conversation, in ms; 0 = closed loop.
    pub interval_ms: f64,
    /// Chat: each interval is drawn uniformly within ± this fraction.
    pub jitter: f64,
    /// Unanswered messages a conversation may have before its timer skips a send.
    pub max_in_flight: usize,
    /// Reconnect: share of the sockets dropped.
    pub drop_fraction: f64,
    /// Reconnect: time from the start to the drop.
    pub warmup_ms: u64,
    /// Reconnect: each dropped socket waits a random time up to this before reconnecting.
    pub reconnect_spread_ms: u64,
    /// After the stop (and in burst, per round): how long replies may still take.
    pub drain_ms: u64,
    /// Connect + handshake + `welcome`, per attempt.
    pub connect_timeout_ms: u64,
    /// Source addresses: at most this many sockets bind to one address of 127.0.0.0/8.
    pub per_source: usize,
}

impl Plan {
    /// Whether client `idx` is one of the sockets the reconnect scenario drops: spread evenly
    /// over the indices, so any slice of clients (a worker's) drops its share.
    pub fn drops(&self, idx: usize) -> bool {
        if self.scenario != Scenario::Reconnect || self.drop_fraction <= 0.0 {
            return false;
        }
        let f = self.drop_fraction.min(1.0);
        ((idx + 1) as f64 * f).floor() > (idx as f64 * f).floor()
    }

    /// The loopback source address of client `idx`: 127.0.1.1, 127.0.1.2, … each taking
    /// `per_source` clients, so no address runs out of ephemeral ports (~28k per address with
    /// a bind before connect).
    pub fn source(&self, idx: usize) -> std::net::Ipv4Addr {
        let n = (idx / self.per_source.max(1)) as u32;
        let third = 1 + (n / 250) % 254;
        let fourth = 1 + n % 250;
        std::net::Ipv4Addr::new(127, 0, third as u8, fourth as u8)
    }
}

/// Parses `ws://host:port/path` (loopback only: the harness never loads another machine).
pub fn endpoint(url: &str) -> anyhow::Result<Endpoint> {
    use std::net::ToSocketAddrs;
    let rest = url
        .strip_prefix("ws://")
        .ok_or_else(|| anyhow::anyhow!("{url}: only ws:// URLs are supported"))?;
    let hostport = rest.split('/').next().unwrap_or(rest);
    let addr = hostport
        .to_socket_addrs()
        .map_err(|e| anyhow::anyhow!("{url}: {e}"))?
        .next()
        .ok_or_else(|| anyhow::anyhow!("{url}: no address"))?;
    if !addr.ip().is_loopback() {
        anyhow::bail!("{url}: not a loopback address; the harness only loads this machine");
    }
    let url = if rest.contains('/') { url.to_owned() } else { format!("{url}/") };
    Ok(Endpoint { addr, url })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(scenario: Scenario, fraction: f64) -> Plan {
        Plan {
            scenario,
            protocol: Protocol::WidgetResume,
            endpoints: vec![],
            bot: "demo".into(),
            text: "hi".into(),
            interval_ms: 1000.0,
            jitter: 0.2,
            max_in_flight: 4,
            drop_fraction: fraction,
            warmup_ms: 0,
            reconnect_spread_ms: 0,
            drain_ms: 0,
            connect_timeout_ms: 0,
            per_source: 2,
        }
    }

    #[test]
    fn drops_the_share_asked_evenly() {
        let p = plan(Scenario::Reconnect, 0.2);
        let dropped: Vec<usize> = (0..20).filter(|&i| p.drops(i)).collect();
        assert_eq!(dropped, [4, 9, 14, 19]);
        assert_eq!((0..1000).filter(|&i| p.drops(i)).count(), 200);
        assert!(!(0..100).any(|i| plan(Scenario::Chat, 0.2).drops(i)));
    }

    #[test]
    fn spreads_sources_over_loopback() {
        let p = plan(Scenario::Chat, 0.0);
        assert_eq!(p.source(0), std::net::Ipv4Addr::new(127, 0, 1, 1));
        assert_eq!(p.source(1), std::net::Ipv4Addr::new(127, 0, 1, 1));
        assert_eq!(p.source(2), std::net::Ipv4Addr::new(127, 0, 1, 2));
        assert_eq!(p.source(500), std::net::Ipv4Addr::new(127, 0, 2, 1));
    }

    #[test]
    fn urls_must_be_loopback() {
        assert_eq!(endpoint("ws://127.0.0.1:80/v1/widget/ws").unwrap().addr.port(), 80);
        assert_eq!(endpoint("ws://127.0.0.1:81").unwrap().url, "ws://127.0.0.1:81/");
        assert!(endpoint("ws://10.0.0.1:80/").is_err());
        assert!(endpoint("http://127.0.0.1:80/").is_err());
    }

    #[test]
    fn all_expands_once() {
        assert_eq!(expand(&[ScenarioArg::Chat, ScenarioArg::All]).len(), 4);
        assert_eq!(expand(&[ScenarioArg::Chat])[0], Scenario::Chat);
    }
}
