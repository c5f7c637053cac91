//! Members, roles and invitations through the public door, and what each role may do.

use crate::common::*;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_may_do_what_it_should_and_nothing_more() {
    let server = start().await;
    let own = register_owner(&server, "owner@example.com").await;
    let admin = invite_and_join(&server, &own, "admin@example.com", "admin").await;
    let agent = invite_and_join(&server, &admin, "agent@example.com", "agent").await;
    let viewer = invite_and_join(&server, &admin, "viewer@example.com", "viewer").await;

    let (_, bot) = server.post("/api/bots", json!({"name": "b"}), Some(&own)).await;
    let id = bot["id"].as_str().expect("id").to_owned();
    for (who, token, may_write) in [
        ("owner", &own, true),
        ("admin", &admin, true),
        ("agent", &agent, false),
        ("viewer", &viewer, false),
    ] {
        let (status, list) = server.call("GET", "/api/bots", None, Some(token)).await;
        let ids: Vec<&Value> =
            list["data"].as_array().expect("list").iter().map(|b| &b["id"]).collect();
        assert_eq!((status, ids.contains(&&json!(id))), (200, true), "{who} reads");
        let (status, body) = server.post("/api/bots", json!({"name": "new"}), Some(token)).await;
        let expected = if may_write { 201 } else { 403 };
        assert_eq!(status, expected, "{who} creates a bot: {body}");
        let (status, _) = server
            .call(
                "PATCH",
                &format!("/api/bots/{id}"),
                Some(&json!({"name": who}).to_string()),
                Some(token),
            )
            .await;
        assert_eq!(status, if may_write { 200 } else { 403 }, "{who} edits a bot");
        let (status, _) = server
            .post(
                "/api/members/invitations",
                json!({"email": "x@example.com", "role": "viewer"}),
                Some(token),
            )
            .await;
        assert_eq!(status, if may_write { 202 } else { 403 }, "{who} invites");
        let (status, members) = server.call("GET", "/api/members", None, Some(token)).await;
        assert_eq!(
            (status, members["data"].as_array().map(Vec::len)),
            (200, Some(4)),
            "{who} lists"
        );
    }
    // Only an owner makes owners.
    let (status, body) = server
        .post(
            "/api/members/invitations",
            json!({"email": "o2@example.com", "role": "owner"}),
            Some(&admin),
        )
        .await;
    assert_eq!((status, error_code(&body)), (403, "forbidden"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_change_and_members_leave_within_the_rules() {
    let server = start().await;
    let own = register_owner(&server, "owner@example.com").await;
    let admin = invite_and_join(&server, &own, "admin@example.com", "admin").await;
    let (_, members) = server.call("GET", "/api/members", None, Some(&own)).await;
    let id_of = |email: &str| {
        members["data"]
            .as_array()
            .expect("list")
            .iter()
            .find(|m| m["email"] == email)
            .and_then(|m| m["id"].as_str())
            .expect("member")
            .to_owned()
    };
    let (owner_id, admin_id) = (id_of("owner@example.com"), id_of("admin@example.com"));

    let patch = |role: &str| json!({"role": role}).to_string();
    let (status, body) = server
        .call("PATCH", &format!("/api/members/{owner_id}"), Some(&patch("viewer")), Some(&own))
        .await;
    assert_eq!((status, error_code(&body)), (409, "last_owner"));
    let (status, body) = server
        .call("PATCH", &format!("/api/members/{owner_id}"), Some(&patch("viewer")), Some(&admin))
        .await;
    assert_eq!((status, error_code(&body)), (403, "forbidden"), "an admin cannot demote an owner");
    let (status, _) = server
        .call("PATCH", &format!("/api/members/{admin_id}"), Some(&patch("viewer")), Some(&own))
        .await;
    assert_eq!(status, 200);
    // The demoted admin's token, issued as admin, carries the new role from the next request.
    let (status, body) = server.post("/api/bots", json!({"name": "late"}), Some(&admin)).await;
    assert_eq!((status, error_code(&body)), (403, "forbidden"), "demotion applies at once");
    let (status, _) = server
        .call("PATCH", &format!("/api/members/{admin_id}"), Some(&patch("admin")), Some(&own))
        .await;
    assert_eq!(status, 200);
    let (status, body) =
        server.call("DELETE", &format!("/api/members/{owner_id}"), None, Some(&own)).await;
    assert_eq!((status, error_code(&body)), (409, "last_owner"));

    // Another tenant cannot see or touch these members.
    let other = register_owner(&server, "other@example.com").await;
    let (_, theirs) = server.call("GET", "/api/members", None, Some(&other)).await;
    assert_eq!(theirs["data"].as_array().map(Vec::len), Some(1));
    let (status, _) = server
        .call("PATCH", &format!("/api/members/{admin_id}"), Some(&patch("admin")), Some(&other))
        .await;
    assert_eq!(status, 404);
    let (status, _) =
        server.call("DELETE", &format!("/api/members/{admin_id}"), None, Some(&other)).await;
    assert_eq!(status, 404);

    let (status, _) =
        server.call("DELETE", &format!("/api/members/{admin_id}"), None, Some(&own)).await;
    assert_eq!(status, 204);
    let (status, _) = server
        .post("/api/auth/login", json!({"email": "admin@example.com", "password": PASSWORD}), None)
        .await;
    assert_eq!(status, 401, "a removed member cannot sign in");
    let (status, body) = server.call("GET", "/api/bots", None, Some(&admin)).await;
    assert_eq!(
        (status, error_code(&body)),
        (401, "token_invalid"),
        "nor use a token issued before the removal"
    );
}
