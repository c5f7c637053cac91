//! SMS through Twilio, through the public doors: a connection made with the admin API, the
//! webhook signed by Twilio's own helper library (`twilio` on PyPI, its `RequestValidator`,
//! run from the tests' Python venv), and a local server speaking Twilio's Messages API
//! (`POST /2010-04-01/Accounts/{sid}/Messages.json`, form-encoded, basic auth).

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use crate::common::*;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::{Value, json};

const NUMBER: &str = "+15005550006";
const SID: &str = "AC0123456789abcdef0123456789abcdef";
const AUTH: &str = "twilio-auth-token-5e8f";
pub(crate) const CONTACT: &str = "+393331234567";

/// Each message's form, as the double received it.
pub(crate) type Forms = Arc<Mutex<Vec<Vec<(String, String)>>>>;

/// Twilio's Messages API double: records each message's form.
pub(crate) async fn twilio() -> (String, Forms) {
    let sent = Arc::new(Mutex::new(Vec::new()));
    let state = sent.clone();
    let server = HttpServer::new(move || {
        let state = state.clone();
        App::new().route(
            "/2010-04-01/Accounts/{sid}/Messages.json",
            web::post().to(move |req: HttpRequest, path: web::Path<String>, body: web::Bytes| {
                let state = state.clone();
                async move {
                    use base64::Engine as _;
                    let expected = format!(
                        "Basic {}",
                        base64::engine::general_purpose::STANDARD.encode(format!("{SID}:{AUTH}"))
                    );
                    let auth = req.headers().get("authorization").and_then(|v| v.to_str().ok());
                    if auth != Some(expected.as_str()) || *path != SID {
                        return HttpResponse::Unauthorized().json(
                            json!({"code": 20003, "message": "Authenticate", "status": 401}),
                        );
                    }
                    let form: Vec<(String, String)> =
                        serde_urlencoded::from_bytes(&body).expect("form-encoded");
                    let mut sent = state.lock().expect("log");
                    sent.push(form);
                    HttpResponse::Created()
                        .json(json!({"sid": format!("SM{:032}", sent.len()), "status": "queued"}))
                }
            }),
        )
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .expect("bind");
    let addr = server.addrs()[0];
    tokio::spawn(server.run());
    (format!("http://{addr}"), sent)
}

/// Twilio's signature of `url` and `params`, by Twilio's library.
fn twilio_signature(url: &str, params: &[(&str, &str)]) -> String {
    let python = std::env::var("PARLA_TEST_PYTHON")
        .unwrap_or_else(|_| "/var/tmp/parla-py/bin/python".to_owned());
    let params: serde_json::Map<String, Value> =
        params.iter().map(|(k, v)| ((*k).to_owned(), json!(v))).collect();
    let script = "import json,sys\nfrom twilio.request_validator import RequestValidator\n\
                  print(RequestValidator(sys.argv[1]).compute_signature(sys.argv[2], json.loads(sys.argv[3])))";
    let out = std::process::Command::new(&python)
        .args(["-c", script, AUTH, url, &Value::Object(params).to_string()])
        .output()
        .expect("python runs (./scripts/test.sh provides the venv with twilio)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8").trim().to_owned()
}

pub(crate) struct Setup {
    pub(crate) server: TestServer,
    pub(crate) owner: String,
    pub(crate) bot: String,
    webhook: String,
    pub(crate) sent: Forms,
    /// The Twilio double's base URL.
    pub(crate) twilio: String,
}

async fn setup() -> Setup {
    setup_with(|_| {}).await
}

pub(crate) async fn setup_with(tweak: impl FnOnce(&mut parla_config::Settings)) -> Setup {
    let (base, sent) = twilio().await;
    let server = start_with(|s| {
        s.channels.twilio_api_base = base.clone();
        s.channels.retry_base_ms = 10;
        tweak(s);
    })
    .await;
    setup_on(server, base, sent).await
}

/// An owner, a published bot and its SMS connection on `server`, whose Twilio is the double at
/// `base` recording into `sent`.
pub(crate) async fn setup_on(server: TestServer, base: String, sent: Forms) -> Setup {
    let owner = register_owner(&server, "owner@sms.example.com").await;
    let bot = published_bot(
        &server,
        &owner,
        json!({"name": "sms", "config": {"fallback_message": "Thanks, noted."}}),
    )
    .await;
    let body =
        json!({"kind": "sms", "phone_number": NUMBER, "account_sid": SID, "auth_token": AUTH});
    let (status, connection) =
        server.post(&format!("/api/bots/{bot}/channels"), body, Some(&owner)).await;
    assert_eq!(status, 201, "{connection}");
    assert_eq!(connection["secret_hints"]["auth_token"], "…5e8f");
    let webhook = connection["webhook_path"].as_str().expect("path").to_owned();
    Setup { server, owner, bot, webhook, sent, twilio: base }
}

/// POSTs a form to the webhook as Twilio would, signed by Twilio's library (or, with `sign`
/// false, with a wrong signature); returns (status, body).
async fn post_form(s: &Setup, params: &[(&str, &str)], sign: bool) -> (u16, String) {
    let url = format!("http://{}{}", s.server.addr, s.webhook);
    let signature =
        if sign { twilio_signature(&url, params) } else { "bm90IGEgc2lnbmF0dXJl".into() };
    let body = serde_urlencoded::to_string(params).expect("form");
    let request = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\nX-Twilio-Signature: {signature}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        s.webhook,
        s.server.addr,
        body.len()
    );
    let (status, _, answer) = raw_http(s.server.addr, &request).await;
    (status, answer)
}

/// An incoming SMS as Twilio posts it; `sign` false sends a wrong signature.
pub(crate) async fn incoming(s: &Setup, sid: &str, text: &str, sign: bool) -> (u16, String) {
    let params = [
        ("AccountSid", SID),
        ("MessageSid", sid),
        ("From", CONTACT),
        ("To", NUMBER),
        ("Body", text),
        ("NumMedia", "0"),
    ];
    post_form(s, &params, sign).await
}

pub(crate) async fn sent(s: &Setup, n: usize) -> Vec<Vec<(String, String)>> {
    for _ in 0..500 {
        if s.sent.lock().expect("log").len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.sent.lock().expect("log").clone()
}

fn field<'a>(form: &'a [(String, String)], name: &str) -> &'a str {
    form.iter().find(|(k, _)| k == name).map_or("", |(_, v)| v.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_sms_is_answered_and_a_forged_one_stores_nothing() {
    let s = setup().await;
    let (status, _) = incoming(&s, "SM00000000000000000000000000000001", "hello", false).await;
    assert_eq!(status, 403, "forged");
    let (_, page) = s
        .server
        .call("GET", &format!("/api/bots/{}/conversations", s.bot), None, Some(&s.owner))
        .await;
    assert_eq!(page["data"].as_array().map(Vec::len), Some(0), "nothing stored");

    let (status, twiml) = incoming(&s, "SM00000000000000000000000000000002", "hello", true).await;
    assert_eq!(status, 200, "{twiml}");
    assert!(twiml.contains("<Response>"), "TwiML: {twiml}");
    let (status, _) = incoming(&s, "SM00000000000000000000000000000002", "hello", true).await;
    assert_eq!(status, 200, "a redelivery is acknowledged…");
    let answers = sent(&s, 1).await;
    assert_eq!(field(&answers[0], "To"), CONTACT);
    assert_eq!(field(&answers[0], "From"), NUMBER);
    assert_eq!(field(&answers[0], "Body"), "Thanks, noted.");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(s.sent.lock().expect("log").len(), 1, "…and answered once");
    let (_, page) = s
        .server
        .call("GET", &format!("/api/bots/{}/conversations", s.bot), None, Some(&s.owner))
        .await;
    assert_eq!(page["data"][0]["source"], "sms");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_stops_sms_and_start_resumes_them() {
    let s = setup().await;
    incoming(&s, "SM00000000000000000000000000000010", "hi", true).await;
    sent(&s, 1).await;
    let (status, _) = incoming(&s, "SM00000000000000000000000000000011", "STOP", true).await;
    assert_eq!(status, 200);
    let (_, page) = s
        .server
        .call("GET", &format!("/api/bots/{}/conversations", s.bot), None, Some(&s.owner))
        .await;
    let id = page["data"][0]["id"].as_str().expect("id").to_owned();
    let (mut agent, _, _) = Client::agent(s.server.addr, &s.owner).await;
    agent.send(json!({"type": "subscribe", "conversation_id": id})).await;
    agent.until("subscribed").await;
    let path = |action: &str| format!("/api/conversations/{id}/{action}");
    assert_eq!(s.server.post(&path("claim"), json!({}), Some(&s.owner)).await.0, 200);
    let reply = json!({"client_msg_id": "after-stop", "text": "Are you still there?"});
    assert_eq!(s.server.post(&path("replies"), reply, Some(&s.owner)).await.0, 201);
    let (error, _) = agent.until("error").await;
    assert_eq!(error["code"], "channel_delivery_failed");
    assert!(error["message"].as_str().is_some_and(|m| m.contains("opted out")), "{error}");
    assert_eq!(s.sent.lock().expect("log").len(), 1, "nothing sent after STOP");

    incoming(&s, "SM00000000000000000000000000000012", "START", true).await;
    let reply = json!({"client_msg_id": "after-start", "text": "Welcome back."});
    assert_eq!(s.server.post(&path("replies"), reply, Some(&s.owner)).await.0, 201);
    let all = sent(&s, 2).await;
    assert_eq!(field(all.last().expect("sent"), "Body"), "Welcome back.");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_callback_marks_an_undelivered_sms_failed() {
    let s = setup().await;
    incoming(&s, "SM00000000000000000000000000000020", "hello", true).await;
    sent(&s, 1).await;
    let params = [
        ("AccountSid", SID),
        ("MessageSid", "SM00000000000000000000000000000001"),
        ("MessageStatus", "undelivered"),
        ("SmsStatus", "undelivered"),
        ("ErrorCode", "30003"),
        ("From", NUMBER),
        ("To", CONTACT),
    ];
    let mut answer = Value::Null;
    for _ in 0..100 {
        // The sink records SENT right after Twilio's answer; the callback must come after it.
        let (_, page) = s
            .server
            .call("GET", &format!("/api/bots/{}/conversations", s.bot), None, Some(&s.owner))
            .await;
        let id = page["data"][0]["id"].as_str().expect("id").to_owned();
        let (_, detail) =
            s.server.call("GET", &format!("/api/conversations/{id}"), None, Some(&s.owner)).await;
        answer = detail["messages"][1].clone();
        if answer["delivery"]["status"] == "SENT" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(post_form(&s, &params, true).await.0, 200);
    let id = answer["conversation_id"].as_str().expect("conversation").to_owned();
    let (_, detail) =
        s.server.call("GET", &format!("/api/conversations/{id}"), None, Some(&s.owner)).await;
    let delivery = &detail["messages"][1]["delivery"];
    assert_eq!(
        (delivery["status"].as_str(), delivery["error"].as_str()),
        (Some("FAILED"), Some("Twilio error 30003")),
        "{delivery}"
    );
}

/// One text limit (`gateway.max_text_chars`), however a visitor's text comes in: the widget and
/// the REST API refuse a longer one, an SMS (which cannot be refused back) is stored cut to it.
/// Before, the setting bound the widget only: REST and SMS stored up to 4,000 characters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_text_limit_holds_for_the_widget_the_rest_api_and_sms() {
    let s = setup_with(|s| s.gateway.max_text_chars = 50).await;
    let long = "a".repeat(60);
    let owner = Some(s.owner.as_str());

    let mut widget = s.server.client().await;
    widget.hello(&s.bot).await;
    widget.send(json!({"type": "message", "client_msg_id": "w1", "text": long})).await;
    let refused = widget.expect("error").await;
    assert_eq!(refused["code"], "invalid_text", "{refused}");

    let (status, opened) =
        s.server.post("/api/conversations", json!({"bot_id": s.bot}), owner).await;
    assert_eq!(status, 201, "{opened}");
    let conversation = opened["conversation_id"].as_str().expect("id");
    let path = format!("/api/conversations/{conversation}/messages");
    let (status, refused) =
        s.server.post(&path, json!({"client_msg_id": "r1", "text": long}), owner).await;
    assert_eq!(
        (status, refused["error"]["details"]["field"].as_str()),
        (422, Some("text")),
        "{refused}"
    );
    let (status, fits) =
        s.server.post(&path, json!({"client_msg_id": "r2", "text": "a".repeat(50)}), owner).await;
    assert_eq!(status, 201, "the limit itself fits: {fits}");

    let (status, _) = incoming(&s, "SM00000000000000000000000000000099", &long, true).await;
    assert_eq!(status, 200);
    sent(&s, 1).await;
    let (_, page) =
        s.server.call("GET", &format!("/api/bots/{}/conversations", s.bot), None, owner).await;
    let sms = page["data"]
        .as_array()
        .and_then(|all| all.iter().find(|c| c["source"] == "sms"))
        .and_then(|c| c["id"].as_str())
        .expect("the SMS conversation")
        .to_owned();
    let (_, detail) = s.server.call("GET", &format!("/api/conversations/{sms}"), None, owner).await;
    let texts: Vec<&str> = detail["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter(|m| m["sender"] == "user")
        .filter_map(|m| m["text"].as_str())
        .collect();
    assert_eq!(texts, vec!["a".repeat(50).as_str()], "stored cut to the limit: {detail}");
}
