//! Widget protocol v1 through the public door: a real server on port 0, real WebSocket clients.

use crate::common::*;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_is_echoed_with_its_seq_then_the_reply_streams() {
    let server = start().await;
    let mut c = server.client().await;
    let (welcome, greeting) = c.hello_demo().await;
    assert_eq!(welcome["last_seq"], 0);
    assert_eq!(welcome["protocol"], 1);
    assert_eq!(welcome["bot"]["id"], "demo");
    assert!(welcome["resume_token"].as_str().expect("token").len() >= 32);
    assert!(greeting["text"].as_str().expect("text").contains("demo bot"));

    let ex = c.exchange("m1", "What is Parla?").await;
    assert_eq!(ex.echo["seq"], 2);
    assert_eq!(ex.echo["sender"], "user");
    assert_eq!(ex.echo["text"], "What is Parla?");
    assert_eq!(ex.reply.start["sender"], "bot");
    assert_eq!(ex.reply.end["seq"], 3, "stream_end carries the next seq");
    assert_eq!(ex.reply.tokens, ex.reply.end["text"], "tokens add up to the stored text");
    assert!(ex.reply.tokens.contains("messaging engine"), "intent answer: {}", ex.reply.tokens);
    assert!(ex.reply.tokens.split(' ').count() > 5, "streamed in many tokens");

    let ex = c.exchange("m2", "zzzz qqqq").await;
    assert_eq!(ex.echo["seq"], 4);
    assert!(ex.reply.tokens.contains("not sure"), "fallback: {}", ex.reply.tokens);
    assert_eq!(ex.reply.end["seq"], 5);
    assert!(c.drain().await.is_empty(), "nothing else was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_with_last_seq_replays_exactly_the_missed_messages_then_goes_live() {
    let server = start().await;
    let mut a = server.client().await;
    let (welcome, _) = a.hello_demo().await;
    a.exchange("m1", "hello").await; // seq 2, 3
    a.exchange("m2", "how does streaming work").await; // seq 4, 5
    drop(a);

    let mut b = server.client().await;
    let w = b.resume(&welcome, 2).await;
    assert_eq!(w["conversation_id"], welcome["conversation_id"]);
    assert_eq!(w["last_seq"], 5);
    let replay = b.drain().await;
    let seqs: Vec<_> = replay.iter().map(|f| f["seq"].as_u64().expect("seq")).collect();
    assert_eq!(seqs, vec![3, 4, 5], "exactly the missed messages, in order: {replay:?}");
    assert!(replay.iter().all(|f| f["type"] == "message"));
    assert_eq!(replay[1]["client_msg_id"], "m2");

    let ex = b.exchange("m3", "thanks").await;
    assert_eq!(ex.echo["seq"], 6, "live traffic continues the sequence");
    assert_eq!(ex.reply.end["seq"], 7);

    let mut c = server.client().await;
    c.resume(&welcome, 7).await;
    assert!(c.drain().await.is_empty(), "an up-to-date client gets no replay");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_resume_token_replays_nothing() {
    let server = start().await;
    let mut a = server.client().await;
    let (welcome, _) = a.hello_demo().await;
    a.exchange("m1", "hello").await;

    let mut b = server.client().await;
    b.send(
        json!({"type": "hello", "bot_id": "demo", "conversation_id": welcome["conversation_id"],
                  "resume_token": "not-the-token", "last_seq": 0}),
    )
    .await;
    let err = b.expect("error").await;
    assert_eq!(err["code"], "invalid_resume_token");
    assert!(b.drain().await.is_empty(), "nothing replayed");
    b.say("x", "hi").await;
    assert_eq!(b.expect("error").await["code"], "hello_required", "the socket is not opened");

    b.send(
        json!({"type": "hello", "bot_id": "demo", "conversation_id": "nope", "resume_token": "t"}),
    )
    .await;
    assert_eq!(b.expect("error").await["code"], "conversation_not_found");
    b.send(
        json!({"type": "hello", "bot_id": "demo", "conversation_id": welcome["conversation_id"]}),
    )
    .await;
    assert_eq!(b.expect("error").await["code"], "invalid_hello");
    b.send(json!({"type": "hello", "bot_id": "no-such-bot"})).await;
    assert_eq!(b.expect("error").await["code"], "bot_not_found");
    // After all that, a fresh hello still works on the same socket.
    b.hello_demo().await;
    b.send(json!({"type": "hello", "bot_id": "demo"})).await;
    assert_eq!(b.expect("error").await["code"], "already_open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_client_msg_id_is_acknowledged_and_never_stored_twice() {
    let server = start().await;
    let mut a = server.client().await;
    let (welcome, _) = a.hello_demo().await;
    let first = a.exchange("dup-1", "hello").await;

    a.say("dup-1", "hello, but sent again").await;
    let ack = a.expect("message").await;
    assert_eq!(ack["seq"], first.echo["seq"]);
    assert_eq!(ack["id"], first.echo["id"]);
    assert_eq!(ack["text"], "hello", "the stored original comes back");
    assert!(a.drain().await.is_empty(), "no second bot reply for a duplicate");

    let mut b = server.client().await;
    b.resume(&welcome, 0).await;
    let all = b.drain().await;
    let seqs: Vec<_> = all.iter().map(|f| f["seq"].as_u64().expect("seq")).collect();
    assert_eq!(seqs, vec![1, 2, 3], "stored once: {all:?}");
    assert_eq!(server.metric("parla_duplicates_acknowledged_total").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_clients_in_one_conversation_see_one_ordered_sequence() {
    let server = start().await;
    let mut a = server.client().await;
    let (welcome, _) = a.hello_demo().await;
    a.store_now().await; // Others can join a stored conversation only.
    let mut others = Vec::new();
    for _ in 0..3 {
        let mut c = server.client().await;
        c.resume(&welcome, 1).await;
        others.push(c);
    }
    // Three senders interleave; every socket must observe the same total order.
    let per_sender = 4;
    let mut senders = vec![a];
    senders.extend(others.drain(..1));
    let watchers = others;
    for i in 0..per_sender {
        for (n, s) in senders.iter_mut().enumerate() {
            s.say(&format!("s{n}-m{i}"), &format!("hello number {i} from {n}")).await;
        }
    }
    let total = 1 + (senders.len() * per_sender * 2) as u64; // greeting + echo and reply each
    let mut views = Vec::new();
    for c in senders.iter_mut().chain(watchers.into_iter().collect::<Vec<_>>().iter_mut()) {
        views.push(collect_stored(c, total).await);
    }
    for view in &views {
        let seqs: Vec<u64> = view.iter().map(|(seq, _)| *seq).collect();
        assert_eq!(seqs, (2..=total).collect::<Vec<_>>(), "every seq once, in order");
        assert_eq!(view, &views[0], "all sockets see the same messages under the same seqs");
    }
}

/// Collects (seq, id) of stored messages (echoes, messages, stream ends) until `last`.
async fn collect_stored(c: &mut Client, last: u64) -> Vec<(u64, String)> {
    let mut seen = Vec::new();
    while seen.last().map(|(s, _)| *s) != Some(last) {
        let f = c.recv().await;
        if matches!(f["type"].as_str(), Some("message" | "stream_end")) {
            seen.push((f["seq"].as_u64().expect("seq"), f["id"].as_str().expect("id").to_owned()));
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_actor_that_panics_is_restarted_and_the_conversation_continues() {
    let server = start_with(|s| s.engine.panic_on_text = "boom!".into()).await;
    let mut c = server.client().await;
    c.hello_demo().await;
    c.exchange("m1", "hello").await; // seq 2, 3

    c.say("m2", "boom!").await;
    let err = c.expect("error").await;
    assert_eq!(err["code"], "internal");
    assert_eq!(err["client_msg_id"], "m2", "the client learns which message to retry");

    let ex = c.exchange("m3", "what is parla").await;
    assert_eq!(ex.echo["seq"], 4, "seq continues after the restart, no gap, no reuse");
    assert_eq!(ex.reply.end["seq"], 5);
    assert_eq!(server.metric("parla_actor_restarts_total").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_get_error_frames_and_the_socket_stays_open() {
    let server = start().await;
    let mut c = server.client().await;
    for (raw, code) in [
        ("not json", "malformed_frame"),
        ("{\"type\":\"nope\"}", "malformed_frame"),
        ("{\"no_type\":1}", "malformed_frame"),
        ("{\"type\":\"message\"}", "malformed_frame"),
        ("[1,2,3]", "malformed_frame"),
        ("{\"type\":\"message\",\"client_msg_id\":\"a\",\"text\":\"hi\"}", "hello_required"),
        ("{\"type\":\"typing\",\"on\":true}", "hello_required"),
    ] {
        c.send_raw(raw.to_owned()).await;
        let err = c.expect("error").await;
        assert_eq!(err["code"], code, "for {raw}");
        assert!(err["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    c.send_binary(vec![1, 2, 3]).await;
    assert_eq!(c.expect("error").await["code"], "unsupported_frame");

    c.hello_demo().await;
    c.say("", "hi").await;
    assert_eq!(c.expect("error").await["code"], "invalid_client_msg_id");
    c.say(&"x".repeat(129), "hi").await;
    assert_eq!(c.expect("error").await["code"], "invalid_client_msg_id");
    c.say("e1", "   ").await;
    let err = c.expect("error").await;
    assert_eq!(
        (err["code"].as_str(), err["client_msg_id"].as_str()),
        (Some("invalid_text"), Some("e1"))
    );
    c.say("e2", &"é".repeat(4001)).await;
    assert_eq!(c.expect("error").await["code"], "invalid_text");
    // None of that was stored: the next message is seq 2.
    assert_eq!(c.exchange("ok", "hello").await.echo["seq"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frames_get_an_error_frame_and_huge_ones_close_with_1009() {
    let server = start_with(|s| {
        s.gateway.max_frame_bytes = 1024;
        s.gateway.hard_frame_bytes = 8192;
    })
    .await;
    let mut c = server.client().await;
    c.hello_demo().await;
    c.say("big", &"a".repeat(2000)).await;
    assert_eq!(c.expect("error").await["code"], "frame_too_large");
    assert_eq!(c.exchange("small", "hello").await.echo["seq"], 2, "socket still usable");

    c.say("huge", &"a".repeat(20_000)).await;
    let (closed, _) = c.until_closed().await;
    assert_eq!(closed, Closed::Code(CloseCode::Size));
    let mut d = server.client().await;
    d.hello_demo().await; // the server is fine
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_is_per_connection() {
    let server = start_with(|s| {
        s.gateway.rate_per_second = 1;
        s.gateway.rate_burst = 3;
    })
    .await;
    let mut noisy = server.client().await;
    for _ in 0..10 {
        noisy.send(json!({"type": "ping"})).await;
    }
    let mut frames = Vec::new();
    for _ in 0..10 {
        frames.push(noisy.recv().await);
    }
    let limited: Vec<&Value> = frames.iter().filter(|f| f["code"] == "rate_limited").collect();
    assert!(limited.len() >= 5, "most of a burst of 10 is refused: {frames:?}");
    assert!(limited.iter().all(|f| f["retry_after_ms"].as_u64().is_some_and(|ms| ms >= 1)));
    assert!(frames.iter().any(|f| f["type"] == "pong"), "the burst allowance got through");

    let mut quiet = server.client().await;
    quiet.send(json!({"type": "ping"})).await;
    assert_eq!(quiet.recv().await["type"], "pong", "another connection is not limited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_socket_is_closed_by_the_heartbeat() {
    let server = start_with(|s| {
        s.gateway.heartbeat_interval_ms = 100;
        s.gateway.client_timeout_ms = 300;
    })
    .await;
    let mut c = server.client().await;
    c.send(json!({"type": "hello", "bot_id": "demo"})).await;
    // Not reading means not answering the server's pings.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let (closed, frames) = c.until_closed().await;
    // The server sends close 1008, but this client has pongs queued for the pings it ignored;
    // writing them to the closed socket can fail before the close frame is read. Either way the
    // server ended the socket (without the heartbeat the read above would wait forever).
    assert!(
        matches!(closed, Closed::Code(CloseCode::Policy) | Closed::NoFrame),
        "{closed:?}, frames before close: {frames:?}"
    );
    assert!(frames.iter().all(|f| f["type"] != "error"), "no error frame, just a close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_without_hello_is_closed() {
    let server = start_with(|s| s.gateway.hello_timeout_ms = 200).await;
    let mut c = server.client().await;
    let (closed, frames) = c.until_closed().await;
    assert_eq!(closed, Closed::Code(CloseCode::Policy));
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0]["code"], "hello_timeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_and_read_reach_the_other_sockets_only() {
    let server = start().await;
    let mut a = server.client().await;
    let (welcome, _) = a.hello_demo().await;
    a.store_now().await;
    let mut b = server.client().await;
    b.resume(&welcome, 1).await;

    a.send(json!({"type": "typing", "on": true})).await;
    let typing = b.expect("typing").await;
    assert_eq!((typing["sender"].as_str(), typing["on"].as_bool()), (Some("user"), Some(true)));
    a.send(json!({"type": "read", "seq": 1})).await;
    let read = b.expect("read").await;
    assert_eq!((read["sender"].as_str(), read["seq"].as_u64()), (Some("user"), Some(1)));
    assert!(a.drain().await.is_empty(), "the sender does not get its own typing or read");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_at_its_cap_refuses_a_new_conversation_while_every_live_one_is_busy() {
    // Replies slow enough that the first conversation's actor is mid-answer (busy: it cannot be
    // passivated to make room) when the second visitor writes.
    let server = start_with(|s| {
        s.engine.max_live_conversations_per_tenant = 1;
        s.responder.token_delay_ms = 300;
    })
    .await;
    let mut a = server.client().await;
    a.hello_demo().await;
    a.say("a1", "what is parla").await;
    a.expect("message").await;
    a.expect("stream_start").await;
    let mut b = server.client().await;
    b.hello_demo().await;
    b.say("b1", "hello").await;
    let err = b.expect("error").await;
    assert_eq!(
        (err["code"].as_str(), err["client_msg_id"].as_str()),
        (Some("tenant_at_capacity"), Some("b1"))
    );
    let (end, _) = a.until("stream_end").await;
    assert_eq!(end["seq"], 3, "the live one is unaffected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_actor_is_passivated_and_rehydrated_on_the_next_message() {
    let server = start_with(|s| s.engine.idle_passivate_secs = 1).await;
    let mut c = server.client().await;
    c.hello_demo().await;
    c.exchange("m1", "hello").await;
    let mut waited = 0;
    while server.metric("parla_actor_passivations_total").await < 1 {
        waited += 1;
        assert!(waited < 100, "the actor never passivated");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(server.metric("parla_live_conversations").await, 0);
    let ex = c.exchange("m2", "what is parla").await;
    assert_eq!(ex.echo["seq"], 4, "rehydrated from the store with the right seq");
    assert_eq!(ex.reply.end["seq"], 5);
    assert_eq!(server.metric("parla_live_conversations").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_page_health_and_metrics_are_served() {
    let server = start().await;
    let (status, body) = server.get("/").await;
    assert_eq!(status, 200);
    assert!(body.contains("/widget.js"), "the demo page embeds the widget");
    let (status, loader) = server.get("/widget.js").await;
    assert_eq!(status, 200);
    assert!(loader.contains("/v1/widget/bots/"), "the loader reads the bot's public settings");
    let hash =
        loader.split("app.js?v=").nth(1).map(|s| &s[..16]).expect("the loader names its app");
    let (status, app) = server.get(&format!("/widget/app.js?v={hash}")).await;
    assert_eq!(status, 200);
    assert!(app.contains("/v1/widget/ws"), "the app speaks to the widget socket");
    let (status, body) = server.get("/healthz").await;
    assert_eq!((status, body.contains("ok")), (200, true));
    let (status, body) = http_get(server.ops(), "/metrics").await;
    assert_eq!(status, 200);
    assert!(body.contains("# TYPE parla_messages_stored_total counter"));
    assert_eq!(server.get("/nope").await.0, 404);
}

/// Every response, page or not, says the page may not be framed and runs no inline or foreign
/// script (issue 19, item 14: the console could be framed for clickjacking); the pages' scripts
/// are files of their own, so the policy holds without `'unsafe-inline'`. The widget is a
/// script other sites load, so it stays loadable from anywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_carries_security_headers_and_pages_cannot_be_framed() {
    let server = start().await;
    for path in ["/", "/console", "/demo.js", "/widget.js", "/api/openapi.json", "/nope"] {
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", server.addr);
        let (status, head, _) = raw_http(server.addr, &request).await;
        assert!(status == 200 || path == "/nope", "{path}: {status}");
        let head = head.to_lowercase();
        let header = |name: &str| {
            head.lines()
                .find_map(|l| l.strip_prefix(&format!("{name}: ")).map(str::to_owned))
                .unwrap_or_else(|| panic!("{path} has no {name}: {head}"))
        };
        let csp = header("content-security-policy");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(csp.contains("script-src 'self'"), "{csp}");
        assert!(!csp.contains("script-src 'self' 'unsafe"), "no inline script allowed: {csp}");
        assert_eq!(header("x-frame-options"), "deny", "{path}");
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(header("referrer-policy"), "no-referrer", "{path}");
    }
    // The pages really have no inline script left for the policy to block.
    for page in ["/", "/console"] {
        let (_, html) = server.get(page).await;
        assert!(!html.contains("<script>"), "{page} has an inline script");
    }
    let (_, head_of_widget, _) = raw_http(
        server.addr,
        &format!("GET /widget.js HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", server.addr),
    )
    .await;
    assert!(head_of_widget.to_lowercase().contains("access-control-allow-origin: *"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_cannot_be_reached_through_another_tenants_bot() {
    let server = start().await;
    // A second tenant with its own active bot, created through the store port (the admin API
    // that will do this is a later issue).
    let store = server.running.as_ref().expect("running").engine.store().clone();
    let other = parla_domain::conformance::bot("tenant-b", "bot-b");
    store.put_bot(&other).await.expect("put bot");

    let mut a = server.client().await;
    let (welcome, _) = a.hello_demo().await;
    a.exchange("secret", "hello").await;

    let mut intruder = server.client().await;
    intruder
        .send(json!({"type": "hello", "bot_id": "bot-b", "conversation_id": welcome["conversation_id"],
                     "resume_token": welcome["resume_token"], "last_seq": 0}))
        .await;
    assert_eq!(intruder.expect("error").await["code"], "conversation_not_found");
    assert!(intruder.drain().await.is_empty(), "nothing of tenant A's conversation leaks");

    // Tenant B's own bot works, in its own conversation.
    let w = intruder.hello("bot-b").await;
    assert_ne!(w["conversation_id"], welcome["conversation_id"]);
    let ex = intruder.exchange("b1", "anything").await;
    assert_eq!(ex.echo["seq"], 1, "bot-b has no greeting: the first message is seq 1");
    assert_eq!(ex.reply.tokens, "Sorry?", "bot-b's own fallback");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inactive_bot_refuses_conversations() {
    let server = start().await;
    let store = server.running.as_ref().expect("running").engine.store().clone();
    let mut paused = parla_domain::conformance::bot("tenant-p", "bot-paused");
    paused.status = parla_engine::model::BotStatus::Paused;
    store.put_bot(&paused).await.expect("put bot");
    let mut c = server.client().await;
    c.send(json!({"type": "hello", "bot_id": "bot-paused"})).await;
    assert_eq!(c.expect("error").await["code"], "bot_unavailable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_tells_every_socket_to_go_away() {
    let mut server = start().await;
    let mut c = server.client().await;
    c.hello_demo().await;
    let running = server.running.take().expect("running");
    let stopping = tokio::spawn(running.stop());
    let (closed, _) = c.until_closed().await;
    assert_eq!(closed, Closed::Code(CloseCode::Away), "1001 tells the widget to reconnect");
    stopping.await.expect("stop task").expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_of_retries_never_overtake_earlier_messages() {
    let server = start_with(|s| {
        s.gateway.rate_per_second = 10_000;
        s.gateway.rate_burst = 10_000;
    })
    .await;
    let c = server.client().await;
    let (mut sink, mut c) = c.split();
    sink.send(json!({"type": "hello", "bot_id": "demo"})).await.expect("send");
    // Every message twice in a row, without waiting: the retry's ack travels on the
    // connection's own queue and may be ready before the original's echo.
    let n = 30;
    tokio::spawn(async move {
        for i in 0..n {
            for _ in 0..2 {
                let frame =
                    json!({"type": "message", "client_msg_id": format!("r{i}"), "text": "hello"});
                sink.send(frame).await.expect("send");
            }
        }
    });
    // Each frame is the next seq, or the ack of a retry: the visitor's own message again (with
    // its client_msg_id), which the socket already sent. An ack is as old as its message (a
    // retry is acknowledged with the original), so it may come after later seqs; it never comes
    // ahead of its echo. Every seq comes, in order.
    let last = 1 + 2 * n as u64;
    let mut seen = Vec::new();
    let mut acks = 0;
    let mut top = 0;
    while top != last {
        let f = c.recv().await;
        if !matches!(f["type"].as_str(), Some("message" | "stream_end")) {
            continue;
        }
        let seq = f["seq"].as_u64().expect("seq");
        seen.push(seq);
        if seq == top + 1 {
            top = seq;
        } else {
            let ack = f["client_msg_id"].is_string() && seq <= top;
            assert!(ack, "seq {seq} is neither the next one nor an ack: {seen:?}");
            acks += 1;
        }
    }
    // An ack that overtook its echo is dropped (the echo confirms the message): at most one each.
    assert!(acks <= n, "at most one ack per retry: {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_responder_that_panics_mid_stream_still_ends_the_stream_and_the_conversation_goes_on() {
    let server = start_with(|s| {
        s.responder.panic_on_text = "break the bot".into();
        s.engine.idle_passivate_secs = 1;
    })
    .await;
    let mut c = server.client().await;
    c.hello_demo().await;
    c.say("p1", "break the bot").await;
    assert_eq!(c.expect("message").await["seq"], 2);
    let stream = c.read_stream().await;
    assert_eq!(stream.end["seq"], 3, "the stream is closed and a reply stored");
    assert!(stream.end["text"].as_str().is_some_and(|t| t.contains("partial")), "{}", stream.end);
    let ex = c.exchange("p2", "what is parla").await;
    assert_eq!((ex.echo["seq"].as_u64(), ex.reply.end["seq"].as_u64()), (Some(4), Some(5)));
    // No stream is left "in flight": the actor can still passivate.
    let mut waited = 0;
    while server.metric("parla_actor_passivations_total").await < 1 {
        waited += 1;
        assert!(waited < 100, "the actor never passivated");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bots_public_settings_say_how_the_widget_looks_and_nothing_more() {
    let server = start().await;
    let (status, body) = server.get("/v1/widget/bots/demo/settings").await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).expect("json");
    let mut keys: Vec<_> = v.as_object().expect("object").keys().cloned().collect();
    keys.sort();
    assert_eq!(
        keys,
        ["appearance", "id", "language", "name", "welcome_message"],
        "no secrets: {v}"
    );
    assert_eq!(v["appearance"]["title"], "Parla demo");
    assert_eq!(v["language"], "en");
    assert!(v["welcome_message"].as_str().expect("text").contains("demo bot"));

    let (status, body) = server.get("/v1/widget/bots/no-such-bot/settings").await;
    assert_eq!(status, 404);
    assert!(body.contains("bot_not_found"), "{body}");
}
