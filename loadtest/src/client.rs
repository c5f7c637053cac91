//! One simulated visitor: a socket bound to its own loopback source address, the handshake
//! (widget `hello` → `welcome`, or Socket.IO `40` → `40{sid,pid}`), then the scenario —
//! messages on a timer or on a burst signal, drops and resumes — with every frame fed to the
//! [`ConversationCheck`] and every latency sampled.
//!
//! A visitor is one tokio task: it owns its socket and its bookkeeping, reads every frame
//! (so heartbeats are always answered) and watches the worker's [`Phase`]. It reports to
//! the worker over a channel and, in batches, into the worker's shared [`WorkerResult`].
//!
//! How replies are matched to messages: a target answers the messages of a conversation in
//! order, so the i-th reply (`stream_end`, or a bot `message` for a reply that finished
//! while the socket was away) belongs to the oldest echoed message still waiting for one. A
//! reply with none waiting is the greeting (once per conversation, where the target greets)
//! or a reply too many (`extra_replies`). A stream must end (`stream_end`) or be stored
//! otherwise (its reply arriving as a bot `message`) on the socket that saw it start, else it
//! is `unfinished_streams`; a reconnect drops the streams of the old socket, as the protocol
//! tells clients to.

use std::{
    collections::{HashMap, VecDeque},
    net::{Ipv4Addr, SocketAddr},
    sync::{Arc, Mutex},
    time::Duration,
};

use futures_util::{SinkExt, StreamExt};
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::Deserialize;
use serde_json::json;
use tokio::{
    net::{TcpSocket, TcpStream},
    sync::{mpsc, watch},
    time::{Instant, sleep, sleep_until},
};
use tokio_tungstenite::{
    WebSocketStream,
    tungstenite::{self, Message, protocol::WebSocketConfig},
};

use crate::{
    check::{ConversationCheck, Verdict},
    report::{Counters, WorkerResult},
    scenario::{Endpoint, Plan, Protocol, Scenario},
    socketio::{self, Packet},
};

/// Attempts a reconnect makes (with doubling back-off from 100 ms) before it gives up.
pub const RECONNECT_ATTEMPTS: u32 = 5;

/// How long a resumed socket waits for the replay to reach the `welcome`'s `last_seq` before
/// it resends its outbox anyway (the checker counts whatever the replay missed).
const REPLAY_PATIENCE: Duration = Duration::from_secs(5);

/// Latency samples a visitor buffers before it takes the worker's lock to record them: few
/// enough that 15,000 visitors' buffers stay small (24 bytes a sample), enough that the lock
/// is taken once per ~20 messages.
const SAMPLE_BATCH: usize = 64;

/// The per-socket WebSocket settings. tungstenite allocates the read buffer eagerly (128 KiB
/// by default): at 15,000 sockets per worker that would be 2 GB of buffers for frames of a
/// few hundred bytes, so 4 KiB.
pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0)
}

/// Where a worker is in its scenario; visitors follow it through a watch channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Ramping up: connect, say hello, hold.
    Connecting,
    /// The measured window: the scenario runs (chat timers, drops, or the idle hold).
    Running,
    /// Burst round n: send one message now.
    Round(u32),
    /// Stop sending, drain the replies, close.
    Stop,
}

/// What a visitor tells its worker.
#[derive(Debug)]
pub enum ConnEvent {
    Connected,
    Failed,
    RoundDone { round: u32, at: Instant },
}

/// What the visitors of one worker share.
#[derive(Debug)]
pub struct Shared {
    pub plan: Plan,
    pub phase: watch::Receiver<Phase>,
    /// Unbounded on purpose: each visitor sends at most one event per round plus one for its
    /// connect, and the worker must never block a visitor that is draining after a stop.
    pub events: mpsc::UnboundedSender<ConnEvent>,
    pub result: Mutex<WorkerResult>,
}

/// What is needed to resume: the widget's conversation id and resume token, or Socket.IO's
/// sid, pid and last packet offset.
#[derive(Debug, Clone)]
pub struct Session {
    pub conversation_id: String,
    pub resume_token: String,
    pub offset: Option<String>,
}

/// The `welcome` (or Socket.IO connect reply), as far as the harness cares.
#[derive(Debug, Clone)]
pub struct Welcome {
    pub conversation_id: String,
    pub resume_token: String,
    pub last_seq: u64,
    /// The server took up the conversation the client asked to resume.
    pub resumed: bool,
}

/// A frame from the server, decoded into what the checker and the bookkeeping need.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    Stored {
        seq: u64,
        user: bool,
        client_msg_id: Option<String>,
    },
    StreamStart {
        stream_id: String,
    },
    Token {
        stream_id: String,
        bytes: usize,
    },
    StreamEnd {
        stream_id: String,
        seq: u64,
        text_bytes: usize,
    },
    Error {
        code: String,
    },
    /// Socket.IO ping: answer with a pong.
    Ping,
    Malformed,
    Other,
}

/// The fields of every widget frame the harness reads; the rest are ignored, as the
/// protocol asks of clients.
#[derive(Debug, Default, Deserialize)]
struct Wire {
    #[serde(rename = "type", default)]
    kind: String,
    seq: Option<u64>,
    sender: Option<String>,
    client_msg_id: Option<String>,
    stream_id: Option<String>,
    delta: Option<String>,
    text: Option<String>,
    conversation_id: Option<String>,
    resume_token: Option<String>,
    last_seq: Option<u64>,
    code: Option<String>,
}

impl Wire {
    fn inbound(self) -> Inbound {
        match self.kind.as_str() {
            "message" => match self.seq {
                Some(seq) => Inbound::Stored {
                    seq,
                    user: self.sender.as_deref() == Some("user"),
                    client_msg_id: self.client_msg_id,
                },
                None => Inbound::Malformed,
            },
            "stream_start" => self
                .stream_id
                .map_or(Inbound::Malformed, |stream_id| Inbound::StreamStart { stream_id }),
            "token" => match (self.stream_id, self.delta) {
                (Some(stream_id), Some(d)) => Inbound::Token { stream_id, bytes: d.len() },
                _ => Inbound::Malformed,
            },
            "stream_end" => match (self.stream_id, self.seq) {
                (Some(stream_id), Some(seq)) => Inbound::StreamEnd {
                    stream_id,
                    seq,
                    text_bytes: self.text.map_or(0, |t| t.len()),
                },
                _ => Inbound::Malformed,
            },
            "error" => Inbound::Error { code: self.code.unwrap_or_default() },
            "" => Inbound::Malformed,
            _ => Inbound::Other,
        }
    }
}

