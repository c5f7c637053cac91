//! Push notifications through the public doors: a push connection (a Google service account)
//! made with the admin API, a device token registered on the widget socket, and local servers
//! speaking Google's OAuth2 service-account token exchange (the RS256 JWT assertion is
//! verified with the account's public key) and FCM HTTP v1's `messages:send`.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use crate::common::*;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::{Value, json};

const EMAIL: &str = "parla-push@demo-project.iam.gserviceaccount.com";
const PROJECT: &str = "demo-project";

/// A fresh RSA key pair (PKCS#8 private, SPKI public), made with openssl.
fn key_pair() -> (String, String) {
    let private = std::process::Command::new("openssl")
        .args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"])
        .output()
        .expect("openssl runs");
    assert!(private.status.success());
    let mut child = std::process::Command::new("openssl")
        .args(["pkey", "-pubout"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("openssl runs");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), &private.stdout)
        .expect("write");
    let public = child.wait_with_output().expect("public key");
    (
        String::from_utf8(private.stdout).expect("pem"),
        String::from_utf8(public.stdout).expect("pem"),
    )
}

#[derive(Default)]
struct Google {
    /// FCM messages received.
    sent: Mutex<Vec<Value>>,
    /// Access tokens handed out.
    tokens: Mutex<usize>,
    /// Sends to the unregistered device.
    misses: Mutex<usize>,
}

