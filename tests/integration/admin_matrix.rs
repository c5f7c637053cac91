//! The tenant-isolation and permission matrix, driven by the OpenAPI document: every operation
//! the server documents is called, so a new endpoint joins the matrix without editing this file.
//!
//! - Every credential of tenant A (owner, admin, agent, viewer, an all-scopes API key) gets 403
//!   or 404 on each of tenant B's resources, B's data is unchanged afterwards, and A's lists
//!   never show B's ids.
//! - An API key without the needed scope gets 403 on every secured operation.
//! - Viewers and agents get 403 on every write their role does not allow, 2xx on reads.

use crate::common::*;
use serde_json::{Value, json};

/// A workspace with one of everything, and tokens for each role.
struct Workspace {
    owner: String,
    admin: String,
    agent: String,
    viewer: String,
    /// All scopes.
    key: String,
    bot: String,
    intent: String,
    conversation: String,
    key_id: String,
    owner_id: String,
    document: String,
    canned: String,
}

async fn workspace(server: &TestServer, name: &str) -> Workspace {
    let owner = register_owner(server, &format!("owner@{name}.example.com")).await;
    let admin =
        invite_and_join(server, &owner, &format!("admin@{name}.example.com"), "admin").await;
    let agent =
        invite_and_join(server, &owner, &format!("agent@{name}.example.com"), "agent").await;
    let viewer =
        invite_and_join(server, &owner, &format!("viewer@{name}.example.com"), "viewer").await;
    let (_, bot) = server.post("/api/bots", json!({"name": name}), Some(&owner)).await;
    let bot = bot["id"].as_str().expect("bot id").to_owned();
    let (status, _) =
        server.call("POST", &format!("/api/bots/{bot}/publish"), None, Some(&owner)).await;
    assert_eq!(status, 200);
    // A private listing (no prices, so no Stripe): the listing's reads and writes are in the
    // matrix too.
    let (status, listed) =
        server.call("PUT", &format!("/api/bots/{bot}/listing"), Some("{}"), Some(&owner)).await;
    assert_eq!(status, 200, "{listed}");
    let (_, intent) = server
        .post(
            &format!("/api/bots/{bot}/intents"),
            json!({"name": "hours", "examples": ["when are you open"], "response": {"text": "9-5"}}),
            Some(&owner),
        )
        .await;
    let intent = intent["id"].as_str().expect("intent id").to_owned();
    let (_, opened) = server.post("/api/conversations", json!({"bot_id": bot}), Some(&owner)).await;
    let conversation = opened["conversation_id"].as_str().expect("conversation id").to_owned();
    let (status, posted) = server
        .post(
            &format!("/api/conversations/{conversation}/messages"),
            json!({"client_msg_id": "seed", "text": "when are you open"}),
            Some(&owner),
        )
        .await;
    assert_eq!(status, 201, "{posted}");
    // The bot's answer is stored after the visitor's message: wait for it, so later snapshots
    // compare settled data.
    let path = format!("/api/conversations/{conversation}");
    for _ in 0..100 {
        let (_, detail) = server.call("GET", &path, None, Some(&owner)).await;
        if detail["messages"].as_array().is_some_and(|m| m.len() >= 2) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let scopes =
        ["bots:read", "bots:write", "conversations:read", "conversations:write", "analytics:read"];
    let (_, key) =
        server.post("/api/api-keys", json!({"name": "all", "scopes": scopes}), Some(&owner)).await;
    let (_, me) = server.call("GET", "/api/auth/me", None, Some(&owner)).await;
    let (status, document) =
        upload(server, &owner, &bot, "faq.txt", "text/plain", b"We open at nine.").await;
    assert_eq!(status, 202, "{document}");
    let (status, canned) = server
        .post("/api/canned-responses", json!({"shortcut": "hi", "text": "Hello!"}), Some(&owner))
        .await;
    assert_eq!(status, 201, "{canned}");
    Workspace {
        canned: canned["id"].as_str().expect("canned id").to_owned(),
        document: document["id"].as_str().expect("document id").to_owned(),
        admin,
        agent,
        viewer,
        key: key["key"].as_str().expect("key").to_owned(),
        key_id: key["id"].as_str().expect("key id").to_owned(),
        owner_id: me["id"].as_str().expect("account id").to_owned(),
        owner,
        bot,
        intent,
        conversation,
    }
}

/// One documented operation.
struct Operation {
    method: String,
    path: String,
    id: String,
    secured: bool,
}

async fn operations(server: &TestServer) -> Vec<Operation> {
    let (_, document) = server.call("GET", "/api/openapi.json", None, None).await;
    let mut all = Vec::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            all.push(Operation {
                method: method.to_uppercase(),
                path: path.clone(),
                id: operation["operationId"].as_str().expect("operationId").to_owned(),
                secured: operation.get("security").is_some(),
            });
        }
    }
    assert!(all.len() >= 35);
    all
}