/// Decodes a widget text frame.
pub fn widget_inbound(text: &str) -> Inbound {
    serde_json::from_str::<Wire>(text).map_or(Inbound::Malformed, Wire::inbound)
}

/// Why a connection failed, as a short stable key for the report. `client_emfile` is the
/// harness's own open-file limit (lower `--per-worker`); a server at its limit shows up as
/// `timeout` (the kernel accepted, the server never did) or `reset`.
pub fn io_cause(e: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    match e.raw_os_error() {
        Some(23 | 24) => return "client_emfile".into(),
        Some(98) => return "addr_in_use".into(),
        Some(99) => return "no_source_port".into(),
        _ => {}
    }
    match e.kind() {
        K::ConnectionRefused => "refused".into(),
        K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof => {
            "reset".into()
        }
        K::TimedOut => "timeout".into(),
        k => format!("io_{k:?}").to_lowercase(),
    }
}

fn ws_cause(e: tungstenite::Error) -> String {
    use tungstenite::{Error as E, error::ProtocolError as P};
    match e {
        E::Io(e) => io_cause(&e),
        E::Http(resp) => format!("http_{}", resp.status().as_u16()),
        E::ConnectionClosed | E::AlreadyClosed => "closed".into(),
        E::Protocol(P::ResetWithoutClosingHandshake | P::HandshakeIncomplete) => "reset".into(),
        E::Capacity(_) => "frame_too_large".into(),
        _ => "handshake".into(),
    }
}

/// An open, handshaken socket to a target.
#[derive(Debug)]
pub struct Link {
    ws: WebSocketStream<TcpStream>,
    protocol: Protocol,
    /// Socket.IO: events that came before the connect reply (a recovery's replay).
    early: VecDeque<Inbound>,
    /// Socket.IO: the offset of the last event received, for a recovery.
    pub offset: Option<String>,
}

/// Connects client `source` to `endpoint` and says hello (resuming `resume` = session and
/// last seq when given), within the plan's connect timeout. The error is a cause key.
pub async fn open(
    plan: &Plan,
    endpoint: &Endpoint,
    source: Ipv4Addr,
    resume: Option<(&Session, u64)>,
) -> Result<(Link, Welcome), String> {
    let timeout = Duration::from_millis(plan.connect_timeout_ms);
    tokio::time::timeout(timeout, open_now(plan, endpoint, source, resume))
        .await
        .unwrap_or_else(|_| Err("timeout".into()))
}

async fn open_now(
    plan: &Plan,
    endpoint: &Endpoint,
    source: Ipv4Addr,
    resume: Option<(&Session, u64)>,
) -> Result<(Link, Welcome), String> {
    let socket = if endpoint.addr.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }
        .map_err(|e| io_cause(&e))?;
    if endpoint.addr.is_ipv4() {
        socket.bind(SocketAddr::new(source.into(), 0)).map_err(|e| io_cause(&e))?;
    }
    let tcp = socket.connect(endpoint.addr).await.map_err(|e| io_cause(&e))?;
    // As the servers do: frames are small and latency is what is measured.
    let _ = tcp.set_nodelay(true);
    let (ws, _) =
        tokio_tungstenite::client_async_with_config(endpoint.url.as_str(), tcp, Some(ws_config()))
            .await
            .map_err(ws_cause)?;
    let mut link = Link { ws, protocol: plan.protocol, early: VecDeque::new(), offset: None };
    let welcome = match plan.protocol {
        Protocol::SocketIo => link.socketio_handshake(resume.map(|(s, _)| s)).await?,
        Protocol::WidgetResume | Protocol::WidgetFresh => {
            link.widget_handshake(&plan.bot, resume).await?
        }
    };
    Ok((link, welcome))
}

impl Link {
    async fn next_text(&mut self) -> Result<String, String> {
        loop {
            match self.ws.next().await {
                None => return Err("closed".into()),
                Some(Err(e)) => return Err(ws_cause(e)),
                Some(Ok(Message::Text(t))) => return Ok(t.as_str().to_owned()),
                Some(Ok(Message::Close(_))) => return Err("closed".into()),
                Some(Ok(_)) => continue,
            }
        }
    }

    async fn send_text(&mut self, text: String) -> Result<(), String> {
        self.ws.send(Message::Text(text.into())).await.map_err(ws_cause)
    }

    async fn widget_handshake(
        &mut self,
        bot: &str,
        resume: Option<(&Session, u64)>,
    ) -> Result<Welcome, String> {
        let mut hello = json!({"type": "hello", "bot_id": bot});
        if let Some((s, last_seq)) = resume {
            hello["conversation_id"] = json!(s.conversation_id);
            hello["resume_token"] = json!(s.resume_token);
            hello["last_seq"] = json!(last_seq);
        }
        self.send_text(hello.to_string()).await?;
        loop {
            let text = self.next_text().await?;
            let w: Wire = serde_json::from_str(&text).map_err(|_| "malformed_welcome")?;
            match w.kind.as_str() {
                "welcome" => {
                    let conversation_id = w.conversation_id.unwrap_or_default();
                    let resumed = resume.is_some_and(|(s, _)| s.conversation_id == conversation_id);
                    return Ok(Welcome {
                        conversation_id,
                        resume_token: w.resume_token.unwrap_or_default(),
                        last_seq: w.last_seq.unwrap_or(0),
                        resumed,
                    });
                }
                "error" => return Err(format!("hello_{}", w.code.unwrap_or_default())),
                _ => continue,
            }
        }
    }

