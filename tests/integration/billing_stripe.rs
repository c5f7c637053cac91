//! Billing against Stripe's own mock with the state it lacks: usage reported to Stripe Meters
//! each unit once however many answers are lost, and invoice events (`invoice.payment_failed`,
//! `invoice.payment_action_required`, `invoice.paid`) moving a workspace's plan through the
//! subscription Parla re-reads. Every request Parla sends still goes to stripe-mock, which
//! refuses any its OpenAPI spec does not allow; the double in front of it keeps what was sent,
//! can lose an answer on the way back, and gives the subscription read the status a test sets
//! (stripe-mock's is always `active`).
//!
//! With `PARLA_TEST_STRIPE_KEY` (a test-mode secret key) the last test runs the same flows
//! against Stripe's test mode; it needs the internet, which this project's CI does not have.

use std::sync::{Arc, Mutex};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::{Value, json};

use crate::billing::{
    SECRET, enforcing, first_message, new_bot, plan, post_event, signing_available, stripe_mock,
    stripe_signature, subscription_event, unix_now, until_plan, used,
};
use crate::common::*;

/// One request to `/v1/billing/meter_events` as the double saw it.
#[derive(Debug, Clone)]
struct MeterSend {
    idempotency_key: Option<String>,
    form: Vec<(String, String)>,
    /// stripe-mock's answer to it.
    status: u16,
}

impl MeterSend {
    fn field(&self, name: &str) -> &str {
        self.form.iter().find(|(k, _)| k == name).map_or("", |(_, v)| v)
    }
}

#[derive(Default)]
struct DoubleState {
    meter_events: Vec<MeterSend>,
    /// Meter events accepted whose answer is replaced by a 500 (Stripe counted it; Parla
    /// does not know).
    lose_answers: usize,
    /// The status a subscription read answers, with Parla's marks; `None`: stripe-mock's.
    subscription: Option<(String, Value)>,
    /// Subscription reads answered.
    reads: usize,
}

type Shared = Arc<Mutex<DoubleState>>;

/// The double in front of stripe-mock at `mock`; returns its base URL and its state.
async fn stripe_double(mock: String) -> (String, Shared) {
    let state = Shared::default();
    let kept = state.clone();
    let http = reqwest::Client::new();
    let server = HttpServer::new(move || {
        let (state, http, mock) = (kept.clone(), http.clone(), mock.clone());
        App::new().default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
            let (state, http, mock) = (state.clone(), http.clone(), mock.clone());
            async move {
                let method =
                    reqwest::Method::from_bytes(req.method().as_str().as_bytes()).expect("method");
                let mut forward = http.request(method, format!("{mock}{}", req.uri()));
                for name in ["authorization", "stripe-version", "idempotency-key", "content-type"] {
                    if let Some(v) = req.headers().get(name).and_then(|v| v.to_str().ok()) {
                        forward = forward.header(name, v);
                    }
                }
                let answer = forward.body(body.to_vec()).send().await.expect("stripe-mock");
                let status = answer.status().as_u16();
                let mut json: Value = answer.json().await.unwrap_or(Value::Null);
                let path = req.path();
                let mut state = state.lock().expect("state");
                if path == "/v1/billing/meter_events" {
                    state.meter_events.push(MeterSend {
                        idempotency_key: req
                            .headers()
                            .get("idempotency-key")
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned),
                        form: serde_urlencoded::from_bytes(&body).expect("form-encoded"),
                        status,
                    });
                    if status == 200 && state.lose_answers > 0 {
                        state.lose_answers -= 1;
                        return HttpResponse::InternalServerError()
                            .json(json!({"error": {"type": "api_error", "message": "lost"}}));
                    }
                }
                if let (Some(id), Some((status_now, marks))) =
                    (path.strip_prefix("/v1/subscriptions/"), state.subscription.clone())
                    && req.method() == actix_web::http::Method::GET
                    && status == 200
                {
                    state.reads += 1;
                    json["id"] = json!(id);
                    json["status"] = json!(status_now);
                    json["customer"] = json!("cus_parla_1");
                    json["metadata"] = marks;
                    json["items"]["data"][0]["price"]["id"] = json!("price_pro");
                }
                HttpResponse::build(actix_web::http::StatusCode::from_u16(status).expect("status"))
                    .json(json)
            }
        }))
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .expect("bind");
    let addr = server.addrs()[0];
    tokio::spawn(server.run());
    (format!("http://{addr}"), state)
}

