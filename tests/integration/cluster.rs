//! Distributed mode through real servers: one gateway and two engine nodes (real `parla`
//! processes) on Kafka, Cassandra and Redis. Needs `PARLA_TEST_KAFKA`, `PARLA_TEST_REDIS` and
//! `PARLA_TEST_CQL` (`eval "$(scripts/services.sh start)"`; `scripts/test.sh` does it); without
//! them each test says it was skipped and why.

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    path::Path,
    process::Stdio,
    sync::Arc,
    time::Duration,
};

use crate::common::{cluster::*, *};
use parking_lot::Mutex;
use parla_cluster::partition_of;
use parla_engine::model::ConversationId;
use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

/// One cluster's shared settings: its own topic prefix and keyspace, so runs never meet.
struct Cluster {
    env: Vec<(String, String)>,
}

impl Cluster {
    async fn new(services: &Services) -> Self {
        let run = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
        let env = vec![
            ("PARLA__STORE__BACKEND", "cql".to_owned()),
            ("PARLA__STORE__CQL_NODES", format!("[\"{}\"]", services.cql)),
            ("PARLA__STORE__CQL_KEYSPACE", format!("parla_test_{run}")),
            ("PARLA__CLUSTER__BUS", "kafka".to_owned()),
            ("PARLA__CLUSTER__KAFKA_BROKERS", services.kafka.clone()),
            ("PARLA__CLUSTER__KAFKA_TOPIC_PREFIX", format!("parla-test-{run}")),
            ("PARLA__CLUSTER__KAFKA_PARTITIONS", PARTITIONS.to_string()),
            ("PARLA__CLUSTER__REDIS_URL", services.redis.clone()),
            ("PARLA__CLUSTER__KAFKA_SESSION_TIMEOUT_MS", "6000".to_owned()),
            ("PARLA__AUTH__JWT_SECRET", "cluster-test-secret-of-at-least-32-bytes".to_owned()),
            // Slow enough that a reply is still streaming when its node is killed.
            ("PARLA__RESPONDER__TOKEN_DELAY_MS", "40".to_owned()),
            ("PARLA__GATEWAY__RATE_PER_SECOND", "1000000".to_owned()),
            ("PARLA__GATEWAY__RATE_BURST", "1000000".to_owned()),
            ("PARLA__EMBEDDINGS__LOCAL_MODEL", String::new()),
            ("PARLA__SERVER__OPS_LISTEN", "127.0.0.1:0".to_owned()),
        ];
        let env = env.into_iter().chain(UNLIMITED_VISITORS.map(|(k, v)| (k, v.to_owned())));
        let cluster = Self { env: env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect() };
        let out = Command::new(env!("CARGO_BIN_EXE_parla"))
            .arg("migrate")
            .envs(cluster.env.iter().cloned())
            .output()
            .await
            .expect("parla migrate runs");
        assert!(out.status.success(), "migrate: {}", String::from_utf8_lossy(&out.stderr));
        cluster
    }

    async fn node(&self, role: &str, data_dir: &Path) -> Node {
        let mut child = Command::new(env!("CARGO_BIN_EXE_parla"))
            .args(["serve", "--listen", "127.0.0.1:0", "--role", role, "--data-dir"])
            .arg(data_dir)
            .envs(self.env.iter().cloned())
            .env("PARLA__SECRETS__MASTER_KEY", crate::common::TEST_MASTER_KEY)
            .env("PARLA__DEMO__ENABLED", (role == "gateway").to_string())
            .env("RUST_LOG", "info,parla_cluster=debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("parla starts");
        let assigned = Arc::new(Mutex::new(None::<Vec<i32>>));
        let revoked = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("stderr");
        let (seen, given_up) = (assigned.clone(), revoked.clone());
        let name = role.to_owned();
        // PARLA_TEST_CLUSTER_LOGS=DIR keeps each node's whole log there.
        let mut log = std::env::var("PARLA_TEST_CLUSTER_LOGS").ok().and_then(|dir| {
            let path = Path::new(&dir).join(format!("{role}-{}.log", child.id().unwrap_or(0)));
            std::fs::File::create(path).ok()
        });
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let line = strip_ansi(&line);
                if let Some(list) = line.split("assigned=").nth(1) {
                    *seen.lock() = Some(partition_list(list));
                }
                if let Some(list) = line.split("revoked=").nth(1) {
                    given_up.lock().extend(partition_list(list));
                }
                if line.contains("ERROR") || line.contains("WARN") || line.contains("panicked") {
                    println!("[{name}] {line}");
                }
                if let Some(log) = log.as_mut() {
                    use std::io::Write as _;
                    let _ = writeln!(log, "{line}");
                }
            }
        });
        let addr = listening_addr(&mut child).await;
        Node { child, addr, assigned, revoked }
    }
}

