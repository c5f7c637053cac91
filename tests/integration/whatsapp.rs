//! WhatsApp through the public doors: a connection made with the admin API, Meta's webhook
//! (verification, `X-Hub-Signature-256` made by Meta's rule: HMAC-SHA256 of the raw body with
//! the app secret) and a local server speaking the Cloud API's documented send shape
//! (`POST /{version}/{phone-number-id}/messages`, bearer token, `{"messages":[{"id"}]}` or a
//! Graph error with 429).

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use crate::common::*;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

const NUMBER: &str = "106540352242922";
const TOKEN: &str = "EAAG-test-access-token-9f3a";
const APP_SECRET: &str = "app-secret-for-tests-7c1e";
const VERIFY: &str = "verify-me-4b2d";
const CONTACT: &str = "393331234567";

/// The Graph API double: records every send (read receipts apart); answers 429 while
/// `throttle` > 0, and 401 to every send while `revoked` (the access token was revoked).
#[derive(Default)]
struct Graph {
    sent: Mutex<Vec<Value>>,
    /// Read receipts: `{"status": "read", "message_id", "typing_indicator"}`.
    reads: Mutex<Vec<Value>>,
    attempts: AtomicUsize,
    throttle: AtomicUsize,
    /// The `Retry-After` of a 429, in seconds.
    retry_after: AtomicUsize,
    revoked: AtomicBool,
}

