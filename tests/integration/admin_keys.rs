//! API keys through the public door: created once, scoped, tenant-bound, revocable.

use crate::common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_key_acts_within_its_scopes_and_tenant_until_revoked() {
    let server = start().await;
    let jwt = register_owner(&server, "a@example.com").await;
    let (status, created) = server
        .post("/api/api-keys", json!({"name": "ci", "scopes": ["bots:read"]}), Some(&jwt))
        .await;
    assert_eq!(status, 201, "{created}");
    let key = created["key"].as_str().expect("the key, shown once").to_owned();
    assert!(key.starts_with("pk_"));
    assert!(key.starts_with(created["prefix"].as_str().expect("prefix")));

    let (status, list) = server.call("GET", "/api/api-keys", None, Some(&jwt)).await;
    assert_eq!(status, 200);
    assert!(list["data"][0].get("key").is_none(), "never shown again");
    assert!(list["data"][0].get("digest").is_none(), "the digest stays inside");

    let (status, bots) = server.call("GET", "/api/bots", None, Some(&key)).await;
    assert_eq!((status, bots["data"].as_array().map(Vec::len)), (200, Some(0)));
    let (status, body) = server.post("/api/bots", json!({"name": "x"}), Some(&key)).await;
    assert_eq!((status, error_code(&body)), (403, "insufficient_scope"));
    assert_eq!(body["error"]["details"]["scope"], "bots:write");
    let (status, body) = server.call("GET", "/api/api-keys", None, Some(&key)).await;
    assert_eq!((status, error_code(&body)), (403, "forbidden"), "a key cannot manage keys");
    let (status, _) = server.call("GET", "/api/bots/demo", None, Some(&key)).await;
    assert_eq!(status, 404, "another tenant's bot stays invisible");

    let (_, listed) = server.call("GET", "/api/api-keys", None, Some(&jwt)).await;
    assert!(listed["data"][0]["last_used_at"].is_i64(), "last use is recorded: {listed}");

    let id = created["id"].as_str().expect("id");
    let (status, _) = server.call("DELETE", &format!("/api/api-keys/{id}"), None, Some(&jwt)).await;
    assert_eq!(status, 204);
    let (status, body) = server.call("GET", "/api/bots", None, Some(&key)).await;
    assert_eq!((status, error_code(&body)), (401, "invalid_api_key"));
    let (status, _) = server.call("GET", "/api/bots", None, Some("pk_made-up")).await;
    assert_eq!(status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_managed_per_tenant_and_scopes_are_validated() {
    let server = start().await;
    let a = register_owner(&server, "a@example.com").await;
    let b = register_owner(&server, "b@example.com").await;
    let (_, created) = server
        .post("/api/api-keys", json!({"name": "a-key", "scopes": ["bots:write"]}), Some(&a))
        .await;
    let id = created["id"].as_str().expect("id");
    let (status, _) = server.call("DELETE", &format!("/api/api-keys/{id}"), None, Some(&b)).await;
    assert_eq!(status, 404, "B cannot revoke A's key");
    let (_, listed) = server.call("GET", "/api/api-keys", None, Some(&b)).await;
    assert_eq!(listed["data"], json!([]));

    let (status, body) = server
        .post("/api/api-keys", json!({"name": "bad", "scopes": ["everything"]}), Some(&a))
        .await;
    assert_eq!((status, error_code(&body)), (422, "validation_failed"));
    assert_eq!(body["error"]["details"]["field"], "scopes");
    let (status, body) =
        server.post("/api/api-keys", json!({"name": "none", "scopes": []}), Some(&a)).await;
    assert_eq!((status, error_code(&body)), (422, "validation_failed"));

    // A write-scoped key can create bots in its own tenant only.
    let key = created["key"].as_str().expect("key");
    let (status, bot) = server.post("/api/bots", json!({"name": "by key"}), Some(key)).await;
    assert_eq!(status, 201);
    let (status, _) = server
        .call("GET", &format!("/api/bots/{}", bot["id"].as_str().expect("id")), None, Some(&b))
        .await;
    assert_eq!(status, 404);
}
