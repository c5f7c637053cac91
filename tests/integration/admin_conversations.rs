//! Conversations through the admin API, meeting the widget in the same conversation actor.

use crate::common::*;
use serde_json::json;

/// An active bot of the caller's tenant with one intent; returns its id.
async fn active_bot(server: &TestServer, token: &str) -> String {
    let t = Some(token);
    let (_, bot) = server
        .post("/api/bots", json!({"name": "Shop", "config": {"welcome_message": "Welcome!"}}), t)
        .await;
    let id = bot["id"].as_str().expect("id").to_owned();
    server
        .post(
            &format!("/api/bots/{id}/intents"),
            json!({"name": "hi", "examples": ["hello"], "response": {"text": "Hi there."}}),
            t,
        )
        .await;
    let (status, _) = server.post(&format!("/api/bots/{id}/publish"), json!({}), t).await;
    assert_eq!(status, 200);
    id
}

/// A widget socket joined to a conversation opened through the admin API (`opened` is the
/// `POST /api/conversations` answer); the `welcome` is read.
async fn join(server: &TestServer, bot: &str, opened: &serde_json::Value) -> Client {
    let mut widget = server.client().await;
    widget
        .send(json!({"type": "hello", "bot_id": bot, "conversation_id": opened["conversation_id"],
                     "resume_token": opened["resume_token"], "last_seq": 0}))
        .await;
    widget.expect("welcome").await;
    widget
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_integration_posts_into_a_conversation_the_widget_watches_live() {
    let server = start().await;
    let token = register_owner(&server, "a@example.com").await;
    let t = Some(token.as_str());
    let bot = active_bot(&server, &token).await;

    let (status, opened) = server.post("/api/conversations", json!({"bot_id": bot}), t).await;
    assert_eq!(status, 201, "{opened}");
    let conversation = opened["conversation_id"].as_str().expect("id").to_owned();

    // A widget joins the same conversation with the returned token.
    let mut widget = join(&server, &bot, &opened).await;

    let (status, posted) = server
        .post(
            &format!("/api/conversations/{conversation}/messages"),
            json!({"client_msg_id": "crm-1", "text": "hello"}),
            t,
        )
        .await;
    assert_eq!(status, 201, "{posted}");
    let seq = posted["message"]["seq"].as_u64().expect("seq");
    assert_eq!(posted["message"]["sender"], "user");

    // The widget sees the greeting, the posted message and the bot's streamed answer.
    let mut saw_posted = false;
    loop {
        let f = widget.recv().await;
        if f["type"] == "message" && f["client_msg_id"] == "crm-1" {
            assert_eq!(f["seq"].as_u64(), Some(seq));
            saw_posted = true;
        }
        if f["type"] == "stream_end" {
            assert_eq!(f["text"], "Hi there.");
            break;
        }
    }
    assert!(saw_posted);

    let (status, again) = server
        .post(
            &format!("/api/conversations/{conversation}/messages"),
            json!({"client_msg_id": "crm-1", "text": "hello"}),
            t,
        )
        .await;
    assert_eq!((status, again["duplicate"].as_bool()), (200, Some(true)), "idempotent");
    assert_eq!(again["message"]["seq"].as_u64(), Some(seq));

    // Reading it back: messages paged by seq.
    let (status, read) =
        server.call("GET", &format!("/api/conversations/{conversation}"), None, t).await;
    assert_eq!(status, 200);
    let seqs: Vec<u64> = read["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(seqs, vec![1, 2, 3], "greeting, message, reply — stored once each");
    let (_, page) = server
        .call("GET", &format!("/api/conversations/{conversation}?after_seq=1&limit=1"), None, t)
        .await;
    assert_eq!(page["messages"][0]["seq"], 2);
    assert_eq!(page["next_after_seq"], 2);
    // Beyond the documented int64 range: refused, not read as an empty page.
    let (status, refused) = server
        .call(
            "GET",
            &format!("/api/conversations/{conversation}?after_seq=9223372036854775808"),
            None,
            t,
        )
        .await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (422, Some("validation_failed")),
        "{refused}"
    );

    let (status, list) =
        server.call("GET", &format!("/api/bots/{bot}/conversations"), None, t).await;
    assert_eq!((status, list["data"][0]["id"].as_str()), (200, Some(conversation.as_str())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversations_are_paged_and_invisible_to_other_tenants() {
    let server = start().await;
    let a = register_owner(&server, "a@example.com").await;
    let b = register_owner(&server, "b@example.com").await;
    let bot = active_bot(&server, &a).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (_, opened) = server.post("/api/conversations", json!({"bot_id": bot}), Some(&a)).await;
        ids.push(opened["conversation_id"].as_str().expect("id").to_owned());
    }
    let (_, first) =
        server.call("GET", &format!("/api/bots/{bot}/conversations?limit=2"), None, Some(&a)).await;
    let page: Vec<&str> = first["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|c| c["id"].as_str().expect("id"))
        .collect();
    assert_eq!(page, vec![ids[2].as_str(), ids[1].as_str()], "newest first");
    let cursor = first["next_cursor"].as_str().expect("cursor");
    let (_, second) = server
        .call(
            "GET",
            &format!("/api/bots/{bot}/conversations?limit=2&before={cursor}"),
            None,
            Some(&a),
        )
        .await;
    assert_eq!(second["data"][0]["id"].as_str(), Some(ids[0].as_str()));
    assert!(second["next_cursor"].is_null());

    // Filters: by start time (the middle one alone), by channel (all three came by the API).
    let started: Vec<i64> = {
        let (_, all) =
            server.call("GET", &format!("/api/bots/{bot}/conversations"), None, Some(&a)).await;
        all["data"]
            .as_array()
            .expect("data")
            .iter()
            .rev()
            .map(|c| c["started_at"].as_i64().expect("t"))
            .collect()
    };
    let (from, to) = (started[1], started[2]);
    if from < to {
        let path =
            format!("/api/bots/{bot}/conversations?started_after={from}&started_before={to}");
        let (_, middle) = server.call("GET", &path, None, Some(&a)).await;
        let only: Vec<&str> = middle["data"]
            .as_array()
            .expect("data")
            .iter()
            .filter_map(|c| c["id"].as_str())
            .collect();
        assert_eq!(only, vec![ids[1].as_str()], "{middle}");
    }
    let (_, web) = server
        .call("GET", &format!("/api/bots/{bot}/conversations?channel=web"), None, Some(&a))
        .await;
    assert_eq!(web["data"].as_array().map(Vec::len), Some(0), "opened by the API, not the widget");
    let (_, api) = server
        .call("GET", &format!("/api/bots/{bot}/conversations?channel=api&limit=2"), None, Some(&a))
        .await;
    assert_eq!(api["data"].as_array().map(Vec::len), Some(2));
    assert!(api["next_cursor"].is_string());

    let conversation = &ids[0];
    for (method, path, body) in [
        ("GET", format!("/api/bots/{bot}/conversations"), None),
        ("GET", format!("/api/conversations/{conversation}"), None),
        (
            "POST",
            format!("/api/conversations/{conversation}/messages"),
            Some(json!({"client_msg_id": "x", "text": "intrusion"}).to_string()),
        ),
        ("POST", "/api/conversations".to_owned(), Some(json!({"bot_id": bot}).to_string())),
    ] {
        let (status, body) = server.call(method, &path, body.as_deref(), Some(&b)).await;
        assert_eq!((status, error_code(&body)), (404, "not_found"), "{method} {path}");
    }
    let (_, read) =
        server.call("GET", &format!("/api/conversations/{conversation}"), None, Some(&a)).await;
    assert!(
        read["messages"].as_array().expect("messages").iter().all(|m| m["text"] != "intrusion")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_conversation_removes_its_messages_and_tells_the_widget() {
    let server = start().await;
    let token = register_owner(&server, "a@example.com").await;
    let t = Some(token.as_str());
    let other = register_owner(&server, "b@example.com").await;
    let bot = active_bot(&server, &token).await;
    let (_, opened) = server.post("/api/conversations", json!({"bot_id": bot}), t).await;
    let conversation = opened["conversation_id"].as_str().expect("id").to_owned();
    let mut widget = join(&server, &bot, &opened).await;
    widget.expect("message").await; // the greeting
    widget.exchange("w1", "hello").await;

    let (status, _) = server
        .call("DELETE", &format!("/api/conversations/{conversation}"), None, Some(&other))
        .await;
    assert_eq!(status, 404, "another tenant cannot delete it");
    let (status, _) =
        server.call("DELETE", &format!("/api/conversations/{conversation}"), None, t).await;
    assert_eq!(status, 204);
    let told = widget.expect("error").await;
    assert_eq!(told["code"], "conversation_deleted");

    let (status, _) =
        server.call("GET", &format!("/api/conversations/{conversation}"), None, t).await;
    assert_eq!(status, 404);
    let (_, list) = server.call("GET", &format!("/api/bots/{bot}/conversations"), None, t).await;
    assert_eq!(list["data"], json!([]));
    // The widget's next message finds nothing to append to.
    widget.say("w2", "anyone?").await;
    assert_eq!(widget.expect("error").await["code"], "conversation_not_found");
    // And resuming it is refused.
    let mut again = server.client().await;
    again
        .send(json!({"type": "hello", "bot_id": bot, "conversation_id": conversation,
                     "resume_token": opened["resume_token"]}))
        .await;
    assert_eq!(again.expect("error").await["code"], "conversation_not_found");
}
