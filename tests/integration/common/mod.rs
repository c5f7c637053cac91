//! Shared harness for the integration tests: a real server on port 0, real WebSocket clients,
//! real HTTP.
#![allow(dead_code)]

pub mod cluster;

use std::{net::SocketAddr, time::Duration};

use futures_util::{SinkExt, StreamExt};
use parla_config::Settings;
use serde_json::{Value, json};
use tokio::{io::AsyncReadExt, io::AsyncWriteExt, net::TcpStream};
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream,
    tungstenite::{Message as WsMessage, protocol::frame::coding::CloseCode},
};

/// How long a test waits for a frame before it fails (a hang guard, not a timing assertion).
pub const PATIENCE: Duration = Duration::from_secs(15);

/// Polls `check` every 200 ms until it is `Ok` (work applied from a queue, a cache expiring),
/// for at most [`PATIENCE`]; then fails with its last `Err`.
pub async fn eventually<T>(mut check: impl AsyncFnMut() -> Result<T, String>) -> T {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        match check().await {
            Ok(found) => return found,
            Err(why) => assert!(std::time::Instant::now() < deadline, "never happened: {why}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub running: Option<parla::Running>,
    pub dir: tempfile::TempDir,
}

/// Settings for tests: port 0, a fresh data dir, no token pacing.
pub fn test_settings(dir: &std::path::Path) -> Settings {
    let mut s = Settings::defaults().expect("defaults");
    s.server.listen = "127.0.0.1:0".parse().expect("addr");
    s.server.workers = 2;
    s.store.data_dir = dir.to_path_buf();
    // One master key for every test server: servers of one cluster share a keyspace.
    s.secrets.master_key = TEST_MASTER_KEY.into();
    // Each test server's own operations listener (a fixed port would collide).
    s.server.ops_listen = "127.0.0.1:0".into();
    // Every test client comes from 127.0.0.1: the per-address limits would count them all as
    // one visitor (tests/integration/hardening.rs checks the limits themselves).
    s.gateway.max_sockets_per_ip = 1_000_000;
    s.gateway.hellos_per_ip_per_minute = 1_000_000;
    s.gateway.hello_burst_per_ip = 1_000_000;
    s.gateway.new_conversations_per_bot_per_minute = 1_000_000;
    s.gateway.new_conversation_burst_per_bot = 1_000_000;
    s.gateway.new_conversations_per_ip_per_minute = 1_000_000;
    s.gateway.new_conversation_burst_per_ip = 1_000_000;
    s.responder.token_delay_ms = 0;
    // The lexical embedder: fast and deterministic; tests/integration/knowledge_model.rs runs the model.
    s.embeddings.local_model = String::new();
    // The server runs inside this test executable: documents are extracted by the real binary.
    s.knowledge.extractor_program = env!("CARGO_BIN_EXE_parla").into();
    s
}

/// The master key test servers seal their secrets under (base64 of 32 bytes).
pub const TEST_MASTER_KEY: &str = "cGFybGEtdGVzdC1tYXN0ZXIta2V5LTMyLWJ5dGVzISE=";

/// Every test client comes from 127.0.0.1: the per-address and per-bot visitor limits off, for
/// tests about something else (tests/integration/hardening.rs checks the limits themselves).
pub const UNLIMITED_VISITORS: [(&str, &str); 7] = [
    ("PARLA__GATEWAY__NEW_CONVERSATIONS_PER_IP_PER_MINUTE", "1000000"),
    ("PARLA__GATEWAY__NEW_CONVERSATION_BURST_PER_IP", "1000000"),
    ("PARLA__GATEWAY__MAX_SOCKETS_PER_IP", "1000000"),
    ("PARLA__GATEWAY__HELLOS_PER_IP_PER_MINUTE", "1000000"),
    ("PARLA__GATEWAY__HELLO_BURST_PER_IP", "1000000"),
    ("PARLA__GATEWAY__NEW_CONVERSATIONS_PER_BOT_PER_MINUTE", "1000000"),
    ("PARLA__GATEWAY__NEW_CONVERSATION_BURST_PER_BOT", "1000000"),
];

/// Starts the real binary (`parla serve`) on port 0 with `env` on top of the test defaults;
/// returns it (killed when dropped) with the address it printed.
pub async fn spawn_parla_with(
    data_dir: &std::path::Path,
    env: &[(&str, String)],
) -> (tokio::process::Child, SocketAddr) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_parla"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env("PARLA__RESPONDER__TOKEN_DELAY_MS", "0")
        .env("PARLA__SERVER__OPS_LISTEN", "127.0.0.1:0")
        .env("PARLA__SECRETS__MASTER_KEY", TEST_MASTER_KEY)
        .envs(UNLIMITED_VISITORS)
        .env("PARLA__GATEWAY__RATE_PER_SECOND", "1000000")
        .env("PARLA__GATEWAY__RATE_BURST", "1000000")
        .env("RUST_LOG", "warn")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("parla starts");
    let addr = listening_addr(&mut child).await;
    (child, addr)
}

/// The address a `parla serve` child (stdout piped) prints once it listens; its stdout is
/// drained from then on, so the child never blocks on a full pipe.
pub async fn listening_addr(child: &mut tokio::process::Child) -> SocketAddr {
    use tokio::io::AsyncBufReadExt;
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let addr = loop {
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("parla prints its address in time")
            .expect("read stdout")
            .expect("parla exited before listening");
        let url = line.strip_prefix("parla: listening on http://");
        if let Some(url) = url.or_else(|| line.strip_prefix("parla: listening on https://")) {
            break url.parse().expect("address");
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    addr
}

pub async fn start() -> TestServer {
    start_with(|_| {}).await
}

pub async fn start_with(tweak: impl FnOnce(&mut Settings)) -> TestServer {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = test_settings(dir.path());
    tweak(&mut settings);
    settings.validate().expect("test settings are valid");
    let running = parla::start(settings).await.expect("server starts");
    TestServer { addr: running.addr, running: Some(running), dir }
}

impl TestServer {
    pub async fn client(&self) -> Client {
        Client::connect(self.addr).await
    }

    /// `GET path` over plain HTTP/1.1; returns (status, body).
    pub async fn get(&self, path: &str) -> (u16, String) {
        http_get(self.addr, path).await
    }

    /// The operations listener (`/readyz`, `/metrics`): its own, or the public one when the
    /// test set `ops_listen` empty.
    pub fn ops(&self) -> SocketAddr {
        self.running.as_ref().and_then(|r| r.ops_addr).unwrap_or(self.addr)
    }

    /// Reads one Prometheus counter from `/metrics`.
    pub async fn metric(&self, name: &str) -> i64 {
        let (_, body) = http_get(self.ops(), "/metrics").await;
        body.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("metric {name} missing in {body}"))
    }
}

pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let (status, _, body) = raw_http(addr, &request).await;
    (status, body)
}

/// Sends a raw HTTP/1.1 request (with `Connection: close`) and returns (status, head, body).
pub async fn raw_http(addr: SocketAddr, request: &str) -> (u16, String, String) {
    let raw = raw_http_bytes(addr, request).await;
    let raw = String::from_utf8_lossy(&raw).to_string();
    let status = raw.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("status line");
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw.as_str(), ""));
    let chunked = head.to_lowercase().contains("transfer-encoding: chunked");
    let body = if chunked { dechunk(body) } else { body.to_owned() };
    (status, head.to_owned(), body)
}

