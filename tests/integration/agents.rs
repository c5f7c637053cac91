//! Human agents through the public doors: the agent socket (`/v1/agent/ws`) and the REST
//! mirrors, with real visitor widget sockets on the other side.

use std::time::Duration;

use crate::common::*;
use serde_json::{Value, json};

/// A workspace whose bot streams slowly (so a claim can land mid-stream), with two agents.
struct Desk {
    server: TestServer,
    owner: String,
    ann: String,
    bob: String,
    bot: String,
}

const LONG_FALLBACK: &str = "I am not sure I understood that, so let me explain at some length \
    what I can and cannot do for you today, one word at a time, while you wait patiently for \
    a person to come and help you with the question you asked a moment ago.";

async fn desk() -> Desk {
    let server = start_with(|s| s.responder.token_delay_ms = 40).await;
    let owner = register_owner(&server, "owner@desk.example.com").await;
    let ann = invite_and_join(&server, &owner, "ann@desk.example.com", "agent").await;
    let bob = invite_and_join(&server, &owner, "bob@desk.example.com", "agent").await;
    let body = json!({"name": "desk", "config": {"fallback_message": LONG_FALLBACK}});
    let bot = published_bot(&server, &owner, body).await;
    Desk { server, owner, ann, bob, bot }
}

async fn account_id(server: &TestServer, jwt: &str) -> String {
    let (_, me) = server.call("GET", "/api/auth/me", None, Some(jwt)).await;
    me["id"].as_str().expect("id").to_owned()
}

/// A visitor with an open conversation, stored (so agents can see it); returns the socket and
/// the welcome.
async fn visitor(server: &TestServer, bot: &str) -> (Client, Value) {
    let mut client = server.client().await;
    let welcome = client.hello_stored(bot).await;
    (client, welcome)
}

fn conversation_id(welcome: &Value) -> String {
    welcome["conversation_id"].as_str().expect("conversation id").to_owned()
}

/// A visitor's new conversation (socket, welcome, id) and Ann's signed-in agent socket.
async fn chat_with_ann(d: &Desk) -> (Client, Value, String, Client) {
    let (client, welcome) = visitor(&d.server, &d.bot).await;
    let id = conversation_id(&welcome);
    let (ann, _, _) = Client::agent(d.server.addr, &d.ann).await;
    (client, welcome, id, ann)
}

