//! Observability through the public door: `/metrics` scraped and parsed as Prometheus' text
//! format while real sockets and API calls move its series; `/healthz` and `/readyz`, which
//! turns 503 naming the failed check when a port the node cannot work without goes down (Redis
//! behind a TCP proxy the test owns in the cluster test), `degraded` (still 200) when an
//! optional one does (a remote embeddings API), and ready again when it comes back; JSON
//! logs of the real binary that name the conversation and never carry a visitor's text.

use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use crate::common::{cluster::services, *};
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};

// ---------------------------------------------------------------------------------------------
// A small parser of Prometheus' text exposition format (0.0.4).

/// One scrape: every sample by its series (name and labels, labels sorted), and each
/// family's declared type.
#[derive(Debug)]
struct Scrape {
    samples: HashMap<String, f64>,
    types: HashMap<String, String>,
}

/// `name{a="1",b="2"}` with the labels sorted, the way [`Scrape::get`] looks series up.
fn series(name: &str, labels: &[(&str, &str)]) -> String {
    let mut labels: Vec<_> = labels.to_vec();
    labels.sort();
    if labels.is_empty() {
        return name.to_owned();
    }
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{name}{{{}}}", inner.join(","))
}

/// Parses `name{k="v",…}` (values may hold escaped quotes, commas and braces).
fn parse_series(text: &str) -> (String, Vec<(String, String)>) {
    let Some(open) = text.find('{') else { return (text.to_owned(), Vec::new()) };
    let name = text[..open].to_owned();
    let mut labels = Vec::new();
    let mut rest = &text[open + 1..];
    loop {
        rest = rest.trim_start_matches(',');
        if rest.starts_with('}') || rest.is_empty() {
            break;
        }
        let eq = rest.find("=\"").expect("label=\"value\"");
        let key = rest[..eq].to_owned();
        let mut value = String::new();
        let mut chars = rest[eq + 2..].char_indices();
        let end = loop {
            let (i, c) = chars.next().expect("a closing quote");
            match c {
                '\\' => match chars.next().expect("an escaped char").1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => break eq + 2 + i + 1,
                other => value.push(other),
            }
        };
        labels.push((key, value));
        rest = &rest[end..];
    }
    (name, labels)
}

fn parse_scrape(text: &str) -> Scrape {
    let mut samples = HashMap::new();
    let mut types = HashMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if let Some(declared) = line.strip_prefix("# TYPE ") {
            let (name, kind) = declared.split_once(' ').expect("# TYPE name kind");
            types.insert(name.to_owned(), kind.to_owned());
            continue;
        }
        if line.starts_with('#') {
            continue; // HELP or a comment.
        }
        let (series_text, value) = line.rsplit_once(' ').expect("series value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("a number in {line}")),
        };
        let (name, labels) = parse_series(series_text);
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| types.get(*f).map(String::as_str) == Some("histogram"))
            })
            .unwrap_or(&name);
        assert!(types.contains_key(family), "{name} has no # TYPE line before it");
        let labels: Vec<(&str, &str)> =
            labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let key = series(&name, &labels);
        assert!(samples.insert(key, value).is_none(), "{line} appears twice");
    }
    Scrape { samples, types }
}

impl Scrape {
    /// A sample's value; 0 when the series is absent (a labelled series appears once used).
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples.get(&series(name, labels)).copied().unwrap_or(0.0)
    }

    /// Every series of `name` (any labels) with its value.
    fn all(&self, name: &str) -> Vec<(String, f64)> {
        self.samples
            .iter()
            .filter(|(k, _)| {
                k.strip_prefix(name).is_some_and(|r| r.is_empty() || r.starts_with('{'))
            })
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }
}

/// Scrapes `/metrics`, checking the status and content type on the way.
async fn scrape(addr: SocketAddr) -> Scrape {
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let (status, head, body) = raw_http(addr, &request).await;
    assert_eq!(status, 200);
    let head = head.to_lowercase();
    assert!(head.contains("content-type: text/plain; version=0.0.4"), "{head}");
    parse_scrape(&body)
}