/// `operation`'s path with `w`'s ids in it.
fn concrete(operation: &Operation, w: &Workspace) -> String {
    let id = if operation.path.starts_with("/api/bots/")
        || operation.path.starts_with("/api/analytics/bots/")
    {
        &w.bot
    } else if operation.path.starts_with("/api/conversations/") {
        &w.conversation
    } else if operation.path.starts_with("/api/members/") {
        &w.owner_id
    } else if operation.path.starts_with("/api/api-keys/") {
        &w.key_id
    } else if operation.path.starts_with("/api/canned-responses/") {
        &w.canned
    } else if operation.path.starts_with("/api/subscriptions/") {
        "sub_none"
    } else {
        ""
    };
    operation
        .path
        .replace("{id}", id)
        .replace("{intent_id}", &w.intent)
        .replace("{doc_id}", &w.document)
}

/// A body that passes validation, so what answers is the permission or tenant check.
fn valid_body(operation: &str, w: &Workspace) -> Option<String> {
    let body = match operation {
        "update_bot" | "update_intent" => json!({"name": "hijacked"}),
        "create_bot" => json!({"name": "new"}),
        "create_intent" => {
            json!({"name": "new", "examples": ["a phrase"], "response": {"text": "answer"}})
        }
        "post_message" => json!({"client_msg_id": "intruder", "text": "hello"}),
        "open_conversation" => json!({"bot_id": w.bot}),
        "set_member_role" => json!({"role": "viewer"}),
        "invite_member" => json!({"email": "new@example.com", "role": "viewer"}),
        "create_api_key" => json!({"name": "k", "scopes": ["bots:read"]}),
        "totp_confirm" => json!({"code": "000000"}),
        "scrape_document" => json!({"url": "https://example.com/"}),
        "transfer_conversation" => json!({"to": w.owner_id}),
        "resolve_conversation" => json!({"resolution": "RESOLVED"}),
        "reply_as_agent" => json!({"client_msg_id": "intruder", "text": "hello"}),
        "add_note" => json!({"text": "intruder"}),
        "create_canned" => json!({"shortcut": "new", "text": "answer"}),
        "create_channel" => json!({"kind": "whatsapp", "phone_number_id": "1", "access_token": "a",
            "app_secret": "b", "verify_token": "c"}),
        "update_canned" => json!({"text": "hijacked"}),
        _ => json!({}),
    };
    Some(body.to_string())
}

