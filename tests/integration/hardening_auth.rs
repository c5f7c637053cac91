//! Issue 19, the account and session items, through the public door: real listeners, real
//! HTTP and WebSocket clients, real races repeated round after round.
//!
//! - 1: account changes are compare-and-set: a flood of TOTP enrolments with a stolen token
//!   undoes neither a password reset nor a demotion; two owners demoting each other leave an
//!   owner; a TOTP or recovery code is accepted once however many logins race with it; a
//!   revoked API key stays revoked whatever its last-use writes do.
//! - 6: an agent socket closes when its member is removed or their sessions end, on the node
//!   holding it (also in a cluster, when another node made the change).
//! - 7: agents take part in conversations as `human` only.
//! - 8: a hundred concurrent logins keep the real binary's peak memory bounded.
//! - 11: invitations are listed, revoked, expire, and need their sender's rights when accepted.
//! - 12: a stranger's wrong passwords back the stranger off, not the account's owner.
//! - The review of issue 19: bogus invitation and reset links cost no password hash, and
//!   accepting spends the client's budget (H1); concurrent guesses from one client reach the
//!   hash at most five times (M5); a removed or demoted admin's API keys are revoked (M8); a
//!   caller demoted during their request acts with the role they have left (L5).

use std::{
    net::{IpAddr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use crate::common::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A server whose auth endpoints never rate-limit the test's own floods.
async fn roomy() -> TestServer {
    start_with(|s| s.auth.ip_requests_per_15min = 1_000_000).await
}

/// An HTTP/1.1 request to `addr` from the local address `from` (any 127.0.0.0/8 address is
/// this machine's loopback): what a client elsewhere would be to the server. Returns (status,
/// headers lower-cased, JSON body or `null`).
async fn http_from(
    from: IpAddr,
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> (u16, String, Value) {
    let body = body.map(Value::to_string).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind(SocketAddr::new(from, 0)).expect("bind a loopback address");
    let mut stream = socket.connect(addr).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut raw))
        .await
        .expect("an answer in time")
        .expect("read");
    let raw = String::from_utf8_lossy(&raw).to_string();
    let status = raw.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("status");
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw.as_str(), ""));
    let json = serde_json::from_str(body.trim()).unwrap_or(Value::Null);
    (status, head.to_lowercase(), json)
}

fn loopback(text: &str) -> IpAddr {
    text.parse().expect("a loopback address")
}

async fn login(server: &TestServer, email: &str, password: &str) -> (u16, Value) {
    server.post("/api/auth/login", json!({"email": email, "password": password}), None).await
}

async fn account_id(server: &TestServer, jwt: &str) -> String {
    let (status, me) = server.call("GET", "/api/auth/me", None, Some(jwt)).await;
    assert_eq!(status, 200, "{me}");
    me["id"].as_str().expect("id").to_owned()
}

/// The token of the newest mail to `to` in the server's outbox.
fn mailed_token(server: &TestServer, to: &str) -> String {
    let mails = std::fs::read_to_string(server.dir.path().join("outbox.jsonl")).expect("outbox");
    let mail: Value = mails
        .lines()
        .rev()
        .map(|l| serde_json::from_str::<Value>(l).expect("json"))
        .find(|m| m["to"] == to)
        .expect("a mail to this address");
    let body = mail["body"].as_str().expect("body");
    let at = body.find("token=").expect("a link with a token") + "token=".len();
    body[at..].split_whitespace().next().expect("token").to_owned()
}

/// The role `id` has in the owner's member list.
async fn role_of(server: &TestServer, owner: &str, id: &str) -> Value {
    let (status, members) = server.call("GET", "/api/members", None, Some(owner)).await;
    assert_eq!(status, 200, "{members}");
    let members = members["data"].as_array().expect("members");
    members.iter().find(|m| m["id"] == id).map_or(Value::Null, |m| m["role"].clone())
}

