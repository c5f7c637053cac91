//! Billing through the public door: plan limits refused with `plan_limit_reached` where the
//! work happens (a racing flood of visitors included), Stripe's signed events moving a
//! workspace's plan — replayed, reordered, stale and forged ones included, signed with Stripe's
//! own Python library — and checkout and the portal sent to Stripe's own mock (stripe-mock),
//! which refuses any request its OpenAPI spec does not allow.

use std::process::Stdio;

use crate::common::*;
use parla_config::PlanSettings;
use serde_json::{Value, json};

pub(crate) const SECRET: &str = "whsec_parla_test";
const ROTATED: &str = "whsec_parla_rotated";

pub(crate) fn plan(id: &str, price: &str, limits: &[(&str, u64)]) -> PlanSettings {
    PlanSettings {
        id: id.into(),
        name: id.to_uppercase(),
        stripe_price: price.into(),
        trial_days: if price.is_empty() { 0 } else { 14 },
        price_label: String::new(),
        limits: limits.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
        meters: Default::default(),
    }
}

pub(crate) async fn enforcing(
    free: &[(&str, u64)],
    tweak: impl FnOnce(&mut parla_config::Settings),
) -> TestServer {
    let free = plan("free", "", free);
    start_with(move |s| {
        s.billing.enforce = true;
        s.billing.plans = vec![free, plan("pro", "price_pro", &[("bots", 10)])];
        s.billing.stripe_webhook_secrets = vec![ROTATED.into(), SECRET.into()];
        tweak(s);
    })
    .await
}

fn refused(status: u16, body: &Value, limit: &str) {
    assert_eq!(status, 402, "{body}");
    assert_eq!(body["error"]["code"], "plan_limit_reached", "{body}");
    assert_eq!(body["error"]["details"]["limit"], limit, "{body}");
    assert!(
        body["error"]["details"]["upgrade"]
            .as_str()
            .is_some_and(|u| u.contains("/api/billing/checkout"))
    );
}

pub(crate) async fn new_bot(server: &TestServer, token: &str, name: &str) -> String {
    let (status, bot) = server.post("/api/bots", json!({"name": name}), Some(token)).await;
    assert_eq!(status, 201, "{bot}");
    let id = bot["id"].as_str().expect("id").to_owned();
    let (status, _) =
        server.call("POST", &format!("/api/bots/{id}/publish"), None, Some(token)).await;
    assert_eq!(status, 200);
    id
}

/// A visitor's first message: `Ok` when it was stored (echoed), else the error frame's code.
pub(crate) async fn first_message(
    server: &TestServer,
    bot: &str,
    text: &str,
) -> Result<(), String> {
    let mut client = Client::connect(server.addr).await;
    client.hello(bot).await;
    client.say("first", text).await;
    let (frame, _) = client.until_either("message", "error").await;
    if frame["type"] == "error" {
        Err(frame["code"].as_str().unwrap_or_default().to_owned())
    } else {
        Ok(())
    }
}

