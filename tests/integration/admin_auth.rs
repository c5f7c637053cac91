//! Admin API authentication through the public door: real HTTP against a server on port 0.

use crate::common::*;
use serde_json::{Value, json};

async fn register(server: &TestServer, email: &str) -> Value {
    let (status, body) = server
        .post(
            "/api/auth/register",
            json!({"email": email, "password": PASSWORD, "name": "Ann"}),
            None,
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body
}

async fn login(server: &TestServer, email: &str) -> Value {
    let (status, body) =
        server.post("/api/auth/login", json!({"email": email, "password": PASSWORD}), None).await;
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_login_and_list_only_your_tenants_bots() {
    let server = start().await;
    let reg = register(&server, "Ann@Example.com").await;
    assert_eq!(reg["account"]["email"], "ann@example.com");
    assert_eq!(reg["account"]["role"], "owner");
    assert!(reg["account"].get("password_hash").is_none(), "the hash never leaves the server");

    let session = login(&server, "ann@example.com").await;
    assert_eq!(session["token_type"], "Bearer");
    assert_eq!(session["expires_in"], 900);
    assert!(session["refresh_token"].as_str().is_some_and(|t| t.starts_with("prt_")));
    let token = session["access_token"].as_str().expect("token");

    let (status, bots) = server.call("GET", "/api/bots", None, Some(token)).await;
    assert_eq!(status, 200, "{bots}");
    assert_eq!(bots["data"], json!([]), "a new tenant sees no bots — not the demo tenant's");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_errors_are_clear() {
    let server = start().await;
    register(&server, "taken@example.com").await;
    let (status, body) = server
        .post(
            "/api/auth/register",
            json!({"email": "TAKEN@example.com", "password": PASSWORD, "name": "B"}),
            None,
        )
        .await;
    assert_eq!((status, error_code(&body)), (409, "email_taken"));
    for (payload, field) in [
        (json!({"email": "not-an-email", "password": PASSWORD, "name": "B"}), "email"),
        (json!({"email": "b@example.com", "password": "short", "name": "B"}), "password"),
        (json!({"email": "b@example.com", "password": PASSWORD, "name": "  "}), "name"),
    ] {
        let (status, body) = server.post("/api/auth/register", payload, None).await;
        assert_eq!((status, error_code(&body)), (422, "validation_failed"), "{body}");
        assert_eq!(body["error"]["details"]["field"], field);
    }
    let (status, body) = server.call("POST", "/api/auth/register", Some("{not json"), None).await;
    assert_eq!((status, error_code(&body)), (400, "malformed_body"));
    let (status, body) = server
        .post(
            "/api/auth/register",
            json!({"email": "c@example.com", "password": PASSWORD, "name": "C", "role": "owner"}),
            None,
        )
        .await;
    assert_eq!((status, error_code(&body)), (400, "malformed_body"), "unknown fields are refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_and_bad_tokens_get_401() {
    let server =
        start_with(|s| s.auth.jwt_secret = "test-secret-test-secret-test-secret!".into()).await;
    register(&server, "ann@example.com").await;
    for (email, password) in
        [("ann@example.com", "wrong password!!"), ("nobody@example.com", PASSWORD)]
    {
        let (status, body) = server
            .post("/api/auth/login", json!({"email": email, "password": password}), None)
            .await;
        assert_eq!(
            (status, error_code(&body)),
            (401, "invalid_credentials"),
            "same answer either way"
        );
    }
    let (status, body) = server.call("GET", "/api/bots", None, None).await;
    assert_eq!((status, error_code(&body)), (401, "unauthenticated"));
    let (status, body) = server.call("GET", "/api/bots", None, Some("garbage")).await;
    assert_eq!((status, error_code(&body)), (401, "token_invalid"));

    // A token signed with the server's secret but expired an hour ago.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let claims = json!({"sub": "x", "tid": "demo", "role": "owner", "iat": now - 4000, "exp": now - 3600, "jti": "j"});
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(b"test-secret-test-secret-test-secret!"),
    )
    .expect("encode");
    let (status, body) = server.call("GET", "/api/bots", None, Some(&expired)).await;
    assert_eq!((status, error_code(&body)), (401, "token_expired"));

    // The same claims, unexpired, but signed with another secret: a forged token for tenant demo.
    let forged_claims = json!({"sub": "x", "tid": "demo", "role": "owner", "iat": now, "exp": now + 600, "jti": "j"});
    let forged = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &forged_claims,
        &jsonwebtoken::EncodingKey::from_secret(b"not-the-servers-secret-not-the-servers"),
    )
    .expect("encode");
    let (status, body) = server.call("GET", "/api/bots", None, Some(&forged)).await;
    assert_eq!((status, error_code(&body)), (401, "token_invalid"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_rotates_and_a_reused_refresh_token_revokes_its_family() {
    let server = start().await;
    register(&server, "ann@example.com").await;
    let first = login(&server, "ann@example.com").await;
    let (status, second) = server
        .post("/api/auth/refresh", json!({"refresh_token": first["refresh_token"]}), None)
        .await;
    assert_eq!(status, 200, "{second}");
    assert_ne!(second["refresh_token"], first["refresh_token"], "rotated");
    let (status, _) = server.call("GET", "/api/bots", None, second["access_token"].as_str()).await;
    assert_eq!(status, 200);

    // The first token again: theft is assumed; the whole family dies, including the new one.
    let (status, body) = server
        .post("/api/auth/refresh", json!({"refresh_token": first["refresh_token"]}), None)
        .await;
    assert_eq!((status, error_code(&body)), (401, "refresh_token_reused"));
    let (status, body) = server
        .post("/api/auth/refresh", json!({"refresh_token": second["refresh_token"]}), None)
        .await;
    assert_eq!((status, error_code(&body)), (401, "invalid_refresh_token"));

    // Another login is a new family; logout ends it.
    let third = login(&server, "ann@example.com").await;
    let (status, _) = server
        .post("/api/auth/logout", json!({"refresh_token": third["refresh_token"]}), None)
        .await;
    assert_eq!(status, 204);
    let (status, body) = server
        .post("/api/auth/refresh", json!({"refresh_token": third["refresh_token"]}), None)
        .await;
    assert_eq!((status, error_code(&body)), (401, "invalid_refresh_token"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_auth_endpoints_limit_requests_per_ip_with_retry_after() {
    let server = start_with(|s| s.auth.ip_requests_per_15min = 5).await;
    let creds = json!({"email": "x@example.com", "password": PASSWORD}).to_string();
    for _ in 0..5 {
        let (status, _, _) =
            http_call_with_headers(server.addr, "POST", "/api/auth/login", Some(&creds), None)
                .await;
        assert_eq!(status, 401);
    }
    let (status, headers, body) =
        http_call_with_headers(server.addr, "POST", "/api/auth/login", Some(&creds), None).await;
    assert_eq!((status, error_code(&body)), (429, "rate_limited"));
    assert!(headers.contains("retry-after: "), "{headers}");
    assert!(body["error"]["details"]["retry_after_secs"].as_u64().is_some_and(|s| s >= 1));
    // The widget and the rest of the API are not affected.
    assert_eq!(server.get("/healthz").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failed_logins_back_the_account_off() {
    let server = start().await;
    register(&server, "ann@example.com").await;
    for _ in 0..5 {
        let (status, _) = server
            .post(
                "/api/auth/login",
                json!({"email": "ann@example.com", "password": "wrong wrong wrong"}),
                None,
            )
            .await;
        assert_eq!(status, 401);
    }
    // Even the right password waits now: guessing cannot continue at full speed.
    let (status, body) = server
        .post("/api/auth/login", json!({"email": "ANN@example.com", "password": PASSWORD}), None)
        .await;
    assert_eq!((status, error_code(&body)), (429, "login_backoff"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn totp_is_enrolled_confirmed_then_required_and_codes_are_single_use() {
    let server = start().await;
    register(&server, "ann@example.com").await;
    let session = login(&server, "ann@example.com").await;
    let jwt = session["access_token"].as_str().expect("token");

    let (status, enrolled) = server.post("/api/auth/totp/enroll", json!({}), Some(jwt)).await;
    assert_eq!(status, 200, "{enrolled}");
    let url = enrolled["otpauth_url"].as_str().expect("url");
    assert!(url.starts_with("otpauth://totp/Parla:ann%40example.com?"), "{url}");
    let secret = enrolled["secret"].as_str().expect("secret").to_owned();
    // Not required until confirmed.
    login(&server, "ann@example.com").await;

    let (status, body) =
        server.post("/api/auth/totp/confirm", json!({"code": "000000"}), Some(jwt)).await;
    assert_eq!((status, error_code(&body)), (422, "validation_failed"), "a wrong first code");
    // Confirm with the current step's code and sign in with the next step's (accepted with ±1
    // step of skew), so the replay rule — each step once — does not get in the way.
    let confirm_code = totp_code(&secret, now_secs());
    let (status, confirmed) =
        server.post("/api/auth/totp/confirm", json!({"code": confirm_code}), Some(jwt)).await;
    assert_eq!(status, 200, "{confirmed}");
    let recovery: Vec<String> = confirmed["recovery_codes"]
        .as_array()
        .expect("codes")
        .iter()
        .map(|c| c.as_str().expect("code").to_owned())
        .collect();
    assert_eq!(recovery.len(), 10);

    let creds = |totp: Option<&str>| {
        let mut c = json!({"email": "ann@example.com", "password": PASSWORD});
        if let Some(t) = totp {
            c["totp"] = json!(t);
        }
        c
    };
    let (status, body) = server.post("/api/auth/login", creds(None), None).await;
    assert_eq!((status, error_code(&body)), (401, "totp_required"));
    let code = totp_code(&secret, now_secs() + 30);
    let (status, body) = server.post("/api/auth/login", creds(Some(&code)), None).await;
    assert_eq!(status, 200, "a current code signs in: {body}");
    let (status, body) = server.post("/api/auth/login", creds(Some(&code)), None).await;
    assert_eq!(
        (status, error_code(&body)),
        (401, "invalid_totp"),
        "the same code twice is refused"
    );

    let (status, _) = server.post("/api/auth/login", creds(Some(&recovery[0])), None).await;
    assert_eq!(status, 200, "a recovery code signs in");
    let (status, body) = server.post("/api/auth/login", creds(Some(&recovery[0])), None).await;
    assert_eq!((status, error_code(&body)), (401, "invalid_totp"), "once");
    let (status, body) = server.post("/api/auth/totp/enroll", json!({}), Some(jwt)).await;
    assert_eq!((status, error_code(&body)), (409, "totp_already_enabled"));
}

/// The mails queued in the server's outbox, oldest first.
fn outbox(server: &TestServer) -> Vec<Value> {
    let path = server.dir.path().join("outbox.jsonl");
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("outbox lines are JSON"))
        .collect()
}

/// The token in the newest mail to `to`.
fn token_from_last_mail(server: &TestServer, to: &str) -> String {
    let mails = outbox(server);
    let mail = mails.iter().rev().find(|m| m["to"] == to).expect("a mail to this address");
    let body = mail["body"].as_str().expect("body");
    let at = body.find("token=").expect("a link with a token") + "token=".len();
    body[at..].split_whitespace().next().expect("token").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_verification_link_from_the_outbox_verifies_once() {
    let server = start().await;
    register(&server, "ann@example.com").await;
    let token = token_from_last_mail(&server, "ann@example.com");
    assert!(token.starts_with("ott_"));
    let session = login(&server, "ann@example.com").await;
    let jwt = session["access_token"].as_str().expect("jwt");
    let (_, me) = server.call("GET", "/api/auth/me", None, Some(jwt)).await;
    assert_eq!(me["email_verified"], false);

    let (status, _) = server.post("/api/auth/verify-email", json!({"token": token}), None).await;
    assert_eq!(status, 204);
    let (_, me) = server.call("GET", "/api/auth/me", None, Some(jwt)).await;
    assert_eq!(me["email_verified"], true);
    let (status, body) = server.post("/api/auth/verify-email", json!({"token": token}), None).await;
    assert_eq!((status, error_code(&body)), (400, "invalid_token"), "single use");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_verification_mail_is_sent_again_to_the_signed_in_person_only() {
    let server = start().await;
    register(&server, "ann@example.com").await;
    let first = token_from_last_mail(&server, "ann@example.com");
    let (status, body) = server.post("/api/auth/resend-verification", json!({}), None).await;
    assert_eq!((status, error_code(&body)), (401, "unauthenticated"), "signed in only: {body}");

    let session = login(&server, "ann@example.com").await;
    let jwt = session["access_token"].as_str().expect("jwt");
    let (status, _) = server.post("/api/auth/resend-verification", json!({}), Some(jwt)).await;
    assert_eq!(status, 202);
    let second = token_from_last_mail(&server, "ann@example.com");
    assert_ne!(first, second, "a new link");
    assert_eq!(outbox(&server).len(), 2, "one more mail, to the account's own address");

    let (status, _) = server.post("/api/auth/verify-email", json!({"token": second}), None).await;
    assert_eq!(status, 204);
    let (status, body) = server.post("/api/auth/resend-verification", json!({}), Some(jwt)).await;
    assert_eq!((status, error_code(&body)), (409, "already_verified"));
    let (status, body) = server.post("/api/auth/verify-email", json!({"token": first}), None).await;
    assert_eq!(status, 204, "the earlier link still verifies (idempotent): {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_reset_link_changes_the_password_once() {
    let server = start().await;
    register(&server, "ann@example.com").await;
    let verification = token_from_last_mail(&server, "ann@example.com");
    let reset = json!({"token": verification, "password": "a brand new long password"});
    let (status, body) = server.post("/api/auth/reset-password", reset, None).await;
    assert_eq!(
        (status, error_code(&body)),
        (400, "invalid_token"),
        "a verification link cannot reset"
    );
    let (status, _) = server
        .post("/api/auth/forgot-password", json!({"email": "nobody@example.com"}), None)
        .await;
    assert_eq!(status, 202, "same answer for an unknown email");
    assert!(outbox(&server).iter().all(|m| m["to"] != "nobody@example.com"), "and no mail");

    // A session opened with the old password, which the reset must end.
    let before = login(&server, "ann@example.com").await;
    let (status, _) =
        server.post("/api/auth/forgot-password", json!({"email": "Ann@example.com"}), None).await;
    assert_eq!(status, 202);
    let token = token_from_last_mail(&server, "ann@example.com");
    let (status, body) = server
        .post("/api/auth/reset-password", json!({"token": token, "password": "short"}), None)
        .await;
    assert_eq!((status, error_code(&body)), (422, "validation_failed"));
    let new_password = "a brand new long password";
    let (status, _) = server
        .post("/api/auth/reset-password", json!({"token": token, "password": new_password}), None)
        .await;
    assert_eq!(status, 204);
    let (status, _) = server
        .post("/api/auth/login", json!({"email": "ann@example.com", "password": PASSWORD}), None)
        .await;
    assert_eq!(status, 401, "the old password no longer works");
    let (status, _) = server
        .post(
            "/api/auth/login",
            json!({"email": "ann@example.com", "password": new_password}),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = server
        .post("/api/auth/reset-password", json!({"token": token, "password": new_password}), None)
        .await;
    assert_eq!((status, error_code(&body)), (400, "invalid_token"), "the link works once");
    let (status, body) = server
        .post("/api/auth/refresh", json!({"refresh_token": before["refresh_token"]}), None)
        .await;
    assert_eq!((status, error_code(&body)), (401, "invalid_refresh_token"), "old sessions ended");
    let old_access = before["access_token"].as_str().expect("access token");
    let (status, body) = server.call("GET", "/api/auth/me", None, Some(old_access)).await;
    assert_eq!(
        (status, error_code(&body)),
        (401, "token_revoked"),
        "an access token from before the reset ends at once, not at its expiry"
    );
    assert!(
        outbox(&server).iter().all(|m| m["body"].as_str().is_some_and(|b| !b.contains(PASSWORD)))
    );
}

// --- the auth limits shared by admin nodes through Redis (no server) ---

use parla_admin_api::limits::{AuthLimits, CLIENT_FREE_FAILURES, FREE_FAILURES};
use parla_cluster::RedisLimits;
use std::{net::IpAddr, time::Duration};

fn ip(text: &str) -> IpAddr {
    text.parse().expect("an address")
}

/// Two admin nodes' auth limits (admin-api's `AuthLimits` on the cluster adapter's
/// `RedisLimits`) share one budget and one backoff through a real Redis
/// (`PARLA_TEST_REDIS`, from `scripts/services.sh start redis`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_share_the_limits_through_redis() {
    let Some(url) = std::env::var("PARLA_TEST_REDIS").ok().filter(|u| !u.is_empty()) else {
        println!("skipped: PARLA_TEST_REDIS is not set (scripts/services.sh start redis)");
        return;
    };
    let prefix = format!("parla-test-{}", uuid::Uuid::new_v4().simple());
    let node = || async {
        let redis = RedisLimits::connect(&url, &prefix).await.expect("redis");
        AuthLimits::shared(3, std::sync::Arc::new(redis))
    };
    let (a, b) = (node().await, node().await);
    let v4 = ip("10.0.0.1");
    assert!(a.check_ip(v4).await.is_ok());
    assert!(b.check_ip(v4).await.is_ok());
    assert!(a.check_ip(v4).await.is_ok());
    let refused = b.check_ip(v4).await.expect_err("the fourth, on the other node");
    // 3 per 15 minutes: the next request frees up in about 5 minutes.
    assert!(refused.retry_after > Duration::from_secs(250), "{refused}");
    assert!(refused.retry_after <= Duration::from_secs(300), "{refused}");
    assert!(a.check_ip(ip("10.0.0.2")).await.is_ok(), "per client");
    for n in 1..=3 {
        assert!(a.check_ip(ip(&format!("2001:db8::{n}"))).await.is_ok());
    }
    assert!(b.check_ip(ip("2001:db8::99")).await.is_err(), "one /64, one budget");

    let stranger = ip("10.0.0.9");
    let mut in_flight = Vec::new();
    for n in 0..FREE_FAILURES {
        let node = if n % 2 == 0 { &a } else { &b };
        in_flight.push(node.begin_login("x@example.com", stranger).await.expect("free"));
    }
    let backoff = b.begin_login("x@example.com", stranger).await.expect_err("seen by b");
    assert_eq!(backoff.code, "login_backoff");
    let owner = b.begin_login("x@example.com", v4).await.expect("the owner's client");
    b.login_succeeded(owner).await;
    let other = b.begin_login("y@example.com", stranger).await.expect("per account");
    b.login_abandoned(other).await;
    let mut in_flight = in_flight.into_iter();
    b.login_succeeded(in_flight.next().expect("an attempt")).await;
    let again = a.begin_login("x@example.com", stranger).await.expect("cleared everywhere");
    for attempt in in_flight.chain([again]) {
        a.login_abandoned(attempt).await;
    }
    let sprayer = ip("10.0.0.10");
    for n in 0..CLIENT_FREE_FAILURES {
        let node = if n % 2 == 0 { &a } else { &b };
        let attempt = node.begin_login(&format!("u{n}@example.com"), sprayer).await;
        node.login_failed(attempt.expect("free"));
    }
    let spray = b.begin_login("fresh@example.com", sprayer).await.expect_err("spray");
    assert_eq!(spray.code, "login_backoff");
}