/// Scrapes until `holds` is true of a scrape (a gauge that moves when a socket task ends).
async fn scrape_until(addr: SocketAddr, what: &str, holds: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let s = scrape(addr).await;
        if holds(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "{what} never held");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn the_parser_reads_the_text_format() {
    let s = parse_scrape(
        "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"q\\\"uo,te}\",b=\"1\"} 3\n\
         # TYPE h histogram\nh_bucket{le=\"0.5\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 0.7\nh_count 2\n",
    );
    assert_eq!(s.get("a_total", &[("b", "1"), ("x", "q\"uo,te}")]), 3.0);
    assert_eq!(s.get("h_bucket", &[("le", "+Inf")]), 2.0);
    assert_eq!(s.get("h_count", &[]), 2.0);
    assert_eq!(s.types["h"], "histogram");
}

// ---------------------------------------------------------------------------------------------
// Metrics move as traffic flows.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_sockets_messages_store_calls_and_errors() {
    let server = start().await;
    let before = scrape(server.ops()).await;
    for (name, kind) in [
        ("parla_live_conversations", "gauge"),
        ("parla_messages_stored_total", "counter"),
        ("parla_messages_total", "counter"),
        ("parla_sockets_open", "gauge"),
        ("parla_store_operation_seconds", "histogram"),
        ("parla_webhooks_delivered_total", "counter"),
    ] {
        assert_eq!(before.types.get(name).map(String::as_str), Some(kind), "{name}");
    }
    let web = |d| [("channel", "web"), ("direction", d)];
    assert_eq!(before.get("parla_sockets_open", &[("kind", "widget")]), 0.0);

    // A visitor: the socket counts while open; the greeting, the message and the answer are
    // counted for channel web, each append and read timed.
    let mut visitor = server.client().await;
    let (welcome, _) = visitor.hello_demo().await;
    let conversation = welcome["conversation_id"].as_str().expect("id").to_owned();
    let exchange = visitor.exchange("m1", "hello").await;
    assert!(!exchange.reply.end["text"].as_str().unwrap_or_default().is_empty());
    let during = scrape(server.ops()).await;
    assert_eq!(during.get("parla_sockets_open", &[("kind", "widget")]), 1.0);
    assert_eq!(
        during.get("parla_messages_total", &web("in"))
            - before.get("parla_messages_total", &web("in")),
        1.0
    );
    assert_eq!(
        during.get("parla_messages_total", &web("out"))
            - before.get("parla_messages_total", &web("out")),
        2.0,
        "the greeting and the answer"
    );
    assert_eq!(
        during.get("parla_messages_total", &[("channel", "whatsapp"), ("direction", "in")]),
        0.0
    );
    assert_eq!(
        during.get("parla_messages_stored_total", &[])
            - before.get("parla_messages_stored_total", &[]),
        3.0
    );
    let appends = |s: &Scrape| s.get("parla_store_operation_seconds_count", &[("op", "append")]);
    assert!(appends(&during) - appends(&before) >= 3.0, "every append is timed");
    let hydrations =
        during.get("parla_store_operation_seconds_count", &[("op", "get_conversation")]);
    assert!(hydrations >= 1.0, "the actor's reads are timed");
    assert!(
        during.get("parla_store_operation_seconds_bucket", &[("op", "append"), ("le", "+Inf")])
            >= appends(&during)
    );
    // The visitor's message and the answer's end: each taken from the mailbox (a new
    // conversation's `hello` wakes no actor).
    assert!(during.get("parla_mailbox_depth_count", &[]) >= 2.0);
    assert_eq!(during.get("parla_live_conversations", &[]), 1.0);
    let per_tenant = during.all("parla_tenant_live_conversations");
    assert_eq!(per_tenant.len(), 1, "one tenant with a live conversation: {per_tenant:?}");
    assert_eq!(per_tenant[0].1, 1.0);
    assert_eq!(during.get("parla_llm_first_token_seconds_count", &[]), 0.0, "no LLM here");

    // An error frame counts under its code.
    visitor.send_raw("{not json".to_owned()).await;
    let error = visitor.expect("error").await;
    assert_eq!(error["code"], "malformed_frame");
    let after_error = scrape(server.ops()).await;
    assert_eq!(
        after_error.get("parla_errors_total", &[("source", "widget"), ("code", "malformed_frame")]),
        1.0
    );

    // The socket is counted down once it closes.
    drop(visitor);
    scrape_until(server.ops(), "the widget socket counted down", |s| {
        s.get("parla_sockets_open", &[("kind", "widget")]) == 0.0
    })
    .await;

    // An agent's socket, and its error frames.
    let mut agent = Client::connect_to(server.addr, "/v1/agent/ws").await;
    agent.send_raw("[]".to_owned()).await;
    let error = agent.expect("error").await;
    let code = error["code"].as_str().expect("code").to_owned();
    let s = scrape(server.ops()).await;
    assert_eq!(s.get("parla_sockets_open", &[("kind", "agent")]), 1.0);
    assert_eq!(s.get("parla_errors_total", &[("source", "agent"), ("code", &code)]), 1.0);
    drop(agent);
    scrape_until(server.ops(), "the agent socket counted down", |s| {
        s.get("parla_sockets_open", &[("kind", "agent")]) == 0.0
    })
    .await;

    // The admin API's errors, by the code its body carries.
    let (status, body) = server.call("GET", "/api/bots", None, None).await;
    assert_eq!(status, 401);
    let unauthorized = error_code(&body).to_owned();
    let (status, body) = server.call("GET", "/api/no-such-endpoint", None, None).await;
    assert_eq!((status, error_code(&body)), (404, "not_found"));
    let (status, body) = server.call("POST", "/api/auth/login", Some("{"), None).await;
    assert_eq!((status, error_code(&body)), (400, "malformed_body"));
    let s = scrape(server.ops()).await;
    for code in [unauthorized.as_str(), "not_found", "malformed_body"] {
        assert_eq!(
            s.get("parla_errors_total", &[("source", "api"), ("code", code)]),
            1.0,
            "{code}"
        );
    }
    // A success is not an error.
    let (status, _) = server
        .post(
            "/api/auth/register",
            json!({"email": "obs@example.com", "password": PASSWORD, "name": "O"}),
            None,
        )
        .await;
    assert_eq!(status, 201);
    let total: f64 =
        scrape(server.ops()).await.all("parla_errors_total").iter().map(|(_, v)| v).sum();
    assert_eq!(total, 5.0, "2 socket errors and 3 API errors");
    assert!(!conversation.is_empty());
}

