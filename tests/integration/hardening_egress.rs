//! Hardening (issue 19, items 3, 4, 5 and 9) through the public door: the real server, real
//! HTTP and WebSocket clients, and fake upstreams listening on loopback.
//!
//! - Item 3: a PDF whose stream inflates a thousandfold fails its document, and the server's
//!   peak memory (VmHWM of the real binary) stays small: extraction runs in a bounded child.
//! - Item 4: no redirect is followed for a tenant's LLM endpoint or the embeddings API; an
//!   address that is never a legitimate target (0.0.0.0, which Linux connects to the local
//!   host) is refused for a tenant's LLM, webhook and scrape even where internal targets are
//!   allowed; a scrape never quotes what sits behind a refused hop.
//! - Item 5: an LLM reply that never ends is cut at its length or its time, stored with the
//!   marker, and the upstream request is dropped.
//! - Item 9: one tenant's held-open scrapes do not hold another tenant's upload; a scrape has an
//!   overall deadline; documents beyond the in-memory queue are read back from the store.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use crate::common::*;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::{Value, json};

/// The marker a cut reply ends with (`parla_egress::llm::CUT_MARKER`).
const CUT: &str = parla_egress::llm::CUT_MARKER;

/// Paths requested from a fake upstream, in order.
type Log = Arc<Mutex<Vec<String>>>;

fn logged(log: &Log) -> Vec<String> {
    log.lock().expect("log").clone()
}

/// Serves `handler` on 127.0.0.1 port 0 (one worker); returns the port.
fn serve<F, Fut>(handler: F) -> u16
where
    F: Fn(HttpRequest, web::Bytes) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = HttpResponse> + 'static,
{
    let server = HttpServer::new(move || {
        let handler = handler.clone();
        App::new().default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
            let handler = handler.clone();
            async move { handler(req, body).await }
        }))
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .expect("bind");
    let port = server.addrs()[0].port();
    tokio::spawn(server.run());
    port
}

/// A chat-completions chunk carrying `content`, as a server-sent event.
fn chunk(content: &str) -> String {
    let chunk = json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": null}]});
    format!("data: {chunk}\n\n")
}

/// A listener that logs every request and answers it as an LLM, an embeddings API and a web
/// page would, each revealing `secret`: anything reaching it is a leak.
fn secret_keeper(secret: &'static str) -> (u16, Log) {
    let log = Log::default();
    let seen = log.clone();
    let port = serve(move |req: HttpRequest, _body| {
        let seen = seen.clone();
        async move {
            seen.lock().expect("log").push(req.path().to_owned());
            if req.path().ends_with("/chat/completions") {
                let body = format!("{}data: [DONE]\n\n", chunk(secret));
                return HttpResponse::Ok().content_type("text/event-stream").body(body);
            }
            if req.path().ends_with("/embeddings") {
                return HttpResponse::Ok()
                    .json(json!({"data": [{"index": 0, "embedding": [1.0]}]}));
            }
            HttpResponse::Ok()
                .content_type("text/html")
                .body(format!("<html><body><p>{secret}</p></body></html>"))
        }
    });
    (port, log)
}

/// An owner of a fresh workspace (`email`) and a published bot whose fallback is `Fallback.`.
async fn tenant(server: &TestServer, email: &str) -> (String, String) {
    let jwt = register_owner(server, email).await;
    let body = json!({"name": "b", "config": {"fallback_message": "Fallback."}});
    let bot = published_bot(server, &jwt, body).await;
    (jwt, bot)
}

/// Asks `bot` `text` over a widget socket; returns the streamed text, the `stream_end` frame
/// (the stored reply) and the conversation.
async fn ask(server: &TestServer, bot: &str, text: &str) -> (String, Value, String) {
    let mut client = server.client().await;
    let welcome = client.hello(bot).await;
    // A hang guard: a reply that never ends keeps frames coming, which no per-frame patience
    // catches.
    let exchange = tokio::time::timeout(Duration::from_secs(60), client.exchange("q", text))
        .await
        .expect("the reply ended (within the test's patience)");
    let conversation = welcome["conversation_id"].as_str().expect("conversation").to_owned();
    (exchange.reply.tokens, exchange.reply.end, conversation)
}

