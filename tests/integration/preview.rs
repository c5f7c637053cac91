//! Preview conversations: the console's "Try it", a widget talking to a bot that may be a draft
//! or paused, from a page its allowed origins do not list, counted nowhere and kept from agents.

use crate::common::*;
use serde_json::{Value, json};

/// A DRAFT bot embeddable only on `https://shop.example`, with a welcome and one intent.
async fn draft_bot(server: &TestServer, jwt: &str) -> String {
    let t = Some(jwt);
    let body = json!({
        "name": "Shop",
        "config": {"welcome_message": "Welcome!"},
        "integration": {"allowed_origins": ["https://shop.example"]},
    });
    let (status, bot) = server.post("/api/bots", body, t).await;
    assert_eq!((status, bot["status"].as_str()), (201, Some("DRAFT")), "{bot}");
    let id = bot["id"].as_str().expect("id").to_owned();
    let intent = json!({"name": "hours", "examples": ["when are you open", "opening hours"],
                        "response": {"text": "We open at noon."}});
    let (status, body) = server.post(&format!("/api/bots/{id}/intents"), intent, t).await;
    assert_eq!(status, 201, "{body}");
    id
}

/// `POST /api/conversations` asking for a preview of `bot`.
async fn open_preview(server: &TestServer, bearer: &str, bot: &str) -> (u16, Value) {
    server.post("/api/conversations", json!({"bot_id": bot, "preview": true}), Some(bearer)).await
}

/// A widget socket from `origin` resuming the conversation `opened` with `bot`: the first frame
/// it answers (`welcome` or `error`).
async fn resume_from(
    server: &TestServer,
    origin: &str,
    bot: &str,
    opened: &Value,
) -> (Client, Value) {
    let mut widget = Client::connect_from(server.addr, origin).await;
    widget
        .send(json!({"type": "hello", "bot_id": bot, "conversation_id": opened["conversation_id"],
                     "resume_token": opened["resume_token"], "last_seq": 0}))
        .await;
    let first = widget.recv().await;
    (widget, first)
}

/// A new (non-preview) conversation asked for by a page at `origin`: its first answer.
async fn hello_from(server: &TestServer, origin: &str, bot: &str) -> (Client, Value) {
    let mut widget = Client::connect_from(server.addr, origin).await;
    widget.send(json!({"type": "hello", "bot_id": bot})).await;
    let first = widget.recv().await;
    (widget, first)
}