/// Keeps `flooders` clients sending `POST /api/auth/totp/enroll` with `token` until told to
/// stop; counts the answers.
struct Flood {
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Flood {
    fn start(addr: SocketAddr, token: &str, flooders: usize) -> Self {
        let (stop, answered) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
        let tasks = (0..flooders)
            .map(|_| {
                let (stop, answered, token) = (stop.clone(), answered.clone(), token.to_owned());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let path = "/api/auth/totp/enroll";
                        let (status, body) =
                            http_call(addr, "POST", path, Some("{}"), Some(&token)).await;
                        assert!(matches!(status, 200 | 401 | 409), "{status}: {body}");
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        Self { stop, answered, tasks }
    }

    /// Waits until `more` further answers came (the flood is running on both sides of
    /// whatever happened meanwhile).
    async fn past(&self, more: usize) {
        let target = self.answered.load(Ordering::Relaxed) + more;
        while self.answered.load(Ordering::Relaxed) < target {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.expect("a flooder");
        }
    }
}

// ---- 1: no account change undoes another ----------------------------------------------------

/// Round after round, a victim's stolen token floods TOTP enrolment while the victim resets
/// their password and the owner demotes them: afterwards the old password and the stolen
/// token are refused and the demotion holds (before, an enrolment that read the account
/// before the reset wrote the old hash, role and session epoch back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_totp_enrolments_undoes_neither_a_password_reset_nor_a_demotion() {
    let server = roomy().await;
    let owner = register_owner(&server, "owner@flood.example.com").await;
    let new_password = "a brand new long password";
    for round in 0..6 {
        let email = format!("victim{round}@flood.example.com");
        let stolen = invite_and_join(&server, &owner, &email, "admin").await;
        let victim = account_id(&server, &stolen).await;
        let (status, _) =
            server.post("/api/auth/forgot-password", json!({"email": email}), None).await;
        assert_eq!(status, 202);
        let link = mailed_token(&server, &email);

        let flood = Flood::start(server.addr, &stolen, 24);
        flood.past(48).await;
        let reset = json!({"token": link, "password": new_password});
        let demote = json!({"role": "viewer"}).to_string();
        let path = format!("/api/members/{victim}");
        let ((reset_status, body), (demote_status, demoted)) = tokio::join!(
            server.post("/api/auth/reset-password", reset, None),
            server.call("PATCH", &path, Some(&demote), Some(&owner)),
        );
        assert_eq!(reset_status, 204, "round {round}: {body}");
        assert_eq!(demote_status, 200, "round {round}: {demoted}");
        flood.past(48).await;
        flood.stop().await;

        let (status, body) = login(&server, &email, PASSWORD).await;
        assert_eq!((status, error_code(&body)), (401, "invalid_credentials"), "round {round}");
        let (status, body) = login(&server, &email, new_password).await;
        assert_eq!(status, 200, "round {round}: the new password works: {body}");
        let (status, body) = server.call("GET", "/api/auth/me", None, Some(&stolen)).await;
        assert_eq!((status, error_code(&body)), (401, "token_revoked"), "round {round}");
        assert_eq!(role_of(&server, &owner, &victim).await, "viewer", "round {round}");
    }
}

/// Two owners demote each other at the same moment, round after round: one wins, the other
/// is told `last_owner`, and the workspace always keeps an owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_owners_demoting_each_other_at_once_leave_one_owner() {
    let server = roomy().await;
    for round in 0..8 {
        let first = register_owner(&server, &format!("first{round}@owners.example.com")).await;
        let second =
            invite_and_join(&server, &first, &format!("second{round}@owners.example.com"), "owner")
                .await;
        let (first_id, second_id) =
            (account_id(&server, &first).await, account_id(&server, &second).await);
        let demote = json!({"role": "admin"}).to_string();
        let (to_second, to_first) =
            (format!("/api/members/{second_id}"), format!("/api/members/{first_id}"));
        let (a, b) = tokio::join!(
            server.call("PATCH", &to_second, Some(&demote), Some(&first)),
            server.call("PATCH", &to_first, Some(&demote), Some(&second)),
        );
        // One wins. The other is refused: `last_owner` when both were in flight together,
        // `forbidden` when the first had already made its caller an admin.
        let (won, refused) = match (a.0, b.0) {
            (200, _) => (&a, &b),
            _ => (&b, &a),
        };
        assert_eq!(won.0, 200, "round {round}: {a:?} {b:?}");
        let refusal = (refused.0, error_code(&refused.1));
        assert!(
            matches!(refusal, (409, "last_owner") | (403, "forbidden")),
            "round {round}: {a:?} {b:?}"
        );
        // Whoever is still an owner can see the members.
        let keeper = if a.0 == 200 { &first } else { &second };
        let owners = [&first_id, &second_id];
        let mut roles = Vec::new();
        for id in owners {
            roles.push(role_of(&server, keeper, id).await);
        }
        assert_eq!(roles.iter().filter(|r| **r == "owner").count(), 1, "round {round}: {roles:?}");
    }
}

/// Eight logins race with the same second factor, round after round (each from its own
/// address, so no backoff gets in the way): one signs in, the others are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_totp_code_or_a_recovery_code_signs_in_once_however_many_logins_race() {
    let server = roomy().await;
    let email = "twofactor@example.com";
    let jwt = register_owner(&server, email).await;
    let (status, enrolled) = server.post("/api/auth/totp/enroll", json!({}), Some(&jwt)).await;
    assert_eq!(status, 200, "{enrolled}");
    let secret = enrolled["secret"].as_str().expect("secret").to_owned();
    let code = totp_code(&secret, now_secs());
    let (status, confirmed) =
        server.post("/api/auth/totp/confirm", json!({"code": code}), Some(&jwt)).await;
    assert_eq!(status, 200, "{confirmed}");
    let recovery: Vec<String> = confirmed["recovery_codes"]
        .as_array()
        .expect("codes")
        .iter()
        .map(|c| c.as_str().expect("code").to_owned())
        .collect();
    // The next step's code (accepted with one step of skew) first, then recovery codes.
    let mut factors = vec![totp_code(&secret, now_secs() + 30)];
    factors.extend(recovery.into_iter().take(6));
    for (round, factor) in factors.iter().enumerate() {
        let attempts = (1..=8).map(|n| {
            let from = loopback(&format!("127.1.{round}.{n}"));
            let body = json!({"email": email, "password": PASSWORD, "totp": factor});
            async move { http_from(from, server.addr, "POST", "/api/auth/login", Some(&body)).await }
        });
        let answers = futures_util::future::join_all(attempts).await;
        let statuses: Vec<u16> = answers.iter().map(|(s, _, _)| *s).collect();
        assert_eq!(
            statuses.iter().filter(|s| **s == 200).count(),
            1,
            "round {round}: {statuses:?}"
        );
        for (status, _, body) in answers.iter().filter(|(s, _, _)| *s != 200) {
            assert_eq!((*status, error_code(body)), (401, "invalid_totp"), "round {round}");
        }
    }
}

