//! Intent webhook actions through the public door: an intent with a `webhook` action, matched
//! in a conversation, POSTs a signed `intent.matched` event to a real HTTP receiver, retried
//! after a 5xx with the same delivery id; secrets are write-only; bad actions are refused; a
//! private target is refused unless the operator allows it.

use std::time::Duration;

use crate::common::*;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::mpsc;

const SECRET: &str = "whsec-0123456789abcdef";

/// One request the receiver got.
#[derive(Debug)]
struct Received {
    signature: String,
    delivery: String,
    body: Vec<u8>,
}

/// A real HTTP server on port 0: answers 503 to the first `failures` requests, then 204.
async fn receiver(failures: usize) -> (String, mpsc::UnboundedReceiver<Received>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let seen = web::Data::new(std::sync::atomic::AtomicUsize::new(0));
    let server = HttpServer::new(move || {
        let tx = tx.clone();
        App::new().app_data(seen.clone()).route(
            "/hooks/parla",
            web::post().to(
                move |req: HttpRequest,
                      body: web::Bytes,
                      seen: web::Data<std::sync::atomic::AtomicUsize>| {
                    let tx = tx.clone();
                    async move {
                        let header = |name: &str| {
                            req.headers()
                                .get(name)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or_default()
                                .to_owned()
                        };
                        let _ = tx.send(Received {
                            signature: header("parla-signature"),
                            delivery: header("parla-delivery"),
                            body: body.to_vec(),
                        });
                        let n = seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        if n < failures {
                            HttpResponse::ServiceUnavailable().finish()
                        } else {
                            HttpResponse::NoContent().finish()
                        }
                    }
                },
            ),
        )
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .expect("bind");
    let addr = server.addrs()[0];
    tokio::spawn(server.run());
    (format!("http://{addr}/hooks/parla"), rx)
}

/// HMAC-SHA256 of `t.body`, computed here from the documented rule, not with Parla's code.
fn expected_signature(timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("key");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// An owner with an active bot whose intent `hours` has a webhook to `url`.
async fn bot_with_webhook(server: &TestServer, url: &str) -> (String, String) {
    let jwt = register_owner(server, "hooks@example.com").await;
    let (_, bot) = server.post("/api/bots", json!({"name": "hooked"}), Some(&jwt)).await;
    let bot = bot["id"].as_str().expect("bot").to_owned();
    server.call("POST", &format!("/api/bots/{bot}/publish"), None, Some(&jwt)).await;
    let (status, intent) = server
        .post(
            &format!("/api/bots/{bot}/intents"),
            json!({
                "name": "hours",
                "examples": ["when are you open", "opening hours"],
                "response": {"text": "We are open 9 to 5."},
                "actions": [{"type": "webhook", "url": url, "secret": SECRET}],
            }),
            Some(&jwt),
        )
        .await;
    assert_eq!(status, 201, "{intent}");
    assert_eq!(intent["actions"], json!([{"type": "webhook", "url": url}]), "no secret back");
    (jwt, bot)
}

async fn ask(server: &TestServer, jwt: &str, bot: &str, text: &str) -> String {
    let (_, opened) = server.post("/api/conversations", json!({"bot_id": bot}), Some(jwt)).await;
    let conversation = opened["conversation_id"].as_str().expect("conversation").to_owned();
    let (status, posted) = server
        .post(
            &format!("/api/conversations/{conversation}/messages"),
            json!({"client_msg_id": "q1", "text": text}),
            Some(jwt),
        )
        .await;
    assert_eq!(status, 201, "{posted}");
    conversation
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Received>) -> Received {
    tokio::time::timeout(Duration::from_secs(15), rx.recv())
        .await
        .expect("a delivery within 15 s")
        .expect("receiver open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_matched_intent_posts_a_signed_event_and_retries_after_a_5xx() {
    let (url, mut rx) = receiver(1).await;
    let server = start_with(|s| s.engine.webhook_allow_private_targets = true).await;
    let (jwt, bot) = bot_with_webhook(&server, &url).await;
    let conversation = ask(&server, &jwt, &bot, "when are you open?").await;

    let first = next(&mut rx).await;
    let second = next(&mut rx).await; // After the 503, about a second later.
    assert_eq!(first.delivery, second.delivery, "one event, one delivery id");
    assert_eq!(first.body, second.body);
    for received in [&first, &second] {
        let (t, v1) = received
            .signature
            .split_once(',')
            .and_then(|(t, v)| Some((t.strip_prefix("t=")?, v.strip_prefix("v1=")?)))
            .expect("t=…,v1=…");
        assert_eq!(v1, expected_signature(t, &received.body), "HMAC-SHA256 of t.body");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        assert!(parla_egress::webhooks::verify(SECRET, &received.signature, &received.body, now));
        assert!(!parla_egress::webhooks::verify(
            "not-the-secret!!",
            &received.signature,
            &received.body,
            now
        ));
    }
    let event: Value = serde_json::from_slice(&second.body).expect("JSON");
    assert_eq!(event["type"], "intent.matched");
    assert_eq!(event["id"], first.delivery.as_str());
    assert_eq!(event["bot_id"], bot.as_str());
    assert_eq!(event["conversation_id"], conversation.as_str());
    assert_eq!(event["intent"]["name"], "hours");
    assert_eq!(event["question"], "when are you open?");
    assert_eq!(event["answer"]["text"], "We are open 9 to 5.");
    assert!(event["confidence"].as_f64().is_some_and(|c| c > 0.45));
    assert!(tokio::time::timeout(Duration::from_millis(300), rx.recv()).await.is_err(), "done");
    assert_eq!(server.metric("parla_webhooks_delivered_total").await, 1);

    // An unmatched message sends nothing.
    ask(&server, &jwt, &bot, "zzzz qqqq").await;
    assert!(tokio::time::timeout(Duration::from_millis(500), rx.recv()).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_actions_are_refused_and_private_targets_are_not_called_by_default() {
    let (url, mut rx) = receiver(0).await;
    let server = start().await;
    let (jwt, bot) = bot_with_webhook(&server, &url).await;
    let path = format!("/api/bots/{bot}/intents");
    let intent = |actions: Value| json!({"name": "x", "examples": ["x"], "response": {"text": "x"}, "actions": actions});
    for (actions, field) in [
        (
            json!([{"type": "webhook", "url": "ftp://example.com/x", "secret": SECRET}]),
            "actions.url",
        ),
        (json!([{"type": "webhook", "url": "not a url", "secret": SECRET}]), "actions.url"),
        (
            json!([{"type": "webhook", "url": "https://example.com/x", "secret": "short"}]),
            "actions.secret",
        ),
    ] {
        let (status, body) = server.post(&path, intent(actions), Some(&jwt)).await;
        assert_eq!((status, error_code(&body)), (422, "validation_failed"), "{body}");
        assert_eq!(body["error"]["details"]["field"], field);
    }
    let (status, body) = server
        .post(&path, intent(json!([{"type": "email", "to": "a@example.com"}])), Some(&jwt))
        .await;
    assert_eq!((status, error_code(&body)), (400, "malformed_body"), "unknown action type");

    // The receiver listens on 127.0.0.1: refused as a private target, counted as failed.
    ask(&server, &jwt, &bot, "when are you open?").await;
    for _ in 0..100 {
        if server.metric("parla_webhooks_failed_total").await == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(server.metric("parla_webhooks_failed_total").await, 1);
    assert!(rx.try_recv().is_err(), "nothing reached the private address");
}