    async fn socketio_handshake(&mut self, resume: Option<&Session>) -> Result<Welcome, String> {
        loop {
            match socketio::decode(&self.next_text().await?) {
                Packet::Open => break,
                Packet::Ping => self.send_text(socketio::PONG.into()).await?,
                Packet::Close => return Err("closed".into()),
                Packet::Malformed => return Err("malformed_open".into()),
                _ => continue,
            }
        }
        let recover = resume.and_then(|s| Some((s.resume_token.as_str(), s.offset.as_deref()?)));
        self.send_text(socketio::connect_frame(recover)).await?;
        loop {
            match socketio::decode(&self.next_text().await?) {
                Packet::Connected { sid, pid } => {
                    let resumed = recover.is_some_and(|(asked, _)| pid.as_deref() == Some(asked));
                    return Ok(Welcome {
                        conversation_id: sid,
                        resume_token: pid.unwrap_or_default(),
                        last_seq: 0,
                        resumed,
                    });
                }
                Packet::Event { name, payload, offset } => {
                    let inbound = self.event(name, payload, offset);
                    self.early.push_back(inbound);
                }
                Packet::Ping => self.send_text(socketio::PONG.into()).await?,
                Packet::ConnectError(_) => return Err("connect_error".into()),
                Packet::Close => return Err("closed".into()),
                Packet::Malformed => return Err("malformed_connect".into()),
                Packet::Open | Packet::Other => continue,
            }
        }
    }

    fn event(
        &mut self,
        name: String,
        payload: serde_json::Value,
        offset: Option<String>,
    ) -> Inbound {
        if offset.is_some() {
            self.offset = offset;
        }
        match serde_json::from_value::<Wire>(payload) {
            Ok(mut w) => {
                w.kind = name;
                w.inbound()
            }
            Err(_) => Inbound::Malformed,
        }
    }

    /// The next frame; cancel-safe (only `StreamExt::next` is awaited). Errors are cause keys.
    pub async fn recv(&mut self) -> Result<Inbound, String> {
        if let Some(early) = self.early.pop_front() {
            return Ok(early);
        }
        loop {
            let text = match self.ws.next().await {
                None => return Err("closed".into()),
                Some(Err(e)) => return Err(ws_cause(e)),
                Some(Ok(Message::Text(t))) => t,
                Some(Ok(Message::Close(_))) => return Err("closed".into()),
                // WebSocket pings are answered by tungstenite itself.
                Some(Ok(_)) => continue,
            };
            match self.protocol {
                Protocol::WidgetResume | Protocol::WidgetFresh => return Ok(widget_inbound(&text)),
                Protocol::SocketIo => match socketio::decode(&text) {
                    Packet::Event { name, payload, offset } => {
                        return Ok(self.event(name, payload, offset));
                    }
                    Packet::Ping => return Ok(Inbound::Ping),
                    Packet::Close => return Err("closed".into()),
                    Packet::Malformed => return Ok(Inbound::Malformed),
                    Packet::Open | Packet::Connected { .. } | Packet::ConnectError(_) => {
                        return Ok(Inbound::Malformed);
                    }
                    Packet::Other => continue,
                },
            }
        }
    }

    /// Takes the frames that arrived before the handshake ended (a Socket.IO recovery replay).
    pub fn take_early(&mut self) -> Option<Inbound> {
        self.early.pop_front()
    }

    pub async fn pong(&mut self) -> Result<(), String> {
        self.send_text(socketio::PONG.into()).await
    }

    pub async fn send_message(&mut self, client_msg_id: &str, text: &str) -> Result<(), String> {
        let frame = match self.protocol {
            Protocol::SocketIo => socketio::event_frame(
                "message",
                &json!({"client_msg_id": client_msg_id, "text": text}),
            ),
            Protocol::WidgetResume | Protocol::WidgetFresh => {
                json!({"type": "message", "client_msg_id": client_msg_id, "text": text}).to_string()
            }
        };
        self.send_text(frame).await
    }

    /// A polite close (WebSocket close frame), bounded in time.
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.ws.close(None)).await;
    }
}

/// A visitor message not yet answered.
#[derive(Debug)]
struct Pending {
    client_msg_id: String,
    /// The number that replaces `{n}` in the text.
    n: u64,
    sent_at: Instant,
    /// No reconnect since it was sent: its latencies mean something.
    clean: bool,
}

/// A reply being streamed to this socket.
#[derive(Debug)]
struct Streaming {
    /// Its place among this socket's streams, in `stream_start` order.
    order: u64,
    /// Its reply arrived as a bot `message` (a socket that fell behind, or a replay racing
    /// the live stream): the stream is done; a `stream_end` may still close it.
    stored: bool,
    /// When its message was sent, if the stream could be paired with it (for latencies).
    sent_at: Option<Instant>,
    first_token: bool,
    bytes: usize,
    tokens: u64,
}

#[derive(Debug, Clone, Copy)]
enum Metric {
    Connect,
    Echo,
    FirstToken,
    StreamEnd,
    Reconnect,
}

/// Microseconds since the Unix epoch: the clock the workers share.
pub fn unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Events a trace keeps per conversation.
const TRACE_LEN: usize = 300;

/// After the stop, once every message is answered and every stream closed: how long a
/// visitor keeps listening for a reply too many before it closes (within the drain).
const LINGER: Duration = Duration::from_millis(250);

/// One simulated visitor's state.
///
/// Two kinds of bookkeeping, on purpose apart:
/// - *answered* follows the seqs: each stored bot reply (`stream_end`, or a bot `message`)
///   answers the oldest echoed message still unanswered — Parla answers in order, and this
///   holds across resumes, where a reply may come as a stream or as a replayed message;
/// - *latency pairing*: a `stream_start` belongs to the oldest echoed message whose reply has
///   not started. That is only certain while the socket has seen everything; after a
///   reconnect (a reply that started on the old socket comes back as a plain message, maybe
///   after the next reply's `stream_start`) pairing stops until nothing is in flight.
#[derive(Debug)]
struct Visitor {
    idx: usize,
    shared: Arc<Shared>,
    source: Ipv4Addr,
    rng: StdRng,
    /// Reconnects so far: each moves to the next endpoint.
    turn: usize,
    session: Option<Session>,
    check: ConversationCheck,
    sent_total: u64,
    /// Sent, not echoed yet (oldest first).
    outbox: VecDeque<Pending>,
    /// Echoed, not answered yet (in echo order).
    unanswered: VecDeque<Pending>,
    /// While pairing: send times of echoed messages whose reply has not started.
    to_start: VecDeque<Instant>,
    /// Whether `stream_start`s can be paired with messages (see the type's doc).
    paired: bool,
    streams: HashMap<String, Streaming>,
    /// `stream_start`s so far (for [`Streaming::order`]).
    streams_started: u64,
    counters: Counters,
    samples: Vec<(Metric, Duration)>,
    /// Inside the measured window.
    window: bool,
    /// After a resume: the seq the replay must reach before the outbox is resent.
    replay_until: Option<u64>,
    replay_deadline: Option<Instant>,
    /// The burst round whose message is in flight.
    round: Option<u32>,
    next_send: Option<Instant>,
    drop_at: Option<Instant>,
    /// `PARLA_LOADTEST_TRACE=1`: the last frames and actions, printed for a conversation
    /// that fails a check (for diagnosing a failure; off by default).
    trace: Option<VecDeque<String>>,
}