/// Requests with an API key race with its revocation, round after round: once revoked it
/// stays revoked (before, a request that read the key before the revocation wrote it back
/// with its last use, unrevoked).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_api_key_stays_revoked_whatever_its_last_use_writes() {
    let server = roomy().await;
    let owner = register_owner(&server, "keys@example.com").await;
    for round in 0..10 {
        let body = json!({"name": format!("k{round}"), "scopes": ["bots:read"]});
        let (status, created) = server.post("/api/api-keys", body, Some(&owner)).await;
        assert_eq!(status, 201, "{created}");
        let (key, id) =
            (created["key"].as_str().expect("key"), created["id"].as_str().expect("id"));
        let uses = (0..16).map(|_| server.call("GET", "/api/bots", None, Some(key)));
        let path = format!("/api/api-keys/{id}");
        let revoke = server.call("DELETE", &path, None, Some(&owner));
        let (answers, (revoked, _)) = tokio::join!(futures_util::future::join_all(uses), revoke);
        assert_eq!(revoked, 204, "round {round}");
        assert!(answers.iter().all(|(s, _)| matches!(s, 200 | 401)), "round {round}");
        let (status, body) = server.call("GET", "/api/bots", None, Some(key)).await;
        assert_eq!((status, error_code(&body)), (401, "invalid_api_key"), "round {round}");
        let (_, keys) = server.call("GET", "/api/api-keys", None, Some(&owner)).await;
        let listed = keys["data"].as_array().expect("keys").iter().find(|k| k["id"] == id);
        assert_eq!(listed.map(|k| k["revoked"].clone()), Some(json!(true)), "round {round}");
    }
}

// ---- 6: a removed member's socket, a reset session's socket -------------------------------

/// Reads until the socket closes; returns how, and whether any frame carried `secret`.
async fn closes_without(socket: &mut Client, secret: &str) -> (Closed, Vec<Value>) {
    let (how, frames) = socket.until_closed().await;
    for frame in &frames {
        assert!(!frame.to_string().contains(secret), "sent after the change: {frame}");
    }
    (how, frames)
}

