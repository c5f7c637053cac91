//! Bot answers from an OpenAI-compatible LLM, through a test server that speaks the real
//! chat-completions wire format (server-sent events: `data: {chunk}`, a usage chunk,
//! `data: [DONE]`): tokens reach the widget one by one, the knowledge base is in the prompt,
//! usage is stored, a slow first token is retried, a mid-stream error ends the answer where it
//! is, and deleting the conversation mid-answer closes the upstream request.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use crate::common::*;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::{Value, json};

/// What the fake LLM saw and did.
#[derive(Default)]
pub(crate) struct Seen {
    pub(crate) requests: Mutex<Vec<(String, Value)>>,
    slow_attempts: AtomicUsize,
    /// (authorization, body) of each embeddings request.
    embeddings: Mutex<Vec<(String, Value)>>,
    /// Set when a response stream is dropped before it finished: the client went away.
    cancelled: AtomicBool,
}

/// Sets `cancelled` if dropped before `done`.
struct Guard {
    seen: Arc<Seen>,
    done: bool,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if !self.done {
            self.seen.cancelled.store(true, Ordering::SeqCst);
        }
    }
}

fn chunk(content: &str) -> String {
    let chunk = json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
        "model": "test-model", "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": null}]});
    format!("data: {chunk}\n\n")
}