/// Sends `request` as is and reads the whole answer.
async fn raw_http_bytes(addr: SocketAddr, request: &str) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut raw))
        .await
        .expect("http timeout")
        .expect("read");
    raw
}

/// The body of a `Transfer-Encoding: chunked` response (a streamed one), de-chunked.
fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    loop {
        let (size, after) = rest.split_once("\r\n").expect("chunk size line");
        let size = usize::from_str_radix(size.trim(), 16).expect("hex chunk size");
        if size == 0 {
            return out;
        }
        out.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A WebSocket client of the widget protocol. `ws` is the read half, or the whole socket until
/// [`Client::split`] hands the write half to a [`ClientSink`].
pub struct Client {
    ws: ReadHalf,
    write: Option<futures_util::stream::SplitSink<Ws, WsMessage>>,
}

type ReadHalf = futures_util::stream::SplitStream<Ws>;

/// The write half of a split client, for sending from another task.
pub struct ClientSink {
    write: futures_util::stream::SplitSink<Ws, WsMessage>,
}

impl ClientSink {
    pub async fn send(
        &mut self,
        frame: Value,
    ) -> Result<(), tokio_tungstenite::tungstenite::Error> {
        self.write.send(WsMessage::Text(frame.to_string().into())).await
    }
}

/// How a socket ended.
#[derive(Debug, PartialEq)]
pub enum Closed {
    Code(CloseCode),
    NoFrame,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Self {
        Self::connect_to(addr, "/v1/widget/ws").await
    }

    /// A client over a socket the test connected itself (custom headers).
    pub fn from_socket(ws: Ws) -> Self {
        let (write, read) = ws.split();
        Self { ws: read, write: Some(write) }
    }

    /// A socket on any path of the server (e.g. the agent socket, `/v1/agent/ws`).
    pub async fn connect_to(addr: SocketAddr, path: &str) -> Self {
        let url = format!("ws://{addr}{path}");
        let (ws, _) = tokio_tungstenite::connect_async(url).await.expect("websocket connects");
        let (write, read) = ws.split();
        Self { ws: read, write: Some(write) }
    }

    /// An agent socket signed in with `jwt`; returns it with its `welcome` and first `inbox`.
    pub async fn agent(addr: SocketAddr, jwt: &str) -> (Self, Value, Value) {
        let mut socket = Self::connect_to(addr, "/v1/agent/ws").await;
        socket.send(json!({"type": "hello", "token": jwt})).await;
        let welcome = socket.expect("welcome").await;
        let inbox = socket.expect("inbox").await;
        (socket, welcome, inbox)
    }

    /// Reads frames until one of type `a` or `b` (skipping others); returns it and those skipped.
    /// Fails the test if none comes within [`PATIENCE`] (however many others keep coming).
    pub async fn until_either(&mut self, a: &str, b: &str) -> (Value, Vec<Value>) {
        let mut skipped = Vec::new();
        let found = tokio::time::timeout(PATIENCE, async {
            loop {
                let frame = self.recv().await;
                if frame["type"] == a || frame["type"] == b {
                    return frame;
                }
                skipped.push(frame);
            }
        })
        .await;
        match found {
            Ok(frame) => (frame, skipped),
            Err(_) => panic!("no {a} or {b} frame in time; got {skipped:?}"),
        }
    }

    /// Reads frames until one of type `kind` (skipping others); returns it and those skipped.
    pub async fn until(&mut self, kind: &str) -> (Value, Vec<Value>) {
        self.until_either(kind, kind).await
    }

    /// Connects as a browser page at `origin` would (with that `Origin` header).
    pub async fn connect_from(addr: SocketAddr, origin: &str) -> Self {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request =
            format!("ws://{addr}/v1/widget/ws").into_client_request().expect("request");
        request.headers_mut().insert("origin", origin.parse().expect("header value"));
        let (ws, _) = tokio_tungstenite::connect_async(request).await.expect("websocket connects");
        let (write, read) = ws.split();
        Self { ws: read, write: Some(write) }
    }

    /// Splits off the write half; the returned client can only receive.
    pub fn split(mut self) -> (ClientSink, Client) {
        let write = self.write.take().expect("not split yet");
        (ClientSink { write }, self)
    }

    fn writer(&mut self) -> &mut futures_util::stream::SplitSink<Ws, WsMessage> {
        self.write.as_mut().expect("this client's write half was split off")
    }

    pub async fn send(&mut self, frame: Value) {
        self.send_raw(frame.to_string()).await;
    }

    pub async fn send_raw(&mut self, text: String) {
        self.writer().send(WsMessage::Text(text.into())).await.expect("send");
    }

    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        self.writer().send(WsMessage::Binary(bytes.into())).await.expect("send");
    }

    /// The next JSON frame; fails the test if none comes or the socket closes.
    pub async fn recv(&mut self) -> Value {
        loop {
            let next =
                tokio::time::timeout(PATIENCE, self.ws.next()).await.expect("a frame in time");
            match next {
                Some(Ok(WsMessage::Text(text))) => {
                    return serde_json::from_str(&text).expect("server frames are JSON");
                }
                Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => continue,
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    /// The next frame, which must have `type` = `kind`.
    pub async fn expect(&mut self, kind: &str) -> Value {
        let frame = self.recv().await;
        assert_eq!(frame["type"], kind, "expected a {kind} frame, got {frame}");
        frame
    }

    /// Reads until the socket closes; returns how, and the text frames seen before.
    pub async fn until_closed(&mut self) -> (Closed, Vec<Value>) {
        let mut frames = Vec::new();
        loop {
            let next = tokio::time::timeout(PATIENCE, self.ws.next()).await.expect("close in time");
            match next {
                Some(Ok(WsMessage::Text(text))) => {
                    frames.push(serde_json::from_str(&text).expect("json"))
                }
                Some(Ok(WsMessage::Close(Some(frame)))) => {
                    return (Closed::Code(frame.code), frames);
                }
                Some(Ok(WsMessage::Close(None))) | None | Some(Err(_)) => {
                    return (Closed::NoFrame, frames);
                }
                Some(Ok(_)) => continue,
            }
        }
    }

    /// Sends `ping` and returns every frame that arrived before the `pong`: proves what was (and
    /// was not) queued for this socket.
    pub async fn drain(&mut self) -> Vec<Value> {
        self.send(json!({"type": "ping"})).await;
        let mut before = Vec::new();
        loop {
            let frame = self.recv().await;
            if frame["type"] == "pong" {
                return before;
            }
            before.push(frame);
        }
    }

    /// Opens a new conversation with `bot`; returns the `welcome` frame.
    pub async fn hello(&mut self, bot: &str) -> Value {
        self.send(json!({"type": "hello", "bot_id": bot})).await;
        self.expect("welcome").await
    }

    /// Opens a new conversation with the demo bot and reads its greeting (seq 1).
    pub async fn hello_demo(&mut self) -> (Value, Value) {
        let welcome = self.hello("demo").await;
        let greeting = self.expect("message").await;
        assert_eq!(greeting["seq"], 1);
        assert_eq!(greeting["sender"], "bot");
        (welcome, greeting)
    }

    /// Opens a conversation with `bot` that is stored at once, with no bot answer to wait for:
    /// a new conversation is stored when the visitor first writes, and registering a device
    /// for notifications is such a write. Returns the welcome (a greeting, if the bot has one,
    /// is read and dropped).
    pub async fn hello_stored(&mut self, bot: &str) -> Value {
        let welcome = self.hello(bot).await;
        self.store_now().await;
        welcome
    }

    /// Makes this socket's new conversation stored without a message (see
    /// [`Client::hello_stored`]); frames other than the `pong` are read and dropped.
    pub async fn store_now(&mut self) {
        self.send(json!({"type": "push_token", "token": "device-of-a-test-visitor"})).await;
        // Frames are handled in order: the pong says the conversation is stored.
        self.send(json!({"type": "ping"})).await;
        self.until("pong").await;
    }

    /// Resumes a conversation from its welcome frame.
    pub async fn resume(&mut self, welcome: &Value, last_seq: u64) -> Value {
        self.send(json!({
            "type": "hello",
            "bot_id": "demo",
            "conversation_id": welcome["conversation_id"],
            "resume_token": welcome["resume_token"],
            "last_seq": last_seq,
        }))
        .await;
        self.expect("welcome").await
    }

    pub async fn say(&mut self, client_msg_id: &str, text: &str) {
        self.send(json!({"type": "message", "client_msg_id": client_msg_id, "text": text})).await;
    }

    /// Sends a message and reads its echo and the bot's whole streamed reply.
    pub async fn exchange(&mut self, client_msg_id: &str, text: &str) -> Exchange {
        self.say(client_msg_id, text).await;
        let echo = self.expect("message").await;
        assert_eq!(echo["client_msg_id"], client_msg_id, "echo of {text}");
        let reply = self.read_stream().await;
        Exchange { echo, reply }
    }

    /// Reads `stream_start`, the tokens and `stream_end`.
    pub async fn read_stream(&mut self) -> Stream {
        let start = self.expect("stream_start").await;
        let mut tokens = String::new();
        loop {
            let frame = self.recv().await;
            match frame["type"].as_str() {
                Some("token") => {
                    assert_eq!(frame["stream_id"], start["stream_id"]);
                    tokens.push_str(frame["delta"].as_str().expect("delta"));
                }
                Some("stream_end") => {
                    assert_eq!(frame["stream_id"], start["stream_id"]);
                    return Stream { start, tokens, end: frame };
                }
                _ => panic!("unexpected frame inside a stream: {frame}"),
            }
        }
    }
}

pub struct Exchange {
    pub echo: Value,
    pub reply: Stream,
}

pub struct Stream {
    pub start: Value,
    pub tokens: String,
    pub end: Value,
}

impl Client {
    /// The next JSON frame, or `None` once the socket is closed or broken.
    pub async fn try_recv(&mut self) -> Option<Value> {
        loop {
            let next = tokio::time::timeout(PATIENCE, self.ws.next()).await.ok()??;
            match next {
                Ok(WsMessage::Text(text)) => return serde_json::from_str(&text).ok(),
                Ok(WsMessage::Close(_)) | Err(_) => return None,
                Ok(_) => continue,
            }
        }
    }
}

impl TestServer {
    /// An HTTP/1.1 request with an optional JSON body and bearer token; returns (status, JSON
    /// body or `null` when empty).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        bearer: Option<&str>,
    ) -> (u16, Value) {
        http_call(self.addr, method, path, body, bearer).await
    }

    pub async fn post(&self, path: &str, body: Value, bearer: Option<&str>) -> (u16, Value) {
        self.call("POST", path, Some(&body.to_string()), bearer).await
    }

    /// A request whose answer is not JSON (an archive): (status, lower-cased head, body bytes).
    pub async fn call_bytes(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        bearer: Option<&str>,
    ) -> (u16, String, Vec<u8>) {
        let raw = raw_http_bytes(self.addr, &request(self.addr, method, path, body, bearer)).await;
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a head");
        let head = String::from_utf8_lossy(&raw[..split]).to_lowercase();
        assert!(!head.contains("transfer-encoding: chunked"), "a whole body: {head}");
        let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("status");
        (status, head, raw[split + 4..].to_vec())
    }
}

/// An HTTP/1.1 request's text with an optional JSON body and bearer token.
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    bearer: Option<&str>,
) -> String {
    let body = body.unwrap_or("");
    let auth = bearer.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// An HTTP/1.1 request to `addr`; returns (status, JSON body or `null` when empty).
pub async fn http_call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    bearer: Option<&str>,
) -> (u16, Value) {
    let (status, _, json) = http_call_with_headers(addr, method, path, body, bearer).await;
    (status, json)
}

/// Like [`http_call`], also returning the response headers, lower-cased, one per line.
pub async fn http_call_with_headers(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    bearer: Option<&str>,
) -> (u16, String, Value) {
    {
        let (status, head, body) = raw_http(addr, &request(addr, method, path, body, bearer)).await;
        let body = body.trim();
        let json = if body.is_empty() {
            Value::Null
        } else if head.to_lowercase().contains("content-type: text/csv") {
            Value::String(body.to_owned()) // An export: the matrix checks its text.
        } else {
            serde_json::from_str(body).expect("JSON body")
        };
        (status, head.to_lowercase(), json)
    }
}

/// The password the admin API tests register with.
pub const PASSWORD: &str = "a long enough password";

/// The `error.code` of an admin API error body.
pub fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<none>")
}