fn error_frame(frames: &[Value]) -> Option<&str> {
    frames.iter().rev().find(|f| f["type"] == "error").and_then(|f| f["code"].as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_socket_closes_when_its_member_is_removed_or_their_sessions_end() {
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    let server = roomy().await;
    let owner = register_owner(&server, "owner@socket.example.com").await;
    let ann = invite_and_join(&server, &owner, "ann@socket.example.com", "agent").await;
    let bob = invite_and_join(&server, &owner, "bob@socket.example.com", "agent").await;
    let bot = published_bot(&server, &owner, json!({"name": "desk"})).await;
    let manual = json!({"agents": {"assignment": "manual"}}).to_string();
    let (status, _) = server.call("PATCH", "/api/workspace", Some(&manual), Some(&owner)).await;
    assert_eq!(status, 200);

    let mut visitor = server.client().await;
    let welcome = visitor.hello_stored(&bot).await;
    let conversation = welcome["conversation_id"].as_str().expect("id").to_owned();
    let (mut ann_socket, _, _) = Client::agent(server.addr, &ann).await;
    let (mut bob_socket, _, _) = Client::agent(server.addr, &bob).await;
    for socket in [&mut ann_socket, &mut bob_socket] {
        socket.send(json!({"type": "subscribe", "conversation_id": conversation})).await;
        socket.until("subscribed").await;
    }
    visitor.say("v1", "before anything changed").await;
    for socket in [&mut ann_socket, &mut bob_socket] {
        let (update, _) = socket.until("inbox_update").await;
        assert_eq!(update["conversation_id"], conversation.as_str());
    }

    // Ann is removed: her socket says so and closes; what the visitor says next never
    // reaches it.
    let ann_id = account_id(&server, &ann).await;
    let (status, _) =
        server.call("DELETE", &format!("/api/members/{ann_id}"), None, Some(&owner)).await;
    assert_eq!(status, 204);
    visitor.say("v2", "secret after the removal").await;
    let (how, frames) = closes_without(&mut ann_socket, "secret after the removal").await;
    assert_eq!(how, Closed::Code(CloseCode::Policy), "{frames:?}");
    assert_eq!(error_frame(&frames), Some("member_removed"), "{frames:?}");
    // Bob, still a member, reads on.
    loop {
        let (frame, _) = bob_socket.until("message").await;
        if frame["message"]["text"] == "secret after the removal" {
            break;
        }
    }

    // Bob's password is reset: the socket opened with his old session closes.
    let (status, _) = server
        .post("/api/auth/forgot-password", json!({"email": "bob@socket.example.com"}), None)
        .await;
    assert_eq!(status, 202);
    let link = mailed_token(&server, "bob@socket.example.com");
    let reset = json!({"token": link, "password": "a brand new long password"});
    let (status, body) = server.post("/api/auth/reset-password", reset, None).await;
    assert_eq!(status, 204, "{body}");
    visitor.say("v3", "secret after the reset").await;
    let (how, frames) = closes_without(&mut bob_socket, "secret after the reset").await;
    assert_eq!(how, Closed::Code(CloseCode::Policy), "{frames:?}");
    assert_eq!(error_frame(&frames), Some("session_ended"), "{frames:?}");

    // A token of the removed member opens no new socket either.
    let mut again = Client::connect_to(server.addr, "/v1/agent/ws").await;
    again.send(json!({"type": "hello", "token": ann})).await;
    let refused = again.expect("error").await;
    assert_eq!(refused["code"], "token_invalid", "{refused}");
}

/// In a cluster, the node that removes a member is not the one holding their socket: the
/// removal reaches it through the tenant's feed (Redis), and the socket closes there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_cluster_a_removal_on_one_node_closes_the_socket_on_another() {
    let Some(services) = cluster::services("removal across nodes") else { return };
    Box::pin(tokio::time::timeout(Duration::from_secs(120), removal_across_nodes(services)))
        .await
        .expect("the scenario finishes");
}

async fn removal_across_nodes(services: cluster::Services) {
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    let (a, b) = cluster::two_nodes(&services, |s| s.auth.ip_requests_per_15min = 1_000_000).await;
    let owner = register_owner(&a, "owner@nodes.example.com").await;
    let ann = invite_and_join(&a, &owner, "ann@nodes.example.com", "agent").await;
    let (mut socket, _, _) = Client::agent(b.addr, &ann).await;
    let ann_id = account_id(&a, &ann).await;
    let (status, _) = a.call("DELETE", &format!("/api/members/{ann_id}"), None, Some(&owner)).await;
    assert_eq!(status, 204);
    let (how, frames) = socket.until_closed().await;
    assert_eq!(how, Closed::Code(CloseCode::Policy), "{frames:?}");
    assert_eq!(error_frame(&frames), Some("member_removed"), "{frames:?}");

    // The CQL store's compare-and-set under the same flood as the embedded one.
    let email = "victim@nodes.example.com";
    let stolen = invite_and_join(&a, &owner, email, "admin").await;
    let (status, _) = a.post("/api/auth/forgot-password", json!({"email": email}), None).await;
    assert_eq!(status, 202);
    let link = mailed_token(&a, email);
    let flood = Flood::start(b.addr, &stolen, 16);
    flood.past(32).await;
    let reset = json!({"token": link, "password": "a brand new long password"});
    let (status, body) = a.post("/api/auth/reset-password", reset, None).await;
    assert_eq!(status, 204, "{body}");
    flood.past(32).await;
    flood.stop().await;
    let (status, _) = login(&a, email, PASSWORD).await;
    assert_eq!(status, 401, "the old password is refused");
    let (status, body) = b.call("GET", "/api/auth/me", None, Some(&stolen)).await;
    assert_eq!((status, error_code(&body)), (401, "token_revoked"));
}

// ---- 7: agents write as `human` only ------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_neither_deletes_transcripts_nor_posts_as_the_visitor() {
    let server = roomy().await;
    let owner = register_owner(&server, "owner@roles.example.com").await;
    let agent = invite_and_join(&server, &owner, "agent@roles.example.com", "agent").await;
    let bot = published_bot(&server, &owner, json!({"name": "desk"})).await;
    let (status, opened) =
        server.post("/api/conversations", json!({"bot_id": bot}), Some(&owner)).await;
    assert_eq!(status, 201, "{opened}");
    let id = opened["conversation_id"].as_str().expect("id").to_owned();

    let as_visitor = json!({"client_msg_id": "fake", "text": "I am the visitor"});
    let refusals = [
        server.call("DELETE", &format!("/api/conversations/{id}"), None, Some(&agent)).await,
        server.post(&format!("/api/conversations/{id}/messages"), as_visitor, Some(&agent)).await,
        server.post("/api/conversations", json!({"bot_id": bot}), Some(&agent)).await,
    ];
    for (status, body) in &refusals {
        assert_eq!((*status, error_code(body)), (403, "forbidden"), "{body}");
    }
    let (_, detail) =
        server.call("GET", &format!("/api/conversations/{id}"), None, Some(&agent)).await;
    assert!(!detail.to_string().contains("I am the visitor"), "nothing posted: {detail}");

    // What an agent does: take it over and answer as `human`.
    let (status, body) = server
        .call("POST", &format!("/api/conversations/{id}/claim"), Some("{}"), Some(&agent))
        .await;
    assert_eq!(status, 200, "{body}");
    let reply = json!({"client_msg_id": "r1", "text": "Hello, a person here"});
    let (status, body) =
        server.post(&format!("/api/conversations/{id}/replies"), reply, Some(&agent)).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["message"]["sender"], "human", "{body}");

    // Deleting is the admins' and owners'.
    let (status, _) =
        server.call("DELETE", &format!("/api/conversations/{id}"), None, Some(&owner)).await;
    assert_eq!(status, 204);
}

// ---- 8: logins keep memory bounded ----------------------------------------------------------