/// The same, once Ann has taken it over (the visitor saw the handoff).
async fn held_by_ann(d: &Desk) -> (Client, Value, String, Client) {
    let (mut client, welcome, id, mut ann) = chat_with_ann(d).await;
    ann.send(json!({"type": "claim", "conversation_id": id})).await;
    ann.until("ack").await;
    client.expect("handoff").await;
    (client, welcome, id, ann)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_agents_race_to_claim_and_exactly_one_wins() {
    let d = desk().await;
    let (mut ann, welcome, _) = Client::agent(d.server.addr, &d.ann).await;
    assert_eq!(welcome["role"], "agent");
    let ann_id = account_id(&d.server, &d.ann).await;
    for round in 0..8 {
        let (_visitor, conversation) = visitor(&d.server, &d.bot).await;
        let id = conversation_id(&conversation);
        // Ann on her socket, Bob over REST, at the same moment.
        let claim = json!({"type": "claim", "conversation_id": id, "ref": format!("r{round}")});
        let bob_path = format!("/api/conversations/{id}/claim");
        let (_, (bob_status, bob_body)) =
            tokio::join!(ann.send(claim), d.server.post(&bob_path, json!({}), Some(&d.bob)),);
        let (answer, _) = loop {
            let (frame, skipped) = ann.until_either("ack", "error").await;
            if frame["ref"] == format!("r{round}") {
                break (frame, skipped);
            }
        };
        let ann_won = answer["type"] == "ack";
        let bob_won = bob_status == 200;
        assert!(
            ann_won ^ bob_won,
            "round {round}: exactly one wins: {answer} / {bob_status} {bob_body}"
        );
        if ann_won {
            assert_eq!(answer["handling"]["assignee"]["id"], ann_id.as_str());
            assert_eq!((bob_status, error_code(&bob_body)), (409, "already_claimed"), "{bob_body}");
        } else {
            assert_eq!(answer["code"], "already_claimed", "{answer}");
            assert_eq!(bob_body["status"], "ASSIGNED");
        }
        let (_, stored) =
            d.server.call("GET", &format!("/api/conversations/{id}"), None, Some(&d.owner)).await;
        let holder = &stored["conversation"]["assignee"]["id"];
        assert_eq!(holder == ann_id.as_str(), ann_won, "the store agrees with the winner");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_mid_stream_cancels_it_and_no_bot_token_follows_the_handoff() {
    let d = desk().await;
    let (mut client, _, id, mut ann) = chat_with_ann(&d).await;
    ann.send(json!({"type": "subscribe", "conversation_id": id})).await;
    ann.until("subscribed").await;

    client.say("m1", "blorp fizzle wump").await;
    client.expect("message").await;
    let start = client.expect("stream_start").await;
    client.expect("token").await; // The bot is mid-answer.
    ann.send(json!({"type": "claim", "conversation_id": id, "ref": "take"})).await;
    let (handoff, before) = client.until("handoff").await;
    assert_eq!(handoff["to"], "human");
    assert_eq!(handoff["agent"], "M", "the agent's display name");
    assert!(
        before
            .iter()
            .any(|f| f["type"] == "stream_cancelled" && f["stream_id"] == start["stream_id"]),
        "the bubble is withdrawn before the handoff: {before:?}"
    );
    assert!(
        before.iter().all(|f| f["type"] == "token" || f["type"] == "stream_cancelled"),
        "{before:?}"
    );

    // The agent answers; the visitor sees it, and nothing of the bot in between or after.
    ann.until("ack").await;
    ann.send(json!({"type": "message", "conversation_id": id, "client_msg_id": "a1",
        "text": "Hi, Ann here. How can I help?", "ref": "say"}))
        .await;
    let (human, between) = client.until("message").await;
    assert!(between.is_empty(), "nothing between the handoff and the agent's message: {between:?}");
    assert_eq!(human["sender"], "human");
    assert_eq!(human["text"], "Hi, Ann here. How can I help?");
    tokio::time::sleep(Duration::from_millis(300)).await; // Several token intervals.
    let after = client.drain().await;
    assert!(after.is_empty(), "no bot token or stream_end after the handoff: {after:?}");

    // Visitor messages now reach the agent and the bot stays silent.
    client.say("m2", "thanks!").await;
    client.expect("message").await;
    let message = loop {
        let (message, _) = ann.until("message").await;
        if message["message"]["sender"] == "user" {
            break message;
        }
    };
    assert_eq!(message["message"]["client_msg_id"], "m2");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(client.drain().await.is_empty(), "the bot is muted while an agent holds it");

    // The transcript: the visitor's two messages and the agent's; the cancelled reply is gone.
    let (_, stored) =
        d.server.call("GET", &format!("/api/conversations/{id}"), None, Some(&d.owner)).await;
    let senders: Vec<&str> = stored["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["sender"].as_str().expect("sender"))
        .collect();
    assert_eq!(senders, ["user", "human", "user"], "{stored}");
    assert_eq!(stored["messages"][1]["agent_id"], account_id(&d.server, &d.ann).await.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_hands_back_to_the_bot_and_resolve_closes_until_the_visitor_returns() {
    let d = desk().await;
    let (mut client, welcome) = visitor(&d.server, &d.bot).await;
    let id = conversation_id(&welcome);
    let path = |action: &str| format!("/api/conversations/{id}/{action}");
    let (status, claimed) = d.server.post(&path("claim"), json!({}), Some(&d.ann)).await;
    assert_eq!(status, 200, "{claimed}");
    assert_eq!(client.expect("handoff").await["to"], "human");
    let (status, again) = d.server.post(&path("claim"), json!({}), Some(&d.ann)).await;
    assert_eq!(status, 200, "claiming your own is a no-op: {again}");
    let (status, body) = d.server.post(&path("release"), json!({}), Some(&d.bob)).await;
    assert_eq!((status, error_code(&body)), (409, "not_assigned"), "Bob does not hold it");
    let reply = json!({"client_msg_id": "r1", "text": "hello"});
    let (status, body) = d.server.post(&path("replies"), reply.clone(), Some(&d.bob)).await;
    assert_eq!((status, error_code(&body)), (409, "not_assigned"), "only the holder replies");
    let (status, body) = d.server.post(&path("replies"), reply.clone(), Some(&d.ann)).await;
    assert_eq!(status, 201, "{body}");
    let (status, again) = d.server.post(&path("replies"), reply, Some(&d.ann)).await;
    assert_eq!((status, again["duplicate"].as_bool()), (200, Some(true)), "idempotent: {again}");
    assert_eq!(again["message"]["seq"], body["message"]["seq"]);
    assert_eq!(client.expect("message").await["sender"], "human");

    let (status, released) = d.server.post(&path("release"), json!({}), Some(&d.ann)).await;
    assert_eq!((status, released["status"].as_str()), (200, Some("OPEN")), "{released}");
    assert!(released["assignee"].is_null());
    let handoff = client.expect("handoff").await;
    assert_eq!(handoff["to"], "bot");
    assert!(handoff.get("agent").is_none());
    let exchange = client.exchange("v1", "anyone there?").await;
    assert_eq!(exchange.reply.end["text"], LONG_FALLBACK, "the bot answers again");

    let resolve = json!({"resolution": "RESOLVED"});
    let (status, resolved) = d.server.post(&path("resolve"), resolve, Some(&d.bob)).await;
    assert_eq!(status, 200, "any agent may resolve an unheld conversation: {resolved}");
    assert_eq!(
        (resolved["status"].as_str(), resolved["resolution"].as_str()),
        (Some("RESOLVED"), Some("RESOLVED"))
    );
    assert!(resolved["ended_at"].is_i64());
    let (_, inbox) = d.server.call("GET", "/api/inbox", None, Some(&d.ann)).await;
    assert!(!inbox.to_string().contains(&id), "resolved conversations leave the inbox");
    client.exchange("v2", "one more thing").await;
    let (_, reopened) =
        d.server.call("GET", &format!("/api/conversations/{id}"), None, Some(&d.ann)).await;
    assert_eq!(reopened["conversation"]["status"], "OPEN", "the visitor came back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitor_who_reconnects_during_a_human_session_resumes_with_the_humans_messages() {
    let d = desk().await;
    let (client, welcome, id, mut ann) = held_by_ann(&d).await;
    drop(client); // The visitor's network drops.
    for (i, text) in ["Are you still there?", "I found your order."].iter().enumerate() {
        ann.send(json!({"type": "message", "conversation_id": id,
            "client_msg_id": format!("a{i}"), "text": text}))
            .await;
        ann.until("ack").await;
    }
    let mut back = d.server.client().await;
    back.send(json!({"type": "hello", "bot_id": d.bot, "conversation_id": id,
        "resume_token": welcome["resume_token"], "last_seq": 0}))
        .await;
    back.expect("welcome").await;
    let first = back.expect("message").await;
    let second = back.expect("message").await;
    assert_eq!(
        (first["sender"].as_str(), first["text"].as_str()),
        (Some("human"), Some("Are you still there?"))
    );
    assert_eq!(second["text"], "I found your order.");
    let handoff = back.expect("handoff").await;
    assert_eq!((handoff["to"].as_str(), handoff["agent"].as_str()), (Some("human"), Some("M")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notes_reach_agents_and_never_the_visitor() {
    let d = desk().await;
    let (mut client, _, id, mut ann) = chat_with_ann(&d).await;
    let (mut bob, _, _) = Client::agent(d.server.addr, &d.bob).await;
    bob.send(json!({"type": "subscribe", "conversation_id": id})).await;
    bob.until("subscribed").await;
    ann.send(json!({"type": "note", "conversation_id": id, "text": "VIP customer", "ref": "n"}))
        .await;
    let (ack, _) = ann.until("ack").await;
    assert_eq!(ack["note"]["text"], "VIP customer");
    let (note, _) = bob.until("note").await;
    assert_eq!(
        (note["note"]["text"].as_str(), note["conversation_id"].as_str()),
        (Some("VIP customer"), Some(id.as_str()))
    );
    assert!(client.drain().await.is_empty(), "the visitor gets nothing of the note");
    let (status, notes) =
        d.server.call("GET", &format!("/api/conversations/{id}/notes"), None, Some(&d.owner)).await;
    assert_eq!((status, notes["data"][0]["author"]["name"].as_str()), (200, Some("M")));
    let (_, stored) =
        d.server.call("GET", &format!("/api/conversations/{id}"), None, Some(&d.owner)).await;
    assert!(!stored.to_string().contains("VIP customer"), "not in the transcript");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inbox_puts_waiting_visitors_first_and_updates_live() {
    let d = desk().await;
    // Agents pick from the inbox themselves here (no routing to the online agent).
    let manual = json!({"agents": {"assignment": "manual"}}).to_string();
    let (status, _) = d.server.call("PATCH", "/api/workspace", Some(&manual), Some(&d.owner)).await;
    assert_eq!(status, 200);
    let (mut calm, calm_welcome) = visitor(&d.server, &d.bot).await;
    calm.exchange("c1", "hello").await;
    let (mut urgent, urgent_welcome) = visitor(&d.server, &d.bot).await;
    let (mut ann, _, _) = Client::agent(d.server.addr, &d.ann).await;
    urgent.say("u1", "I want to talk to a human").await;
    let (update, _) = loop {
        let (frame, skipped) = ann.until("inbox_update").await;
        if frame["status"] == "ESCALATED" {
            break (frame, skipped);
        }
    };
    assert_eq!(update["conversation_id"], conversation_id(&urgent_welcome));
    assert!(update["waiting_since"].is_i64(), "{update}");
    ann.send(json!({"type": "inbox"})).await;
    let (inbox, _) = ann.until("inbox").await;
    let order: Vec<&str> = inbox["conversations"]
        .as_array()
        .expect("conversations")
        .iter()
        .map(|c| c["conversation_id"].as_str().expect("id"))
        .collect();
    let (urgent_id, calm_id) = (conversation_id(&urgent_welcome), conversation_id(&calm_welcome));
    assert_eq!(order.first(), Some(&urgent_id.as_str()), "the waiting visitor first: {order:?}");
    assert!(order.contains(&calm_id.as_str()));
    let entry = &inbox["conversations"][0];
    assert!(entry["last_message"]["seq"].as_u64().is_some_and(|n| n >= 1), "{entry}");
    assert!(entry["unread"].as_u64().is_some_and(|n| n >= 1), "nobody read it yet: {entry}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenants_agent_cannot_see_subscribe_to_or_claim_a_conversation() {
    let d = desk().await;
    let (mut client, welcome) = visitor(&d.server, &d.bot).await;
    client.exchange("m1", "hello").await;
    let id = conversation_id(&welcome);
    let intruder = register_owner(&d.server, "owner@other.example.com").await;
    let (mut other, _, inbox) = Client::agent(d.server.addr, &intruder).await;
    assert!(!inbox.to_string().contains(&id), "not in their inbox");
    for (frame, code) in [
        (json!({"type": "subscribe", "conversation_id": id, "ref": "s"}), "conversation_not_found"),
        (json!({"type": "claim", "conversation_id": id, "ref": "c"}), "conversation_not_found"),
        (
            json!({"type": "note", "conversation_id": id, "text": "x", "ref": "n"}),
            "conversation_not_found",
        ),
        (json!({"type": "typing", "conversation_id": id, "on": true}), "not_subscribed"),
    ] {
        other.send(frame.clone()).await;
        let error = other.expect("error").await;
        assert_eq!(error["code"], code, "{frame} → {error}");
    }
    let (status, _) =
        d.server.post(&format!("/api/conversations/{id}/claim"), json!({}), Some(&intruder)).await;
    assert_eq!(status, 404);
    let (_, stored) =
        d.server.call("GET", &format!("/api/conversations/{id}"), None, Some(&d.owner)).await;
    assert_eq!(stored["conversation"]["status"], "OPEN", "untouched");
    assert!(client.drain().await.is_empty(), "the visitor saw nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_socket_refuses_bad_input_clearly() {
    let d = desk().await;
    let mut socket = Client::connect_to(d.server.addr, "/v1/agent/ws").await;
    socket.send(json!({"type": "inbox"})).await;
    assert_eq!(socket.expect("error").await["code"], "hello_required");
    socket.send(json!({"type": "hello", "token": "not-a-token"})).await;
    assert_eq!(socket.expect("error").await["code"], "token_invalid");
    socket.send_raw("{not json".into()).await;
    assert_eq!(socket.expect("error").await["code"], "malformed_frame");
    socket.send_binary(vec![1, 2, 3]).await;
    assert_eq!(socket.expect("error").await["code"], "unsupported_frame");
    let viewer = invite_and_join(&d.server, &d.owner, "viewer@desk.example.com", "viewer").await;
    socket.send(json!({"type": "hello", "token": viewer})).await;
    assert_eq!(socket.expect("error").await["code"], "forbidden", "viewers cannot act");
    socket.send(json!({"type": "hello", "token": d.ann})).await;
    socket.expect("welcome").await;
    socket.expect("inbox").await;
    let (_, welcome) = visitor(&d.server, &d.bot).await;
    let id = conversation_id(&welcome);
    for (frame, code) in [
        (
            json!({"type": "message", "conversation_id": id, "client_msg_id": "x", "text": "hi"}),
            "not_assigned",
        ),
        (
            json!({"type": "message", "conversation_id": id, "client_msg_id": "", "text": "hi"}),
            "invalid_client_msg_id",
        ),
        (
            json!({"type": "message", "conversation_id": id, "client_msg_id": "y", "text": "  "}),
            "invalid_text",
        ),
        (
            json!({"type": "message", "conversation_id": id, "client_msg_id": "z", "text": "x".repeat(4001)}),
            "invalid_text",
        ),
        (
            json!({"type": "resolve", "conversation_id": id, "resolution": "MAYBE"}),
            "malformed_frame",
        ),
        (json!({"type": "transfer", "conversation_id": id, "to": "nobody"}), "invalid_agent"),
        (
            json!({"type": "claim", "conversation_id": "no-such-conversation"}),
            "conversation_not_found",
        ),
        (json!({"type": "hello", "token": d.ann}), "already_open"),
    ] {
        socket.send(frame.clone()).await;
        let error = socket.expect("error").await;
        assert_eq!(error["code"], code, "{frame} → {error}");
    }
    let huge = json!({"type": "note", "conversation_id": id, "text": "x".repeat(70_000)});
    socket.send(huge).await;
    let (closed, _) = socket.until_closed().await;
    assert_eq!(
        closed,
        Closed::Code(tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Size)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canned_responses_expand_from_their_shortcut() {
    let d = desk().await;
    let create = |shortcut: &str, text: &str| json!({"shortcut": shortcut, "text": text});
    let (status, canned) = d
        .server
        .post(
            "/api/canned-responses",
            create("refund", "Refunds take 5 working days."),
            Some(&d.owner),
        )
        .await;
    assert_eq!(status, 201, "{canned}");
    let (status, body) =
        d.server.post("/api/canned-responses", create("refund", "again"), Some(&d.owner)).await;
    assert_eq!((status, error_code(&body)), (409, "shortcut_taken"));
    let (status, body) =
        d.server.post("/api/canned-responses", create("Bad Name", "x"), Some(&d.owner)).await;
    assert_eq!((status, body["error"]["details"]["field"].as_str()), (422, Some("shortcut")));
    let (status, _) =
        d.server.post("/api/canned-responses", create("mine", "x"), Some(&d.ann)).await;
    assert_eq!(status, 403, "agents use canned responses; admins write them");
    let (status, list) = d.server.call("GET", "/api/canned-responses", None, Some(&d.ann)).await;
    assert_eq!((status, list["data"][0]["shortcut"].as_str()), (200, Some("refund")));

    let (mut client, _, id, mut ann) = held_by_ann(&d).await;
    ann.send(json!({"type": "message", "conversation_id": id, "client_msg_id": "c1", "text": "/refund", "ref": "r"})).await;
    let (ack, _) = ann.until_either("ack", "error").await;
    assert_eq!(ack["message"]["text"], "Refunds take 5 working days.", "{ack}");
    assert_eq!(client.expect("message").await["text"], "Refunds take 5 working days.");
    ann.send(json!({"type": "message", "conversation_id": id, "client_msg_id": "c2", "text": "/nope", "ref": "r2"})).await;
    let (error, _) = ann.until_either("ack", "error").await;
    assert_eq!(error["code"], "unknown_shortcut", "a typo is not sent to the visitor: {error}");

    let path = format!("/api/canned-responses/{}", canned["id"].as_str().expect("id"));
    let patch = json!({"text": "Refunds take 3 working days."}).to_string();
    let (status, _) = d.server.call("PATCH", &path, Some(&patch), Some(&d.owner)).await;
    assert_eq!(status, 200);
    let reply = json!({"client_msg_id": "c3", "text": "/refund"});
    let (status, posted) =
        d.server.post(&format!("/api/conversations/{id}/replies"), reply, Some(&d.ann)).await;
    assert_eq!(
        (status, posted["message"]["text"].as_str()),
        (201, Some("Refunds take 3 working days."))
    );
    let (status, _) = d.server.call("DELETE", &path, None, Some(&d.owner)).await;
    assert_eq!(status, 204);
    let (status, _) = d.server.call("DELETE", &path, None, Some(&d.owner)).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolving_can_ask_the_visitor_for_a_score() {
    let d = desk().await;
    let (mut client, welcome) = visitor(&d.server, &d.bot).await;
    let id = conversation_id(&welcome);
    let path = |action: &str| format!("/api/conversations/{id}/{action}");
    d.server.post(&path("claim"), json!({}), Some(&d.ann)).await;
    client.expect("handoff").await;
    let body = json!({"resolution": "RESOLVED", "csat": true});
    let (status, resolved) = d.server.post(&path("resolve"), body, Some(&d.ann)).await;
    assert_eq!((status, resolved["csat_pending"].as_bool()), (200, Some(true)), "{resolved}");
    assert_eq!(client.expect("handoff").await["to"], "bot");
    let question = client.expect("message").await;
    assert!(question["text"].as_str().is_some_and(|t| t.contains("1 (poor) to 5")), "{question}");
    client.say("s1", "5").await;
    client.expect("message").await;
    assert_eq!(client.expect("message").await["text"], "Thank you for your rating!");
    let (_, stored) =
        d.server.call("GET", &format!("/api/conversations/{id}"), None, Some(&d.owner)).await;
    let c = &stored["conversation"];
    assert_eq!((c["csat"].as_u64(), c["csat_pending"].as_bool()), (Some(5), Some(false)), "{c}");
    assert_eq!(c["status"], "RESOLVED", "a score does not reopen it");
    // Anything else later opens a new episode with the bot.
    client.exchange("s2", "one more question").await;
    let (_, stored) =
        d.server.call("GET", &format!("/api/conversations/{id}"), None, Some(&d.owner)).await;
    assert_eq!(stored["conversation"]["status"], "OPEN");
    assert_eq!(stored["conversation"]["csat"], 5, "the score stays recorded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_is_transferred_and_only_its_holder_or_an_admin_moves_it() {
    let d = desk().await;
    let (mut client, _, id, mut ann) = held_by_ann(&d).await;
    let bob_id = account_id(&d.server, &d.bob).await;
    // Bob cannot take it from Ann, nor hand it anywhere: she holds it.
    let path = |action: &str| format!("/api/conversations/{id}/{action}");
    let (status, body) =
        d.server.post(&path("transfer"), json!({"to": bob_id}), Some(&d.bob)).await;
    assert_eq!((status, error_code(&body)), (409, "not_assigned"), "{body}");
    let viewer = invite_and_join(&d.server, &d.owner, "viewer@desk.example.com", "viewer").await;
    let viewer_id = account_id(&d.server, &viewer).await;
    ann.send(json!({"type": "transfer", "conversation_id": id, "to": viewer_id, "ref": "v"})).await;
    let (error, _) = ann.until_either("ack", "error").await;
    assert_eq!(error["code"], "invalid_agent", "viewers cannot hold conversations: {error}");

    ann.send(json!({"type": "transfer", "conversation_id": id, "to": bob_id, "ref": "t"})).await;
    let (ack, _) = ann.until_either("ack", "error").await;
    assert_eq!(ack["handling"]["assignee"]["id"], bob_id.as_str(), "{ack}");
    let handoff = client.expect("handoff").await;
    assert_eq!((handoff["to"].as_str(), handoff["agent"].as_str()), (Some("human"), Some("M")));
    ann.send(json!({"type": "message", "conversation_id": id, "client_msg_id": "a", "text": "still me?"})).await;
    let (error, _) = ann.until_either("ack", "error").await;
    assert_eq!(error["code"], "not_assigned", "Ann no longer holds it");
    let reply = json!({"client_msg_id": "b1", "text": "Bob here, I will take it from now."});
    assert_eq!(d.server.post(&path("replies"), reply, Some(&d.bob)).await.0, 201);
    assert_eq!(client.expect("message").await["text"], "Bob here, I will take it from now.");

    // An owner may release a conversation another agent holds.
    let (status, released) = d.server.post(&path("release"), json!({}), Some(&d.owner)).await;
    assert_eq!((status, released["status"].as_str()), (200, Some("OPEN")), "{released}");
    assert_eq!(client.expect("handoff").await["to"], "bot");
}