async fn graph() -> (String, Arc<Graph>) {
    let graph = Arc::new(Graph::default());
    let state = graph.clone();
    let server = HttpServer::new(move || {
        let state = state.clone();
        App::new().route(
            "/{version}/{number}/messages",
            web::post().to(move |req: HttpRequest, path: web::Path<(String, String)>, body: web::Json<Value>| {
                let state = state.clone();
                async move {
                    if body["status"] == "read" {
                        state.reads.lock().expect("log").push(body.into_inner());
                        return HttpResponse::Ok().json(json!({"success": true}));
                    }
                    state.attempts.fetch_add(1, Ordering::SeqCst);
                    let auth = req.headers().get("authorization").and_then(|v| v.to_str().ok());
                    let revoked = state.revoked.load(Ordering::SeqCst);
                    if revoked || auth != Some(&format!("Bearer {TOKEN}")) || path.1 != NUMBER {
                        return HttpResponse::Unauthorized().json(json!({"error": {"message": "Invalid OAuth access token.", "type": "OAuthException", "code": 190}}));
                    }
                    if state.throttle.load(Ordering::SeqCst) > 0 {
                        state.throttle.fetch_sub(1, Ordering::SeqCst);
                        let wait = state.retry_after.load(Ordering::SeqCst).to_string();
                        return HttpResponse::TooManyRequests().insert_header(("retry-after", wait)).json(json!({"error": {"message": "(#130429) Rate limit hit", "type": "OAuthException", "code": 130429}}));
                    }
                    let to = body["to"].clone();
                    let mut sent = state.sent.lock().expect("log");
                    sent.push(body.into_inner());
                    let id = format!("wamid.out{}", sent.len());
                    HttpResponse::Ok().json(json!({"messaging_product": "whatsapp", "contacts": [{"input": to, "wa_id": to}], "messages": [{"id": id}]}))
                }
            }),
        )
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .expect("bind");
    let addr = server.addrs()[0];
    tokio::spawn(server.run());
    (format!("http://{addr}/v21.0"), graph)
}

struct Setup {
    server: TestServer,
    owner: String,
    bot: String,
    webhook: String,
    graph: Arc<Graph>,
}

async fn setup(fallback: &str, max_chars: usize) -> Setup {
    setup_with(fallback, max_chars, 86_400, None).await
}

/// A workspace, a bot answering `fallback`, and its WhatsApp connection (with `template`
/// for outside a window of `window_secs`).
async fn setup_with(
    fallback: &str,
    max_chars: usize,
    window_secs: u64,
    template: Option<(&str, &str)>,
) -> Setup {
    let (base, graph) = graph().await;
    let server = start_with(|s| {
        s.channels.whatsapp_api_base = base.clone();
        s.channels.whatsapp_max_chars = max_chars;
        s.channels.whatsapp_window_secs = window_secs;
        s.channels.retry_base_ms = 10;
    })
    .await;
    let owner = register_owner(&server, "owner@wa.example.com").await;
    let bot = published_bot(
        &server,
        &owner,
        json!({"name": "wa", "config": {"fallback_message": fallback}}),
    )
    .await;
    let mut body = json!({"kind": "whatsapp", "phone_number_id": NUMBER, "access_token": TOKEN,
        "app_secret": APP_SECRET, "verify_token": VERIFY});
    if let Some((name, language)) = template {
        body["template_name"] = json!(name);
        body["template_language"] = json!(language);
    }
    let (status, connection) =
        server.post(&format!("/api/bots/{bot}/channels"), body, Some(&owner)).await;
    assert_eq!(status, 201, "{connection}");
    let webhook = connection["webhook_path"].as_str().expect("webhook path").to_owned();
    Setup { server, owner, bot, webhook, graph }
}

fn text_message(id: &str, text: &str) -> Value {
    json!({"from": CONTACT, "id": id, "timestamp": "1764000000", "type": "text", "text": {"body": text}})
}

fn notification(messages: Vec<Value>) -> String {
    json!({"object": "whatsapp_business_account", "entry": [{"id": "102290129340398", "changes": [{
        "field": "messages",
        "value": {"messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": NUMBER},
            "contacts": [{"profile": {"name": "Kim"}, "wa_id": CONTACT}],
            "messages": messages}}]}]})
    .to_string()
}

fn signature(body: &str, secret: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(body.as_bytes());
    let digest = mac.finalize().into_bytes();
    format!("sha256={}", digest.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// POSTs a notification as Meta would; returns the status.
async fn deliver(s: &Setup, body: &str, signature_header: Option<&str>) -> u16 {
    let sig = signature_header.map(|v| format!("X-Hub-Signature-256: {v}\r\n")).unwrap_or_default();
    let request = format!(
        "POST {} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n{sig}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        s.webhook,
        body.len()
    );
    raw_http(s.server.addr, &request).await.0
}

async fn conversations(s: &Setup) -> Vec<Value> {
    let (_, page) = s
        .server
        .call("GET", &format!("/api/bots/{}/conversations", s.bot), None, Some(&s.owner))
        .await;
    page["data"].as_array().expect("data").clone()
}

async fn transcript(s: &Setup, id: &str) -> Vec<Value> {
    let (_, detail) = s
        .server
        .call("GET", &format!("/api/conversations/{id}?limit=500"), None, Some(&s.owner))
        .await;
    detail["messages"].as_array().expect("messages").clone()
}

/// Waits until the double has received `n` messages; returns them.
async fn sent(graph: &Graph, n: usize) -> Vec<Value> {
    for _ in 0..500 {
        if graph.sent.lock().expect("log").len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    graph.sent.lock().expect("log").clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_is_verified_and_a_forged_signature_stores_nothing() {
    let s = setup("Sorry?", 4096).await;
    let verify = |token: &str| {
        format!(
            "{}?hub.mode=subscribe&hub.verify_token={token}&hub.challenge=1158201444",
            s.webhook
        )
    };
    assert_eq!(s.server.get(&verify(VERIFY)).await, (200, "1158201444".into()));
    assert_eq!(s.server.get(&verify("wrong")).await.0, 403);
    let body = notification(vec![text_message("wamid.f1", "hello")]);
    assert_eq!(deliver(&s, &body, Some(&signature(&body, "not-the-app-secret"))).await, 401);
    assert_eq!(deliver(&s, &body, None).await, 401, "unsigned");
    let tampered = body.replace("hello", "hellO");
    assert_eq!(
        deliver(&s, &tampered, Some(&signature(&body, APP_SECRET))).await,
        401,
        "body changed"
    );
    assert!(conversations(&s).await.is_empty(), "nothing was stored");
    assert_eq!(s.graph.attempts.load(Ordering::SeqCst), 0, "nothing was sent");
    assert_eq!(deliver(&s, "{not json", Some(&signature("{not json", APP_SECRET))).await, 400);
    let unknown = s.webhook.replace("/whatsapp/", "/whatsapp/x");
    assert_eq!(s.server.get(&format!("{unknown}?hub.mode=subscribe")).await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_is_stored_in_arrival_order_once_and_every_answer_reaches_the_contact() {
    let s = setup("Got it.", 4096).await;
    let burst: Vec<Value> =
        (0..50).map(|i| text_message(&format!("wamid.b{i}"), &format!("message {i}"))).collect();
    let body = notification(burst);
    assert_eq!(deliver(&s, &body, Some(&signature(&body, APP_SECRET))).await, 200);
    // Meta redelivers (it did not hear our 200 in time): nothing is stored twice.
    assert_eq!(deliver(&s, &body, Some(&signature(&body, APP_SECRET))).await, 200);
    let found = conversations(&s).await;
    assert_eq!(found.len(), 1, "one conversation per contact");
    assert_eq!(found[0]["source"], "whatsapp");
    let id = found[0]["id"].as_str().expect("id");
    let answers = sent(&s.graph, 51).await; // 50 answers and, once escalated, the notice.
    let messages = transcript(&s, id).await;
    let seqs: Vec<u64> = messages.iter().map(|m| m["seq"].as_u64().expect("seq")).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "gapless");
    let visitor: Vec<&str> = messages
        .iter()
        .filter(|m| m["sender"] == "user")
        .map(|m| m["text"].as_str().expect("text"))
        .collect();
    let expected: Vec<String> = (0..50).map(|i| format!("message {i}")).collect();
    assert_eq!(visitor, expected, "in arrival order, each once");
    // Everything the bot said reached the contact, in seq order, once.
    let said: Vec<&str> = messages
        .iter()
        .filter(|m| m["sender"] != "user")
        .map(|m| m["text"].as_str().expect("text"))
        .collect();
    let delivered: Vec<&str> =
        answers.iter().map(|a| a["text"]["body"].as_str().expect("body")).collect();
    assert_eq!(delivered, said);
    assert_eq!(said.iter().filter(|t| **t == "Got it.").count(), 50, "one answer per message");
    for _ in 0..200 {
        if s.graph.reads.lock().expect("log").len() >= 50 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let reads = s.graph.reads.lock().expect("log").clone();
    let mut read_ids: Vec<&str> =
        reads.iter().map(|r| r["message_id"].as_str().expect("id")).collect();
    read_ids.sort_unstable();
    read_ids.dedup();
    assert_eq!(read_ids.len(), 50, "each message marked read (blue ticks)");
    assert!(
        reads.iter().all(|r| r["typing_indicator"]["type"] == "text"),
        "with the typing indicator"
    );
    for answer in &answers {
        assert_eq!(
            (answer["to"].as_str(), answer["type"].as_str()),
            (Some(CONTACT), Some("text")),
            "{answer}"
        );
        assert_eq!(answer["messaging_product"], "whatsapp");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_answer_arrives_in_ordered_pieces_within_the_limit_despite_a_429() {
    let long: String = (0..20).map(|i| format!("Sentence number {i} of a long answer. ")).collect();
    let s = setup(long.trim(), 200).await;
    s.graph.throttle.store(2, Ordering::SeqCst); // The first two sends hit the rate limit.
    let body = notification(vec![text_message("wamid.l1", "tell me everything")]);
    assert_eq!(deliver(&s, &body, Some(&signature(&body, APP_SECRET))).await, 200);
    let pieces: Vec<String> = sent(&s.graph, 4)
        .await
        .iter()
        .map(|m| m["text"]["body"].as_str().expect("body").to_owned())
        .collect();
    assert!(pieces.len() >= 4, "{pieces:?}");
    assert!(pieces.iter().all(|p| p.chars().count() <= 200), "{pieces:?}");
    assert!(pieces.iter().all(|p| p.ends_with('.')), "cut at sentence ends: {pieces:?}");
    assert_eq!(pieces.join(" "), long.trim(), "in order, nothing lost or repeated");
    assert_eq!(s.graph.attempts.load(Ordering::SeqCst), pieces.len() + 2, "two 429s, then success");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agents_reply_reaches_whatsapp() {
    let s = setup("Sorry?", 4096).await;
    let body = notification(vec![text_message("wamid.a1", "I need a person please")]);
    assert_eq!(deliver(&s, &body, Some(&signature(&body, APP_SECRET))).await, 200);
    let id = conversations(&s).await[0]["id"].as_str().expect("id").to_owned();
    let before = sent(&s.graph, 2).await.len(); // The notice that nobody is online, the answer.
    let path = |action: &str| format!("/api/conversations/{id}/{action}");
    assert_eq!(s.server.post(&path("claim"), json!({}), Some(&s.owner)).await.0, 200);
    let reply = json!({"client_msg_id": "r1", "text": "Hi Kim, Ann here. Let me check."});
    assert_eq!(s.server.post(&path("replies"), reply, Some(&s.owner)).await.0, 201);
    let all = sent(&s.graph, before + 1).await;
    let last = all.last().expect("sent");
    assert_eq!(
        (last["to"].as_str(), last["text"]["body"].as_str()),
        (Some(CONTACT), Some("Hi Kim, Ann here. Let me check."))
    );
}

/// The connection's `health` once `ready` holds of it (polled: sends are asynchronous).
async fn health_when(s: &Setup, ready: impl Fn(&Value) -> bool) -> Value {
    let path = format!("/api/bots/{}/channels", s.bot);
    let mut health = Value::Null;
    for _ in 0..500 {
        let (status, list) = s.server.call("GET", &path, None, Some(&s.owner)).await;
        assert_eq!(status, 200, "{list}");
        health = list["data"][0]["health"].clone();
        if ready(&health) {
            return health;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the connection's health never got there: {health}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_shows_the_last_signed_webhook_delivery_and_error() {
    let s = setup("Sorry?", 4096).await;
    let empty = json!({"last_inbound_at": null, "last_delivered_at": null, "last_error": null});
    assert_eq!(health_when(&s, |_| true).await, empty, "nothing seen yet");
    let body = notification(vec![text_message("wamid.h1", "hello")]);
    assert_eq!(deliver(&s, &body, Some(&signature(&body, "not-the-app-secret"))).await, 401);
    assert_eq!(health_when(&s, |_| true).await, empty, "a forged webhook is no sign of life");

    let before = parla_engine::model::now_ms();
    assert_eq!(deliver(&s, &body, Some(&signature(&body, APP_SECRET))).await, 200);
    let health = health_when(&s, |h| h["last_delivered_at"].is_i64()).await;
    assert!(health["last_inbound_at"].as_i64().is_some_and(|t| t >= before), "{health}");
    assert!(health["last_error"].is_null(), "{health}");
    let delivered = health["last_delivered_at"].as_i64().expect("delivered");

    // The access token is revoked: the next answer is refused with 401.
    s.graph.revoked.store(true, Ordering::SeqCst);
    let body = notification(vec![text_message("wamid.h2", "still there?")]);
    assert_eq!(deliver(&s, &body, Some(&signature(&body, APP_SECRET))).await, 200);
    let health = health_when(&s, |h| h["last_error"].is_object()).await;
    let error = &health["last_error"];
    let message = error["message"].as_str().expect("message");
    assert!(message.contains("401") && message.contains("Invalid OAuth access token"), "{error}");
    for secret in [TOKEN, APP_SECRET, VERIFY] {
        assert!(!health.to_string().contains(secret), "{secret} in {health}");
    }
    assert!(error["at"].as_i64().is_some_and(|at| at >= delivered), "{health}");
    assert_eq!(health["last_delivered_at"].as_i64(), Some(delivered), "no later delivery");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_sealed_and_never_returned() {
    let s = setup("Sorry?", 4096).await;
    let (status, list) =
        s.server.call("GET", &format!("/api/bots/{}/channels", s.bot), None, Some(&s.owner)).await;
    assert_eq!(status, 200);
    let text = list.to_string();
    for secret in [TOKEN, APP_SECRET, VERIFY] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    assert_eq!(list["data"][0]["secret_hints"]["access_token"], "…9f3a");
    let stored = std::fs::read(s.server.dir.path().join("parla.redb")).expect("store file");
    let stored = String::from_utf8_lossy(&stored);
    for secret in [TOKEN, APP_SECRET, VERIFY] {
        assert!(!stored.contains(secret), "{secret} is stored in clear");
    }
    let bad = json!({"kind": "web", "phone_number_id": NUMBER, "access_token": "a", "app_secret": "b", "verify_token": "c"});
    let (status, body) =
        s.server.post(&format!("/api/bots/{}/channels", s.bot), bad, Some(&s.owner)).await;
    assert_eq!((status, body["error"]["details"]["field"].as_str()), (422, Some("kind")));
    let id = list["data"][0]["id"].as_str().expect("id");
    let (status, _) = s
        .server
        .call("DELETE", &format!("/api/bots/{}/channels/{id}", s.bot), None, Some(&s.owner))
        .await;
    assert_eq!(status, 204);
    let body = notification(vec![text_message("wamid.d1", "hello?")]);
    assert_eq!(deliver(&s, &body, Some(&signature(&body, APP_SECRET))).await, 404, "disconnected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_the_window_a_reply_goes_out_as_the_template_or_fails_visibly() {
    for template in [Some(("reengage", "en_US")), None] {
        let s = setup_with("Sorry?", 4096, 1, template).await;
        let body = notification(vec![text_message("wamid.w1", "hello")]);
        assert_eq!(deliver(&s, &body, Some(&signature(&body, APP_SECRET))).await, 200);
        let first = sent(&s.graph, 1).await;
        assert_eq!(first[0]["type"], "text", "inside the window: free-form");
        let id = conversations(&s).await[0]["id"].as_str().expect("id").to_owned();
        let (mut agent, _, _) = Client::agent(s.server.addr, &s.owner).await;
        agent.send(json!({"type": "subscribe", "conversation_id": id})).await;
        agent.until("subscribed").await;
        tokio::time::sleep(Duration::from_millis(1100)).await; // The 1 s window closes.
        let path = |action: &str| format!("/api/conversations/{id}/{action}");
        assert_eq!(s.server.post(&path("claim"), json!({}), Some(&s.owner)).await.0, 200);
        let reply = json!({"client_msg_id": "late", "text": "Your order has shipped."});
        assert_eq!(s.server.post(&path("replies"), reply, Some(&s.owner)).await.0, 201);
        if template.is_some() {
            let all = sent(&s.graph, 2).await;
            let last = all.last().expect("sent");
            assert_eq!(last["type"], "template", "{last}");
            assert_eq!(last["template"]["name"], "reengage");
            assert_eq!(last["template"]["language"]["code"], "en_US");
            assert_eq!(
                last["template"]["components"][0]["parameters"][0]["text"],
                "Your order has shipped."
            );
        } else {
            let (error, _) = agent.until("error").await;
            assert_eq!(error["code"], "channel_delivery_failed", "{error}");
            assert!(
                error["message"].as_str().is_some_and(|m| m.contains("24-hour window")),
                "{error}"
            );
            assert_eq!(s.graph.sent.lock().expect("log").len(), 1, "nothing free-form went out");
        }
    }
}

fn status_notification(wamid: &str, status: &str) -> String {
    let mut report =
        json!({"id": wamid, "status": status, "timestamp": "1764000100", "recipient_id": CONTACT});
    if status == "failed" {
        report["errors"] = json!([{"code": 131047, "title": "Re-engagement message"}]);
    }
    json!({"object": "whatsapp_business_account", "entry": [{"id": "102290129340398", "changes": [{
        "field": "messages",
        "value": {"messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": NUMBER},
            "statuses": [report]}}]}]})
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reports_move_a_messages_delivery_forward_and_failures_show() {
    let s = setup("Hello from the bot.", 4096).await;
    for (n, text) in ["hi", "again"].iter().enumerate() {
        let body = notification(vec![text_message(&format!("wamid.s{n}"), text)]);
        assert_eq!(deliver(&s, &body, Some(&signature(&body, APP_SECRET))).await, 200);
        sent(&s.graph, n + 1).await;
    }
    let id = conversations(&s).await[0]["id"].as_str().expect("id").to_owned();
    let delivery = |messages: &[Value], wamid: &str| {
        messages
            .iter()
            .find(|m| m["delivery"]["provider_ids"][0] == wamid)
            .map(|m| m["delivery"].clone())
            .unwrap_or(Value::Null)
    };
    let mut first = Value::Null;
    for _ in 0..100 {
        first = delivery(&transcript(&s, &id).await, "wamid.out1");
        if !first.is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(first["status"], "SENT", "{first}");
    for (status, expected) in [("delivered", "DELIVERED"), ("read", "READ"), ("delivered", "READ")]
    {
        let body = status_notification("wamid.out1", status);
        assert_eq!(deliver(&s, &body, Some(&signature(&body, APP_SECRET))).await, 200);
        let now = delivery(&transcript(&s, &id).await, "wamid.out1");
        assert_eq!(now["status"], expected, "after {status}: {now}");
    }
    let body = status_notification("wamid.out2", "failed");
    assert_eq!(deliver(&s, &body, Some(&signature(&body, APP_SECRET))).await, 200);
    let failed = delivery(&transcript(&s, &id).await, "wamid.out2");
    assert_eq!(failed["status"], "FAILED", "{failed}");
    assert!(failed["error"].as_str().is_some_and(|e| e.contains("131047")), "{failed}");
}

/// An OpenAI-compatible server streaming one 10,000-character answer over server-sent events.
async fn long_llm() -> (String, String) {
    let answer: String =
        (0..400).map(|i| format!("Part {i:03} of the answer, told in full. ")).collect();
    let answer = answer.chars().take(10_000).collect::<String>().trim_end().to_owned();
    let streamed = answer.clone();
    let server = HttpServer::new(move || {
        let streamed = streamed.clone();
        App::new().route(
            "/v1/chat/completions",
            web::post().to(move || {
                let pieces: Vec<String> = streamed
                    .split_inclusive(". ")
                    .map(|piece| {
                        let chunk = json!({"id": "chatcmpl-1", "object": "chat.completion.chunk",
                            "created": 1, "model": "m", "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": null}]});
                        format!("data: {chunk}\n\n")
                    })
                    .chain(std::iter::once("data: [DONE]\n\n".to_owned()))
                    .collect();
                let events = futures_util::stream::iter(
                    pieces.into_iter().map(|e| Ok::<_, actix_web::Error>(web::Bytes::from(e))),
                );
                async move { HttpResponse::Ok().content_type("text/event-stream").streaming(events) }
            }),
        )
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .expect("bind");
    let addr = server.addrs()[0];
    tokio::spawn(server.run());
    (format!("http://{addr}/v1"), answer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_10000_character_streamed_answer_arrives_in_ordered_pieces_of_at_most_4096() {
    let (llm, answer) = long_llm().await;
    let (base, graph) = graph().await;
    let server = start_with(|s| {
        s.channels.whatsapp_api_base = base.clone();
        s.llm.base_url = llm.clone();
        s.llm.model = "m".into();
    })
    .await;
    let owner = register_owner(&server, "owner@wa-long.example.com").await;
    let bot = published_bot(&server, &owner, json!({"name": "long"})).await;
    let body = json!({"kind": "whatsapp", "phone_number_id": NUMBER, "access_token": TOKEN,
        "app_secret": APP_SECRET, "verify_token": VERIFY});
    let (_, connection) =
        server.post(&format!("/api/bots/{bot}/channels"), body, Some(&owner)).await;
    let s = Setup {
        webhook: connection["webhook_path"].as_str().expect("path").to_owned(),
        server,
        owner,
        bot,
        graph,
    };
    let body = notification(vec![text_message("wamid.long", "tell me everything")]);
    assert_eq!(deliver(&s, &body, Some(&signature(&body, APP_SECRET))).await, 200);
    let pieces: Vec<String> = sent(&s.graph, 3)
        .await
        .iter()
        .map(|m| m["text"]["body"].as_str().expect("body").to_owned())
        .collect();
    assert_eq!(answer.chars().count(), 10_000);
    assert_eq!(pieces.len(), 3, "10,000 characters in three messages");
    assert!(
        pieces.iter().all(|p| p.chars().count() <= 4096),
        "{:?}",
        pieces.iter().map(|p| p.chars().count()).collect::<Vec<_>>()
    );
    assert!(pieces[..2].iter().all(|p| p.ends_with('.')), "cut after sentences");
    assert_eq!(pieces.join(" "), answer, "in order, nothing lost or repeated");
}

/// Two nodes of one cluster (Kafka, Cassandra, Redis) both take Meta's webhooks; only the
/// holder of the tenant's channel lease delivers, so each answer reaches the contact once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_cluster_each_answer_reaches_the_contact_once() {
    let Some(services) = cluster::services("whatsapp in a cluster") else { return };
    let (base, graph) = graph().await;
    let (a, b) = cluster::two_nodes(&services, |s| {
        s.channels.whatsapp_api_base = base.clone();
        s.channels.retry_base_ms = 10;
        // Every node opens the credentials another sealed.
        s.channels.master_key = "q6LUCCtfpSkPsCi5ahpUxPzQNuK8AxK5x0oZ6ntaPHU=".into();
    })
    .await;
    let owner = register_owner(&a, "owner@wa-cluster.example.com").await;
    let bot =
        published_bot(&a, &owner, json!({"name": "wa", "config": {"fallback_message": "Got it."}}))
            .await;
    let body = json!({"kind": "whatsapp", "phone_number_id": NUMBER, "access_token": TOKEN,
        "app_secret": APP_SECRET, "verify_token": VERIFY});
    let (status, connection) =
        a.post(&format!("/api/bots/{bot}/channels"), body, Some(&owner)).await;
    assert_eq!(status, 201, "{connection}");
    let webhook = connection["webhook_path"].as_str().expect("webhook path").to_owned();
    let nodes = [&a, &b];
    let asked = 6;
    for i in 0..asked {
        let body =
            notification(vec![text_message(&format!("wamid.c{i}"), &format!("question {i}"))]);
        let request = format!(
            "POST {webhook} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nX-Hub-Signature-256: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            signature(&body, APP_SECRET),
            body.len()
        );
        let (status, _, answer) = raw_http(nodes[i % 2].addr, &request).await;
        assert_eq!(status, 200, "node {}: {answer}", i % 2);
    }
    // Everything the bot stored reaches the contact, in order, once.
    let (_, page) =
        a.call("GET", &format!("/api/bots/{bot}/conversations"), None, Some(&owner)).await;
    let id = page["data"][0]["id"].as_str().expect("one conversation").to_owned();
    let mut said = Vec::new();
    for _ in 0..500 {
        let (_, detail) =
            a.call("GET", &format!("/api/conversations/{id}?limit=500"), None, Some(&owner)).await;
        let messages = detail["messages"].as_array().expect("messages").clone();
        let questions = messages.iter().filter(|m| m["sender"] == "user").count();
        said = messages
            .iter()
            .filter(|m| m["sender"] != "user")
            .map(|m| m["text"].as_str().expect("text").to_owned())
            .collect();
        if questions == asked && graph.sent.lock().expect("log").len() >= said.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(said.len() >= asked, "every question answered: {said:?}");
    // A second deliverer would send the same answers again: give it time to show.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let answers = graph.sent.lock().expect("log").clone();
    let bodies: Vec<&str> =
        answers.iter().map(|m| m["text"]["body"].as_str().unwrap_or("")).collect();
    assert_eq!(bodies, said, "each answer sent once, in order");
}

/// A reply stored while the provider refused it, then the server killed: the next run
/// delivers it at start, with no new message needed to wake the conversation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_owed_when_the_server_died_is_delivered_after_the_restart() {
    let (base, graph) = graph().await;
    graph.throttle.store(1, Ordering::SeqCst);
    graph.retry_after.store(60, Ordering::SeqCst);
    let dir = tempfile::tempdir().expect("tempdir");
    let env = |retry_ms: &str| {
        vec![
            ("PARLA__CHANNELS__WHATSAPP_API_BASE", base.clone()),
            ("PARLA__CHANNELS__RETRY_BASE_MS", retry_ms.to_owned()),
            ("PARLA__DEMO__ENABLED", "false".to_owned()),
        ]
    };
    // The first send is refused (429, retry after a minute): the process dies first.
    let (mut first, addr) = spawn_parla_with(dir.path(), &env("60000")).await;
    let node = TestServer { addr, running: None, dir: tempfile::tempdir().expect("tempdir") };
    let owner = register_owner(&node, "owner@wa-restart.example.com").await;
    let bot = published_bot(
        &node,
        &owner,
        json!({"name": "wa", "config": {"fallback_message": "Owed."}}),
    )
    .await;
    let body = json!({"kind": "whatsapp", "phone_number_id": NUMBER, "access_token": TOKEN,
        "app_secret": APP_SECRET, "verify_token": VERIFY});
    let (status, connection) =
        node.post(&format!("/api/bots/{bot}/channels"), body, Some(&owner)).await;
    assert_eq!(status, 201, "{connection}");
    let webhook = connection["webhook_path"].as_str().expect("webhook path");
    let body = notification(vec![text_message("wamid.r1", "hello?")]);
    let request = format!(
        "POST {webhook} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nX-Hub-Signature-256: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        signature(&body, APP_SECRET),
        body.len()
    );
    assert_eq!(raw_http(addr, &request).await.0, 200);
    for _ in 0..500 {
        if graph.attempts.load(Ordering::SeqCst) >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(graph.attempts.load(Ordering::SeqCst), 1, "tried once, refused");
    first.kill().await.expect("kill");
    assert!(graph.sent.lock().expect("log").is_empty());

    let (_second, _) = spawn_parla_with(dir.path(), &env("10")).await;
    let delivered = sent(&graph, 1).await;
    let bodies: Vec<&str> =
        delivered.iter().map(|m| m["text"]["body"].as_str().unwrap_or("")).collect();
    assert_eq!(bodies, ["Owed."], "delivered once, by the next run");
}

/// A message that can never be stored (its id makes a `client_msg_id` over 128 bytes) is
/// answered 200 and logged: a 503 would have Meta redeliver it for ever, and hold back the
/// messages after it. The next message of the same notification is stored as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_refused_for_good_is_not_redelivered_and_the_next_is_stored() {
    let s = setup("Sorry?", 4096).await;
    let overlong = format!("wamid.{}", "x".repeat(200));
    let body = notification(vec![
        text_message(&overlong, "never stored"),
        text_message("wamid.ok1", "stored"),
    ]);
    assert_eq!(deliver(&s, &body, Some(&signature(&body, APP_SECRET))).await, 200);
    let conversations = conversations(&s).await;
    let id = conversations.first().and_then(|c| c["id"].as_str()).expect("the contact's");
    let texts: Vec<String> = transcript(&s, id)
        .await
        .iter()
        .filter(|m| m["sender"] == "user")
        .filter_map(|m| m["text"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(texts, ["stored"]);
}