/// The peak resident memory of a process, from `/proc/<pid>/status` (`VmHWM`), in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM");
    line.split_whitespace().nth(1).and_then(|kib| kib.parse().ok()).expect("a number")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_logins_keep_the_peak_memory_bounded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let env = [
        ("PARLA__AUTH__IP_REQUESTS_PER_15MIN", "1000000".to_owned()),
        ("PARLA__DEMO__ENABLED", "false".to_owned()),
        ("PARLA__EMBEDDINGS__LOCAL_MODEL", String::new()),
    ];
    let (child, addr) = spawn_parla_with(dir.path(), &env).await;
    let pid = child.id().expect("pid");
    let register = json!({"email": "many@example.com", "password": PASSWORD, "name": "M"});
    let (status, body) =
        http_call(addr, "POST", "/api/auth/register", Some(&register.to_string()), None).await;
    assert_eq!(status, 201, "{body}");
    let before = peak_rss_kib(pid);

    // From a hundred addresses: one client's concurrent attempts at one account are bounded
    // by the login backoff before they reach the hashing gate.
    let creds = json!({"email": "many@example.com", "password": PASSWORD});
    let logins = (0..100u8).map(|n| {
        let (creds, from) = (creds.clone(), loopback(&format!("127.0.1.{}", n + 1)));
        tokio::spawn(
            async move { http_from(from, addr, "POST", "/api/auth/login", Some(&creds)).await },
        )
    });
    let answers: Vec<_> = futures_util::future::join_all(logins).await;
    let mut signed_in = 0;
    for answer in answers {
        let (status, headers, body) = answer.expect("a login");
        match status {
            200 => signed_in += 1,
            429 => {
                assert_eq!(error_code(&body), "auth_busy", "{body}");
                assert!(headers.contains("retry-after: "), "{headers}");
            }
            other => panic!("a login answered {other}: {body}"),
        }
    }
    assert!(signed_in > 0, "some logins got through");
    let peak = peak_rss_kib(pid);
    // Unbounded, the hundred Argon2 hashes (19 MiB each) took it to about 1.9 GiB.
    assert!(
        peak < 400 * 1024,
        "peak RSS {} MiB (before the logins: {} MiB)",
        peak / 1024,
        before / 1024
    );

    // A malformed email is refused before any hashing.
    let bad = json!({"email": "not an email", "password": PASSWORD}).to_string();
    let (status, body) = http_call(addr, "POST", "/api/auth/login", Some(&bad), None).await;
    assert_eq!((status, error_code(&body)), (422, "validation_failed"), "{body}");
    drop(child);
}

// ---- 11: invitations -----------------------------------------------------------------------

async fn invite(server: &TestServer, by: &str, email: &str, role: &str) -> Value {
    let body = json!({"email": email, "role": role});
    let (status, invited) = server.post("/api/members/invitations", body, Some(by)).await;
    assert_eq!(status, 202, "{invited}");
    invited
}

async fn accept(server: &TestServer, token: &str) -> (u16, Value) {
    let body = json!({"token": token, "name": "New", "password": PASSWORD});
    server.post("/api/auth/accept-invitation", body, None).await
}

