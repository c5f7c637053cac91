//! Retention (issue 23): a workspace's policy, and a bot's own, delete conversations older than
//! they say — through their actors, so an open widget is told — and the unmatched-messages list
//! forgets old entries, while the counters stay. The sweep is run at times the test chooses.

use serde_json::json;

use crate::common::*;

const DAY_MS: i64 = 86_400_000;

/// The workspace's unmatched messages (the default range: the last 30 days).
async fn unmatched(server: &TestServer, jwt: &str) -> Vec<String> {
    let (status, body) = server.call("GET", "/api/analytics/intents", None, Some(jwt)).await;
    assert_eq!(status, 200, "{body}");
    body["unmatched"].as_array().expect("list").iter().map(|u| u["text"].to_string()).collect()
}

/// How many conversations `bot` has.
async fn conversations(server: &TestServer, jwt: &str, bot: &str) -> usize {
    let path = format!("/api/bots/{bot}/conversations");
    let (status, body) = server.call("GET", &path, None, Some(jwt)).await;
    assert_eq!(status, 200, "{body}");
    body["data"].as_array().expect("page").len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_conversations_go_by_the_workspaces_policy_or_their_bots_and_counters_stay() {
    let server = start_with(|s| s.engine.retention_sweep_secs = 0).await;
    let engine = server.running.as_ref().expect("running").engine.clone();
    let jwt = register_owner(&server, "keeper@example.com").await;
    let body = json!({"name": "kept", "config": {"fallback_message": "Noted."}});
    let kept = published_bot(&server, &jwt, body).await;
    let body =
        json!({"name": "brief", "config": {"fallback_message": "Noted.", "retention_days": 1}});
    let brief = published_bot(&server, &jwt, body).await;
    let (_, bot) = server.call("GET", &format!("/api/bots/{brief}"), None, Some(&jwt)).await;
    assert_eq!(bot["config"]["retention_days"], 1, "{bot}");
    // An integration's key with bots:write edits the bot, but not how long its conversations
    // live.
    let scopes = json!({"name": "ci", "scopes": ["bots:write", "bots:read"]});
    let (status, created) = server.post("/api/api-keys", scopes, Some(&jwt)).await;
    assert_eq!(status, 201, "{created}");
    let editor = created["key"].as_str().expect("key").to_owned();
    let patch = json!({"config": {"retention_days": 365}}).to_string();
    let path = format!("/api/bots/{brief}");
    let (status, body) = server.call("PATCH", &path, Some(&patch), Some(&editor)).await;
    assert_eq!((status, error_code(&body)), (403, "forbidden"), "{body}");
    let rename = json!({"name": "brief bot"}).to_string();
    let (status, _) = server.call("PATCH", &path, Some(&rename), Some(&editor)).await;
    assert_eq!(status, 200, "the rest of the bot stays theirs");

    let mut widget = server.client().await;
    widget.hello(&kept).await;
    widget.exchange("k1", "zebra crossing question").await;
    let mut other = server.client().await;
    other.hello(&brief).await;
    other.exchange("b1", "short lived question").await;
    assert_eq!(unmatched(&server, &jwt).await.len(), 2);
    let (_, before) = server.call("GET", "/api/analytics/overview", None, Some(&jwt)).await;

    // The policy: refused out of range, on its field; then 30 days and 7 for unmatched.
    let bad = json!({"retention": {"conversation_days": 0}});
    let (status, body) =
        server.call("PATCH", "/api/workspace", Some(&bad.to_string()), Some(&jwt)).await;
    assert_eq!(
        (status, body["error"]["details"]["field"].as_str()),
        (422, Some("retention.conversation_days"))
    );
    let bad = json!({"retention": [null, null]});
    let (status, body) =
        server.call("PATCH", "/api/workspace", Some(&bad.to_string()), Some(&jwt)).await;
    assert!(status == 400 || status == 422, "an array is not a policy: {status} {body}");
    let policy = json!({"retention": {"conversation_days": 30, "unmatched_days": 7}});
    let (status, workspace) =
        server.call("PATCH", "/api/workspace", Some(&policy.to_string()), Some(&jwt)).await;
    assert_eq!(status, 200, "{workspace}");
    assert_eq!(workspace["retention"], json!({"conversation_days": 30, "unmatched_days": 7}));

    // Now: nothing is old enough.
    let now = parla_engine::model::now_ms();
    let swept = engine.sweep_retention(now).await.expect("sweep");
    assert_eq!((swept.conversations, swept.failed), (0, 0));

    // Two days on: the brief bot's conversation (1 day) goes, and its open widget is told.
    let swept = engine.sweep_retention(now + 2 * DAY_MS).await.expect("sweep");
    assert_eq!((swept.conversations, swept.failed), (1, 0), "{swept:?}");
    let (told, _) = other.until("error").await;
    assert_eq!(told["code"], "conversation_deleted", "{told}");
    assert_eq!(conversations(&server, &jwt, &brief).await, 0);
    assert_eq!(conversations(&server, &jwt, &kept).await, 1);

    // Eight days on: the unmatched list forgets what is older than 7 days; the conversation
    // (30 days) stays.
    engine.sweep_retention(now + 8 * DAY_MS).await.expect("sweep");
    assert_eq!(unmatched(&server, &jwt).await, Vec::<String>::new());
    assert_eq!(conversations(&server, &jwt, &kept).await, 1);

    // Thirty-one days on: the rest goes. The counters hold no personal data and stay.
    let swept = engine.sweep_retention(now + 31 * DAY_MS).await.expect("sweep");
    assert_eq!(swept.conversations, 1, "{swept:?}");
    assert_eq!(conversations(&server, &jwt, &kept).await, 0);
    let (_, after) = server.call("GET", "/api/analytics/overview", None, Some(&jwt)).await;
    for counter in ["conversations", "messages", "active_visitors"] {
        assert_eq!(after[counter], before[counter], "{counter}: {before} → {after}");
    }
    // A sweep with nothing left to do deletes nothing (and a cut-short one is finished so).
    let swept = engine.sweep_retention(now + 31 * DAY_MS).await.expect("sweep");
    assert_eq!(swept.conversations, 0);
}