/// The bot's stored reply in `conversation`, read back through the admin API.
async fn stored_reply(server: &TestServer, jwt: &str, conversation: &str) -> String {
    let (status, read) =
        server.call("GET", &format!("/api/conversations/{conversation}"), None, Some(jwt)).await;
    assert_eq!(status, 200, "{read}");
    let messages = read["messages"].as_array().expect("messages");
    let last = messages.last().expect("a reply");
    assert_eq!(last["sender"], "bot", "{read}");
    last["text"].as_str().expect("text").to_owned()
}

async fn set_tenant_llm(server: &TestServer, jwt: &str, base_url: &str) {
    let patch = json!({"llm": {"base_url": base_url, "model": "m", "api_key": "sk-tenant"}});
    let (status, body) =
        server.call("PATCH", "/api/workspace", Some(&patch.to_string()), Some(jwt)).await;
    assert_eq!(status, 200, "{body}");
}

async fn scrape(server: &TestServer, jwt: &str, bot: &str, url: &str, pages: u32) -> String {
    let (status, document) = server
        .post(
            &format!("/api/bots/{bot}/documents/scrape"),
            json!({"url": url, "max_pages": pages, "max_depth": 1}),
            Some(jwt),
        )
        .await;
    assert_eq!(status, 202, "{document}");
    document["id"].as_str().expect("id").to_owned()
}

async fn document(server: &TestServer, jwt: &str, bot: &str, id: &str) -> Value {
    server.call("GET", &format!("/api/bots/{bot}/documents/{id}"), None, Some(jwt)).await.1
}

/// Waits (a hang guard, not a timing assertion) until `check` holds.
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..750 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what}: not within the test's patience");
}