async fn pending(server: &TestServer, jwt: &str) -> Vec<Value> {
    let (status, list) = server.call("GET", "/api/members/invitations", None, Some(jwt)).await;
    assert_eq!(status, 200, "{list}");
    list["data"].as_array().expect("invitations").clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invitations_are_listed_revoked_and_need_their_senders_rights_when_accepted() {
    let server = roomy().await;
    let owner = register_owner(&server, "owner@invites.example.com").await;
    let admin = invite_and_join(&server, &owner, "admin@invites.example.com", "admin").await;
    let admin_id = account_id(&server, &admin).await;
    let other = invite_and_join(&server, &owner, "other@invites.example.com", "admin").await;
    let other_id = account_id(&server, &other).await;

    // The admin invites two people: both are listed, with who sent them.
    let x = invite(&server, &admin, "x@invites.example.com", "admin").await;
    let y = invite(&server, &admin, "y@invites.example.com", "agent").await;
    let listed = pending(&server, &owner).await;
    let ids: Vec<&Value> = listed.iter().map(|i| &i["id"]).collect();
    assert!(ids.contains(&&x["id"]) && ids.contains(&&y["id"]), "{listed:?}");
    assert!(listed.iter().all(|i| i["invited_by"] == admin_id.as_str()), "{listed:?}");
    assert!(listed.iter().all(|i| i["expires_at"].as_i64() > i["created_at"].as_i64()));

    // Revoked: no longer listed, and its link no longer works.
    let path = format!("/api/members/invitations/{}", y["id"].as_str().expect("id"));
    let (status, body) = server.call("DELETE", &path, None, Some(&owner)).await;
    assert_eq!(status, 204, "{body}");
    let (status, body) = server.call("DELETE", &path, None, Some(&owner)).await;
    assert_eq!((status, error_code(&body)), (404, "not_found"), "revoked once");
    assert!(pending(&server, &owner).await.iter().all(|i| i["id"] != y["id"]));
    let (status, body) = accept(&server, &mailed_token(&server, "y@invites.example.com")).await;
    assert_eq!((status, error_code(&body)), (400, "invalid_token"), "{body}");

    // The admin who sent x is removed: x's invitation made no admin.
    let (status, _) =
        server.call("DELETE", &format!("/api/members/{admin_id}"), None, Some(&owner)).await;
    assert_eq!(status, 204);
    let (status, body) = accept(&server, &mailed_token(&server, "x@invites.example.com")).await;
    assert_eq!((status, error_code(&body)), (403, "invitation_void"), "{body}");

    // Demoted to agent, the other admin's invitation of an admin is void too; an owner's
    // invitation still works.
    invite(&server, &other, "z@invites.example.com", "admin").await;
    let demote = json!({"role": "agent"}).to_string();
    let (status, _) = server
        .call("PATCH", &format!("/api/members/{other_id}"), Some(&demote), Some(&owner))
        .await;
    assert_eq!(status, 200);
    let (status, body) = accept(&server, &mailed_token(&server, "z@invites.example.com")).await;
    assert_eq!((status, error_code(&body)), (403, "invitation_void"), "{body}");
    invite(&server, &owner, "w@invites.example.com", "admin").await;
    let (status, body) = accept(&server, &mailed_token(&server, "w@invites.example.com")).await;
    assert_eq!((status, body["role"].clone()), (201, json!("admin")), "{body}");
    assert!(pending(&server, &owner).await.is_empty(), "nothing pending any more");

    // Only admins and owners see or revoke invitations.
    let (status, _) = server.call("GET", "/api/members/invitations", None, Some(&other)).await;
    assert_eq!(status, 403, "an agent");
}

/// An invitation's link stops working at its expiry (one second here, through the real
/// binary's settings), and it is no longer listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invitation_expires() {
    let dir = tempfile::tempdir().expect("tempdir");
    let env = [
        ("PARLA__AUTH__INVITATION_TTL_SECS", "1".to_owned()),
        ("PARLA__DEMO__ENABLED", "false".to_owned()),
        ("PARLA__EMBEDDINGS__LOCAL_MODEL", String::new()),
    ];
    let (_child, addr) = spawn_parla_with(dir.path(), &env).await;
    let register = json!({"email": "o@expiry.example.com", "password": PASSWORD, "name": "O"});
    let (status, _) =
        http_call(addr, "POST", "/api/auth/register", Some(&register.to_string()), None).await;
    assert_eq!(status, 201);
    let creds = json!({"email": "o@expiry.example.com", "password": PASSWORD}).to_string();
    let (_, session) = http_call(addr, "POST", "/api/auth/login", Some(&creds), None).await;
    let jwt = session["access_token"].as_str().expect("token").to_owned();
    let body = json!({"email": "late@expiry.example.com", "role": "agent"}).to_string();
    let (status, _) =
        http_call(addr, "POST", "/api/members/invitations", Some(&body), Some(&jwt)).await;
    assert_eq!(status, 202);
    // Wait (polling, no timing asserted) until it is no longer listed.
    let mut listed = true;
    for _ in 0..100 {
        let (_, list) = http_call(addr, "GET", "/api/members/invitations", None, Some(&jwt)).await;
        listed = !list["data"].as_array().expect("invitations").is_empty();
        if !listed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!listed, "expired invitations are not listed");
    let mails = std::fs::read_to_string(dir.path().join("outbox.jsonl")).expect("outbox");
    let mail = mails.lines().rev().find(|l| l.contains("late@expiry")).expect("the invitation");
    let mail: Value = serde_json::from_str(mail).expect("json");
    let text = mail["body"].as_str().expect("body");
    let token =
        text[text.find("token=").expect("token") + 6..].split_whitespace().next().expect("t");
    let accept = json!({"token": token, "name": "Late", "password": PASSWORD}).to_string();
    let (status, body) =
        http_call(addr, "POST", "/api/auth/accept-invitation", Some(&accept), None).await;
    assert_eq!((status, error_code(&body)), (400, "invalid_token"), "{body}");
}

// ---- 12: nobody locks the owner out -------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strangers_wrong_passwords_back_the_stranger_off_not_the_owner() {
    let server = roomy().await;
    register_owner(&server, "ann@lockout.example.com").await;
    let (owner, stranger, sprayer) =
        (loopback("127.0.0.1"), loopback("127.0.0.2"), loopback("127.0.0.3"));
    let attempt = |from: IpAddr, email: &str, password: &str| {
        let body = json!({"email": email, "password": password});
        async move { http_from(from, server.addr, "POST", "/api/auth/login", Some(&body)).await }
    };
    let wrong = "wrong wrong wrong";
    let email = "ann@lockout.example.com";
    for n in 0..5 {
        let (status, _, body) = attempt(stranger, email, wrong).await;
        assert_eq!((status, error_code(&body)), (401, "invalid_credentials"), "guess {n}");
    }
    let (status, headers, body) = attempt(stranger, email, wrong).await;
    assert_eq!((status, error_code(&body)), (429, "login_backoff"), "{body}");
    assert!(headers.contains("retry-after: "), "{headers}");
    // Even with the right password the stranger waits...
    let (status, _, _) = attempt(stranger, email, PASSWORD).await;
    assert_eq!(status, 429);
    // ...but the owner, from their own address, signs in.
    let (status, _, body) = attempt(owner, email, PASSWORD).await;
    assert_eq!(status, 200, "{body}");

    // Spraying guesses over many accounts from one address backs it off on all of them.
    for n in 0..20 {
        let (status, _, body) = attempt(sprayer, &format!("u{n}@lockout.example.com"), wrong).await;
        assert_eq!(status, 401, "guess {n}: {body}");
    }
    let (status, _, body) = attempt(sprayer, "fresh@lockout.example.com", wrong).await;
    assert_eq!((status, error_code(&body)), (429, "login_backoff"), "{body}");
    let (status, _, _) = attempt(owner, email, PASSWORD).await;
    assert_eq!(status, 200, "the owner is still not affected");
}