/// A fake OpenAI-compatible server: each chat completion streams "Hello", " there" and a
/// usage chunk (7 prompt tokens, 2 completion tokens).
async fn fake_llm() -> String {
    use actix_web::{App, HttpResponse, HttpServer, web};
    let chunk = |content: &str| {
        let c = json!({"choices": [{"index": 0, "delta": {"content": content}}]});
        format!("data: {c}\n\n")
    };
    let usage = json!({"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 2}});
    let body = format!("{}{}data: {usage}\n\ndata: [DONE]\n\n", chunk("Hello"), chunk(" there"));
    let server = HttpServer::new(move || {
        let body = body.clone();
        App::new().route(
            "/v1/chat/completions",
            web::post().to(move || {
                let body = body.clone();
                async move { HttpResponse::Ok().content_type("text/event-stream").body(body) }
            }),
        )
    })
    .workers(1)
    .disable_signals()
    .bind("127.0.0.1:0")
    .expect("bind");
    let addr = server.addrs()[0];
    tokio::spawn(server.run());
    format!("http://{addr}/v1")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn llm_answers_are_timed_and_their_tokens_counted() {
    let base_url = fake_llm().await;
    let server = start_with(|s| {
        s.llm.base_url = base_url;
        s.llm.model = "test-model".into();
    })
    .await;
    let mut visitor = server.client().await;
    visitor.hello_demo().await;
    let exchange = visitor.exchange("m1", "zebras juggle quantum xylophones").await;
    assert_eq!(exchange.reply.end["text"], "Hello there", "answered by the LLM");
    let s = scrape(server.ops()).await;
    assert_eq!(s.types["parla_llm_first_token_seconds"], "histogram");
    assert_eq!(s.get("parla_llm_first_token_seconds_count", &[]), 1.0);
    assert_eq!(s.get("parla_llm_reply_seconds_count", &[]), 1.0);
    assert!(
        s.get("parla_llm_reply_seconds_sum", &[])
            >= s.get("parla_llm_first_token_seconds_sum", &[]),
        "the last token comes no sooner than the first"
    );
    assert_eq!(s.get("parla_llm_tokens_total", &[("kind", "prompt")]), 7.0);
    assert_eq!(s.get("parla_llm_tokens_total", &[("kind", "completion")]), 2.0);
}

// ---------------------------------------------------------------------------------------------
// Liveness and readiness.

/// A plain-HTTP server answering every request with 200 `{}` (an OpenAI-compatible API's
/// `GET /models`, for the readiness probe), on `addr` (port 0: any); stopped by aborting it.
/// Counts the requests it got.
async fn tiny_http_server(addr: SocketAddr) -> (SocketAddr, JoinHandle<()>, Arc<AtomicUsize>) {
    let listener = TcpListener::bind(addr).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let requests = Arc::new(AtomicUsize::new(0));
    let counted = requests.clone();
    let task = tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let _ = socket.read(&mut buf).await;
                let _ = socket
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                          Content-Length: 2\r\nConnection: close\r\n\r\n{}",
                    )
                    .await;
            });
        }
    });
    (addr, task, requests)
}