pub(crate) fn used(report: &Value, limit: &str) -> (u64, Option<u64>) {
    let row = report["usage"]
        .as_array()
        .expect("usage")
        .iter()
        .find(|r| r["limit"] == limit)
        .expect("limit row");
    (row["used"].as_u64().expect("used"), row["allowed"].as_u64())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_its_plan_a_workspace_is_refused_where_the_work_happens_and_sees_its_usage() {
    let free = [
        ("bots", 1),
        ("seats", 2),
        ("conversations_per_month", 2),
        ("documents", 1),
        ("channels", 0),
    ];
    let server = enforcing(&free, |_| {}).await;
    let owner = register_owner(&server, "owner@limits.example.com").await;

    let bot = new_bot(&server, &owner, "only").await;
    let (status, body) = server.post("/api/bots", json!({"name": "second"}), Some(&owner)).await;
    refused(status, &body, "bots");

    // Two conversations this month; the third visitor is told, nothing of theirs is stored.
    assert_eq!(first_message(&server, &bot, "hello").await, Ok(()));
    assert_eq!(first_message(&server, &bot, "hello again").await, Ok(()));
    assert_eq!(first_message(&server, &bot, "and me?").await, Err("plan_limit_reached".into()));
    let (status, body) =
        server.post("/api/conversations", json!({"bot_id": bot}), Some(&owner)).await;
    let opened = body["conversation_id"].as_str().map(str::to_owned);
    if status == 201 {
        // Opened over REST: refused when it would be stored (its first message).
        let path = format!("/api/conversations/{}/messages", opened.expect("id"));
        let (status, body) =
            server.post(&path, json!({"client_msg_id": "m1", "text": "hi"}), Some(&owner)).await;
        refused(status, &body, "conversations_per_month");
    } else {
        refused(status, &body, "conversations_per_month");
    }
    let (status, list) =
        server.call("GET", &format!("/api/bots/{bot}/conversations"), None, Some(&owner)).await;
    assert_eq!(status, 200);
    assert_eq!(
        list["data"].as_array().expect("data").len(),
        2,
        "nothing stored past the limit: {list}"
    );

    // Seats: the owner and one invitation.
    let (status, body) = server
        .post(
            "/api/members/invitations",
            json!({"email": "a@limits.example.com", "role": "agent"}),
            Some(&owner),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let (status, body) = server
        .post(
            "/api/members/invitations",
            json!({"email": "b@limits.example.com", "role": "agent"}),
            Some(&owner),
        )
        .await;
    refused(status, &body, "seats");

    // Documents and channels.
    let scrape = json!({"url": "https://docs.example.com/faq"});
    let (status, body) = server
        .post(&format!("/api/bots/{bot}/documents/scrape"), scrape.clone(), Some(&owner))
        .await;
    assert_eq!(status, 202, "{body}");
    let (status, body) =
        server.post(&format!("/api/bots/{bot}/documents/scrape"), scrape, Some(&owner)).await;
    refused(status, &body, "documents");
    let sms = json!({"kind": "sms", "phone_number": "+15005550006", "account_sid": "AC123", "auth_token": "secret"});
    let (status, body) = server.post(&format!("/api/bots/{bot}/channels"), sms, Some(&owner)).await;
    refused(status, &body, "channels");

    // What the workspace sees.
    let (status, report) = server.call("GET", "/api/billing/usage", None, Some(&owner)).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["plan"]["id"], "free");
    assert_eq!(report["enforced"], true);
    assert_eq!(used(&report, "bots"), (1, Some(1)));
    assert_eq!(used(&report, "seats"), (2, Some(2)));
    assert_eq!(used(&report, "conversations_per_month"), (2, Some(2)));
    assert_eq!(used(&report, "documents"), (1, Some(1)));
    assert_eq!(used(&report, "llm_tokens_per_month"), (0, None), "not limited by this plan");
    let (status, plans) = server.call("GET", "/api/billing/plans", None, Some(&owner)).await;
    assert_eq!(status, 200);
    assert_eq!(plans["data"][1]["id"], "pro");
    assert_eq!(plans["checkout_available"], false, "no Stripe key on this server");
    let (status, body) =
        server.post("/api/billing/checkout", json!({"plan": "pro"}), Some(&owner)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("billing_not_configured")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_visitors_at_the_limit_starts_exactly_the_conversations_the_plan_allows() {
    let server = enforcing(&[("conversations_per_month", 3)], |_| {}).await;
    let owner = register_owner(&server, "owner@flood.example.com").await;
    let bot = new_bot(&server, &owner, "busy").await;
    let tries =
        (0..10).map(|i| first_message(&server, &bot, if i % 2 == 0 { "hi" } else { "hello" }));
    let outcomes = futures_util::future::join_all(tries).await;
    let stored = outcomes.iter().filter(|o| o.is_ok()).count();
    assert_eq!(stored, 3, "{outcomes:?}");
    assert!(
        outcomes
            .iter()
            .all(|o| o.as_ref().is_ok() || o.as_ref().is_err_and(|c| c == "plan_limit_reached")),
        "{outcomes:?}"
    );
    let (_, report) = server.call("GET", "/api/billing/usage", None, Some(&owner)).await;
    assert_eq!(used(&report, "conversations_per_month"), (3, Some(3)));
    let (_, list) =
        server.call("GET", &format!("/api/bots/{bot}/conversations"), None, Some(&owner)).await;
    assert_eq!(list["data"].as_array().expect("data").len(), 3);
}

/// Whether Stripe's Python library is at hand to sign events (else the test says it is skipped).
pub(crate) fn signing_available() -> bool {
    let there = std::env::var("PARLA_TEST_PYTHON").is_ok();
    if !there {
        println!("skipped: PARLA_TEST_PYTHON (Stripe's Python library signs the events)");
    }
    there
}

/// `Stripe-Signature` for `payload`, made by Stripe's own Python library.
pub(crate) fn stripe_signature(payload: &str, secret: &str, timestamp: Option<i64>) -> String {
    let python =
        std::env::var("PARLA_TEST_PYTHON").expect("PARLA_TEST_PYTHON (scripts/python-env.sh)");
    let ts = timestamp.map_or("None".to_owned(), |t| t.to_string());
    let script = format!(
        "import sys, stripe; print(stripe.WebhookSignature.generate_signature_header(sys.stdin.read(), {secret:?}, {ts}))"
    );
    let mut child = std::process::Command::new(python)
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python");
    use std::io::Write;
    child.stdin.take().expect("stdin").write_all(payload.as_bytes()).expect("write");
    let out = child.wait_with_output().expect("python");
    assert!(out.status.success(), "stripe's library failed");
    String::from_utf8(out.stdout).expect("utf-8").trim().to_owned()
}

pub(crate) async fn post_event(
    server: &TestServer,
    payload: &str,
    signature: &str,
) -> (u16, String) {
    let request = format!(
        "POST /v1/billing/stripe/webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Stripe-Signature: {signature}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{payload}",
        payload.len()
    );
    let (status, _, body) = raw_http(server.addr, &request).await;
    (status, body)
}

pub(crate) fn subscription_event(id: &str, created: i64, tenant: &str, status: &str) -> String {
    let marks = json!({"tenant_id": tenant, "kind": "workspace", "plan": "pro"});
    subscription_event_of("sub_parla_1", id, created, marks, status)
}

/// A signed-to-be `customer.subscription.updated` event about subscription `sub`, carrying
/// Parla's `marks` (its metadata), with periods on its item as API 2025-03-31 has them.
pub(crate) fn subscription_event_of(
    sub: &str,
    id: &str,
    created: i64,
    marks: Value,
    status: &str,
) -> String {
    json!({
        "id": id,
        "object": "event",
        "type": "customer.subscription.updated",
        "created": created,
        "data": {"object": {
            "id": sub,
            "object": "subscription",
            "customer": "cus_parla_1",
            "status": status,
            "cancel_at_period_end": false,
            "metadata": marks,
            "items": {"object": "list", "data": [{
                "id": "si_1",
                "price": {"id": "price_pro"},
                "current_period_start": 1_800_000_000,
                "current_period_end": 1_802_592_000,
            }]},
        }},
    })
    .to_string()
}

async fn plan_now(server: &TestServer, token: &str) -> (String, Value) {
    let (_, report) = server.call("GET", "/api/billing/usage", None, Some(token)).await;
    (report["plan"]["id"].as_str().unwrap_or_default().to_owned(), report)
}

/// Polls until the workspace's plan is `want` (events are applied from the queue, and the plan
/// is cached for a few seconds).
pub(crate) async fn until_plan(server: &TestServer, token: &str, want: &str) -> Value {
    eventually(async || {
        let (plan, report) = plan_now(server, token).await;
        if plan == want { Ok(report) } else { Err(format!("plan {plan}, not {want}: {report}")) }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_stripe_events_move_the_plan_whatever_their_order_and_forgeries_are_refused() {
    if !signing_available() {
        return;
    }
    // Events are read by the payments adapter: a key is configured (the API is never called
    // for subscription events, which carry the whole subscription).
    let server = enforcing(&[("bots", 1)], |s| {
        s.billing.stripe_secret_key = "sk_test_unused".into();
        s.billing.stripe_api_base = "http://127.0.0.1:9".into();
    })
    .await;
    let owner = register_owner(&server, "owner@stripe.example.com").await;
    let (_, me) = server.call("GET", "/api/auth/me", None, Some(&owner)).await;
    let tenant = me["tenant_id"].as_str().expect("tenant").to_owned();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;

    // Forged, stale, unsigned, or for another secret: refused before anything is stored.
    let active = subscription_event("evt_active", now - 60, &tenant, "active");
    let (status, body) =
        post_event(&server, &active, &stripe_signature(&active, "whsec_forged", None)).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) =
        post_event(&server, &active, &stripe_signature(&active, SECRET, Some(now - 301))).await;
    assert_eq!(status, 400, "stale: {body}");
    let (status, _) = post_event(&server, &active, "t=1,v1=00").await;
    assert_eq!(status, 400);
    let tampered = active.replace("\"active\"", "\"trialing\"");
    let (status, _) =
        post_event(&server, &tampered, &stripe_signature(&active, SECRET, None)).await;
    assert_eq!(status, 400, "a body changed after signing");
    assert_eq!(plan_now(&server, &owner).await.0, "free");

    // Signed (by the secret being rotated out too): the plan follows.
    let (status, body) =
        post_event(&server, &active, &stripe_signature(&active, ROTATED, None)).await;
    assert_eq!(status, 200, "{body}");
    let report = until_plan(&server, &owner, "pro").await;
    assert_eq!(report["subscription"]["status"], "active");
    assert_eq!(
        report["subscription"]["current_period_end"], 1_802_592_000_000i64,
        "periods from the items"
    );
    let (status, _) = server.post("/api/bots", json!({"name": "one"}), Some(&owner)).await;
    assert_eq!(status, 201);
    let (status, _) = server.post("/api/bots", json!({"name": "two"}), Some(&owner)).await;
    assert_eq!(status, 201, "pro allows more bots");

    // The same event again: acknowledged, not applied twice.
    let (status, body) =
        post_event(&server, &active, &stripe_signature(&active, SECRET, None)).await;
    assert_eq!(status, 200);
    assert!(body.contains("\"duplicate\":true"), "{body}");

    // Out of order: `canceled` (newer) arrives before an older `past_due`; it stays canceled.
    let canceled = subscription_event("evt_canceled", now - 10, &tenant, "canceled");
    let past_due = subscription_event("evt_past_due", now - 30, &tenant, "past_due");
    assert_eq!(
        post_event(&server, &canceled, &stripe_signature(&canceled, SECRET, None)).await.0,
        200
    );
    let report = until_plan(&server, &owner, "free").await;
    assert_eq!(report["subscription"]["status"], "canceled");
    assert_eq!(
        post_event(&server, &past_due, &stripe_signature(&past_due, SECRET, None)).await.0,
        200
    );
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    let (plan, report) = plan_now(&server, &owner).await;
    assert_eq!(
        (plan.as_str(), &report["subscription"]["status"]),
        ("free", &json!("canceled")),
        "an older event is not applied over a newer one"
    );
    // Past the plan now: a third bot is refused (what exists stays).
    let (status, body) = server.post("/api/bots", json!({"name": "three"}), Some(&owner)).await;
    refused(status, &body, "bots");

    let (status, subs) = server.call("GET", "/api/subscriptions", None, Some(&owner)).await;
    assert_eq!(status, 200);
    assert_eq!(subs["data"].as_array().expect("data").len(), 1, "{subs}");
    assert_eq!(subs["data"][0]["id"], "sub_parla_1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_past_due_subscription_keeps_its_plan_for_the_grace_period_only() {
    if !signing_available() {
        return;
    }
    let server = enforcing(&[("bots", 1)], |s| {
        s.billing.stripe_secret_key = "sk_test_unused".into();
        s.billing.grace_days = 3;
    })
    .await;
    let owner = register_owner(&server, "owner@grace.example.com").await;
    let (_, me) = server.call("GET", "/api/auth/me", None, Some(&owner)).await;
    let tenant = me["tenant_id"].as_str().expect("tenant").to_owned();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    // Past due for a day (within 3 days of grace): still pro.
    let late = subscription_event("evt_late", now - 86_400, &tenant, "past_due");
    assert_eq!(post_event(&server, &late, &stripe_signature(&late, SECRET, None)).await.0, 200);
    let report = until_plan(&server, &owner, "pro").await;
    assert_eq!(report["subscription"]["status"], "past_due");
    // Unpaid: the plan goes (and comes back when paid).
    let unpaid = subscription_event("evt_unpaid", now - 60, &tenant, "unpaid");
    assert_eq!(post_event(&server, &unpaid, &stripe_signature(&unpaid, SECRET, None)).await.0, 200);
    until_plan(&server, &owner, "free").await;
    let paid = subscription_event("evt_paid", now - 1, &tenant, "active");
    assert_eq!(post_event(&server, &paid, &stripe_signature(&paid, SECRET, None)).await.0, 200);
    until_plan(&server, &owner, "pro").await;
}

pub(crate) fn unix_now() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    now.expect("clock").as_secs() as i64
}

/// Stripe's own mock on ports of its own (killed when dropped), up, or `None` with why.
pub(crate) async fn stripe_mock() -> Option<(tokio::process::Child, String)> {
    let Ok(bin) = std::env::var("PARLA_TEST_STRIPE_MOCK") else {
        println!("skipped: PARLA_TEST_STRIPE_MOCK (scripts/stripe-mock.sh installs it)");
        return None;
    };
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port()
    };
    let (http, https) = (free(), free());
    let child = tokio::process::Command::new(bin)
        .args(["-http-port", &http.to_string(), "-https-port", &https.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("stripe-mock");
    let base = format!("http://127.0.0.1:{http}");
    let deadline = std::time::Instant::now() + PATIENCE;
    while tokio::net::TcpStream::connect(("127.0.0.1", http)).await.is_err() {
        assert!(std::time::Instant::now() < deadline, "stripe-mock did not start");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Some((child, base))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkout_and_portal_requests_are_valid_for_stripe() {
    let Some((_mock, base)) = stripe_mock().await else { return };
    let server = enforcing(&[("bots", 1)], move |s| {
        s.billing.stripe_secret_key = "sk_test_parla".into();
        s.billing.stripe_api_base = base;
    })
    .await;
    let owner = register_owner(&server, "owner@checkout.example.com").await;
    let (status, body) = server.post("/api/billing/portal", json!({}), Some(&owner)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("no_billing_account")),
        "{body}"
    );

    // stripe-mock answers 400 to any request its spec refuses: a 200 here is a valid request.
    let (status, body) =
        server.post("/api/billing/checkout", json!({"plan": "pro"}), Some(&owner)).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["url"].as_str().is_some_and(|u| u.starts_with("https://checkout.stripe.com/")),
        "{body}"
    );
    let (status, body) = server.post("/api/billing/portal", json!({}), Some(&owner)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["url"].as_str().is_some_and(|u| u.starts_with("https://")), "{body}");

    // Refusals: an unknown plan, one not for sale, an agent.
    let (status, body) =
        server.post("/api/billing/checkout", json!({"plan": "gold"}), Some(&owner)).await;
    assert_eq!((status, body["error"]["details"]["field"].as_str()), (422, Some("plan")));
    let (status, _) =
        server.post("/api/billing/checkout", json!({"plan": "free"}), Some(&owner)).await;
    assert_eq!(status, 422);
    let agent = invite_and_join(&server, &owner, "agent@checkout.example.com", "agent").await;
    let (status, _) =
        server.post("/api/billing/checkout", json!({"plan": "pro"}), Some(&agent)).await;
    assert_eq!(status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciliation_repairs_a_missed_event_from_what_stripe_says_now() {
    if !signing_available() {
        return;
    }
    let Some((_mock, base)) = stripe_mock().await else { return };
    // stripe-mock answers every read of a subscription with its fixture: `active`, without
    // Parla's marks — as Stripe would after a payment whose event never reached Parla.
    let server = enforcing(&[("bots", 1)], move |s| {
        s.billing.stripe_secret_key = "sk_test_parla".into();
        s.billing.stripe_api_base = base;
        s.billing.reconcile_secs = 1;
    })
    .await;
    let owner = register_owner(&server, "owner@reconcile.example.com").await;
    let (_, me) = server.call("GET", "/api/auth/me", None, Some(&owner)).await;
    let tenant = me["tenant_id"].as_str().expect("tenant").to_owned();
    let unpaid = subscription_event("evt_unpaid_then_missed", unix_now() - 3600, &tenant, "unpaid");
    assert_eq!(post_event(&server, &unpaid, &stripe_signature(&unpaid, SECRET, None)).await.0, 200);
    // Applied (unpaid: the free plan), then re-read from Stripe: active, the plan back.
    let report = until_plan(&server, &owner, "pro").await;
    assert_eq!(report["subscription"]["status"], "active");
    assert_eq!(report["subscription"]["id"], "sub_parla_1", "the same subscription, repaired");
}