// ---- the review of issue 19: anonymous hashing, concurrent guesses, keys, stale roles -------

/// Keeps `flooders` anonymous clients sending bogus invitation and reset tokens (with valid
/// names and passwords) until `stop`; counts the answers, and those that were `auth_busy`.
struct BogusTokens {
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicUsize>,
    busy: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl BogusTokens {
    fn start(addr: SocketAddr, flooders: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (answered, busy) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let tasks = (0..flooders)
            .map(|n| {
                let (stop, answered, busy) = (stop.clone(), answered.clone(), busy.clone());
                tokio::spawn(async move {
                    let mut round = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        round += 1;
                        let token = format!("ott_bogus{n}x{round}");
                        let (path, body) = match round % 2 {
                            0 => (
                                "/api/auth/accept-invitation",
                                json!({"token": token, "name": "a", "password": "aaaaaaaaaaaa"}),
                            ),
                            _ => (
                                "/api/auth/reset-password",
                                json!({"token": token, "password": "aaaaaaaaaaaa"}),
                            ),
                        };
                        let body = body.to_string();
                        let (status, answer) =
                            http_call(addr, "POST", path, Some(&body), None).await;
                        match (status, error_code(&answer)) {
                            (400, "invalid_token") => {}
                            (429, "auth_busy") => drop(busy.fetch_add(1, Ordering::Relaxed)),
                            other => panic!("{path} answered {other:?}: {answer}"),
                        }
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        Self { stop, answered, busy, tasks }
    }

    async fn past(&self, more: usize) {
        let target = self.answered.load(Ordering::Relaxed) + more;
        while self.answered.load(Ordering::Relaxed) < target {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Stops the flood; returns how many of its answers were `auth_busy`.
    async fn stop(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.expect("a flooder");
        }
        self.busy.load(Ordering::Relaxed)
    }
}

/// One hashing thread, and anonymous clients keep sending bogus invitation and reset tokens:
/// a bad token costs a store read, not a password hash, so a real login still goes through
/// (before, every bogus request was hashed first and the login waited its 2 s behind them,
/// then got `auth_busy`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bogus_invitation_and_reset_tokens_do_not_keep_logins_from_hashing() {
    let server = start_with(|s| {
        s.auth.ip_requests_per_15min = 1_000_000;
        s.auth.max_concurrent_hashes = 1;
    })
    .await;
    register_owner(&server, "real@busy.example.com").await;
    let flood = BogusTokens::start(server.addr, 64);
    flood.past(128).await;
    for n in 0..3 {
        let (status, body) = login(&server, "real@busy.example.com", PASSWORD).await;
        assert_eq!(status, 200, "login {n} during the flood: {body}");
        flood.past(64).await;
    }
    assert_eq!(flood.stop().await, 0, "no bogus token waited for a hash");
}

/// Accepting an invitation spends the client's request budget like every other anonymous
/// auth endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepting_an_invitation_spends_the_clients_budget() {
    let server = start_with(|s| s.auth.ip_requests_per_15min = 3).await;
    let bogus = json!({"token": "ott_bogus", "name": "a", "password": "aaaaaaaaaaaa"});
    for n in 0..3 {
        let (status, body) = server.post("/api/auth/accept-invitation", bogus.clone(), None).await;
        assert_eq!((status, error_code(&body)), (400, "invalid_token"), "try {n}: {body}");
    }
    let (status, headers, body) = http_call_with_headers(
        server.addr,
        "POST",
        "/api/auth/accept-invitation",
        Some(&bogus.to_string()),
        None,
    )
    .await;
    assert_eq!((status, error_code(&body)), (429, "rate_limited"), "{body}");
    assert!(headers.contains("retry-after: "), "{headers}");
}

/// Thirty wrong passwords for one account sent at once from one client: each is counted when
/// it starts, so at most the free five reach the password hash and the rest back off (before,
/// all thirty passed the check while the count was still zero). The owner, from their own
/// address, still signs in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_wrong_passwords_from_one_client_reach_the_hash_at_most_five_times() {
    let server = start_with(|s| {
        s.auth.ip_requests_per_15min = 1_000_000;
        s.auth.max_concurrent_hashes = 8;
    })
    .await;
    let email = "ann@concurrent.example.com";
    register_owner(&server, email).await;
    let stranger = loopback("127.0.0.4");
    let guess = json!({"email": email, "password": "wrong wrong wrong"});
    let guesses =
        (0..30).map(|_| http_from(stranger, server.addr, "POST", "/api/auth/login", Some(&guess)));
    let answers = futures_util::future::join_all(guesses).await;
    let mut hashed = 0;
    for (status, _, body) in &answers {
        match (*status, error_code(body)) {
            (401, "invalid_credentials") => hashed += 1,
            (429, "login_backoff") => {}
            other => panic!("a guess answered {other:?}: {body}"),
        }
    }
    assert!(hashed <= 5, "{hashed} of 30 concurrent guesses reached the hash");
    let creds = json!({"email": email, "password": PASSWORD});
    let (status, _, body) =
        http_from(loopback("127.0.0.1"), server.addr, "POST", "/api/auth/login", Some(&creds))
            .await;
    assert_eq!(status, 200, "the owner signs in: {body}");
}

/// A key an admin minted stops working when they are removed, or demoted below admin; the
/// owner's key and the keys of admins who stay keep working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_or_demoted_admins_api_keys_are_revoked() {
    let server = roomy().await;
    let owner = register_owner(&server, "owner@minted.example.com").await;
    let ann = invite_and_join(&server, &owner, "ann@minted.example.com", "admin").await;
    let bob = invite_and_join(&server, &owner, "bob@minted.example.com", "admin").await;
    let (ann_id, bob_id) = (account_id(&server, &ann).await, account_id(&server, &bob).await);
    let mint = |jwt: String| {
        let server = &server;
        async move {
            let body = json!({"name": "export", "scopes": ["conversations:read"]});
            let (status, created) = server.post("/api/api-keys", body, Some(&jwt)).await;
            assert_eq!(status, 201, "{created}");
            created["key"].as_str().expect("key").to_owned()
        }
    };
    let (ann_key, bob_key, owner_key) =
        (mint(ann.clone()).await, mint(bob.clone()).await, mint(owner.clone()).await);
    let reads = |key: &str| {
        let key = key.to_owned();
        let server = &server;
        async move { server.call("GET", "/api/inbox", None, Some(&key)).await }
    };
    for key in [&ann_key, &bob_key, &owner_key] {
        assert_eq!(reads(key).await.0, 200);
    }

    let (status, _) =
        server.call("DELETE", &format!("/api/members/{ann_id}"), None, Some(&owner)).await;
    assert_eq!(status, 204);
    let (status, body) = reads(&ann_key).await;
    assert_eq!((status, error_code(&body)), (401, "invalid_api_key"), "removed: {body}");
    assert_eq!(reads(&bob_key).await.0, 200, "another admin's key");

    // Demoted to admin an owner keeps their keys; demoted to agent an admin does not.
    let agent = json!({"role": "agent"}).to_string();
    let path = format!("/api/members/{bob_id}");
    let (status, _) = server.call("PATCH", &path, Some(&agent), Some(&owner)).await;
    assert_eq!(status, 200);
    let (status, body) = reads(&bob_key).await;
    assert_eq!((status, error_code(&body)), (401, "invalid_api_key"), "demoted: {body}");
    assert_eq!(reads(&owner_key).await.0, 200, "the owner's key");

    // The list says who minted each key, and which were revoked.
    let (_, keys) = server.call("GET", "/api/api-keys", None, Some(&owner)).await;
    let keys = keys["data"].as_array().expect("keys");
    let mut minted: Vec<(String, bool)> = keys
        .iter()
        .map(|k| (k["created_by"].as_str().unwrap_or("-").to_owned(), k["revoked"] == true))
        .collect();
    minted.sort();
    let owner_id = account_id(&server, &owner).await;
    let mut expected = vec![(ann_id, true), (bob_id, true), (owner_id, false)];
    expected.sort();
    assert_eq!(minted, expected);
}

/// Sends `PATCH path` with `body`, holding the body back until `meanwhile` has run: the
/// server has read the caller (from the headers) before `meanwhile`, and decides after it.
async fn patch_with_slow_body<F: std::future::Future<Output = ()>>(
    addr: SocketAddr,
    path: &str,
    body: &Value,
    bearer: &str,
    meanwhile: F,
) -> (u16, Value) {
    let body = body.to_string();
    let head = format!(
        "PATCH {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Authorization: Bearer {bearer}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(head.as_bytes()).await.expect("write the head");
    stream.write_all(&body.as_bytes()[..1]).await.expect("write a byte");
    // The extractors run together: the caller is read as soon as the head is in, while the
    // body waits. Nothing tells the test when that read is done, so it gives it time; a slow
    // read would only make the test pass without proving anything, never fail it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    meanwhile.await;
    stream.write_all(&body.as_bytes()[1..]).await.expect("write the rest");
    let mut raw = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut raw))
        .await
        .expect("an answer in time")
        .expect("read");
    let raw = String::from_utf8_lossy(&raw).to_string();
    let status = raw.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("status");
    let json = raw
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b.trim()).ok())
        .unwrap_or(Value::Null);
    (status, json)
}

/// An owner's request to demote another owner is in flight when they are demoted to admin
/// themself: it is decided on their role as it is then, and refused (before, the role read
/// when the request started let it through).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_demoted_during_their_request_no_longer_acts_as_owner() {
    let server = roomy().await;
    let first = register_owner(&server, "first@stale.example.com").await;
    let ann = invite_and_join(&server, &first, "ann@stale.example.com", "owner").await;
    let cat = invite_and_join(&server, &first, "cat@stale.example.com", "owner").await;
    let (ann_id, cat_id) = (account_id(&server, &ann).await, account_id(&server, &cat).await);
    let demote_ann = async {
        let admin = json!({"role": "admin"}).to_string();
        let path = format!("/api/members/{ann_id}");
        let (status, body) = server.call("PATCH", &path, Some(&admin), Some(&first)).await;
        assert_eq!(status, 200, "{body}");
    };
    let path = format!("/api/members/{cat_id}");
    let (status, body) =
        patch_with_slow_body(server.addr, &path, &json!({"role": "admin"}), &ann, demote_ann).await;
    assert_eq!((status, error_code(&body)), (403, "forbidden"), "{body}");
    assert_eq!(role_of(&server, &first, &cat_id).await, "owner");
}