/// `POST /v1/embeddings`: a 32-dimension bag of hashed words per input (so texts sharing words
/// are close), in the OpenAI response shape; 500 when an input says "fail-embed".
fn embeddings(seen: &Seen, req: &HttpRequest, body: Value) -> HttpResponse {
    let auth = req.headers().get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
    seen.embeddings.lock().expect("log").push((auth.to_owned(), body.clone()));
    let inputs: Vec<String> = body["input"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    if inputs.iter().any(|i| i.contains("fail-embed")) {
        return HttpResponse::InternalServerError().json(json!({"error": {"message": "boom"}}));
    }
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .rev() // Out of order on purpose: clients must sort by index.
        .map(|(i, text)| {
            let mut v = vec![0.0f32; 32];
            for word in
                text.to_lowercase().split(|c: char| !c.is_alphanumeric()).filter(|w| w.len() > 3)
            {
                let h =
                    word.bytes().fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
                v[(h % 32) as usize] += 1.0;
            }
            json!({"object": "embedding", "index": i, "embedding": v})
        })
        .collect();
    HttpResponse::Ok().json(json!({"object": "list", "data": data, "model": body["model"],
        "usage": {"prompt_tokens": 1, "total_tokens": 1}}))
}

/// The fake LLM on port 0. The last user message picks the behaviour:
/// "slow …" (first attempt: no byte for 3 s), "break …" (two tokens, then an error event),
/// "long …" (60 tokens, 50 ms apart), anything else (four tokens, usage, [DONE]).
pub(crate) async fn fake_llm() -> (String, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let state = seen.clone();
    let server = HttpServer::new(move || {
        let seen = state.clone();
        let embeddings_seen = state.clone();
        App::new()
            .route(
                "/v1/embeddings",
                web::post().to(move |req: HttpRequest, body: web::Json<Value>| {
                    let seen = embeddings_seen.clone();
                    async move { embeddings(&seen, &req, body.into_inner()) }
                }),
            )
            .route(
            "/v1/chat/completions",
            web::post().to(move |req: HttpRequest, body: web::Json<Value>| {
                let seen = seen.clone();
                async move {
                    let auth = req
                        .headers()
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    let body = body.into_inner();
                    let question = body["messages"]
                        .as_array()
                        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
                        .and_then(|m| m["content"].as_str())
                        .unwrap_or_default()
                        .to_owned();
                    seen.requests.lock().expect("log").push((auth, body));
                    let (tokens, delay, error, stall): (Vec<String>, u64, bool, u64) =
                        if question.starts_with("slow") {
                            let first = seen.slow_attempts.fetch_add(1, Ordering::SeqCst) == 0;
                            (vec!["Sorry".into(), " for".into(), " the wait.".into()], 10, false, if first { 3000 } else { 0 })
                        } else if question.starts_with("break") {
                            (vec!["Half".into(), " an".into()], 10, true, 0)
                        } else if question.starts_with("long") {
                            ((0..60).map(|i| format!(" w{i}")).collect(), 50, false, 0)
                        } else {
                            (vec!["The".into(), " answer".into(), " is".into(), " 42.".into()], 30, false, 0)
                        };
                    let guard = Guard { seen: seen.clone(), done: false };
                    let events = futures_util::stream::unfold(
                        (tokens.into_iter(), guard, stall, false),
                        move |(mut tokens, mut guard, stall, mut finished)| async move {
                            if finished {
                                return None;
                            }
                            if stall > 0 {
                                tokio::time::sleep(Duration::from_millis(stall)).await;
                            }
                            let event = match tokens.next() {
                                Some(token) => {
                                    tokio::time::sleep(Duration::from_millis(delay)).await;
                                    chunk(&token)
                                }
                                None if error => {
                                    finished = true;
                                    guard.done = true;
                                    "data: {\"error\": {\"message\": \"overloaded\", \"type\": \"server_error\"}}\n\n".to_owned()
                                }
                                None => {
                                    finished = true;
                                    guard.done = true;
                                    let usage = json!({"id": "chatcmpl-1", "object": "chat.completion.chunk",
                                        "choices": [], "usage": {"prompt_tokens": 57, "completion_tokens": 4, "total_tokens": 61}});
                                    format!("data: {usage}\n\ndata: [DONE]\n\n")
                                }
                            };
                            Some((
                                Ok::<_, actix_web::Error>(web::Bytes::from(event)),
                                (tokens, guard, 0, finished),
                            ))
                        },
                    );
                    HttpResponse::Ok().content_type("text/event-stream").streaming(events)
                }
            }),
        )
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .expect("bind");
    let addr = server.addrs()[0];
    tokio::spawn(server.run());
    (format!("http://{addr}/v1"), seen)
}

pub(crate) async fn server_with_llm(base_url: &str) -> TestServer {
    let base_url = base_url.to_owned();
    start_with(move |s| {
        s.llm.base_url = base_url;
        s.llm.model = "test-model".into();
        s.llm.api_key = "sk-test-key".into();
        s.llm.first_token_timeout_ms = 800;
        s.llm.attempts = 3;
    })
    .await
}

/// Sends `text` and reads the answer frame by frame: (token deltas, stream_end).
pub(crate) async fn ask(client: &mut Client, id: &str, text: &str) -> (Vec<String>, Value) {
    client.say(id, text).await;
    client.expect("message").await;
    let start = client.expect("stream_start").await;
    let mut deltas = Vec::new();
    loop {
        let frame = client.recv().await;
        match frame["type"].as_str() {
            Some("token") => deltas.push(frame["delta"].as_str().expect("delta").to_owned()),
            Some("stream_end") => {
                assert_eq!(frame["stream_id"], start["stream_id"]);
                return (deltas, frame);
            }
            _ => panic!("unexpected {frame}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_stream_one_by_one_with_the_knowledge_base_in_the_prompt() {
    let (llm, seen) = fake_llm().await;
    let server = server_with_llm(&llm).await;
    let jwt = register_owner(&server, "llm@example.com").await;
    let (_, bot) = server
        .post(
            "/api/bots",
            json!({"name": "Aria", "config": {"personality": "warm and brief"}}),
            Some(&jwt),
        )
        .await;
    let bot = bot["id"].as_str().expect("id").to_owned();
    server.call("POST", &format!("/api/bots/{bot}/publish"), None, Some(&jwt)).await;
    let (status, doc) = upload(
        &server,
        &jwt,
        &bot,
        "facts.md",
        "text/markdown",
        b"# Meaning\n\nThe answer to the ultimate question is forty-two.",
    )
    .await;
    assert_eq!(status, 202);
    let doc_id = doc["id"].as_str().expect("id");
    for _ in 0..200 {
        let (_, d) = server
            .call("GET", &format!("/api/bots/{bot}/documents/{doc_id}"), None, Some(&jwt))
            .await;
        if d["status"] == "COMPLETED" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mut client = server.client().await;
    client.hello(&bot).await;
    let (deltas, end) =
        ask(&mut client, "m1", "what is the answer to the ultimate question?").await;
    // Forwarded as the upstream produced them (30 ms apart), not buffered into one frame; a
    // socket that is behind may get queued tokens merged, so only the text is exact.
    assert_eq!(deltas.concat(), "The answer is 42.");
    assert!(deltas.len() >= 2, "streamed, not sent in one piece: {deltas:?}");
    assert_eq!(end["text"], "The answer is 42.");

    let requests = seen.requests.lock().expect("log").clone();
    let (auth, body) = requests.last().expect("a request");
    assert_eq!(auth, "Bearer sk-test-key");
    assert_eq!(body["model"], "test-model");
    assert_eq!(body["stream"], true);
    let system = body["messages"][0]["content"].as_str().expect("system prompt");
    assert!(system.contains("forty-two") && system.contains("Meaning"), "passages: {system}");
    assert!(system.contains("warm and brief"), "personality: {system}");
    assert_eq!(
        body["messages"].as_array().map(|m| m.last().map(|m| m["role"].clone())),
        Some(Some(json!("user")))
    );

    // Usage is recorded on the stored message.
    let (_, conversations) =
        server.call("GET", &format!("/api/bots/{bot}/conversations"), None, Some(&jwt)).await;
    let conversation = conversations["data"][0]["id"].as_str().expect("conversation");
    let (_, detail) =
        server.call("GET", &format!("/api/conversations/{conversation}"), None, Some(&jwt)).await;
    let answer = detail["messages"].as_array().and_then(|m| m.last()).expect("answer");
    assert_eq!(
        (answer["prompt_tokens"].as_u64(), answer["completion_tokens"].as_u64()),
        (Some(57), Some(4))
    );
    // And the passage its prompt held, by its heading.
    assert_eq!(answer["sources"], json!([{"document_id": doc_id, "title": "Meaning"}]), "{answer}");
    assert!(!end.to_string().contains("sources"), "visitors are not shown it: {end}");

    // The second question carries the first exchange as history.
    ask(&mut client, "m2", "and why?").await;
    let requests = seen.requests.lock().expect("log").clone();
    let roles: Vec<String> = requests.last().expect("request").1["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["role"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(roles, ["system", "user", "assistant", "user"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_first_token_is_retried_and_a_mid_stream_error_keeps_what_was_said() {
    let (llm, seen) = fake_llm().await;
    let server = server_with_llm(&llm).await;
    let mut client = server.client().await;
    client.hello("demo").await;
    client.expect("message").await; // The demo bot's greeting.

    let (deltas, end) = ask(&mut client, "s1", "slow question about llamas").await;
    assert_eq!(end["text"], "Sorry for the wait.", "{deltas:?}");
    assert_eq!(seen.slow_attempts.load(Ordering::SeqCst), 2, "retried once after the timeout");

    let (deltas, end) = ask(&mut client, "b1", "break please, talk about llamas").await;
    assert_eq!(deltas.concat(), "Half an", "the tokens said before the error");
    assert_eq!(end["text"], "Half an", "no retry after the first token; the partial answer stays");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_conversation_mid_answer_closes_the_upstream_request() {
    let (llm, seen) = fake_llm().await;
    let server = server_with_llm(&llm).await;
    let mut client = server.client().await;
    let welcome = client.hello("demo").await;
    client.expect("message").await; // The demo bot's greeting.
    client.say("l1", "long story about llamas please").await;
    client.expect("message").await;
    client.expect("stream_start").await;
    client.expect("token").await;

    // The demo tenant's owner is not ours: delete through the engine, as the API would.
    let running = server.running.as_ref().expect("running");
    let key = parla_engine::model::ConversationKey {
        tenant_id: "demo".into(),
        conversation_id: welcome["conversation_id"].as_str().expect("id").into(),
    };
    running.engine.send(key, None, parla_engine::bus::Inbound::Delete).await.expect("delete");
    for _ in 0..100 {
        if seen.cancelled.load(Ordering::SeqCst) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(seen.cancelled.load(Ordering::SeqCst), "the upstream stream was dropped mid-answer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_taking_over_mid_answer_stops_the_upstream_request() {
    let (llm, seen) = fake_llm().await;
    let server = server_with_llm(&llm).await;
    let owner = register_owner(&server, "takeover@example.com").await;
    let bot = published_bot(&server, &owner, json!({"name": "llm"})).await;
    let mut client = server.client().await;
    let welcome = client.hello(&bot).await;
    client.say("l1", "long story about llamas please").await;
    client.expect("message").await;
    client.expect("stream_start").await;
    client.expect("token").await; // The LLM is mid-answer (60 tokens, 50 ms apart).
    let id = welcome["conversation_id"].as_str().expect("id");
    let (status, body) =
        server.post(&format!("/api/conversations/{id}/claim"), json!({}), Some(&owner)).await;
    assert_eq!(status, 200, "{body}");
    let (handoff, _) = client.until("handoff").await;
    assert_eq!(handoff["to"], "human");
    for _ in 0..100 {
        if seen.cancelled.load(Ordering::SeqCst) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(seen.cancelled.load(Ordering::SeqCst), "the upstream stream was dropped mid-answer");
    tokio::time::sleep(Duration::from_millis(200)).await; // Four upstream token intervals.
    assert!(client.drain().await.is_empty(), "no token after the handoff");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_and_questions_are_embedded_through_an_openai_compatible_api() {
    let (api, seen) = fake_llm().await;
    let api_for_settings = api.clone();
    let server = start_with(move |s| {
        s.embeddings.base_url = api_for_settings;
        s.embeddings.model = "test-embed".into();
        s.embeddings.api_key = "sk-embed".into();
        s.embeddings.batch = 2;
    })
    .await;
    let jwt = register_owner(&server, "embed@example.com").await;
    let (_, bot) = server.post("/api/bots", json!({"name": "emb"}), Some(&jwt)).await;
    let bot = bot["id"].as_str().expect("id").to_owned();
    server.call("POST", &format!("/api/bots/{bot}/publish"), None, Some(&jwt)).await;
    let text = b"# Sauna\n\nThe sauna is heated from four until midnight.\n\n# Pool\n\nThe swimming pool water is kept at twenty-eight degrees.\n\n# Gym\n\nThe gym lends towels at reception.";
    let (_, doc) = upload(&server, &jwt, &bot, "wellness.md", "text/markdown", text).await;
    let done = settled(&server, &jwt, &bot, doc["id"].as_str().expect("id")).await;
    assert_eq!(done["status"], "COMPLETED", "{done}");
    {
        let calls = seen.embeddings.lock().expect("log");
        assert_eq!(calls.len(), 2, "three chunks in batches of two: {}", calls.len());
        assert_eq!(calls[0].0, "Bearer sk-embed");
        assert_eq!(calls[0].1["model"], "test-embed");
    }
    let mut client = server.client().await;
    client.hello(&bot).await;
    let reply = client.exchange("q", "how warm is the swimming pool water?").await.reply.tokens;
    assert!(reply.contains("twenty-eight degrees"), "{reply}");
    assert_eq!(
        seen.embeddings.lock().expect("log").len(),
        2,
        "its words are all in a passage: the question is not embedded"
    );
    let reply = client.exchange("q2", "what temperature is the pool?").await.reply.tokens;
    assert!(reply.contains("twenty-eight degrees"), "{reply}");
    assert_eq!(seen.embeddings.lock().expect("log").len(), 3, "half its words: it is embedded");

    // An embeddings failure fails the document, with the reason.
    let (_, bad) = upload(&server, &jwt, &bot, "bad.txt", "text/plain", b"fail-embed please").await;
    let failed = settled(&server, &jwt, &bot, bad["id"].as_str().expect("id")).await;
    assert_eq!(failed["status"], "FAILED");
    assert!(failed["error"].as_str().is_some_and(|e| e.contains("embedding failed")), "{failed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workspace_brings_its_own_llm_within_its_token_budget() {
    let (api, seen) = fake_llm().await;
    let server = start_with(|s| s.llm.tenant_endpoints_allow_private = true).await; // No server LLM.
    let jwt = register_owner(&server, "byo@example.com").await;
    let (status, body) = server
        .call(
            "PATCH",
            "/api/workspace",
            Some(&json!({"llm": {"base_url": "ftp://x", "model": "m"}}).to_string()),
            Some(&jwt),
        )
        .await;
    assert_eq!((status, body["error"]["details"]["field"].as_str()), (422, Some("llm.base_url")));
    let patch = json!({"llm": {"base_url": api, "model": "tenant-model", "api_key": "sk-tenant"}, "monthly_token_budget": 100});
    let (status, workspace) =
        server.call("PATCH", "/api/workspace", Some(&patch.to_string()), Some(&jwt)).await;
    assert_eq!(status, 200, "{workspace}");
    assert_eq!(workspace["llm"]["api_key_set"], true);
    assert!(!workspace.to_string().contains("sk-tenant"), "the key is write-only");
    // A form that changes the endpoint without the key keeps it (the calls below carry it).
    let same = json!({"llm": {"base_url": api, "model": "tenant-model"}});
    let (_, workspace) =
        server.call("PATCH", "/api/workspace", Some(&same.to_string()), Some(&jwt)).await;
    assert_eq!(workspace["llm"]["api_key_set"], true, "{workspace}");

    let body = json!({"name": "byo", "config": {"fallback_message": "Fallback."}});
    let bot = published_bot(&server, &jwt, body).await;
    let mut client = server.client().await;
    client.hello(&bot).await;
    let (_, end) = ask(&mut client, "t1", "tell me anything").await;
    assert_eq!(end["text"], "The answer is 42.");
    {
        let requests = seen.requests.lock().expect("log");
        let (auth, body) = requests.last().expect("the tenant's endpoint was called");
        assert_eq!(
            (auth.as_str(), body["model"].as_str()),
            ("Bearer sk-tenant", Some("tenant-model"))
        );
    }
    let (_, workspace) = server.call("GET", "/api/workspace", None, Some(&jwt)).await;
    assert_eq!(workspace["tokens_used_this_month"], 61, "57 prompt + 4 completion");

    ask(&mut client, "t2", "tell me more").await; // 122 tokens: over the budget of 100.
    let calls = seen.requests.lock().expect("log").len();
    let (_, end) = ask(&mut client, "t3", "and more").await;
    assert_eq!(end["text"], "Fallback.", "over budget: answered without the LLM");
    assert_eq!(seen.requests.lock().expect("log").len(), calls, "no call past the budget");

    // Clearing the budget lets the LLM answer again; a null endpoint goes back to none.
    let (status, _) = server
        .call("PATCH", "/api/workspace", Some(r#"{"monthly_token_budget": null}"#), Some(&jwt))
        .await;
    assert_eq!(status, 200);
    assert_eq!(ask(&mut client, "t4", "again").await.1["text"], "The answer is 42.");
    // Another endpoint without a key does not take the old one there.
    let moved = json!({"llm": {"base_url": "https://llm.example.com/v1", "model": "m"}});
    let (_, workspace) =
        server.call("PATCH", "/api/workspace", Some(&moved.to_string()), Some(&jwt)).await;
    assert_eq!(
        workspace["llm"]["api_key_set"], false,
        "the key stays with its endpoint: {workspace}"
    );
    let back = json!({"llm": {"base_url": api, "model": "tenant-model", "api_key": "sk-tenant"}});
    server.call("PATCH", "/api/workspace", Some(&back.to_string()), Some(&jwt)).await;
    // An empty key removes it.
    let cleared = json!({"llm": {"base_url": api, "model": "tenant-model", "api_key": ""}});
    let (_, workspace) =
        server.call("PATCH", "/api/workspace", Some(&cleared.to_string()), Some(&jwt)).await;
    assert_eq!(workspace["llm"]["api_key_set"], false, "{workspace}");
    let (_, workspace) =
        server.call("PATCH", "/api/workspace", Some(r#"{"llm": null}"#), Some(&jwt)).await;
    assert!(workspace["llm"].is_null());
    assert_eq!(ask(&mut client, "t5", "again").await.1["text"], "Fallback.");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_endpoint_on_a_private_address_is_refused_by_default() {
    let (api, seen) = fake_llm().await;
    let server = start().await;
    let jwt = register_owner(&server, "ssrf@example.com").await;
    let patch = json!({"llm": {"base_url": api, "model": "m"}});
    server.call("PATCH", "/api/workspace", Some(&patch.to_string()), Some(&jwt)).await;
    let body = json!({"name": "s", "config": {"fallback_message": "Fallback."}});
    let bot = published_bot(&server, &jwt, body).await;
    let mut client = server.client().await;
    client.hello(&bot).await;
    assert_eq!(ask(&mut client, "p1", "hello there").await.1["text"], "Fallback.");
    assert!(seen.requests.lock().expect("log").is_empty(), "127.0.0.1 was never called");
}