/// `[1, 2]` (the rest of a log line after `name=`) as partitions.
fn partition_list(text: &str) -> Vec<i32> {
    let list = text.split(']').next().unwrap_or_default();
    list.trim_matches(|c: char| c == '[' || c.is_whitespace())
        .split(',')
        .filter_map(|p| p.trim().parse().ok())
        .collect()
}

/// The log line without terminal colours.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

struct Node {
    child: Child,
    addr: SocketAddr,
    /// The partitions Kafka last assigned this node (from its log).
    assigned: Arc<Mutex<Option<Vec<i32>>>>,
    /// Every partition this node handed over, in order (from its log).
    revoked: Arc<Mutex<Vec<i32>>>,
}

impl Node {
    fn owns(&self, partition: i32) -> bool {
        self.assigned.lock().as_ref().is_some_and(|a| a.contains(&partition))
    }
}

/// Waits until the engines' assignments cover every partition, each engine having some.
async fn until_balanced(engines: &[&Node]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let lists: Vec<Vec<i32>> =
            engines.iter().map(|n| n.assigned.lock().clone().unwrap_or_default()).collect();
        let all: HashSet<i32> = lists.iter().flatten().copied().collect();
        if lists.iter().all(|l| !l.is_empty()) && all.len() == PARTITIONS as usize {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "partitions never balanced: {lists:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn partition(welcome: &Value) -> i32 {
    let id = welcome["conversation_id"].as_str().expect("conversation id");
    partition_of(&ConversationId(id.to_owned()), PARTITIONS)
}

/// Reads frames until the bot's answer to the last message is stored (a `stream_end`, or a
/// `message` from the bot); returns the frames.
async fn until_answered(c: &mut Client) -> Vec<Value> {
    let mut frames = Vec::new();
    loop {
        let frame = c.recv().await;
        let done = frame["type"] == "stream_end"
            || (frame["type"] == "message" && frame["sender"] == "bot");
        frames.push(frame);
        if done {
            return frames;
        }
    }
}

/// Like [`Client::exchange`], for a socket that may be sent again a message it already has
/// (`seq <= seen`): after a failover, the events the dead node had finished but not yet
/// committed are delivered again, and a visitor message's duplicate is acknowledged by
/// re-sending the stored message. Clients skip what they have, by seq; so does this.
async fn exchange_after(c: &mut Client, seen: u64, id: &str, text: &str) -> Exchange {
    c.say(id, text).await;
    let echo = loop {
        let frame = c.expect("message").await;
        if frame["seq"].as_u64().is_some_and(|seq| seq > seen) {
            break frame;
        }
    };
    assert_eq!(echo["client_msg_id"], id, "echo of {text}");
    let reply = c.read_stream().await;
    Exchange { echo, reply }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitor_loses_nothing_when_the_engine_hosting_the_conversation_is_killed() {
    let Some(services) = services("cluster failover") else { return };
    // A hang guard: a socket kept alive by pings never times out a read by itself.
    tokio::time::timeout(Duration::from_secs(300), failover(services))
        .await
        .expect("the failover scenario finishes");
}

async fn failover(services: Services) {
    let cluster = Cluster::new(&services).await;
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().expect("tempdir")).collect();
    let gateway = cluster.node("gateway", dirs[0].path()).await;
    let engine_a = cluster.node("engine", dirs[1].path()).await;
    until_balanced(&[&engine_a]).await;
    let engine_b = cluster.node("engine", dirs[2].path()).await;
    until_balanced(&[&engine_a, &engine_b]).await;
    println!("cluster: engines balanced");
    // Incremental rebalancing: when b joined, a handed over exactly what b now owns, and kept
    // (never revoked) the rest.
    let mut handed = engine_a.revoked.lock().clone();
    handed.sort_unstable();
    let mut to_b = engine_b.assigned.lock().clone().unwrap_or_default();
    to_b.sort_unstable();
    assert_eq!(handed, to_b, "a handed over only what moved to b");

    // Visitors on the one gateway; their conversations land on both engines, and every one is
    // answered by whichever hosts it.
    let mut visitors = Vec::new();
    let mut hosts = HashSet::new();
    while visitors.len() < 12 || hosts.len() < 2 {
        assert!(visitors.len() < 64, "64 conversations all landed on one engine");
        let mut c = Client::connect(gateway.addr).await;
        let (welcome, _greeting) = c.hello_demo().await;
        let p = partition(&welcome);
        hosts.insert(if engine_a.owns(p) { "a" } else { "b" });
        let answer = c.exchange("hi-1", "hello").await;
        assert_eq!(answer.echo["seq"], 2);
        assert_eq!(answer.reply.end["seq"], 3);
        visitors.push((c, welcome));
    }

    // One conversation on engine A: ask, and kill A while the answer streams.
    let index = visitors
        .iter()
        .position(|(_, w)| engine_a.owns(partition(w)))
        .expect("a conversation on engine A");
    let (mut c, welcome) = visitors.swap_remove(index);
    let mut engine_a = engine_a;
    c.say("q-2", "how much does it cost").await;
    let echo = c.expect("message").await;
    assert_eq!(echo["client_msg_id"], "q-2");
    c.expect("stream_start").await;
    c.expect("token").await;
    engine_a.child.start_kill().expect("SIGKILL engine A");
    engine_a.child.wait().await.expect("engine A is gone");
    println!("cluster: engine A killed mid-reply");

    // Engine B takes the partition over after the session timeout and answers the question
    // A left unanswered; the visitor, still on the gateway, gets it.
    let frames = tokio::time::timeout(Duration::from_secs(60), until_answered(&mut c))
        .await
        .expect("the question is answered after the failover");
    let answered = frames.last().expect("a frame");
    let answer_seq = answered["seq"].as_u64();
    assert_eq!(answer_seq, Some(5), "the answer follows the question: {frames:?}");

    println!("cluster: the question was answered after the failover");
    // The conversation goes on, on B.
    // Questions the demo bot knows (a run of unknown ones would escalate to a human).
    let questions = [
        "what is parla",
        "how does streaming work",
        "pricing",
        "what happens if I reload the page",
    ];
    for (n, question) in (3..=6).zip(questions) {
        let id = format!("q-{n}");
        let exchange = exchange_after(&mut c, 2 * n as u64 - 1, &id, question).await;
        assert_eq!(exchange.echo["seq"], 2 * n as u64);
        assert_eq!(exchange.reply.end["seq"], 2 * n as u64 + 1);
    }
    println!("cluster: the conversation went on");
    // A message sent again (the widget's outbox after a reconnect) is not stored twice.
    c.say("q-6", questions[3]).await;
    let again = c.expect("message").await;
    assert_eq!((again["seq"].as_u64(), again["client_msg_id"].as_str()), (Some(12), Some("q-6")));
    println!("cluster: a resent message was acknowledged, not stored again");

    // The transcript, read back through a fresh socket on the gateway: gapless, in order,
    // every question once, each followed by one answer.
    let mut fresh = Client::connect(gateway.addr).await;
    let resumed = fresh.resume(&welcome, 0).await;
    assert_eq!(resumed["last_seq"], 13, "nothing stored twice, nothing missing");
    let mut messages = Vec::new();
    while messages.len() < 13 {
        let frame = fresh.recv().await;
        if frame["type"] == "message" {
            messages.push(frame);
        }
    }
    let seqs: Vec<u64> = messages.iter().filter_map(|m| m["seq"].as_u64()).collect();
    assert_eq!(seqs, (1..=13).collect::<Vec<_>>());
    let mut ids = HashMap::new();
    for m in &messages {
        if m["sender"] == "user" {
            let id = m["client_msg_id"].as_str().expect("client_msg_id").to_owned();
            assert!(ids.insert(id, m["seq"].clone()).is_none(), "a question stored twice");
        }
    }
    assert_eq!(ids.len(), 6);
    for pair in messages[1..].chunks(2) {
        assert_eq!(pair[0]["sender"], "user", "{pair:?}");
        assert_eq!(pair[1]["sender"], "bot", "{pair:?}");
    }

    println!("cluster: the transcript is whole");
    // Every other visitor, wherever its conversation moved, is still answered.
    for (c, welcome) in &mut visitors {
        let answer = exchange_after(c, 3, "hi-2", "thanks").await;
        assert_eq!(answer.reply.end["seq"], 5, "{welcome}");
    }
    drop(gateway);
    drop(engine_b);
}

/// What `server` lists as `agent`'s presence.
async fn presence_on(server: &TestServer, jwt: &str, agent: &str) -> String {
    let (status, agents) = server.call("GET", "/api/agents", None, Some(jwt)).await;
    assert_eq!(status, 200, "{agents}");
    let listed =
        agents["data"].as_array().expect("agents").iter().find(|a| a["agent"]["id"] == agent);
    listed.and_then(|a| a["status"].as_str()).unwrap_or("unlisted").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_on_any_node_are_seen_and_given_waiting_conversations_by_one_dispatcher() {
    let Some(services) = services("agents across nodes") else { return };
    // A hang guard (sockets kept alive by pings never time a read out by themselves).
    tokio::time::timeout(Duration::from_secs(90), Box::pin(agents_across_nodes(services)))
        .await
        .expect("the scenario finishes");
}

async fn agents_across_nodes(services: Services) {
    let (a, b) = two_nodes(&services, |_| {}).await;
    let owner = register_owner(&a, "owner@cluster.example.com").await;
    let ann = invite_and_join(&a, &owner, "ann@cluster.example.com", "agent").await;
    let bob = invite_and_join(&a, &owner, "bob@cluster.example.com", "agent").await;
    let bot = published_bot(&a, &owner, serde_json::json!({"name": "desk"})).await;
    let (status, body) = a
        .call(
            "PATCH",
            "/api/workspace",
            Some(r#"{"agents": {"assignment": "least_loaded", "max_chats_per_agent": 1}}"#),
            Some(&owner),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let id_of = |jwt: String| {
        let a = &a;
        async move {
            let (_, me) = a.call("GET", "/api/auth/me", None, Some(&jwt)).await;
            me["id"].as_str().expect("id").to_owned()
        }
    };
    let (ann_id, bob_id) = (id_of(ann.clone()).await, id_of(bob.clone()).await);

    // Ann signs in on node a, Bob on node b: each node lists both online.
    let (_ann_socket, _, _) = Client::agent(a.addr, &ann).await;
    let (_bob_socket, _, _) = Client::agent(b.addr, &bob).await;
    for (node, agent) in [(&a, &bob_id), (&b, &ann_id), (&a, &ann_id), (&b, &bob_id)] {
        let mut seen = String::new();
        for _ in 0..200 {
            seen = presence_on(node, &owner, agent).await;
            if seen == "online" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert_eq!(seen, "online", "{agent} as seen on {}", node.addr);
    }

    // Two visitors, one on each node, ask for a person: with a cap of one each, both agents
    // get one conversation (a node routing alone would give only its own agent's share).
    let mut held = Vec::new();
    for (node, key) in [(&a, "on-a"), (&b, "on-b")] {
        let mut visitor = node.client().await;
        let welcome = visitor.hello(&bot).await;
        visitor.say(key, "I want to talk to a human").await;
        let id = welcome["conversation_id"].as_str().expect("id").to_owned();
        let mut stored = Value::Null;
        for _ in 0..400 {
            (_, stored) =
                node.call("GET", &format!("/api/conversations/{id}"), None, Some(&owner)).await;
            if stored["conversation"]["status"] == "ASSIGNED" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(stored["conversation"]["status"], "ASSIGNED", "{key}: {stored}");
        held.push(stored["conversation"]["assignee"]["id"].as_str().expect("assignee").to_owned());
        let (handoff, _) = visitor.until("handoff").await;
        assert_eq!(handoff["to"], "human", "{handoff}");
        drop(visitor);
    }
    held.sort();
    let mut want = vec![ann_id, bob_id];
    want.sort();
    assert_eq!(held, want, "one conversation each");
}