/// Polls `/readyz` until it answers `status`; returns the body.
async fn readyz_until(addr: SocketAddr, status: u16, state: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (got, body) = http_call(addr, "GET", "/readyz", None, None).await;
        if got == status && body["status"] == state {
            return body;
        }
        let waited = format!("{status} {state}");
        assert!(Instant::now() < deadline, "/readyz never answered {waited}; last: {got} {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_names_a_remote_port_that_is_down_and_recovers() {
    let (api, api_task, _) = tiny_http_server("127.0.0.1:0".parse().expect("addr")).await;
    let server = start_with(|s| {
        s.embeddings.base_url = format!("http://{api}/v1");
        s.embeddings.timeout_ms = 500;
    })
    .await;
    let (status, body) = server.call("GET", "/healthz", None, None).await;
    assert_eq!((status, &body), (200, &json!({"status": "ok"})));

    let ready = readyz_until(server.ops(), 200, "ready").await;
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["checks"]["store"]["status"], "ok");
    assert_eq!(ready["checks"]["embeddings"]["status"], "ok");
    assert!(ready["checks"].get("redis").is_none(), "one process: no bus services: {ready}");

    // The embeddings API goes away: still ready (answers go on without the knowledge base,
    // so taking the node out of service would only make things worse), but degraded, and the
    // body says which check failed.
    api_task.abort();
    let _ = api_task.await;
    let down = readyz_until(server.ops(), 200, "degraded").await;
    assert_eq!(down["checks"]["embeddings"]["status"], "degraded", "{down}");
    assert_eq!(down["checks"]["store"]["status"], "ok", "{down}");
    // Liveness does not depend on it.
    assert_eq!(server.call("GET", "/healthz", None, None).await.0, 200);

    // Back on the same address: ready again.
    let (_, api_task, _) = tiny_http_server(api).await;
    let up = readyz_until(server.ops(), 200, "ready").await;
    assert_eq!(up["checks"]["embeddings"]["status"], "ok");
    api_task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_is_probed_once_for_many_callers_and_cached() {
    let (api, api_task, probes) = tiny_http_server("127.0.0.1:0".parse().expect("addr")).await;
    let server = start_with(|s| s.embeddings.base_url = format!("http://{api}/v1")).await;
    // Twenty callers at once share one probe.
    let calls = (0..20).map(|_| http_call(server.ops(), "GET", "/readyz", None, None));
    for (status, body) in futures_util::future::join_all(calls).await {
        assert_eq!((status, &body["status"]), (200, &json!("ready")), "{body}");
    }
    assert_eq!(probes.load(Ordering::SeqCst), 1, "one probe for twenty callers");
    // Then its result serves for a second.
    let started = Instant::now();
    let mut answered = 0;
    while started.elapsed() < Duration::from_millis(300) {
        assert_eq!(http_call(server.ops(), "GET", "/readyz", None, None).await.0, 200);
        answered += 1;
    }
    assert!(probes.load(Ordering::SeqCst) <= 2, "{answered} answers, a probe at most a second");
    // And is renewed after it.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let before = probes.load(Ordering::SeqCst);
    assert_eq!(http_call(server.ops(), "GET", "/readyz", None, None).await.0, 200);
    assert_eq!(probes.load(Ordering::SeqCst), before + 1, "probed again once the second passed");
    api_task.abort();
}

/// A TCP proxy the test owns: forwards every connection to `target` until stopped; stopping
/// also cuts the connections it carries.
struct Proxy {
    addr: SocketAddr,
    accept: JoinHandle<()>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(listen: SocketAddr, target: String) -> Self {
        let listener = TcpListener::bind(listen).await.expect("proxy binds");
        let addr = listener.local_addr().expect("addr");
        let connections = Arc::new(Mutex::new(Vec::new()));
        let tracked = connections.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = target.clone();
                let forward = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                tracked.lock().push(forward);
            }
        });
        Self { addr, accept, connections }
    }

    fn stop(self) -> SocketAddr {
        self.accept.abort();
        for connection in self.connections.lock().drain(..) {
            connection.abort();
        }
        self.addr
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_cluster_readiness_fails_when_redis_goes_and_returns_when_it_is_back() {
    let Some(services) = services("in_a_cluster_readiness_fails_when_redis_goes") else {
        return;
    };
    // Redis through the proxy. Kafka cannot be cut that way: its clients connect to the
    // address the broker advertises, not the one they were given.
    let redis = services.redis.trim_start_matches("redis://").trim_end_matches('/').to_owned();
    let proxy = Proxy::start("127.0.0.1:0".parse().expect("addr"), redis.clone()).await;
    let run = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
    let redis_url = format!("redis://{}", proxy.addr);
    let mut server = start_with(|s| {
        s.cluster.bus = "kafka".into();
        s.cluster.kafka_brokers = services.kafka.clone();
        s.cluster.kafka_topic_prefix = format!("parla-obs-{run}");
        s.cluster.kafka_partitions = 2;
        s.cluster.redis_url = redis_url;
        s.cluster.kafka_session_timeout_ms = 6000;
        s.auth.jwt_secret = "cluster-test-secret-of-at-least-32-bytes".into();
    })
    .await;
    let ready = readyz_until(server.ops(), 200, "ready").await;
    for check in ["store", "kafka", "redis"] {
        assert_eq!(ready["checks"][check]["status"], "ok", "{check}: {ready}");
    }

    let listen = proxy.stop();
    let down = readyz_until(server.ops(), 503, "unavailable").await;
    assert_eq!(down["checks"]["redis"]["status"], "failed", "{down}");
    assert_eq!(down["checks"]["kafka"]["status"], "ok", "{down}");
    assert_eq!(down["checks"]["store"]["status"], "ok", "{down}");

    let proxy = Proxy::start(listen, redis).await;
    let up = readyz_until(server.ops(), 200, "ready").await;
    assert_eq!(up["checks"]["redis"]["status"], "ok", "{up}");
    if let Some(running) = server.running.take() {
        running.stop().await.expect("stops");
    }
    proxy.stop();
}

// ---------------------------------------------------------------------------------------------
// Structured logs.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_name_the_conversation_and_never_carry_the_visitors_text() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_parla"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("PARLA__LOG__FORMAT", "json")
        .env("PARLA__SECRETS__MASTER_KEY", crate::common::TEST_MASTER_KEY)
        .env("PARLA__RESPONDER__TOKEN_DELAY_MS", "0")
        .env("PARLA__EMBEDDINGS__LOCAL_MODEL", "")
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("parla starts");
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let stderr = child.stderr.take().expect("stderr");
    let collected = lines.clone();
    tokio::spawn(async move {
        let mut reader = tokio::io::BufReader::new(stderr).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            collected.lock().push(line);
        }
    });
    let addr = listening_addr(&mut child).await;

    let mut visitor = Client::connect(addr).await;
    let (welcome, _) = visitor.hello_demo().await;
    let conversation = welcome["conversation_id"].as_str().expect("id").to_owned();
    let resume_token = welcome["resume_token"].as_str().expect("token").to_owned();
    // Asking for a person escalates the conversation: an info line of the actor's work.
    let secret_text = "please get me a human, my code is zebra-4471";
    visitor.say("m1", secret_text).await;
    visitor.until("stream_end").await;

    let deadline = Instant::now() + PATIENCE;
    let escalated = loop {
        let found = lines.lock().iter().find(|l| l.contains("conversation escalated")).cloned();
        if let Some(line) = found {
            break line;
        }
        assert!(Instant::now() < deadline, "no escalation logged: {:?}", lines.lock());
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let _ = child.kill().await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    let escalated: Value = serde_json::from_str(&escalated).expect("a JSON line");
    assert_eq!(escalated["level"], "INFO");
    assert_eq!(escalated["message"], "conversation escalated", "{escalated}");
    let spans = escalated["spans"].as_array().expect("the spans it was written in");
    let span = spans
        .iter()
        .find(|s| s["name"] == "conversation")
        .unwrap_or_else(|| panic!("in the conversation's span: {escalated}"));
    assert_eq!(span["conversation"], conversation.as_str());
    assert!(span["tenant"].as_str().is_some_and(|t| !t.is_empty()), "{span}");

    let lines = lines.lock().clone();
    assert!(lines.len() > 2, "{lines:?}");
    let mut by_level: BTreeMap<String, usize> = BTreeMap::new();
    for line in &lines {
        let parsed: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("every line is JSON ({e}): {line}"));
        *by_level.entry(parsed["level"].as_str().unwrap_or("?").to_owned()).or_default() += 1;
        assert!(!line.contains("zebra-4471"), "the visitor's text was logged: {line}");
        assert!(!line.contains(&resume_token), "a resume token was logged: {line}");
    }
    assert!(by_level.contains_key("INFO"), "{by_level:?}");
}