/// Registers `email` as the owner of a new workspace and returns its access token.
pub async fn register_owner(server: &TestServer, email: &str) -> String {
    let (status, body) = server
        .post(
            "/api/auth/register",
            json!({"email": email, "password": PASSWORD, "name": "O"}),
            None,
        )
        .await;
    assert_eq!(status, 201, "{body}");
    sign_in(server, email).await
}

/// Logs `email` in with [`PASSWORD`] and returns its access token.
pub async fn sign_in(server: &TestServer, email: &str) -> String {
    let (status, session) =
        server.post("/api/auth/login", json!({"email": email, "password": PASSWORD}), None).await;
    assert_eq!(status, 200, "{session}");
    session["access_token"].as_str().expect("token").to_owned()
}

/// Invites `email` as `role` with `inviter`'s token, accepts through the mailed token, logs in.
pub async fn invite_and_join(
    server: &TestServer,
    inviter: &str,
    email: &str,
    role: &str,
) -> String {
    let (status, body) = server
        .post("/api/members/invitations", json!({"email": email, "role": role}), Some(inviter))
        .await;
    assert_eq!(status, 202, "{body}");
    let mails = std::fs::read_to_string(server.dir.path().join("outbox.jsonl")).expect("outbox");
    let mail: Value = mails
        .lines()
        .rev()
        .map(|l| serde_json::from_str::<Value>(l).expect("json"))
        .find(|m| m["to"] == email)
        .expect("invitation mail");
    let text = mail["body"].as_str().expect("body");
    let token =
        text[text.find("token=").expect("token") + 6..].split_whitespace().next().expect("t");
    let (status, joined) = server
        .post(
            "/api/auth/accept-invitation",
            json!({"token": token, "name": "M", "password": PASSWORD}),
            None,
        )
        .await;
    assert_eq!(status, 201, "{joined}");
    assert_eq!(joined["role"], role);
    let (status, again) = server
        .post(
            "/api/auth/accept-invitation",
            json!({"token": token, "name": "M", "password": PASSWORD}),
            None,
        )
        .await;
    assert_eq!((status, error_code(&again)), (400, "invalid_token"), "an invitation is used once");
    sign_in(server, email).await
}

