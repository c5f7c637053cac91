//! The audit log through the public door: a bot edited with an API key, a member invited and a
//! conversation deleted by the owner each leave an entry naming who, what, where from; refused
//! writes and reads leave none; only the workspace's signed-in owners and admins read it, a
//! page at a time, filtered by action; another workspace's log is its own.

use crate::common::*;
use serde_json::{Value, json};

async fn log(server: &TestServer, token: &str, query: &str) -> (u16, Value) {
    server.call("GET", &format!("/api/audit-log{query}"), None, Some(token)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_admin_write_is_recorded_with_who_did_it_and_read_by_admins_only() {
    let server = start().await;
    let owner = register_owner(&server, "owner@audit.example.com").await;
    let (_, me) = server.call("GET", "/api/auth/me", None, Some(&owner)).await;
    let owner_id = me["id"].as_str().expect("id").to_owned();
    let viewer = invite_and_join(&server, &owner, "viewer@audit.example.com", "viewer").await;
    let (status, key) = server
        .post(
            "/api/api-keys",
            json!({"name": "ci", "scopes": ["bots:write", "bots:read"]}),
            Some(&owner),
        )
        .await;
    assert_eq!(status, 201, "{key}");
    let (key_id, key) =
        (key["id"].as_str().expect("id").to_owned(), key["key"].as_str().expect("key").to_owned());
    let (_, bot) = server.post("/api/bots", json!({"name": "Audited"}), Some(&owner)).await;
    let bot = bot["id"].as_str().expect("bot").to_owned();

    // A bot edited by the API key: recorded with the key as the actor.
    let patch = json!({"name": "Renamed by CI"}).to_string();
    let (status, _) =
        server.call("PATCH", &format!("/api/bots/{bot}"), Some(&patch), Some(&key)).await;
    assert_eq!(status, 200);
    // Refused (a viewer) and reads: nothing recorded.
    let (status, _) =
        server.call("PATCH", &format!("/api/bots/{bot}"), Some(&patch), Some(&viewer)).await;
    assert_eq!(status, 403);
    server.call("GET", &format!("/api/bots/{bot}"), None, Some(&key)).await;

    let (status, page) = log(&server, &owner, "").await;
    assert_eq!(status, 200, "{page}");
    let entries = page["data"].as_array().expect("data");
    let edit = &entries[0];
    assert_eq!(edit["action"], "PATCH /api/bots/{id}", "{page}");
    assert_eq!(edit["target"], format!("/api/bots/{bot}"));
    assert_eq!(edit["actor"], json!({"kind": "api_key", "id": key_id}));
    assert_eq!(edit["details"]["status"], 200);
    assert!(edit["ip"].is_string());
    assert!(!page.to_string().contains("Renamed by CI"), "what was written is not in the log");
    let actions: Vec<&str> = entries.iter().map(|e| e["action"].as_str().unwrap_or("")).collect();
    assert_eq!(
        actions,
        [
            "PATCH /api/bots/{id}",
            "POST /api/bots",
            "POST /api/api-keys",
            "POST /api/members/invitations"
        ],
        "newest first, one per successful write: {page}"
    );
    assert_eq!(entries[1]["actor"], json!({"kind": "account", "id": owner_id}));

    // Pages and filters.
    let (_, first) = log(&server, &owner, "?limit=2").await;
    assert_eq!(first["data"].as_array().map(Vec::len), Some(2));
    let cursor = first["next_before"].as_str().expect("a next page");
    let (_, second) = log(&server, &owner, &format!("?limit=2&before={cursor}")).await;
    assert_eq!(second["data"][0]["action"], "POST /api/api-keys", "{second}");
    let (_, posts) = log(&server, &owner, "?action=POST%20/api/bots").await;
    assert_eq!(posts["data"].as_array().map(Vec::len), Some(1), "{posts}");
    let (status, _) = log(&server, &owner, "?limit=0").await;
    assert_eq!(status, 422);

    // Only signed-in owners and admins read it; another workspace sees its own.
    let agent = invite_and_join(&server, &owner, "agent@audit.example.com", "agent").await;
    for token in [&viewer, &agent, &key] {
        assert_eq!(log(&server, token, "").await.0, 403);
    }
    let stranger = register_owner(&server, "stranger@audit.example.com").await;
    let (_, theirs) = log(&server, &stranger, "").await;
    assert_eq!(theirs["data"], json!([]), "{theirs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_transfers_and_resolutions_on_the_agent_socket_are_recorded() {
    let server = start().await;
    let owner = register_owner(&server, "owner@desk-audit.example.com").await;
    let (_, me) = server.call("GET", "/api/auth/me", None, Some(&owner)).await;
    let owner_id = me["id"].as_str().expect("id").to_owned();
    let body = json!({"name": "desk", "config": {"fallback_message": "Noted."}});
    let bot = published_bot(&server, &owner, body).await;
    let mut visitor = server.client().await;
    let welcome = visitor.hello_stored(&bot).await;
    let id = welcome["conversation_id"].as_str().expect("id").to_owned();

    let (mut desk, _, _) = Client::agent(server.addr, &owner).await;
    for (n, frame) in [
        json!({"type": "claim", "conversation_id": id, "ref": "1"}),
        json!({"type": "message", "conversation_id": id, "client_msg_id": "a1", "text": "hello", "ref": "2"}),
        json!({"type": "resolve", "conversation_id": id, "resolution": "RESOLVED", "ref": "3"}),
    ]
    .into_iter()
    .enumerate()
    {
        desk.send(frame).await;
        let (ack, _) = desk.until_either("ack", "error").await;
        assert_eq!((ack["type"].as_str(), ack["ref"].as_str()), (Some("ack"), Some(["1", "2", "3"][n])), "{ack}");
    }

    let (status, page) = log(&server, &owner, "?action=agent_socket").await;
    assert_eq!(status, 200, "{page}");
    let entries = page["data"].as_array().expect("data");
    let actions: Vec<&str> = entries.iter().map(|e| e["action"].as_str().unwrap_or("")).collect();
    assert_eq!(
        actions,
        ["agent_socket.resolve", "agent_socket.claim"],
        "the reply is the transcript's: {page}"
    );
    let resolve = &entries[0];
    assert_eq!(resolve["actor"], json!({"kind": "account", "id": owner_id}));
    assert_eq!(resolve["target"], format!("/api/conversations/{id}"));
    assert_eq!(resolve["details"]["resolution"], "RESOLVED");
    assert_eq!(resolve["ip"], "127.0.0.1");
}