/// The units reported, counting each identifier once (as Stripe does).
fn units_reported(state: &Shared) -> u64 {
    let sends = state.lock().expect("state").meter_events.clone();
    let mut seen = std::collections::BTreeMap::new();
    for send in sends.iter().filter(|s| s.status == 200) {
        seen.insert(send.field("identifier").to_owned(), send.field("payload[value]").to_owned());
    }
    seen.values().map(|v| v.parse::<u64>().expect("a whole number")).sum()
}

async fn until_reported(state: &Shared, at_least: u64) -> u64 {
    eventually(async || {
        let units = units_reported(state);
        if units >= at_least { Ok(units) } else { Err(format!("{units} units reported")) }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metered_usage_reaches_stripe_once_per_unit_though_answers_are_lost() {
    if !signing_available() {
        return;
    }
    let Some((_mock, mock)) = stripe_mock().await else { return };
    let (base, double) = stripe_double(mock).await;
    let server = enforcing(&[], move |s| {
        s.billing.stripe_secret_key = "sk_test_parla".into();
        s.billing.stripe_api_base = base;
        s.billing.meter_report_secs = 1;
        let mut pro = plan("pro", "price_pro", &[]);
        pro.meters.insert("conversations_per_month".into(), "parla_conversations".into());
        s.billing.plans[1] = pro;
    })
    .await;
    let owner = register_owner(&server, "owner@meters.example.com").await;
    let (_, me) = server.call("GET", "/api/auth/me", None, Some(&owner)).await;
    let tenant = me["tenant_id"].as_str().expect("tenant").to_owned();
    let bot = new_bot(&server, &owner, "Metered").await;
    // Two conversations on the free plan: not billed by use.
    for _ in 0..2 {
        first_message(&server, &bot, "hello").await.expect("a conversation");
    }
    let active = subscription_event("evt_metered", unix_now() - 5, &tenant, "active");
    assert_eq!(post_event(&server, &active, &stripe_signature(&active, SECRET, None)).await.0, 200);
    until_plan(&server, &owner, "pro").await;

    // Three on Pro, while Stripe's answers to the first three reports are lost (the client
    // retries each report once, so one report goes unacknowledged and is sent again later).
    double.lock().expect("state").lose_answers = 3;
    for _ in 0..3 {
        first_message(&server, &bot, "hello").await.expect("a conversation");
    }
    assert_eq!(until_reported(&double, 3).await, 3, "each conversation once");
    first_message(&server, &bot, "one more").await.expect("a conversation");
    assert_eq!(until_reported(&double, 4).await, 4, "each conversation once");

    let sends = double.lock().expect("state").meter_events.clone();
    assert!(sends.iter().all(|s| s.status == 200), "stripe-mock refused a meter event: {sends:?}");
    let distinct: std::collections::BTreeSet<_> =
        sends.iter().map(|s| s.field("identifier").to_owned()).collect();
    assert!(sends.len() > distinct.len(), "a lost answer made Parla send a report again");
    for send in &sends {
        assert_eq!(send.field("event_name"), "parla_conversations");
        assert_eq!(send.field("payload[stripe_customer_id]"), "cus_parla_1");
        assert_eq!(send.idempotency_key.as_deref(), Some(send.field("identifier")));
        assert!(send.field("identifier").contains(&tenant), "{send:?}");
        // A report sent again is the same report.
        let first = sends.iter().find(|s| s.field("identifier") == send.field("identifier"));
        assert_eq!(first.map(|s| &s.form), Some(&send.form));
    }
    // The workspace's usage counts all six; Stripe bills the four started on Pro.
    let (_, report) = server.call("GET", "/api/billing/usage", None, Some(&owner)).await;
    assert_eq!(used(&report, "conversations_per_month").0, 6, "{report}");
}

/// An invoice event about `sub_parla_1`, shaped as API 2025-03-31 and later have it (its
/// subscription under `parent`).
fn invoice_event(id: &str, kind: &str, created: i64) -> String {
    invoice_event_of("sub_parla_1", "cus_parla_1", id, kind, created)
}

fn invoice_event_of(sub: &str, customer: &str, id: &str, kind: &str, created: i64) -> String {
    json!({
        "id": id,
        "object": "event",
        "type": kind,
        "created": created,
        "data": {"object": {
            "id": format!("in_{id}"),
            "object": "invoice",
            "customer": customer,
            "parent": {
                "type": "subscription_details",
                "subscription_details": {"subscription": sub},
            },
        }},
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoice_events_move_the_plan_through_the_subscription_stripe_reports() {
    if !signing_available() {
        return;
    }
    let Some((_mock, mock)) = stripe_mock().await else { return };
    let (base, double) = stripe_double(mock).await;
    let server = enforcing(&[("bots", 1)], move |s| {
        s.billing.stripe_secret_key = "sk_test_parla".into();
        s.billing.stripe_api_base = base;
        s.billing.grace_days = 3;
    })
    .await;
    let owner = register_owner(&server, "owner@invoices.example.com").await;
    let (_, me) = server.call("GET", "/api/auth/me", None, Some(&owner)).await;
    let tenant = me["tenant_id"].as_str().expect("tenant").to_owned();
    new_bot(&server, &owner, "first").await;
    let marks = json!({"tenant_id": tenant, "kind": "workspace", "plan": "pro"});
    let now = unix_now();
    let send = |kind: &'static str, id: &'static str, status: &'static str| {
        double.lock().expect("state").subscription = Some((status.to_owned(), marks.clone()));
        let event = invoice_event(id, kind, now);
        let signature = stripe_signature(&event, SECRET, None);
        let server = &server;
        async move { post_event(server, &event, &signature).await.0 }
    };

    // Paid: Pro. The event says nothing of the status; Parla reads it from Stripe.
    assert_eq!(send("invoice.paid", "evt_inv_paid", "active").await, 200);
    until_plan(&server, &owner, "pro").await;
    // The renewal fails: past due, Pro kept for the grace period.
    assert_eq!(send("invoice.payment_failed", "evt_inv_failed", "past_due").await, 200);
    let report = until_subscription(&server, &owner, "past_due").await;
    assert_eq!(report["plan"]["id"], "pro", "within the grace period: {report}");
    // The bank asks the customer to authenticate, and Stripe gives up: unpaid, the free plan.
    assert_eq!(send("invoice.payment_action_required", "evt_inv_action", "unpaid").await, 200);
    until_plan(&server, &owner, "free").await;
    let (status, refused) = server.post("/api/bots", json!({"name": "second"}), Some(&owner)).await;
    assert_eq!((status, refused["error"]["code"].as_str()), (402, Some("plan_limit_reached")));
    // Paid again: Pro again, and the grace period starts afresh next time.
    assert_eq!(send("invoice.paid", "evt_inv_paid_again", "active").await, 200);
    let report = until_plan(&server, &owner, "pro").await;
    assert_eq!(report["subscription"]["status"], "active");
    assert!(report["subscription"]["past_due_since"].is_null(), "{report}");
    let (status, _) = server.post("/api/bots", json!({"name": "second"}), Some(&owner)).await;
    assert_eq!(status, 201);
    assert!(
        double.lock().expect("state").reads >= 4,
        "each invoice event re-read the subscription"
    );
}

/// Polls until the workspace's plan subscription has `status`.
async fn until_subscription(server: &TestServer, token: &str, status: &str) -> Value {
    eventually(async || {
        let (_, report) = server.call("GET", "/api/billing/usage", None, Some(token)).await;
        let now = &report["subscription"]["status"];
        if now == status { Ok(report) } else { Err(format!("not {status}: {report}")) }
    })
    .await
}

/// Runs a command of `stripe_test_mode.py` (Stripe's Python library) against Stripe's API at
/// `base` (`None`: Stripe's own) with `key`; its JSON answer.
fn stripe_script(key: &str, base: Option<&str>, command: &str, args: Value) -> Value {
    try_stripe_script(key, base, command, args).unwrap_or_else(|e| panic!("{command}: {e}"))
}

fn try_stripe_script(
    key: &str,
    base: Option<&str>,
    command: &str,
    args: Value,
) -> Result<Value, String> {
    let python = std::env::var("PARLA_TEST_PYTHON").map_err(|e| e.to_string())?;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/integration/stripe_test_mode.py");
    let mut run = std::process::Command::new(python);
    run.arg(script).args([command, &args.to_string()]).env("PARLA_TEST_STRIPE_KEY", key);
    if let Some(base) = base {
        run.env("STRIPE_API_BASE", base);
    }
    let out = run.output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
}

/// The opt-in test's script is kept honest here: every call it makes is one stripe-mock's
/// OpenAPI spec accepts (Stripe's library raises on the 400 it would answer otherwise).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_test_mode_script_makes_only_calls_stripe_accepts() {
    if !signing_available() {
        return;
    }
    let Some((_mock, mock)) = stripe_mock().await else { return };
    let at = |command: &str, args: Value| {
        let mock = mock.clone();
        let command = command.to_owned();
        tokio::task::spawn_blocking(move || {
            stripe_script("sk_test_mock", Some(&mock), &command, args)
        })
    };
    let prices = at("prices", json!({"run": "mock"})).await.expect("prices");
    assert!(prices["price"].as_str().is_some_and(|p| p.starts_with("price_")), "{prices}");
    let args = json!({"tenant": "t1", "failing_tenant": "t2", "price": prices["price"],
                      "metered": prices["metered"]});
    let subs = at("subscribe", args).await.expect("subscribe");
    let sub = json!({"subscription": subs["subscription"], "customer": subs["customer"]});
    assert_eq!(at("status", sub.clone()).await.expect("status")["status"], "active");
    assert!(at("pay", sub).await.is_ok());
    let usage =
        json!({"meter": prices["meter"], "customer": subs["customer"], "start": unix_now()});
    assert!(at("usage", usage).await.expect("usage")["total"].is_number());
    let clock = json!({"clock": subs["clock"], "days": 2});
    assert!(at("advance", clock).await.is_ok());
    let all = json!({"clock": subs["clock"], "meter": prices["meter"],
                     "subscription": subs["subscription"]});
    assert!(at("cleanup", all).await.is_ok());
}

/// Deletes what the opt-in test made at Stripe, however it ends.
struct Cleanup {
    key: String,
    args: Value,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if self.args["clock"].is_string()
            && let Err(e) = try_stripe_script(&self.key, None, "cleanup", self.args.clone())
        {
            println!("cleaning up at Stripe failed (delete the test clock by hand): {e}");
        }
    }
}

/// Against Stripe's test mode (`PARLA_TEST_STRIPE_KEY=sk_test_…`; needs the internet):
/// subscriptions Parla reads as Stripe writes them, usage on a real meter counted once, a
/// failing card on a test clock moving a workspace to `past_due` and back when paid, and a
/// real Checkout page. Webhooks cannot reach this machine, so the events are Parla-signed
/// stand-ins naming the real objects: Parla acts on what it re-reads from Stripe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn against_stripe_test_mode_when_a_key_is_given() {
    let Ok(key) = std::env::var("PARLA_TEST_STRIPE_KEY") else {
        println!("skipped: PARLA_TEST_STRIPE_KEY (a Stripe test-mode key; needs the internet)");
        return;
    };
    if !signing_available() {
        return;
    }
    let script = |command: &'static str, args: Value| {
        let key = key.clone();
        tokio::task::spawn_blocking(move || stripe_script(&key, None, command, args))
    };
    let run = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    let prices = script("prices", json!({"run": run})).await.expect("prices");
    let mut cleanup = Cleanup { key: key.clone(), args: json!({"meter": prices["meter"]}) };
    let (price, event_name) = (
        prices["price"].as_str().expect("price").to_owned(),
        prices["event_name"].as_str().expect("event").to_owned(),
    );
    let secret = key.clone();
    let server = enforcing(&[("bots", 1)], move |s| {
        s.billing.stripe_secret_key = secret;
        s.billing.meter_report_secs = 2;
        let mut pro = plan("pro", &price, &[]);
        pro.meters.insert("conversations_per_month".into(), event_name);
        s.billing.plans[1] = pro;
    })
    .await;
    let tenant_of = async |token: &str| {
        let (_, me) = server.call("GET", "/api/auth/me", None, Some(token)).await;
        me["tenant_id"].as_str().expect("tenant").to_owned()
    };
    let paying = register_owner(&server, "paying@stripe-test.example.com").await;
    let failing = register_owner(&server, "failing@stripe-test.example.com").await;
    let args = json!({"tenant": tenant_of(&paying).await, "failing_tenant": tenant_of(&failing).await,
                      "price": prices["price"], "metered": prices["metered"]});
    let subs = script("subscribe", args).await.expect("subscribe");
    cleanup.args["clock"] = subs["clock"].clone();
    cleanup.args["subscription"] = subs["subscription"].clone();
    let text = |name: &str| subs[name].as_str().expect("id").to_owned();
    let signed = async |sub: &str, customer: &str, kind: &str| {
        let id = format!("evt_{}", uuid::Uuid::new_v4().simple());
        let event = invoice_event_of(sub, customer, &id, kind, unix_now());
        post_event(&server, &event, &stripe_signature(&event, SECRET, None)).await.0
    };

    // Subscribed: Parla reads both subscriptions from Stripe.
    assert_eq!(signed(&text("subscription"), &text("customer"), "invoice.paid").await, 200);
    until_plan(&server, &paying, "pro").await;
    let (sub, cus) = (text("failing_subscription"), text("failing_customer"));
    assert_eq!(signed(&sub, &cus, "invoice.paid").await, 200);
    assert_eq!(until_subscription(&server, &failing, "trialing").await["plan"]["id"], "pro");

    // Usage on the real meter, each conversation once.
    let since = unix_now() - 60;
    let bot = new_bot(&server, &paying, "Metered").await;
    for _ in 0..3 {
        first_message(&server, &bot, "hello").await.expect("a conversation");
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    let total = loop {
        let args = json!({"meter": prices["meter"], "customer": subs["customer"], "start": since});
        let total = script("usage", args).await.expect("usage")["total"].as_f64().unwrap_or(0.0);
        if total >= 3.0 || std::time::Instant::now() > deadline {
            break total;
        }
        tokio::time::sleep(std::time::Duration::from_secs(10)).await;
    };
    assert_eq!(total, 3.0, "Stripe's meter summary");

    // The trial ends on the test clock and the card fails: past due, then paid.
    script("advance", json!({"clock": subs["clock"], "days": 2})).await.expect("advance");
    let status = json!({"subscription": sub});
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while script("status", status.clone()).await.expect("status")["status"] != "past_due" {
        assert!(std::time::Instant::now() < deadline, "Stripe never made it past due");
        tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    }
    assert_eq!(signed(&sub, &cus, "invoice.payment_failed").await, 200);
    until_subscription(&server, &failing, "past_due").await;
    let paid = script("pay", json!({"customer": cus, "subscription": sub})).await.expect("pay");
    assert_eq!(paid["status"], "active");
    assert_eq!(signed(&sub, &cus, "invoice.paid").await, 200);
    until_subscription(&server, &failing, "active").await;

    // A real Checkout page.
    let (status, body) =
        server.post("/api/billing/checkout", json!({"plan": "pro"}), Some(&failing)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["url"].as_str().is_some_and(|u| u.starts_with("https://checkout.stripe.com/")));
}