/// What a tenant's data looks like, to compare before and after.
async fn snapshot(server: &TestServer, w: &Workspace) -> Value {
    let get = |path: String| async move { server.call("GET", &path, None, Some(&w.owner)).await.1 };
    let mut bot = get(format!("/api/bots/{}", w.bot)).await;
    bot["updated_at"] = Value::Null;
    json!({
        "bot": bot,
        "intents": get(format!("/api/bots/{}/intents", w.bot)).await,
        "document": get(format!("/api/bots/{}/documents/{}", w.bot, w.document)).await["id"].clone(),
        "conversation": get(format!("/api/conversations/{}", w.conversation)).await,
        "members": get("/api/members".into()).await,
        "canned": get("/api/canned-responses".into()).await,
        "keys": get("/api/api-keys".into()).await["data"].as_array().map(|keys| {
            keys.iter().map(|k| json!([k["id"], k["revoked"], k["scopes"]])).collect::<Vec<_>>()
        }),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_credential_of_one_tenant_reaches_another_tenants_resources() {
    let server = start().await;
    let a = workspace(&server, "a").await;
    let b = workspace(&server, "b").await;
    let before = snapshot(&server, &b).await;
    let credentials = [
        ("owner", &a.owner),
        ("admin", &a.admin),
        ("agent", &a.agent),
        ("viewer", &a.viewer),
        ("key", &a.key),
    ];
    let mut checked = 0;
    for operation in operations(&server).await {
        // Operations that name a resource: by path, or (opening a conversation) by body.
        let names_resource = operation.path.contains('{') || operation.id == "open_conversation";
        if !operation.secured || !names_resource {
            continue;
        }
        let path = concrete(&operation, &b);
        for (who, token) in credentials {
            let body = valid_body(&operation.id, &b);
            let (status, answer) =
                server.call(&operation.method, &path, body.as_deref(), Some(token)).await;
            assert!(
                status == 403 || status == 404,
                "A's {who}: {} {path} ({}) answered {status}: {answer}",
                operation.method,
                operation.id
            );
            checked += 1;
        }
    }
    assert!(checked >= 5 * 18, "{checked} cross-tenant calls");
    // A person is looked for in the caller's workspace only: B's conversation, named by its id,
    // is neither found, exported nor erased by A's owner.
    let query = json!({"query": b.conversation}).to_string();
    let path = format!("/api/data-subjects?query={}", b.conversation);
    let (status, found) = server.call("GET", &path, None, Some(&a.owner)).await;
    assert_eq!((status, found["data"].as_array().map(Vec::len)), (200, Some(0)), "{found}");
    let (status, _, archive) =
        server.call_bytes("POST", "/api/data-subjects/export", Some(&query), Some(&a.owner)).await;
    assert_eq!(status, 200);
    assert!(!String::from_utf8_lossy(&archive).contains(b.conversation.as_str()));
    let (status, erased) =
        server.call("POST", "/api/data-subjects/erase", Some(&query), Some(&a.owner)).await;
    assert_eq!((status, erased["conversations"].as_array().map(Vec::len)), (200, Some(0)));
    assert_eq!(snapshot(&server, &b).await, before, "B's data is untouched");

    // A's lists never show B's ids.
    for operation in operations(&server).await {
        if operation.method != "GET" || operation.path.contains('{') || !operation.secured {
            continue;
        }
        for (who, token) in credentials {
            let (_, body) = server.call("GET", &operation.path, None, Some(token)).await;
            let text = body.to_string();
            for id in
                [&b.bot, &b.intent, &b.conversation, &b.key_id, &b.owner_id, &b.document, &b.canned]
            {
                assert!(
                    !text.contains(id.as_str()),
                    "A's {who} sees B's {id} in {}",
                    operation.path
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_need_their_scopes_and_roles_their_rights() {
    let server = start().await;
    let a = workspace(&server, "a").await;
    // Two narrow keys: analytics only (refused everything else), bots:read only (refused the
    // analytics).
    let mut narrow_keys = Vec::new();
    for scope in ["analytics:read", "bots:read"] {
        let body = json!({"name": scope, "scopes": [scope]});
        let (_, narrow) = server.post("/api/api-keys", body, Some(&a.owner)).await;
        narrow_keys.push(narrow["key"].as_str().expect("key").to_owned());
    }
    let before = snapshot(&server, &a).await;

    // Writes each role may not make (self-service TOTP and verification mail aside; agents take
    // part in conversations as `human`, but neither open them, post as the visitor nor delete
    // them).
    let admin_only = |id: &str| {
        !id.starts_with("totp_")
            && id != "resend_verification"
            && !matches!(
                id,
                "claim_conversation"
                    | "release_conversation"
                    | "transfer_conversation"
                    | "resolve_conversation"
                    | "reply_as_agent"
                    | "add_note"
            )
    };
    for operation in operations(&server).await {
        if !operation.secured {
            continue;
        }
        let path = concrete(&operation, &a);
        let body = valid_body(&operation.id, &a);
        let analytics = operation.path.starts_with("/api/analytics/");
        let (narrow, lacking) = match analytics {
            true => (&narrow_keys[1], "analytics:read"),
            false => (&narrow_keys[0], "its scope"),
        };
        let (status, answer) =
            server.call(&operation.method, &path, body.as_deref(), Some(narrow)).await;
        assert_eq!(status, 403, "a key without {lacking}: {} {path}: {answer}", operation.id);

        let write = operation.method != "GET";
        for (who, token, denied) in [
            (
                "viewer",
                &a.viewer,
                write
                    && !operation.id.starts_with("totp_")
                    && operation.id != "resend_verification",
            ),
            ("agent", &a.agent, write && admin_only(&operation.id)),
        ] {
            if !denied && write {
                continue; // Allowed writes change state; their own tests cover them.
            }
            let (status, answer) =
                server.call(&operation.method, &path, body.as_deref(), Some(token)).await;
            // Reads for admins only: the keys, who is invited, a person's data, the audit log.
            let admin_read = matches!(
                operation.id.as_str(),
                "list_api_keys" | "list_invitations" | "find_data_subject" | "audit_log"
            );
            if denied || admin_read {
                assert_eq!(status, 403, "{who}: {} {path}: {answer}", operation.id);
                assert_eq!(error_code(&answer), "forbidden");
            } else {
                assert_eq!(status, 200, "{who} may read: {} {path}: {answer}", operation.id);
            }
        }
    }
    assert_eq!(snapshot(&server, &a).await, before, "refused calls changed nothing");
}