/// `POST /api/bots/{bot}/documents/upload` with one `file` field (and a `title`), as a browser
/// form would send it.
pub async fn upload(
    server: &TestServer,
    jwt: &str,
    bot: &str,
    file_name: &str,
    media_type: &str,
    bytes: &[u8],
) -> (u16, Value) {
    let boundary = "----parla-test-boundary-7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nFAQ {file_name}\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{file_name}\"\r\n\
             Content-Type: {media_type}\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let head = format!(
        "POST /api/bots/{bot}/documents/upload HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {jwt}\r\n\
         Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.expect("connect");
    stream.write_all(head.as_bytes()).await.expect("write");
    stream.write_all(&body).await.expect("write");
    let mut raw = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut raw))
        .await
        .expect("answer in time")
        .expect("read");
    let raw = String::from_utf8_lossy(&raw).to_string();
    let status = raw.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("status");
    let body = raw.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// Polls the document until it leaves PENDING/PROCESSING.
pub async fn settled(server: &TestServer, jwt: &str, bot: &str, id: &str) -> Value {
    for _ in 0..500 {
        let (_, document) =
            server.call("GET", &format!("/api/bots/{bot}/documents/{id}"), None, Some(jwt)).await;
        if matches!(document["status"].as_str(), Some("COMPLETED" | "FAILED")) {
            return document;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("document {id} was not processed in time");
}

/// Creates a bot from `body` with `jwt` and publishes it; returns its id.
pub async fn published_bot(server: &TestServer, jwt: &str, body: Value) -> String {
    let (status, bot) = server.post("/api/bots", body, Some(jwt)).await;
    assert_eq!(status, 201, "{bot}");
    let id = bot["id"].as_str().expect("bot id").to_owned();
    let (status, _) =
        server.call("POST", &format!("/api/bots/{id}/publish"), None, Some(jwt)).await;
    assert_eq!(status, 200);
    id
}

/// A PDF 1.4 file of `objects` (numbered from 1, the catalog first), with a correct xref table
/// and trailer: the documents and bombs the knowledge tests upload.
pub fn pdf_file(objects: &[Vec<u8>]) -> Vec<u8> {
    let mut out = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, object) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n", i + 1).as_bytes());
        out.extend_from_slice(object);
        out.extend_from_slice(b"\nendobj\n");
    }
    let xref = out.len();
    out.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for offset in offsets {
        out.extend_from_slice(format!("{offset:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    out
}

/// The current code for a base32 secret, computed as an authenticator app would.
pub fn totp_code(secret: &str, at_secs: u64) -> String {
    let secret = totp_rs::Secret::try_from_base32(secret).expect("base32 secret");
    let totp = totp_rs::Builder::new().with_secret(secret).build().expect("totp");
    totp.generate(at_secs).to_string()
}

/// Now, in Unix seconds.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs()
}