async fn google(public_pem: String) -> (String, Arc<Google>) {
    let google = Arc::new(Google::default());
    let state = google.clone();
    let server = HttpServer::new(move || {
        let (token_state, send_state, public_pem) = (state.clone(), state.clone(), public_pem.clone());
        App::new()
            .route(
                "/token",
                web::post().to(move |req: HttpRequest, body: web::Bytes| {
                    let (state, public_pem) = (token_state.clone(), public_pem.clone());
                    async move {
                        let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).expect("form");
                        let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default();
                        assert_eq!(field("grant_type"), "urn:ietf:params:oauth:grant-type:jwt-bearer");
                        let audience = format!("http://{}/token", req.connection_info().host());
                        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
                        validation.set_audience(&[audience]);
                        validation.set_issuer(&[EMAIL]);
                        let key = jsonwebtoken::DecodingKey::from_rsa_pem(public_pem.as_bytes()).expect("public key");
                        match jsonwebtoken::decode::<Value>(&field("assertion"), &key, &validation) {
                            Ok(claims) if claims.claims["scope"] == "https://www.googleapis.com/auth/firebase.messaging" => {
                                *state.tokens.lock().expect("count") += 1;
                                HttpResponse::Ok().json(json!({"access_token": "ya29.test-access", "expires_in": 3599, "token_type": "Bearer"}))
                            }
                            other => HttpResponse::BadRequest().json(json!({"error": "invalid_grant", "error_description": format!("{other:?}")})),
                        }
                    }
                }),
            )
            .route(
                "/v1/projects/{project}/messages:send",
                web::post().to(move |req: HttpRequest, path: web::Path<String>, body: web::Json<Value>| {
                    let state = send_state.clone();
                    async move {
                        let auth = req.headers().get("authorization").and_then(|v| v.to_str().ok());
                        if auth != Some("Bearer ya29.test-access") || *path != PROJECT {
                            return HttpResponse::Unauthorized().json(json!({"error": {"code": 401, "status": "UNAUTHENTICATED"}}));
                        }
                        if body["message"]["token"] == "dead-device" {
                            *state.misses.lock().expect("count") += 1;
                            return HttpResponse::NotFound().json(json!({"error": {"code": 404, "message": "Requested entity was not found.", "status": "NOT_FOUND", "details": [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": "UNREGISTERED"}]}}));
                        }
                        state.sent.lock().expect("log").push(body.into_inner());
                        HttpResponse::Ok().json(json!({"name": format!("projects/{PROJECT}/messages/0:1")}))
                    }
                }),
            )
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .expect("bind");
    let addr = server.addrs()[0];
    tokio::spawn(server.run());
    (format!("http://{addr}"), google)
}

async fn sent(google: &Google, n: usize) -> Vec<Value> {
    for _ in 0..500 {
        if google.sent.lock().expect("log").len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    google.sent.lock().expect("log").clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_to_an_offline_visitor_are_pushed_to_their_devices() {
    let (private_pem, public_pem) = key_pair();
    let (base, google) = google(public_pem).await;
    let server = start_with(|s| {
        s.channels.fcm_api_base = base.clone();
        s.channels.fcm_token_uri = format!("{base}/token");
        s.channels.retry_base_ms = 10;
    })
    .await;
    let owner = register_owner(&server, "owner@push.example.com").await;
    let bot = published_bot(
        &server,
        &owner,
        json!({"name": "Helpdesk", "config": {"fallback_message": "On it."}}),
    )
    .await;
    let account = json!({"type": "service_account", "project_id": PROJECT, "client_email": EMAIL,
        "private_key": private_pem, "token_uri": "https://attacker.example/token"});
    let body = json!({"kind": "push", "service_account": account});
    let (status, connection) =
        server.post(&format!("/api/bots/{bot}/channels"), body, Some(&owner)).await;
    assert_eq!(status, 201, "{connection}");
    assert!(!connection.to_string().contains("PRIVATE KEY"), "the key never comes back");
    let bad = json!({"kind": "push", "service_account": {"project_id": PROJECT, "client_email": EMAIL, "private_key": "nope"}});
    let (status, body) = server.post(&format!("/api/bots/{bot}/channels"), bad, Some(&owner)).await;
    assert_eq!(
        (status, body["error"]["details"]["field"].as_str()),
        (422, Some("service_account"))
    );

    let mut client = server.client().await;
    let welcome = client.hello(&bot).await;
    let id = welcome["conversation_id"].as_str().expect("id").to_owned();
    client.send(json!({"type": "push_token", "token": ""})).await;
    assert_eq!(client.expect("error").await["code"], "invalid_push_token");
    for token in ["device-1", "dead-device"] {
        client.send(json!({"type": "push_token", "token": token})).await;
    }
    client.exchange("m1", "hello").await; // Online: the answer comes on the socket only.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(google.sent.lock().expect("log").is_empty(), "no push while the visitor is connected");
    drop(client); // The visitor closes the page.
    tokio::time::sleep(Duration::from_millis(100)).await;

    let path = |action: &str| format!("/api/conversations/{id}/{action}");
    assert_eq!(server.post(&path("claim"), json!({}), Some(&owner)).await.0, 200);
    let reply = json!({"client_msg_id": "r1", "text": "Your refund is on its way."});
    assert_eq!(server.post(&path("replies"), reply, Some(&owner)).await.0, 201);
    let pushed = sent(&google, 1).await;
    let message = &pushed[0]["message"];
    assert_eq!(message["token"], "device-1");
    assert_eq!(message["notification"]["title"], "Helpdesk");
    assert_eq!(message["notification"]["body"], "Your refund is on its way.");
    assert_eq!(message["data"]["conversation_id"], id.as_str());

    for _ in 0..200 {
        if *google.misses.lock().expect("count") == 1 {
            break; // FCM said the other device is gone.
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let reply = json!({"client_msg_id": "r2", "text": "Anything else?"});
    assert_eq!(server.post(&path("replies"), reply, Some(&owner)).await.0, 201);
    let pushed = sent(&google, 2).await;
    assert_eq!(pushed.len(), 2, "{pushed:?}");
    assert_eq!(*google.misses.lock().expect("count"), 1, "the unregistered device was forgotten");
    assert_eq!(pushed[1]["message"]["notification"]["body"], "Anything else?");
    assert_eq!(*google.tokens.lock().expect("count"), 1, "the access token is cached");
}