/// By default `/readyz` and `/metrics` are not on the public listener (metrics name every
/// tenant): they have one of their own, on loopback; `/healthz` stays on both. (Issue 19,
/// item 13: the public listener used to list every tenant id to anyone.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_off_the_public_listener_by_default() {
    let defaults = parla_config::Settings::defaults().expect("defaults");
    let ops_default = defaults.server.ops_addr().expect("an operations listener by default");
    assert!(ops_default.ip().is_loopback(), "on loopback by default: {ops_default}");
    // The default, but on a free port (a fixed one would collide between tests).
    let server = start_with(|s| s.server.ops_listen = "127.0.0.1:0".into()).await;
    let ops = server.running.as_ref().and_then(|r| r.ops_addr).expect("an ops listener");
    assert_ne!(ops, server.addr);
    for path in ["/metrics", "/readyz"] {
        assert_eq!(http_get(server.addr, path).await.0, 404, "{path} is not public");
    }
    assert_eq!(http_get(server.addr, "/healthz").await.0, 200);
    let (status, metrics) = http_get(ops, "/metrics").await;
    assert_eq!(status, 200);
    assert!(metrics.contains("parla_live_conversations"), "{metrics}");
    assert_eq!(readyz_until(ops, 200, "ready").await["checks"]["store"]["status"], "ok");
    assert_eq!(http_get(ops, "/healthz").await.0, 200);
}

/// An operator who wants them public says so: `ops_listen = ""`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_public_only_when_the_operator_empties_ops_listen() {
    let server = start_with(|s| s.server.ops_listen = String::new()).await;
    assert!(server.running.as_ref().and_then(|r| r.ops_addr).is_none());
    assert_eq!(http_get(server.addr, "/metrics").await.0, 200);
}

#[test]
fn an_operations_address_that_is_not_one_is_refused() {
    let mut settings = parla_config::Settings::defaults().expect("defaults");
    settings.server.ops_listen = "everywhere".into();
    let error = settings.validate().expect_err("refused").to_string();
    assert!(error.contains("server.ops_listen"), "{error}");
}
