//! The OpenAPI document through the public door: it is 3.1, every operation it describes is
//! routed by the server, and unknown paths answer in the API's error shape. (Conformance of
//! every response to the document is schemathesis's job: tests/schemathesis/run.sh.)

use std::collections::HashSet;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_describes_the_routes_the_server_serves() {
    let server = start().await;
    let (status, document) = server.call("GET", "/api/openapi.json", None, None).await;
    assert_eq!(status, 200);
    assert_eq!(document["openapi"], "3.1.0");
    let paths = document["paths"].as_object().expect("paths");

    let mut operation_ids = HashSet::new();
    let mut operations = 0;
    for (path, item) in paths {
        for (method, operation) in item.as_object().expect("path item") {
            operations += 1;
            let id = operation["operationId"].as_str().expect("every operation has an id");
            assert!(operation_ids.insert(id.to_owned()), "operationId {id} is unique");
            assert!(operation["responses"].as_object().is_some_and(|r| !r.is_empty()));
            if operation.get("security").is_some() {
                assert!(operation["responses"].get("401").is_some(), "{method} {path}: 401");
            }
            // Routed: whatever the answer (401, 404 for a made-up id, 422...), it is not the
            // router's "no such endpoint".
            let concrete =
                path.replace("{id}", "x").replace("{intent_id}", "y").replace("{doc_id}", "z");
            let (_, body) = server.call(&method.to_uppercase(), &concrete, Some("{}"), None).await;
            assert_ne!(
                body["error"]["message"], "no such endpoint",
                "{method} {path} is documented but not routed"
            );
        }
    }
    assert!(operations >= 35, "{operations} operations documented");
    for id in ["login", "create_bot", "create_intent", "post_message", "create_api_key"] {
        assert!(operation_ids.contains(id), "{id} is documented");
    }
    let links = &paths["/api/bots"]["post"]["responses"]["201"]["links"]["get_bot"];
    assert_eq!(links["operationId"], "get_bot", "links name their target: {links}");
    assert!(document["components"]["securitySchemes"]["bearer"].is_object());

    let (status, body) = server.call("GET", "/api/no-such-thing", None, None).await;
    assert_eq!((status, error_code(&body)), (404, "not_found"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_queries_and_oversized_bodies_get_the_error_shape() {
    let server = start().await;
    let jwt = register_owner(&server, "q@example.com").await;
    let (status, body) =
        server.call("GET", "/api/bots/demo/conversations?limit=abc", None, Some(&jwt)).await;
    assert_eq!((status, error_code(&body)), (400, "malformed_query"), "{body}");
    let (status, bot) =
        server.post("/api/bots", serde_json::json!({"name": "b"}), Some(&jwt)).await;
    assert_eq!(status, 201);
    let id = bot["id"].as_str().expect("id");
    for limit in ["0", "201"] {
        let path = format!("/api/bots/{id}/conversations?limit={limit}");
        let (status, body) = server.call("GET", &path, None, Some(&jwt)).await;
        assert_eq!((status, error_code(&body)), (422, "validation_failed"), "limit={limit}");
        assert_eq!(body["error"]["details"]["field"], "limit");
    }
    for (method, path, body) in [
        ("POST", "/api/bots", r#"["x"]"#),
        ("PATCH", "/api/workspace", "[null, null]"),
        ("POST", "/api/bots", "42"),
    ] {
        let (status, answer) = server.call(method, path, Some(body), Some(&jwt)).await;
        assert_eq!((status, error_code(&answer)), (400, "malformed_body"), "{body}: {answer}");
    }
    let huge = format!(r#"{{"name": "{}"}}"#, "x".repeat(70 * 1024));
    let (status, body) = server.call("POST", "/api/bots", Some(&huge), Some(&jwt)).await;
    assert_eq!((status, error_code(&body)), (413, "payload_too_large"), "{body}");
}