// ---------------------------------------------------------------------------------------------
// Item 4: no redirect for tenant-configured (or operator) endpoints; the address connected to.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_from_an_llm_or_embeddings_endpoint_is_not_followed() {
    let (elsewhere, leaked) = secret_keeper("the prompt was stolen");
    // The "LLM" and "embeddings API": every call answers 307 to the other listener.
    let redirects = Log::default();
    let seen = redirects.clone();
    let port = serve(move |req: HttpRequest, _body| {
        let seen = seen.clone();
        async move {
            seen.lock().expect("log").push(req.path().to_owned());
            HttpResponse::TemporaryRedirect()
                .insert_header(("location", format!("http://127.0.0.1:{elsewhere}{}", req.path())))
                .finish()
        }
    });
    let base = format!("http://127.0.0.1:{port}/v1");
    let embeddings = base.clone();
    let server = start_with(move |s| {
        s.llm.tenant_endpoints_allow_private = true;
        s.llm.attempts = 3;
        s.embeddings.base_url = embeddings;
    })
    .await;
    let (jwt, bot) = tenant(&server, "redirect@example.com").await;
    set_tenant_llm(&server, &jwt, &base).await;

    let (tokens, reply, _) = ask(&server, &bot, "tell me a secret").await;
    assert_eq!(reply["text"], "Fallback.", "a 3xx is the endpoint's answer: no LLM reply");
    assert!(tokens.is_empty(), "{tokens}");
    assert!(logged(&redirects).iter().any(|p| p == "/v1/chat/completions"), "it was asked");

    let (_, uploaded) = upload(&server, &jwt, &bot, "a.txt", "text/plain", b"Some text.").await;
    let failed = settled(&server, &jwt, &bot, uploaded["id"].as_str().expect("id")).await;
    assert_eq!(failed["status"], "FAILED", "{failed}");
    assert!(failed["error"].as_str().is_some_and(|e| e.contains("307")), "{failed}");

    assert_eq!(logged(&leaked), Vec::<String>::new(), "the redirect target saw no request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_addresses_are_refused_for_every_tenant_target_even_where_internal_ones_are_allowed()
{
    let (port, leaked) = secret_keeper("The vault code is 9173.");
    // 0.0.0.0 is never a target: Linux connects it to the local host, here to the listener.
    let never = format!("http://0.0.0.0:{port}");
    let hook = format!("{never}/hook");
    let server = start_with(|s| {
        s.llm.tenant_endpoints_allow_private = true;
        s.engine.webhook_allow_private_targets = true;
        s.knowledge.scrape_allow_private_targets = true;
    })
    .await;
    let jwt = register_owner(&server, "never@example.com").await;
    let (_, bot) = server
        .post(
            "/api/bots",
            json!({"name": "n", "config": {"fallback_message": "Fallback."}}),
            Some(&jwt),
        )
        .await;
    let bot = bot["id"].as_str().expect("bot").to_owned();
    server.call("POST", &format!("/api/bots/{bot}/publish"), None, Some(&jwt)).await;
    let intent = json!({
        "name": "hours", "examples": ["when are you open", "opening hours"],
        "response": {"text": "We are open 9 to 5."},
        "actions": [{"type": "webhook", "url": hook, "secret": "a-webhook-secret-of-length"}],
    });
    let (status, body) = server.post(&format!("/api/bots/{bot}/intents"), intent, Some(&jwt)).await;
    assert_eq!(status, 201, "{body}");

    // The webhook: refused, counted as failed, never retried.
    let (tokens, _, _) = ask(&server, &bot, "when are you open?").await;
    assert_eq!(tokens, "We are open 9 to 5.");
    eventually("the webhook is counted as failed", async || {
        server.metric("parla_webhooks_failed_total").await == 1
    })
    .await;

    // The tenant's LLM endpoint: refused, the bot falls back.
    set_tenant_llm(&server, &jwt, &format!("{never}/v1")).await;
    let (_, reply, _) = ask(&server, &bot, "what is the vault code?").await;
    assert_eq!(reply["text"], "Fallback.");

    // A scrape: FAILED with the reason, and the bot never quotes the page.
    let id = scrape(&server, &jwt, &bot, &format!("{never}/"), 1).await;
    let failed = settled(&server, &jwt, &bot, &id).await;
    assert_eq!(failed["status"], "FAILED", "{failed}");
    assert!(
        failed["error"].as_str().is_some_and(|e| e.contains("not a public address")),
        "{failed}"
    );
    let (_, reply, _) = ask(&server, &bot, "what is the vault code?").await;
    assert!(reply["text"].as_str().is_some_and(|t| !t.contains("9173")), "{reply}");

    assert_eq!(logged(&leaked), Vec::<String>::new(), "nothing reached 0.0.0.0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_checks_every_page_redirect_and_robots_txt() {
    let (secret_port, leaked) = secret_keeper("The vault code is 9173.");
    let site_log = Log::default();
    let seen = site_log.clone();
    let elsewhere = format!("http://0.0.0.0:{secret_port}");
    let site = serve(move |req: HttpRequest, _body| {
        let (seen, elsewhere) = (seen.clone(), elsewhere.clone());
        async move {
            seen.lock().expect("log").push(req.path().to_owned());
            let moved = |to: String| HttpResponse::Found().insert_header(("location", to)).finish();
            match req.path() {
                "/robots.txt" => moved(format!("{elsewhere}/robots.txt")),
                "/" => HttpResponse::Ok().content_type("text/html").body(
                    "<html><head><title>Inn</title></head><body><p>Check-in is from three in \
                     the afternoon.</p><a href=\"/moved\">more</a> <a href=\"/away\">away</a></body></html>",
                ),
                "/moved" => moved(format!("{elsewhere}/secret")),
                "/away" => moved("/moved".into()),
                _ => HttpResponse::NotFound().finish(),
            }
        }
    });
    let server = start_with(|s| s.knowledge.scrape_allow_private_targets = true).await;
    let (jwt, bot) = tenant(&server, "hops@example.com").await;
    let id = scrape(&server, &jwt, &bot, &format!("http://127.0.0.1:{site}/"), 5).await;
    let done = settled(&server, &jwt, &bot, &id).await;
    assert_eq!(done["status"], "COMPLETED", "the allowed page is kept: {done}");
    let paths = logged(&site_log);
    for path in ["/robots.txt", "/", "/moved", "/away"] {
        assert!(paths.iter().any(|p| p == path), "{path} was requested: {paths:?}");
    }
    let (tokens, _, _) = ask(&server, &bot, "when is check-in?").await;
    assert!(tokens.contains("three in the afternoon"), "{tokens}");
    let (_, reply, _) = ask(&server, &bot, "what is the vault code?").await;
    assert!(reply["text"].as_str().is_some_and(|t| !t.contains("9173")), "{reply}");
    assert_eq!(logged(&leaked), Vec::<String>::new(), "no hop reached the refused address");

    // A host *name* is judged by the address connected to: where internal targets are not
    // allowed, `localhost` fails the scrape and the tenant's LLM without a request reaching it.
    let strict = start().await;
    let (jwt, bot) = tenant(&strict, "names@example.com").await;
    let before = logged(&site_log).len();
    let id = scrape(&strict, &jwt, &bot, &format!("http://localhost:{site}/"), 5).await;
    let failed = settled(&strict, &jwt, &bot, &id).await;
    assert_eq!(failed["status"], "FAILED", "{failed}");
    assert!(
        failed["error"].as_str().is_some_and(|e| e.contains("localhost is not a public address")),
        "{failed}"
    );
    set_tenant_llm(&strict, &jwt, &format!("http://localhost:{secret_port}/v1")).await;
    let (_, reply, _) = ask(&strict, &bot, "what is the vault code?").await;
    assert_eq!(reply["text"], "Fallback.");
    assert_eq!(logged(&site_log).len(), before, "the site saw no request");
    assert_eq!(logged(&leaked), Vec::<String>::new());
}

// ---------------------------------------------------------------------------------------------
// Item 5: a reply that never ends.

/// An LLM that streams `token` every `every` forever; sets the flag when the client goes
/// away (its response stream is dropped).
fn endless_llm(token: &'static str, every: Duration) -> (String, Arc<AtomicBool>) {
    struct Dropped(Arc<AtomicBool>);
    impl Drop for Dropped {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let dropped = Arc::new(AtomicBool::new(false));
    let flag = dropped.clone();
    let port = serve(move |_req, _body| {
        let guard = Dropped(flag.clone());
        async move {
            let events = futures_util::stream::unfold(guard, move |guard| async move {
                tokio::time::sleep(every).await;
                Some((Ok::<_, actix_web::Error>(web::Bytes::from(chunk(token))), guard))
            });
            HttpResponse::Ok().content_type("text/event-stream").streaming(events)
        }
    });
    (format!("http://127.0.0.1:{port}/v1"), dropped)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_llm_reply_is_cut_at_its_length_stored_marked_and_its_request_dropped() {
    let (llm, dropped) = endless_llm("0123456789", Duration::from_millis(1));
    let server = start_with(|s| {
        s.llm.tenant_endpoints_allow_private = true;
        s.llm.max_reply_chars = 2000;
    })
    .await;
    let (jwt, bot) = tenant(&server, "endless@example.com").await;
    set_tenant_llm(&server, &jwt, &llm).await;
    let (tokens, reply, conversation) = ask(&server, &bot, "talk forever").await;
    let expected = format!("{}{CUT}", "0123456789".repeat(200));
    assert_eq!(tokens, expected, "streamed up to the cap, then the marker");
    assert_eq!(reply["text"], expected.as_str());
    assert_eq!(stored_reply(&server, &jwt, &conversation).await, expected);
    eventually("the upstream request is dropped", async || dropped.load(Ordering::SeqCst)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_llm_reply_that_trickles_forever_is_cut_at_its_time() {
    let (llm, dropped) = endless_llm("tick ", Duration::from_millis(100));
    let server = start_with(|s| {
        s.llm.tenant_endpoints_allow_private = true;
        s.llm.max_reply_ms = 1500;
    })
    .await;
    let (jwt, bot) = tenant(&server, "trickle@example.com").await;
    set_tenant_llm(&server, &jwt, &llm).await;
    let (tokens, _, conversation) = ask(&server, &bot, "talk slowly").await;
    assert!(tokens.starts_with("tick ") && tokens.ends_with(CUT), "{tokens}");
    assert_eq!(stored_reply(&server, &jwt, &conversation).await, tokens);
    eventually("the upstream request is dropped", async || dropped.load(Ordering::SeqCst)).await;
    // The cut reply is charged (estimated: its usage never came) against the budget.
    let (_, workspace) = server.call("GET", "/api/workspace", None, Some(&jwt)).await;
    assert!(workspace["tokens_used_this_month"].as_u64().is_some_and(|n| n > 0), "{workspace}");
}

// ---------------------------------------------------------------------------------------------
// Item 9: fair document processing.

/// A site whose pages are held open until `release` is set; logs the paths requested.
fn held_site() -> (String, Log, Arc<tokio::sync::Notify>, Arc<AtomicBool>) {
    let log = Log::default();
    let release = Arc::new(tokio::sync::Notify::new());
    let released = Arc::new(AtomicBool::new(false));
    let (seen, gate, open) = (log.clone(), release.clone(), released.clone());
    let port = serve(move |req: HttpRequest, _body| {
        let (seen, gate, open) = (seen.clone(), gate.clone(), open.clone());
        async move {
            seen.lock().expect("log").push(req.path().to_owned());
            if req.path() == "/robots.txt" {
                return HttpResponse::NotFound().finish();
            }
            while !open.load(Ordering::SeqCst) {
                let notified = gate.notified();
                if open.load(Ordering::SeqCst) {
                    break;
                }
                notified.await;
            }
            HttpResponse::Ok()
                .content_type("text/html")
                .body("<html><body><p>The slow page says the lake is cold.</p></body></html>")
        }
    });
    (format!("http://127.0.0.1:{port}"), log, release, released)
}

fn release(gate: &tokio::sync::Notify, released: &AtomicBool) {
    released.store(true, Ordering::SeqCst);
    gate.notify_waiters();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tenants_held_scrapes_do_not_hold_another_tenants_uploads() {
    let (site, requested, gate, released) = held_site();
    let server = start_with(|s| {
        s.knowledge.scrape_allow_private_targets = true;
        s.knowledge.workers = 2;
        s.knowledge.queue = 1; // Per tenant: B's later uploads wait in the store.
    })
    .await;
    let (jwt_a, bot_a) = tenant(&server, "slow@example.com").await;
    let (jwt_b, bot_b) = tenant(&server, "quick@example.com").await;
    let first = scrape(&server, &jwt_a, &bot_a, &format!("{site}/one"), 1).await;
    let second = scrape(&server, &jwt_a, &bot_a, &format!("{site}/two"), 1).await;
    eventually("A's first scrape is being served", async || {
        logged(&requested).iter().any(|p| p.starts_with("/one") || p.starts_with("/two"))
    })
    .await;

    let mut uploads = Vec::new();
    for i in 0..3 {
        let text = format!("Note {i}: the ferry leaves at {} o'clock.", 7 + i);
        let (status, document) =
            upload(&server, &jwt_b, &bot_b, &format!("n{i}.txt"), "text/plain", text.as_bytes())
                .await;
        assert_eq!(status, 202, "{document}");
        uploads.push(document["id"].as_str().expect("id").to_owned());
    }
    for id in &uploads {
        let done = settled(&server, &jwt_b, &bot_b, id).await;
        assert_eq!(done["status"], "COMPLETED", "{done}");
    }
    // All of B's work is done while A's site still holds its response open.
    assert!(!released.load(Ordering::SeqCst));
    for id in [&first, &second] {
        let status = document(&server, &jwt_a, &bot_a, id).await["status"].clone();
        assert!(status == "PROCESSING" || status == "PENDING", "{status}");
    }

    release(&gate, &released);
    for id in [&first, &second] {
        let done = settled(&server, &jwt_a, &bot_a, id).await;
        assert_eq!(done["status"], "COMPLETED", "{done}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_that_outlives_its_deadline_fails_with_the_reason() {
    let (site, requested, gate, released) = held_site();
    let server = start_with(|s| {
        s.knowledge.scrape_allow_private_targets = true;
        s.knowledge.scrape_deadline_ms = 1000;
    })
    .await;
    let (jwt, bot) = tenant(&server, "deadline@example.com").await;
    let id = scrape(&server, &jwt, &bot, &format!("{site}/"), 3).await;
    let failed = settled(&server, &jwt, &bot, &id).await;
    assert_eq!(failed["status"], "FAILED", "{failed}");
    assert!(
        failed["error"].as_str().is_some_and(|e| e.contains("did not answer within 1 s")),
        "{failed}"
    );
    assert!(!released.load(Ordering::SeqCst), "failed while the site still held the page");
    assert!(logged(&requested).iter().any(|p| p == "/"));
    release(&gate, &released);
}

// ---------------------------------------------------------------------------------------------
// Item 3: bounded extraction.

/// A one-page PDF whose content stream (FlateDecode) inflates to `inflated` bytes: a line of
/// text, then spaces. Its size is about a thousandth of that.
fn pdf_bomb(inflated: usize) -> Vec<u8> {
    use std::io::Write as _;
    let text = b"BT /F1 12 Tf 72 720 Td (The bomb says hello.) Tj ET\n";
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(text).expect("deflate");
    let spaces = vec![b' '; 1 << 20];
    let mut left = inflated.saturating_sub(text.len());
    while left > 0 {
        let n = left.min(spaces.len());
        encoder.write_all(&spaces[..n]).expect("deflate");
        left -= n;
    }
    let stream = encoder.finish().expect("deflate");
    let mut objects: Vec<Vec<u8>> = vec![
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_vec(),
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>".to_vec(),
    ];
    let mut content =
        format!("<< /Length {} /Filter /FlateDecode >>\nstream\n", stream.len()).into_bytes();
    content.extend_from_slice(&stream);
    content.extend_from_slice(b"\nendstream");
    objects.push(content);
    objects.push(
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
            .to_vec(),
    );
    pdf_file(&objects)
}

/// The process's peak resident memory (VmHWM), in bytes.
fn peak_memory(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM");
    let kib: u64 = line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).expect("kB");
    kib * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pdf_bomb_fails_its_document_and_the_server_stays_small() {
    let bomb = pdf_bomb(400 << 20);
    assert!(bomb.len() < 1 << 20, "a small upload: {} bytes", bomb.len());
    let dir = tempfile::tempdir().expect("dir");
    let (child, addr) = spawn_parla_with(
        dir.path(),
        &[
            ("PARLA__EMBEDDINGS__LOCAL_MODEL", String::new()),
            ("PARLA__DEMO__ENABLED", "false".into()),
        ],
    )
    .await;
    let pid = child.id().expect("pid");
    let server = TestServer { addr, running: None, dir };
    let (jwt, bot) = tenant(&server, "bomb@example.com").await;
    let before = peak_memory(pid);

    let (status, uploaded) =
        upload(&server, &jwt, &bot, "bomb.pdf", "application/pdf", &bomb).await;
    assert_eq!(status, 202, "{uploaded}");
    let failed = settled(&server, &jwt, &bot, uploaded["id"].as_str().expect("id")).await;
    let after = peak_memory(pid);
    println!(
        "bomb: {} KiB upload; server VmHWM {} MiB before, {} MiB after",
        bomb.len() >> 10,
        before >> 20,
        after >> 20
    );
    // Generous: the server itself never holds the inflated stream (400 MiB); extracting in
    // process took it from 58 to 939 MiB.
    assert!(after < 200 << 20, "VmHWM {} MiB", after >> 20);
    assert_eq!(failed["status"], "FAILED", "{failed}");
    assert!(
        failed["error"].as_str().is_some_and(|e| e.contains("more than 512 MiB of memory")),
        "{failed}"
    );

    // The server is fine, and a real PDF still extracts.
    let (status, _) = http_get(addr, "/healthz").await;
    assert_eq!(status, 200);
    let small = pdf_bomb(4096);
    let (_, uploaded) = upload(&server, &jwt, &bot, "ok.pdf", "application/pdf", &small).await;
    let done = settled(&server, &jwt, &bot, uploaded["id"].as_str().expect("id")).await;
    assert_eq!(done["status"], "COMPLETED", "{done}");
    let (tokens, _, _) = ask(&server, &bot, "what does the bomb say?").await;
    assert!(tokens.contains("The bomb says hello."), "{tokens}");
    drop(child);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_format_is_extracted_within_the_limits_and_a_bomb_in_any_fails_cleanly() {
    // A tight limit for this server: a 2 MB JSON array of numbers, which the in-process parser
    // turned into a Value tree and a paragraph per element (hundreds of MB), fails; a DOCX
    // whose document.xml inflates to 60 MB fails; a regular document of each kind completes.
    let server = start_with(|s| s.knowledge.extract_memory_bytes = 64 << 20).await;
    let (jwt, bot) = tenant(&server, "formats@example.com").await;
    let numbers = format!("[{}0]", "0,".repeat(1_000_000));
    let docx_bomb = {
        use std::io::Write as _;
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        zip.start_file("word/document.xml", options).expect("entry");
        zip.write_all(b"<w:document><w:body><w:p><w:r><w:t>").expect("write");
        let filler = vec![b'a'; 1 << 20];
        for _ in 0..60 {
            zip.write_all(&filler).expect("write");
        }
        zip.write_all(b"</w:t></w:r></w:p></w:body></w:document>").expect("write");
        zip.finish().expect("zip").into_inner()
    };
    let docx_type = "application/vnd.openxmlformats-officedocument.wordprocessingml.document";
    for (name, media, bytes) in [
        ("numbers.json", "application/json", numbers.into_bytes()),
        ("bomb.docx", docx_type, docx_bomb),
    ] {
        let (status, uploaded) = upload(&server, &jwt, &bot, name, media, &bytes).await;
        assert_eq!(status, 202, "{name}: {uploaded}");
        let failed = settled(&server, &jwt, &bot, uploaded["id"].as_str().expect("id")).await;
        assert_eq!(failed["status"], "FAILED", "{name}: {failed}");
        assert!(
            failed["error"].as_str().is_some_and(|e| e.contains("more than 64 MiB of memory")),
            "{name}: {failed}"
        );
    }
    // Text that grows past four times the upload limit (a CSV repeats its column names on
    // every row) is refused too: its chunks and vectors would not be bounded.
    let small = start_with(|s| s.knowledge.max_document_bytes = 64 << 10).await;
    let (small_jwt, small_bot) = tenant(&small, "wide@example.com").await;
    let header: Vec<String> =
        (0..50).map(|i| format!("{}{i}", "a_long_column_name_".repeat(5))).collect();
    let mut wide = header.join(",");
    while wide.len() < 60 << 10 {
        wide.push('\n');
        wide.push_str(&["1"; 50].join(","));
    }
    let (_, uploaded) =
        upload(&small, &small_jwt, &small_bot, "wide.csv", "text/csv", wide.as_bytes()).await;
    let failed =
        settled(&small, &small_jwt, &small_bot, uploaded["id"].as_str().expect("id")).await;
    assert_eq!(failed["status"], "FAILED", "{failed}");
    assert!(
        failed["error"].as_str().is_some_and(|e| e.contains("text is larger than 1 MB")),
        "{failed}"
    );

    for (name, media, bytes) in [
        ("a.txt", "text/plain", &b"Plain text is read."[..]),
        ("a.md", "text/markdown", b"# Title\n\nMarkdown is read."),
        ("a.csv", "text/csv", b"what,how\ncsv,is read"),
        ("a.json", "application/json", br#"{"json": "is read"}"#),
        ("a.html", "text/html", b"<p>HTML is read.</p>"),
    ] {
        let (_, uploaded) = upload(&server, &jwt, &bot, name, media, bytes).await;
        let done = settled(&server, &jwt, &bot, uploaded["id"].as_str().expect("id")).await;
        assert_eq!(done["status"], "COMPLETED", "{name}: {done}");
    }
}