/// A new API key holding `scope` alone.
async fn api_key(server: &TestServer, owner: &str, scope: &str) -> String {
    let body = json!({"name": scope, "scopes": [scope]});
    let (status, key) = server.post("/api/api-keys", body, Some(owner)).await;
    assert_eq!(status, 201, "{key}");
    key["key"].as_str().expect("key").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draft_bot_is_tried_from_a_foreign_origin_and_counted_nowhere() {
    let server = start().await;
    let jwt = register_owner(&server, "owner@example.com").await;
    let t = Some(jwt.as_str());
    let bot = draft_bot(&server, &jwt).await;

    let (status, opened) = open_preview(&server, &jwt, &bot).await;
    assert_eq!(status, 201, "{opened}");
    assert!(opened["resume_token"].is_string(), "{opened}");
    let id = opened["conversation_id"].as_str().expect("id").to_owned();

    // The console's page is not among the bot's origins, and the bot is a draft: no matter.
    let (mut preview, welcome) = resume_from(&server, "https://evil.example", &bot, &opened).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    assert_eq!(preview.expect("message").await["text"], "Welcome!", "the greeting, replayed");
    let ex = preview.exchange("p1", "when are you open?").await;
    assert_eq!(ex.reply.tokens, "We open at noon.");
    preview.exchange("p2", "zebra xylophone").await; // Unmatched.
    preview.exchange("p3", "I want to talk to a human").await;
    // Escalated with nobody online, a visitor would be told so: a preview is never escalated.
    let after = preview.drain().await;
    assert!(after.iter().all(|f| f["type"] != "message"), "{after:?}");

    // The same bot refuses that page a conversation of its own, and a preview's wrong token.
    let (_, refused) = hello_from(&server, "https://evil.example", &bot).await;
    assert_eq!(refused["code"], "bot_unavailable", "{refused}");
    let forged = json!({"conversation_id": id, "resume_token": "not-the-token"});
    let (_, refused) = resume_from(&server, "https://evil.example", &bot, &forged).await;
    assert_eq!(refused["type"], "error", "a wrong token opens nothing: {refused}");

    // Nothing is counted and agents do not see it.
    let (status, o) = server.call("GET", "/api/analytics/overview", None, t).await;
    assert_eq!(status, 200, "{o}");
    assert_eq!((o["conversations"].as_i64(), o["messages"]["total"].as_i64()), (Some(0), Some(0)));
    assert_eq!(
        (o["intents_matched"].as_i64(), o["intents_unmatched"].as_i64()),
        (Some(0), Some(0))
    );
    assert_eq!(o["by_channel"], json!({}), "{o}");
    let (_, intents) =
        server.call("GET", &format!("/api/analytics/intents?bot_id={bot}"), None, t).await;
    assert_eq!(intents["unmatched"], json!([]), "{intents}");
    let (status, inbox) = server.call("GET", "/api/inbox", None, t).await;
    assert_eq!(status, 200, "{inbox}");
    assert!(!inbox.to_string().contains(&id), "{inbox}");
    let (_, detail) = server.call("GET", &format!("/api/conversations/{id}"), None, t).await;
    assert_eq!(detail["conversation"]["source"], "preview", "{detail}");
    assert_eq!(detail["conversation"]["status"], "OPEN", "{detail}");
    assert_eq!(detail["messages"].as_array().map(Vec::len), Some(7), "{detail}");

    // Published, the bot still refuses the foreign page; a visitor of the shop is counted and
    // seen by agents, the preview still is not.
    let (status, _) = server.post(&format!("/api/bots/{bot}/publish"), json!({}), t).await;
    assert_eq!(status, 200);
    let (_, refused) = hello_from(&server, "https://evil.example", &bot).await;
    assert_eq!(refused["code"], "origin_not_allowed", "{refused}");
    let (mut visitor, welcome) = hello_from(&server, "https://shop.example", &bot).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    visitor.expect("message").await;
    visitor.exchange("v1", "opening hours").await;
    let (_, o) = server.call("GET", "/api/analytics/overview", None, t).await;
    assert_eq!((o["conversations"].as_i64(), o["messages"]["total"].as_i64()), (Some(1), Some(3)));
    assert_eq!(o["by_channel"].as_object().map(|m| m.len()), Some(1), "web only: {o}");
    let (_, inbox) = server.call("GET", "/api/inbox", None, t).await;
    let listed: Vec<&Value> = inbox["data"].as_array().expect("inbox").iter().collect();
    assert_eq!(listed.len(), 1, "the shop's visitor only: {inbox}");
    assert!(!inbox.to_string().contains(&id), "{inbox}");

    // Paused: the visitor is told, the preview is not and goes on.
    let (status, _) = server.post(&format!("/api/bots/{bot}/pause"), json!({}), t).await;
    assert_eq!(status, 200);
    assert_eq!(visitor.expect("error").await["code"], "bot_unavailable");
    let ex = preview.exchange("p4", "opening hours").await;
    assert_eq!(ex.reply.tokens, "We open at noon.");
    let after = preview.drain().await;
    assert!(after.iter().all(|f| f["type"] != "error"), "{after:?}");

    // Restarting the preview deletes it.
    let (status, _) = server.call("DELETE", &format!("/api/conversations/{id}"), None, t).await;
    assert_eq!(status, 204);
    let (status, _) = server.call("GET", &format!("/api/conversations/{id}"), None, t).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_bot_editors_open_previews_and_only_with_their_own_bots() {
    let server = start().await;
    let owner = register_owner(&server, "a@example.com").await;
    let bot = draft_bot(&server, &owner).await;

    let agent = invite_and_join(&server, &owner, "agent@example.com", "agent").await;
    let (status, body) = open_preview(&server, &agent, &bot).await;
    assert_eq!((status, error_code(&body)), (403, "forbidden"), "{body}");
    let reader = api_key(&server, &owner, "bots:read").await;
    let (status, body) = open_preview(&server, &reader, &bot).await;
    assert_eq!((status, error_code(&body)), (403, "insufficient_scope"), "{body}");

    // An editor's key opens one, and may delete it (but no other conversation).
    let editor = api_key(&server, &owner, "bots:write").await;
    let (status, opened) = open_preview(&server, &editor, &bot).await;
    assert_eq!(status, 201, "{opened}");
    let (status, _) =
        server.post(&format!("/api/bots/{bot}/publish"), json!({}), Some(&owner)).await;
    assert_eq!(status, 200);
    let (status, api) =
        server.post("/api/conversations", json!({"bot_id": bot}), Some(&owner)).await;
    assert_eq!(status, 201, "{api}");
    let path = format!("/api/conversations/{}", api["conversation_id"].as_str().expect("id"));
    let (status, body) = server.call("DELETE", &path, None, Some(&editor)).await;
    assert_eq!((status, error_code(&body)), (403, "insufficient_scope"), "{body}");
    let (status, body) =
        server.post("/api/conversations", json!({"bot_id": bot}), Some(&editor)).await;
    assert_eq!((status, error_code(&body)), (403, "insufficient_scope"), "not a preview: {body}");

    // Another tenant can neither preview this bot nor reach the preview through its own bot.
    let stranger = register_owner(&server, "b@example.com").await;
    let (status, body) = open_preview(&server, &stranger, &bot).await;
    assert_eq!((status, error_code(&body)), (404, "not_found"), "{body}");
    let theirs = published_bot(&server, &stranger, json!({"name": "Theirs"})).await;
    let (_, refused) = resume_from(&server, "https://evil.example", &theirs, &opened).await;
    assert_eq!(refused["code"], "conversation_not_found", "{refused}");
    let (mut widget, welcome) = resume_from(&server, "https://evil.example", &bot, &opened).await;
    assert_eq!(welcome["type"], "welcome", "the owner's bot still opens it: {welcome}");
    drop(widget.drain().await);

    let path = format!("/api/conversations/{}", opened["conversation_id"].as_str().expect("id"));
    let (status, body) = server.call("DELETE", &path, None, Some(&editor)).await;
    assert_eq!(status, 204, "{body}");
}