/// Runs visitor `idx` to the end of the scenario; its figures land in `shared.result`.
pub async fn visit(idx: usize, shared: Arc<Shared>) {
    let plan = &shared.plan;
    let mut v = Visitor::new(idx, shared.clone());
    let endpoint = &plan.endpoints[idx % plan.endpoints.len()];
    v.counters.first_attempt_unix_us = Some(unix_us());
    let started = Instant::now();
    match open(plan, endpoint, v.source, None).await {
        Ok((link, welcome)) => {
            v.sample(Metric::Connect, started.elapsed());
            v.counters.connected = 1;
            v.counters.last_welcome_unix_us = Some(unix_us());
            v.welcomed(&welcome);
            let _ = shared.events.send(ConnEvent::Connected);
            v.run(link).await;
        }
        Err(cause) => {
            v.counters.connect_failed = 1;
            v.counters.fail(&cause);
            let _ = shared.events.send(ConnEvent::Failed);
        }
    }
    v.finish();
}

async fn until(at: Option<Instant>) {
    match at {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn recv(link: &mut Option<Link>) -> Result<Inbound, String> {
    match link {
        Some(l) => l.recv().await,
        None => std::future::pending().await,
    }
}

impl Visitor {
    fn new(idx: usize, shared: Arc<Shared>) -> Self {
        let plan = &shared.plan;
        Self {
            idx,
            source: plan.source(idx),
            rng: StdRng::seed_from_u64(idx as u64 ^ (u64::from(std::process::id()) << 32)),
            turn: 0,
            session: None,
            check: ConversationCheck::new(0),
            sent_total: 0,
            outbox: VecDeque::new(),
            unanswered: VecDeque::new(),
            to_start: VecDeque::new(),
            paired: true,
            streams: HashMap::new(),
            streams_started: 0,
            counters: Counters::default(),
            samples: Vec::new(),
            window: false,
            replay_until: None,
            replay_deadline: None,
            round: None,
            next_send: None,
            drop_at: None,
            trace: std::env::var_os("PARLA_LOADTEST_TRACE").map(|_| VecDeque::new()),
            shared: shared.clone(),
        }
    }

    /// The first `welcome`: the conversation the checks follow.
    fn welcomed(&mut self, welcome: &Welcome) {
        // Parla greets a new conversation (its bot's welcome message); the baselines do not.
        self.check = ConversationCheck::new(welcome.last_seq)
            .greets(self.plan().protocol == Protocol::WidgetResume);
        self.session = Some(Session {
            conversation_id: welcome.conversation_id.clone(),
            resume_token: welcome.resume_token.clone(),
            offset: None,
        });
    }

    fn plan(&self) -> &Plan {
        &self.shared.plan
    }

    fn trace(&mut self, what: impl FnOnce() -> String) {
        if let Some(t) = self.trace.as_mut() {
            if t.len() == TRACE_LEN {
                t.pop_front();
            }
            t.push_back(what());
        }
    }

    /// Messages sent and not answered yet.
    fn in_flight(&self) -> usize {
        self.outbox.len() + self.unanswered.len()
    }

    /// Streams started on this socket and not done (ended, or stored as a message).
    fn open_streams(&self) -> usize {
        self.streams.values().filter(|s| !s.stored).count()
    }

    /// The oldest stream started on this socket and not done.
    fn oldest_open_stream(&self) -> Option<String> {
        self.streams
            .iter()
            .filter(|(_, s)| !s.stored)
            .min_by_key(|(_, s)| s.order)
            .map(|(id, _)| id.clone())
    }

    /// The end, on a socket still open after the drain: a stream it saw start that never
    /// ended (nor came as a message) is a failure.
    fn end_streams(&mut self) {
        let open = self.open_streams() as u64;
        if open > 0 {
            self.trace(|| format!("-- {open} stream(s) never ended"));
        }
        self.check.counts.unfinished_streams += open;
        self.streams.clear();
    }

    fn sample(&mut self, metric: Metric, d: Duration) {
        self.samples.push((metric, d));
        if self.samples.len() >= SAMPLE_BATCH {
            self.flush_samples();
        }
    }

    fn flush_samples(&mut self) {
        let mut result = self.shared.result.lock().unwrap_or_else(|e| e.into_inner());
        let l = &mut result.latencies;
        for (metric, d) in self.samples.drain(..) {
            match metric {
                Metric::Connect => l.connect.record(d),
                Metric::Echo => l.echo.record(d),
                Metric::FirstToken => l.first_token.record(d),
                Metric::StreamEnd => l.stream_end.record(d),
                Metric::Reconnect => l.reconnect.record(d),
            }
        }
    }

    /// The end: what never came back is lost; everything goes into the worker's result.
    fn finish(&mut self) {
        self.check.counts.unconfirmed += self.outbox.len() as u64;
        self.check.counts.unanswered += self.unanswered.len() as u64;
        if let Some(trace) = &self.trace
            && !self.check.counts.failures().is_empty()
        {
            let pending: Vec<&str> = self
                .outbox
                .iter()
                .chain(self.unanswered.iter())
                .map(|p| p.client_msg_id.as_str())
                .collect();
            crate::note!(
                "trace of client {} ({:?}; pending {pending:?}):\n  {}",
                self.idx,
                self.check.counts.failures(),
                trace.iter().cloned().collect::<Vec<_>>().join("\n  ")
            );
        }
        self.flush_samples();
        let mut result = self.shared.result.lock().unwrap_or_else(|e| e.into_inner());
        result.counters.merge(&self.counters);
        result.checks.add(&self.check.counts);
    }

    async fn run(&mut self, link: Link) {
        let mut link = Some(link);
        let mut phase_rx = self.shared.phase.clone();
        let mut stopping = false;
        let mut drain_until: Option<Instant> = None;
        // A visitor that connects late joins the phase the worker is already in.
        let mut apply = Some(*phase_rx.borrow_and_update());
        loop {
            if let Some(phase) = apply.take() {
                match phase {
                    Phase::Connecting => {}
                    Phase::Running => self.start(),
                    Phase::Round(n) => self.burst(n, &mut link).await,
                    Phase::Stop => {
                        stopping = true;
                        self.window = false;
                        self.next_send = None;
                        self.drop_at = None;
                        drain_until =
                            Some(Instant::now() + Duration::from_millis(self.plan().drain_ms));
                    }
                }
            }
            self.report_round();
            if link.is_some() && self.closed_loop() {
                while self.in_flight() < self.plan().max_in_flight {
                    self.send_new(&mut link).await;
                }
            }
            if stopping && link.is_none() {
                break;
            }
            if stopping && self.in_flight() == 0 && self.open_streams() == 0 {
                // Everything answered: listen a little longer for a reply too many.
                let quiet = Instant::now() + LINGER;
                drain_until = Some(drain_until.map_or(quiet, |d| d.min(quiet)));
            }
            let (next_send, drop_at, replay) = (self.next_send, self.drop_at, self.replay_deadline);
            tokio::select! {
                changed = phase_rx.changed(), if !stopping => {
                    if changed.is_err() {
                        break;
                    }
                    apply = Some(*phase_rx.borrow_and_update());
                }
                inbound = recv(&mut link) => match inbound {
                    Ok(inbound) => self.on_inbound(inbound, &mut link).await,
                    Err(cause) => {
                        self.check.counts.unexpected_disconnects += 1;
                        self.counters.fail(&format!("disconnect_{cause}"));
                        self.reconnect(&mut link, false).await;
                    }
                },
                () = until(next_send) => self.tick(&mut link).await,
                () = until(drop_at) => {
                    self.drop_at = None;
                    self.counters.dropped += 1;
                    self.reconnect(&mut link, true).await;
                }
                () = until(replay) => {
                    self.replay_deadline = None;
                    if self.replay_until.take().is_some() {
                        self.resend_outbox(&mut link).await;
                    }
                }
                () = until(drain_until) => break,
            }
        }
        if let Some(l) = link.take() {
            self.end_streams();
            l.close().await;
        }
    }

    /// Closed loop (`--interval-ms 0`): in the window, with a socket that is not replaying,
    /// every answered message is replaced at once, keeping `max_in_flight` outstanding.
    fn closed_loop(&self) -> bool {
        let plan = self.plan();
        self.window
            && self.next_send.is_none()
            && plan.interval_ms == 0.0
            && matches!(plan.scenario, Scenario::Chat | Scenario::Reconnect)
            && self.replay_until.is_none()
            && self.in_flight() < plan.max_in_flight
    }

    /// The measured window opens: start the chat timer and schedule the drop.
    fn start(&mut self) {
        if self.window {
            return;
        }
        self.window = true;
        let now = Instant::now();
        let plan = &self.shared.plan;
        if matches!(plan.scenario, Scenario::Chat | Scenario::Reconnect) && plan.interval_ms > 0.0 {
            // A random phase, so the conversations do not all send on the same tick.
            let first = self.rng.random_range(0.0..1.0) * plan.interval_ms;
            self.next_send = Some(now + Duration::from_secs_f64(first / 1000.0));
        }
        if plan.drops(self.idx) {
            self.drop_at = Some(now + Duration::from_millis(plan.warmup_ms));
        }
    }

    /// The chat timer fired: send unless too much is in flight; schedule the next tick on the
    /// timer's own schedule (open loop), without a catch-up burst after a stall.
    async fn tick(&mut self, link: &mut Option<Link>) {
        let plan = &self.shared.plan;
        let jitter =
            if plan.jitter > 0.0 { self.rng.random_range(-plan.jitter..plan.jitter) } else { 0.0 };
        let step = Duration::from_secs_f64((plan.interval_ms * (1.0 + jitter)).max(0.0) / 1000.0);
        let now = Instant::now();
        let mut next = self.next_send.unwrap_or(now) + step;
        if next < now {
            next = now + step;
        }
        self.next_send = Some(next);
        if link.is_none() || self.replay_until.is_some() {
            self.counters.offline_skips += 1;
        } else if self.in_flight() >= plan.max_in_flight {
            self.counters.skipped += 1;
        } else {
            self.send_new(link).await;
        }
    }

    async fn burst(&mut self, n: u32, link: &mut Option<Link>) {
        self.window = true;
        if self.round == Some(n) {
            return;
        }
        self.round = Some(n);
        if link.is_some() {
            self.send_new(link).await;
        }
    }

    /// Tells the worker when this visitor's burst message is answered.
    fn report_round(&mut self) {
        if let Some(round) = self.round
            && self.in_flight() == 0
        {
            self.round = None;
            let _ = self.shared.events.send(ConnEvent::RoundDone { round, at: Instant::now() });
        }
    }

    fn text(&self, n: u64) -> String {
        let text = &self.shared.plan.text;
        if text.contains("{n}") { text.replace("{n}", &n.to_string()) } else { text.clone() }
    }

    async fn send_new(&mut self, link: &mut Option<Link>) {
        self.sent_total += 1;
        let n = self.idx as u64 * 1_000_000 + self.sent_total;
        let client_msg_id = format!("lt{}-{}", self.idx, self.sent_total);
        let text = self.text(n);
        let sent_at = Instant::now();
        if let Some(l) = link {
            // A failed send shows up as a closed socket on the next read.
            let _ = l.send_message(&client_msg_id, &text).await;
        }
        self.trace(|| format!("-> message {client_msg_id}"));
        self.outbox.push_back(Pending { client_msg_id, n, sent_at, clean: true });
        self.counters.sent += 1;
        if self.window {
            self.counters.window_sent += 1;
        }
    }

    /// Sends every unconfirmed message again, oldest first, with its `client_msg_id`.
    async fn resend_outbox(&mut self, link: &mut Option<Link>) {
        let Some(l) = link else { return };
        for p in &self.outbox {
            self.check.note_resent(&p.client_msg_id);
            if let Some(t) = self.trace.as_mut() {
                t.push_back(format!("-> resend {}", p.client_msg_id));
            }
            let text = self.shared.plan.text.replace("{n}", &p.n.to_string());
            if l.send_message(&p.client_msg_id, &text).await.is_err() {
                break;
            }
        }
    }

    /// A stored bot reply: it answers the oldest unanswered message (else it is the greeting,
    /// or a reply too many).
    fn stored_reply(&mut self) {
        match self.unanswered.pop_front() {
            Some(_) => {
                self.counters.answered += 1;
                if self.window {
                    self.counters.window_answered += 1;
                }
            }
            None => self.check.on_unsolicited_reply(),
        }
        if self.in_flight() == 0 && !self.paired {
            // Nothing in flight: every later stream_start pairs with certainty again. The
            // streams still open are not paired (their `sent_at` is unset); they stay, to be
            // closed by their `stream_end` or counted as unfinished.
            self.paired = true;
            self.to_start.clear();
        }
    }

    async fn on_inbound(&mut self, inbound: Inbound, link: &mut Option<Link>) {
        if !matches!(inbound, Inbound::Token { .. }) {
            self.trace(|| format!("<- {inbound:?}"));
        }
        self.counters.frames += 1;
        if self.window {
            self.counters.window_frames += 1;
        }
        match inbound {
            Inbound::Ping => {
                if let Some(l) = link {
                    let _ = l.pong().await;
                }
            }
            Inbound::Other => {}
            Inbound::Malformed => self.check.counts.malformed += 1,
            Inbound::Error { code } => {
                self.check.counts.server_errors += 1;
                self.counters.fail(&format!("server_error_{code}"));
            }
            Inbound::Stored { seq, user, client_msg_id } => {
                let verdict = self.check.on_stored(seq, client_msg_id.as_deref());
                if !matches!(verdict, Verdict::New | Verdict::Late) {
                    return;
                }
                if user {
                    let pos = client_msg_id
                        .and_then(|id| self.outbox.iter().position(|p| p.client_msg_id == id));
                    if let Some(p) = pos.and_then(|pos| self.outbox.remove(pos)) {
                        if p.clean {
                            self.sample(Metric::Echo, p.sent_at.elapsed());
                        }
                        self.counters.confirmed += 1;
                        if self.window {
                            self.counters.window_confirmed += 1;
                        }
                        if self.paired {
                            self.to_start.push_back(p.sent_at);
                        }
                        self.unanswered.push_back(p);
                    }
                } else {
                    // A reply stored while this socket lagged behind, or replayed while its
                    // stream went on live, arrives as a message: it is the oldest open
                    // stream's result (replies are stored in order). That stream is done; its
                    // `stream_end` may still come, with this seq.
                    match self.oldest_open_stream() {
                        Some(id) => {
                            if let Some(s) = self.streams.get_mut(&id) {
                                s.stored = true;
                            }
                        }
                        None if self.paired => {
                            self.to_start.pop_front();
                        }
                        None => {}
                    }
                    self.stored_reply();
                }
                self.replay_progress(link).await;
            }
            Inbound::StreamStart { stream_id } => {
                let sent_at = if self.paired { self.to_start.pop_front() } else { None };
                self.streams_started += 1;
                let s = Streaming {
                    order: self.streams_started,
                    stored: false,
                    sent_at,
                    first_token: false,
                    bytes: 0,
                    tokens: 0,
                };
                if self.streams.insert(stream_id, s).is_some() {
                    // The same stream started twice.
                    self.check.counts.malformed += 1;
                }
            }
            Inbound::Token { stream_id, bytes } => {
                if let Some(s) = self.streams.get_mut(&stream_id) {
                    s.tokens += 1;
                    s.bytes += bytes;
                    if !s.first_token {
                        s.first_token = true;
                        if let Some(at) = s.sent_at {
                            self.sample(Metric::FirstToken, at.elapsed());
                        }
                    }
                }
            }
            Inbound::StreamEnd { stream_id, seq, text_bytes } => {
                let verdict = self.check.on_stream_end(seq, self.streams.contains_key(&stream_id));
                if !matches!(verdict, Verdict::New | Verdict::Late | Verdict::AlreadyStored) {
                    return;
                }
                let stream = self.streams.remove(&stream_id);
                if verdict == Verdict::AlreadyStored {
                    // Its reply came by replay (as a message), already counted.
                    return;
                }
                match stream {
                    Some(s) => {
                        if s.stored {
                            // The message taken for this stream's result was another's: that
                            // stream is the one done.
                            if let Some(other) = self.oldest_open_stream()
                                && let Some(o) = self.streams.get_mut(&other)
                            {
                                o.stored = true;
                            }
                        }
                        if s.bytes != text_bytes {
                            self.check.counts.incomplete_streams += 1;
                        }
                        let c = &mut self.counters;
                        c.replies += 1;
                        c.reply_tokens += s.tokens;
                        c.min_tokens = Some(c.min_tokens.map_or(s.tokens, |m| m.min(s.tokens)));
                        c.max_tokens = Some(c.max_tokens.map_or(s.tokens, |m| m.max(s.tokens)));
                        if let Some(at) = s.sent_at {
                            self.sample(Metric::StreamEnd, at.elapsed());
                        }
                    }
                    // A stream that started before this socket joined: its end is the reply.
                    None if self.paired => {
                        self.to_start.pop_front();
                    }
                    None => {}
                }
                self.stored_reply();
                self.replay_progress(link).await;
            }
        }
    }

    /// After a resume: once the replay has reached the `welcome`'s `last_seq`, resend what is
    /// still unconfirmed (doing it earlier would resend what the replay is about to confirm).
    async fn replay_progress(&mut self, link: &mut Option<Link>) {
        if let Some(until) = self.replay_until
            && self.check.highest() >= until
        {
            self.replay_until = None;
            self.replay_deadline = None;
            self.resend_outbox(link).await;
        }
    }

    /// Drops the socket abruptly (no close frame) when `planned`, or after the server closed
    /// it, and connects again: resumes where the target can, else starts a fresh conversation
    /// and sends everything unanswered again.
    async fn reconnect(&mut self, link: &mut Option<Link>, planned: bool) {
        let last = self.check.highest();
        self.trace(|| format!("-- drop (planned: {planned}), last seq {last}"));
        if let Some(old) = link.take() {
            if let (Some(s), Some(offset)) = (self.session.as_mut(), old.offset.clone()) {
                s.offset = Some(offset);
            }
            drop(old);
        }
        self.replay_until = None;
        self.replay_deadline = None;
        for p in self.outbox.iter_mut().chain(self.unanswered.iter_mut()) {
            p.clean = false;
        }
        // No latency pairing until everything in flight now is answered.
        self.paired = self.in_flight() == 0;
        self.to_start.clear();
        let protocol = self.plan().protocol;
        if protocol == Protocol::SocketIo {
            // A recovery replays the packets exactly: open streams go on, unpaired.
            for s in self.streams.values_mut() {
                s.sent_at = None;
            }
        } else {
            // Streams do not survive a socket: their replies come back as messages.
            self.streams.clear();
        }
        if planned {
            let spread = self.plan().reconnect_spread_ms;
            if spread > 0 {
                sleep(Duration::from_millis(self.rng.random_range(0..spread))).await;
            }
        }
        let shared = self.shared.clone();
        let plan = &shared.plan;
        for attempt in 0..RECONNECT_ATTEMPTS {
            self.turn += 1;
            let endpoint = &plan.endpoints[(self.idx + self.turn) % plan.endpoints.len()];
            let started = Instant::now();
            let resume = self.session.as_ref().map(|s| (s, self.check.highest()));
            match open(plan, endpoint, self.source, resume).await {
                Ok((l, welcome)) => {
                    self.sample(Metric::Reconnect, started.elapsed());
                    *link = Some(l);
                    self.welcomed_again(welcome, link).await;
                    return;
                }
                Err(cause) => {
                    self.counters.fail(&format!("reconnect_{cause}"));
                    sleep(Duration::from_millis(100 << attempt)).await;
                }
            }
        }
        self.check.counts.reconnect_failures += 1;
    }

    async fn welcomed_again(&mut self, welcome: Welcome, link: &mut Option<Link>) {
        self.trace(|| format!("<- welcome again {welcome:?}"));
        let protocol = self.plan().protocol;
        if welcome.resumed {
            self.check.counts.resumed += 1;
            if protocol == Protocol::SocketIo {
                // The recovery's replay came before the connect reply: take it in first.
                while let Some(early) = link.as_mut().and_then(Link::take_early) {
                    self.on_inbound(early, link).await;
                }
                self.resend_outbox(link).await;
            } else {
                self.check.on_resumed(welcome.last_seq);
                if welcome.last_seq > self.check.highest() {
                    self.replay_until = Some(welcome.last_seq);
                    self.replay_deadline = Some(Instant::now() + REPLAY_PATIENCE);
                } else {
                    self.resend_outbox(link).await;
                }
            }
            return;
        }
        if protocol == Protocol::WidgetResume {
            self.check.counts.resume_failures += 1;
        }
        // A fresh conversation: everything unanswered goes again, oldest first.
        self.check.counts.fresh_reconnects += 1;
        self.check.new_epoch(welcome.last_seq);
        let mut all: Vec<Pending> = self.unanswered.drain(..).collect();
        all.extend(self.outbox.drain(..));
        all.sort_by_key(|p| p.sent_at);
        self.outbox = all.into();
        self.streams.clear();
        self.session = Some(Session {
            conversation_id: welcome.conversation_id,
            resume_token: welcome.resume_token,
            offset: None,
        });
        self.resend_outbox(link).await;
    }
}

/// `--hold N`: opens N conversations on the first endpoint (hello, welcome, greeting), prints
/// `holding N`, and keeps them (answering pings) until stdin closes. For measuring a server's
/// memory per live conversation from outside (scripts/bench-memory.sh).
pub async fn hold(plan: Plan, n: usize) -> anyhow::Result<()> {
    use tokio::io::AsyncReadExt;
    let endpoint = plan.endpoints.first().ok_or_else(|| anyhow::anyhow!("--hold needs a URL"))?;
    let mut links = Vec::with_capacity(n);
    for i in 0..n {
        let (link, _) = open(&plan, endpoint, plan.source(i), None)
            .await
            .map_err(|cause| anyhow::anyhow!("socket {i}: {cause}"))?;
        links.push(link);
    }
    println!("holding {n}");
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    for mut link in links {
        let mut stop = stop_rx.clone();
        tasks.spawn(async move {
            loop {
                tokio::select! {
                    frame = link.recv() => if frame.is_err() { break },
                    _ = stop.changed() => break,
                }
            }
        });
    }
    let mut sink = Vec::new();
    let _ = tokio::io::stdin().read_to_end(&mut sink).await;
    let _ = stop_tx.send(true);
    while tasks.join_next().await.is_some() {}
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::CheckCounts;

    #[test]
    fn decodes_widget_frames() {
        assert_eq!(
            widget_inbound(
                r#"{"type":"message","seq":2,"sender":"user","client_msg_id":"a","text":"x"}"#
            ),
            Inbound::Stored { seq: 2, user: true, client_msg_id: Some("a".into()) }
        );
        assert_eq!(
            widget_inbound(r#"{"type":"message","seq":1,"sender":"bot","text":"hi"}"#),
            Inbound::Stored { seq: 1, user: false, client_msg_id: None }
        );
        assert_eq!(
            widget_inbound(r#"{"type":"token","stream_id":"s","delta":" ab"}"#),
            Inbound::Token { stream_id: "s".into(), bytes: 3 }
        );
        assert_eq!(
            widget_inbound(r#"{"type":"stream_end","stream_id":"s","seq":3,"text":"abc"}"#),
            Inbound::StreamEnd { stream_id: "s".into(), seq: 3, text_bytes: 3 }
        );
        assert_eq!(widget_inbound(r#"{"type":"message","sender":"bot"}"#), Inbound::Malformed);
        assert_eq!(widget_inbound("not json"), Inbound::Malformed);
        assert_eq!(widget_inbound(r#"{"type":"typing","on":true}"#), Inbound::Other);
        assert_eq!(
            widget_inbound(r#"{"type":"error","code":"rate_limited"}"#),
            Inbound::Error { code: "rate_limited".into() }
        );
    }

    /// A visitor of `protocol` with no socket, welcomed into a new conversation.
    fn visitor(protocol: Protocol) -> Visitor {
        let (_phase_tx, phase) = watch::channel(Phase::Running);
        let (events, _) = mpsc::unbounded_channel();
        let plan = Plan {
            scenario: Scenario::Chat,
            protocol,
            endpoints: vec![],
            bot: "demo".into(),
            text: "hi {n}".into(),
            interval_ms: 1000.0,
            jitter: 0.0,
            max_in_flight: 4,
            drop_fraction: 0.0,
            warmup_ms: 0,
            reconnect_spread_ms: 0,
            drain_ms: 0,
            connect_timeout_ms: 0,
            per_source: 2,
        };
        let shared =
            Arc::new(Shared { plan, phase, events, result: Mutex::new(WorkerResult::default()) });
        let mut v = Visitor::new(0, shared);
        v.welcomed(&Welcome {
            conversation_id: "c".into(),
            resume_token: "t".into(),
            last_seq: 0,
            resumed: false,
        });
        v
    }

    fn bot(seq: u64) -> Inbound {
        Inbound::Stored { seq, user: false, client_msg_id: None }
    }

    fn echo(seq: u64, id: &str) -> Inbound {
        Inbound::Stored { seq, user: true, client_msg_id: Some(id.into()) }
    }

    fn start(stream: &str) -> Inbound {
        Inbound::StreamStart { stream_id: stream.into() }
    }

    fn token(stream: &str) -> Inbound {
        Inbound::Token { stream_id: stream.into(), bytes: 5 }
    }

    fn end(stream: &str, seq: u64) -> Inbound {
        Inbound::StreamEnd { stream_id: stream.into(), seq, text_bytes: 5 }
    }

    /// Sends `messages`, feeds `frames`, ends as a run does on an open socket; the checks.
    async fn play(protocol: Protocol, messages: usize, frames: Vec<Inbound>) -> CheckCounts {
        let mut v = visitor(protocol);
        let mut link = None;
        for _ in 0..messages {
            v.send_new(&mut link).await;
        }
        for f in frames {
            v.on_inbound(f, &mut link).await;
        }
        v.end_streams();
        v.finish();
        let result = v.shared.result.lock().unwrap();
        result.checks.clone()
    }

    #[tokio::test]
    async fn a_clean_exchange_passes_with_the_greeting() {
        let frames = vec![bot(1), echo(2, "lt0-1"), start("s1"), token("s1"), end("s1", 3)];
        let c = play(Protocol::WidgetResume, 1, frames).await;
        assert!(c.failures().is_empty(), "{c:?}");
        assert_eq!(c.unsolicited, 1);
    }

    #[tokio::test]
    async fn a_message_answered_twice_fails() {
        // Greeting, one message, its reply streamed twice.
        let frames = vec![
            bot(1),
            echo(2, "lt0-1"),
            start("s1"),
            token("s1"),
            end("s1", 3),
            start("s2"),
            token("s2"),
            end("s2", 4),
        ];
        let c = play(Protocol::WidgetResume, 1, frames).await;
        assert_eq!(c.failures(), [("extra_replies", 1)], "{c:?}");
        // The baselines do not greet: a bot message before any is a reply too many.
        let frames = vec![bot(1), echo(2, "lt0-1"), start("s1"), token("s1"), end("s1", 3)];
        let c = play(Protocol::WidgetFresh, 1, frames).await;
        assert_eq!(c.failures(), [("extra_replies", 1)], "{c:?}");
    }

    #[tokio::test]
    async fn one_message_answered_twice_and_the_next_never_does_not_cancel_out() {
        let frames = vec![
            bot(1),
            echo(2, "lt0-1"),
            start("s1"),
            token("s1"),
            end("s1", 3),
            // The second reply, as a message (the socket lagged).
            bot(4),
            echo(5, "lt0-2"),
        ];
        let c = play(Protocol::WidgetResume, 2, frames).await;
        assert_eq!(c.failures(), [("unanswered", 1), ("extra_replies", 1)], "{c:?}");
    }

    #[tokio::test]
    async fn a_stream_that_never_ends_fails() {
        // Answered, then a stream that starts and never ends.
        let frames = vec![
            bot(1),
            echo(2, "lt0-1"),
            start("s1"),
            token("s1"),
            end("s1", 3),
            start("s2"),
            token("s2"),
        ];
        let c = play(Protocol::WidgetResume, 1, frames).await;
        assert_eq!(c.failures(), [("unfinished_streams", 1)], "{c:?}");
        // The reply of a message, never ended.
        let frames = vec![bot(1), echo(2, "lt0-1"), start("s1"), token("s1"), token("s1")];
        let c = play(Protocol::WidgetResume, 1, frames).await;
        assert_eq!(c.failures(), [("unanswered", 1), ("unfinished_streams", 1)], "{c:?}");
    }

    #[tokio::test]
    async fn a_stream_whose_reply_came_by_replay_then_ends_passes() {
        // A resume's replay races the live stream: the stored reply first, as a message,
        // then the stream's end with the same seq.
        let frames = vec![bot(1), echo(2, "lt0-1"), start("s1"), token("s1"), bot(3), end("s1", 3)];
        let c = play(Protocol::WidgetResume, 1, frames).await;
        assert!(c.failures().is_empty(), "{c:?}");
        assert_eq!(c.replayed_stream_ends, 1);
        // The live events held back until the replay is sent: the stream starts after it.
        let frames = vec![bot(1), echo(2, "lt0-1"), bot(3), start("s1"), token("s1"), end("s1", 3)];
        let c = play(Protocol::WidgetResume, 1, frames).await;
        assert!(c.failures().is_empty(), "{c:?}");
        // But the stream's end twice is a duplicate.
        let frames =
            vec![bot(1), echo(2, "lt0-1"), start("s1"), token("s1"), end("s1", 3), end("s1", 3)];
        let c = play(Protocol::WidgetResume, 1, frames).await;
        assert_eq!(c.failures(), [("duplicated", 1)], "{c:?}");
    }

    #[tokio::test]
    async fn a_stream_whose_end_came_as_a_message_is_done() {
        // A socket that fell behind: the reply arrives as a message, its stream_end never.
        let frames = vec![bot(1), echo(2, "lt0-1"), start("s1"), token("s1"), bot(3)];
        let c = play(Protocol::WidgetResume, 1, frames).await;
        assert!(c.failures().is_empty(), "{c:?}");
    }

    #[test]
    fn classifies_connect_errors() {
        let emfile = std::io::Error::from_raw_os_error(24);
        assert_eq!(io_cause(&emfile), "client_emfile");
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(io_cause(&refused), "refused");
    }
}
