//! Bots and intents through the admin API, and their effect on live chats through the widget.

use crate::common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_builds_a_bot_publishes_it_and_visitors_chat_with_it() {
    let server = start().await;
    let token = register_owner(&server, "a@example.com").await;
    let t = Some(token.as_str());
    let (status, bot) = server
        .post(
            "/api/bots",
            json!({"name": "Pizza", "category": "SALES",
                                  "config": {"fallback_message": "Ask me about pizza."}}),
            t,
        )
        .await;
    assert_eq!(status, 201, "{bot}");
    assert_eq!(bot["status"], "DRAFT");
    let id = bot["id"].as_str().expect("id").to_owned();

    let (status, intent) = server
        .post(
            &format!("/api/bots/{id}/intents"),
            json!({"name": "hours",
               "examples": ["when are you open", "opening hours"],
               "response": {"text": "We open at noon."}}),
            t,
        )
        .await;
    assert_eq!(status, 201, "{intent}");
    let (status, body) = server
        .post(
            &format!("/api/bots/{id}/intents"),
            json!({"name": "hours", "examples": ["x"],
               "response": {"text": "y"}}),
            t,
        )
        .await;
    assert_eq!((status, error_code(&body)), (409, "intent_name_taken"));

    // A draft bot takes no visitors.
    let mut c = server.client().await;
    c.send(json!({"type": "hello", "bot_id": id})).await;
    assert_eq!(c.expect("error").await["code"], "bot_unavailable");

    let (status, published) = server.post(&format!("/api/bots/{id}/publish"), json!({}), t).await;
    assert_eq!((status, published["status"].as_str()), (200, Some("ACTIVE")));
    c.hello(&id).await;
    let ex = c.exchange("q1", "when are you open?").await;
    assert_eq!(ex.reply.tokens, "We open at noon.");

    // Editing the intent takes effect on the next message, no restart.
    let intent_id = intent["id"].as_str().expect("intent id");
    let (status, _) = server
        .call(
            "PATCH",
            &format!("/api/bots/{id}/intents/{intent_id}"),
            Some(&json!({"response": {"text": "Now from 11am."}}).to_string()),
            t,
        )
        .await;
    assert_eq!(status, 200);
    let ex = c.exchange("q2", "opening hours").await;
    assert_eq!(ex.reply.tokens, "Now from 11am.");

    // Pausing tells connected visitors and refuses new conversations.
    let (status, _) = server.post(&format!("/api/bots/{id}/pause"), json!({}), t).await;
    assert_eq!(status, 200);
    assert_eq!(c.expect("error").await["code"], "bot_unavailable", "a connected visitor is told");
    let mut d = server.client().await;
    d.send(json!({"type": "hello", "bot_id": id})).await;
    assert_eq!(d.expect("error").await["code"], "bot_unavailable");

    let (status, _) = server.call("DELETE", &format!("/api/bots/{id}"), None, t).await;
    assert_eq!(status, 204);
    let (status, body) = server.call("GET", &format!("/api/bots/{id}"), None, t).await;
    assert_eq!((status, error_code(&body)), (404, "not_found"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenant_gets_404_on_every_bot_and_intent_endpoint() {
    let server = start().await;
    let a = register_owner(&server, "a@example.com").await;
    let b = register_owner(&server, "b@example.com").await;
    let (_, bot) = server.post("/api/bots", json!({"name": "A's bot"}), Some(&a)).await;
    let id = bot["id"].as_str().expect("id").to_owned();
    let (_, intent) = server
        .post(
            &format!("/api/bots/{id}/intents"),
            json!({"name": "i", "examples": ["x"], "response": {"text": "secret"}}),
            Some(&a),
        )
        .await;
    let iid = intent["id"].as_str().expect("intent id").to_owned();
    // B's owner, and an API key of B with every scope, are both strangers to A's bot.
    let all_scopes = json!({"name": "all", "scopes": ["bots:read", "bots:write",
        "conversations:read", "conversations:write", "analytics:read"]});
    let (status, key) = server.post("/api/api-keys", all_scopes, Some(&b)).await;
    assert_eq!(status, 201);
    let b_key = key["key"].as_str().expect("key").to_owned();
    let patch = json!({"name": "stolen"}).to_string();
    for credential in [&b, &b_key] {
        for (method, path, body) in [
            ("GET", format!("/api/bots/{id}"), None),
            ("PATCH", format!("/api/bots/{id}"), Some(patch.as_str())),
            ("DELETE", format!("/api/bots/{id}"), None),
            ("POST", format!("/api/bots/{id}/publish"), Some("{}")),
            ("POST", format!("/api/bots/{id}/pause"), Some("{}")),
            ("GET", format!("/api/bots/{id}/intents"), None),
            ("POST", format!("/api/bots/{id}/intents"), Some(patch.as_str())),
            ("GET", format!("/api/bots/{id}/intents/{iid}"), None),
            ("PATCH", format!("/api/bots/{id}/intents/{iid}"), Some(patch.as_str())),
            ("DELETE", format!("/api/bots/{id}/intents/{iid}"), None),
            ("GET", format!("/api/bots/{id}/conversations"), None),
        ] {
            let (status, body) = server.call(method, &path, body, Some(credential)).await;
            assert_eq!((status, error_code(&body)), (404, "not_found"), "{method} {path}");
        }
    }
    let (status, list) = server.call("GET", "/api/bots", None, Some(&b)).await;
    assert_eq!((status, list["data"].as_array().map(Vec::len)), (200, Some(0)));
    // Nothing B did changed A's bot.
    let (status, still) = server.call("GET", &format!("/api/bots/{id}"), None, Some(&a)).await;
    assert_eq!((status, still["name"].as_str()), (200, Some("A's bot")));
    // The demo tenant's bot is as invisible.
    let (status, _) = server.call("GET", "/api/bots/demo", None, Some(&b)).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bot_and_intent_validation_names_the_field() {
    let server = start().await;
    let t = register_owner(&server, "a@example.com").await;
    let t = Some(t.as_str());
    for (payload, field) in [
        (json!({}), "name"),
        (json!({"name": ""}), "name"),
        (json!({"name": "x", "language": "not a tag!"}), "language"),
        (json!({"name": "x", "appearance": {"color": "blue"}}), "appearance.color"),
        (json!({"name": "x", "appearance": {"title": " "}}), "appearance.title"),
        (
            json!({"name": "x", "appearance": {"avatar_url": "http://x.example/a.png"}}),
            "appearance.avatar_url",
        ),
        (
            json!({"name": "x", "integration": {"allowed_origins": ["https://a.example/path"]}}),
            "integration.allowed_origins",
        ),
        (
            json!({"name": "x", "integration": {"allowed_origins": ["javascript://x"]}}),
            "integration.allowed_origins",
        ),
        (json!({"name": "x", "config": {"fallback_message": ""}}), "config.fallback_message"),
    ] {
        let (status, body) = server.post("/api/bots", payload.clone(), t).await;
        assert_eq!((status, error_code(&body)), (422, "validation_failed"), "{payload}");
        assert_eq!(body["error"]["details"]["field"], field, "{payload}");
    }
    for payload in [
        json!({"name": "x", "category": "NOPE"}),
        json!({"name": "x", "appearance": [1, 2]}),
        json!({"name": "x", "appearance": [null, null]}),
        json!({"name": "x", "config": []}),
        json!({"name": "x", "integration": [[]]}),
        json!({"name": "x", "appearance": {"font": "Comic Sans"}}),
    ] {
        let (status, body) = server.post("/api/bots", payload.clone(), t).await;
        assert_eq!((status, error_code(&body)), (400, "malformed_body"), "{payload}");
    }
    let (_, bot) = server.post("/api/bots", json!({"name": "x"}), t).await;
    let id = bot["id"].as_str().expect("id");
    for (payload, field) in [
        (json!({"examples": ["a"], "response": {"text": "b"}}), "name"),
        (json!({"name": "n", "examples": [], "response": {"text": "b"}}), "examples"),
        (json!({"name": "n", "examples": ["a"], "response": {"text": " "}}), "response.text"),
    ] {
        let (status, body) =
            server.post(&format!("/api/bots/{id}/intents"), payload.clone(), t).await;
        assert_eq!((status, error_code(&body)), (422, "validation_failed"), "{payload}");
        assert_eq!(body["error"]["details"]["field"], field, "{payload}");
    }
}

/// A form sends what its fields hold: an emptied optional text clears it, it is not refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emptied_optional_text_clears_it() {
    let server = start().await;
    let t = register_owner(&server, "a@example.com").await;
    let t = Some(t.as_str());
    let body = json!({"name": "x", "description": "d", "config": {"personality": "warm"}});
    let (status, bot) = server.post("/api/bots", body, t).await;
    assert_eq!(status, 201, "{bot}");
    let id = bot["id"].as_str().expect("id");
    let path = format!("/api/bots/{id}");
    let clear = json!({"description": " ", "config": {"personality": ""}}).to_string();
    let (status, bot) = server.call("PATCH", &path, Some(&clear), t).await;
    assert_eq!(status, 200, "{bot}");
    assert!(bot["description"].is_null(), "{bot}");
    assert!(bot["config"]["personality"].is_null(), "{bot}");
    let (_, stored) = server.call("GET", &path, None, t).await;
    assert!(stored["description"].is_null() && stored["config"]["personality"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_intent_writes_are_all_kept() {
    let server = start().await;
    let jwt = register_owner(&server, "race@example.com").await;
    let (_, bot) = server.post("/api/bots", json!({"name": "racy"}), Some(&jwt)).await;
    let path = format!("/api/bots/{}/intents", bot["id"].as_str().expect("id"));
    let writes = (0..20).map(|i| {
        let (server, path, jwt) = (&server, &path, &jwt);
        async move {
            let body =
                json!({"name": format!("i{i}"), "examples": ["x"], "response": {"text": "y"}});
            server.post(path, body, Some(jwt)).await.0
        }
    });
    let statuses = futures_util::future::join_all(writes).await;
    assert!(statuses.iter().all(|s| *s == 201), "{statuses:?}");
    let (_, list) = server.call("GET", &path, None, Some(&jwt)).await;
    assert_eq!(list["data"].as_array().map(Vec::len), Some(20), "no write lost");
}

/// Training phrases added one at a time, all at once (the console's "add as training phrase"
/// from two tabs): every one is kept, none twice; the list's other writers are refused as ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phrases_added_at_once_are_all_kept_and_none_twice() {
    let server = start().await;
    let jwt = register_owner(&server, "phrases@example.com").await;
    let (_, bot) = server.post("/api/bots", json!({"name": "p"}), Some(&jwt)).await;
    let bot = bot["id"].as_str().expect("id").to_owned();
    let body =
        json!({"name": "hours", "examples": ["when do you open"], "response": {"text": "9."}});
    let (_, intent) = server.post(&format!("/api/bots/{bot}/intents"), body, Some(&jwt)).await;
    let path = format!("/api/bots/{bot}/intents/{}/examples", intent["id"].as_str().expect("id"));
    let adds = (0..20).map(|i| {
        let (server, path, jwt) = (&server, &path, &jwt);
        async move { server.post(path, json!({"text": format!("phrase {i}")}), Some(jwt)).await.0 }
    });
    let statuses = futures_util::future::join_all(adds).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let (status, again) = server.post(&path, json!({"text": "WHEN DO YOU OPEN"}), Some(&jwt)).await;
    assert_eq!(status, 200, "{again}");
    let examples: Vec<&str> =
        again["examples"].as_array().expect("examples").iter().filter_map(|e| e.as_str()).collect();
    assert_eq!(examples.len(), 21, "every phrase kept, the known one not twice: {examples:?}");
    for i in 0..20 {
        assert!(examples.contains(&format!("phrase {i}").as_str()), "phrase {i} lost");
    }
    let (status, body) = server.post(&path, json!({"text": "  "}), Some(&jwt)).await;
    assert_eq!((status, body["error"]["details"]["field"].as_str()), (422, Some("text")));
    // Another tenant's owner finds no such bot.
    let other = register_owner(&server, "other-phrases@example.com").await;
    let (status, _) = server.post(&path, json!({"text": "mine"}), Some(&other)).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_allowed_origins_may_embed_the_widget_and_appearance_reaches_it() {
    let server = start().await;
    let jwt = register_owner(&server, "embed@example.com").await;
    let t = Some(jwt.as_str());
    let (status, bot) = server
        .post(
            "/api/bots",
            json!({
                "name": "shop",
                "appearance": {"title": "Shop help", "color": "#0a7", "position": "bottom-left"},
                "integration": {"allowed_origins": ["https://Shop.example.com/"]},
            }),
            t,
        )
        .await;
    assert_eq!(status, 201, "{bot}");
    assert_eq!(bot["integration"]["allowed_origins"], json!(["https://shop.example.com"]));
    let id = bot["id"].as_str().expect("id").to_owned();
    server.call("POST", &format!("/api/bots/{id}/publish"), None, t).await;

    let mut elsewhere = Client::connect_from(server.addr, "https://evil.example.net").await;
    elsewhere.send(json!({"type": "hello", "bot_id": id})).await;
    let refused = elsewhere.expect("error").await;
    assert_eq!(refused["code"], "origin_not_allowed", "{refused}");

    let mut shop = Client::connect_from(server.addr, "https://shop.example.com").await;
    let welcome = shop.hello(&id).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    assert_eq!(
        welcome["bot"]["appearance"],
        json!({"title": "Shop help", "color": "#0a7", "position": "bottom-left"})
    );

    // Clients that are not browser pages send no Origin and are not limited.
    let mut app = Client::connect(server.addr).await;
    assert_eq!(app.hello(&id).await["type"], "welcome");

    // Emptying the list opens the bot to every page again.
    let (status, _) = server
        .call(
            "PATCH",
            &format!("/api/bots/{id}"),
            Some(r#"{"integration":{"allowed_origins":[]}}"#),
            t,
        )
        .await;
    assert_eq!(status, 200);
    let mut now_ok = Client::connect_from(server.addr, "https://evil.example.net").await;
    assert_eq!(now_ok.hello(&id).await["type"], "welcome");
}
