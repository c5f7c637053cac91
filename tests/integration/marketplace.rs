//! The marketplace end to end through the public door: a creator onboards payouts and lists a
//! bot (prices created at Stripe's own mock, which refuses requests its spec does not allow),
//! anyone browses it without signing in, a buyer subscribes (Checkout with the creator's
//! destination and the platform's fee), Stripe's events — signed with Stripe's own Python
//! library — install it in the buyer's workspace, where it answers with the creator's intents
//! (and follows their changes), pauses when unpaid, and answers again when paid.

use crate::billing::{
    SECRET, post_event, signing_available, stripe_mock, stripe_signature, subscription_event_of,
    unix_now,
};
use crate::common::*;
use serde_json::{Value, json};

fn subscription_event(id: &str, created: i64, buyer: &str, listing: &str, status: &str) -> String {
    let marks = json!({"tenant_id": buyer, "kind": "bot", "listing": listing});
    subscription_event_of("sub_market_1", id, created, marks, status)
}

async fn tenant_of(server: &TestServer, token: &str) -> String {
    let (_, me) = server.call("GET", "/api/auth/me", None, Some(token)).await;
    me["tenant_id"].as_str().expect("tenant").to_owned()
}

/// The visitor's answer from `bot`: the streamed reply's text, or the error frame's code.
async fn ask(server: &TestServer, bot: &str, text: &str) -> Result<String, String> {
    let mut client = Client::connect(server.addr).await;
    client.send(json!({"type": "hello", "bot_id": bot})).await;
    let (first, _) = client.until_either("welcome", "error").await;
    if first["type"] == "error" {
        return Err(first["code"].as_str().unwrap_or_default().to_owned());
    }
    client.say("q1", text).await;
    let echo = client.expect("message").await;
    assert_eq!(echo["client_msg_id"], "q1", "the visitor's message is kept");
    let (next, _) = client.until_either("stream_start", "error").await;
    if next["type"] == "error" {
        return Err(next["code"].as_str().unwrap_or_default().to_owned());
    }
    let mut tokens = String::new();
    loop {
        let frame = client.recv().await;
        match frame["type"].as_str() {
            Some("token") => tokens.push_str(frame["delta"].as_str().unwrap_or_default()),
            Some("stream_end") => return Ok(tokens),
            _ => {}
        }
    }
}

/// Polls `check` until it is `Some` (events are applied from a queue).
async fn until<T>(mut check: impl AsyncFnMut() -> Option<T>) -> T {
    eventually(async || check().await.ok_or_else(|| "not yet".to_owned())).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_is_listed_bought_installed_paused_when_unpaid_and_back_when_paid() {
    if !signing_available() {
        return;
    }
    let Some((_mock, base)) = stripe_mock().await else { return };
    let server = start_with(move |s| {
        s.billing.stripe_secret_key = "sk_test_parla".into();
        s.billing.stripe_api_base = base;
        s.billing.stripe_webhook_secrets = vec![SECRET.into()];
    })
    .await;
    let now = unix_now();

    // The creator: a bot with an intent, published.
    let creator = register_owner(&server, "creator@market.example.com").await;
    let creator_tenant = tenant_of(&server, &creator).await;
    let (_, bot) = server
        .post("/api/bots", json!({"name": "Dentist helper", "language": "en"}), Some(&creator))
        .await;
    let bot = bot["id"].as_str().expect("bot").to_owned();
    let intent = json!({"name": "hours", "examples": ["when do you open", "opening hours"], "response": {"text": "We open at 9."}});
    let (status, made) =
        server.post(&format!("/api/bots/{bot}/intents"), intent, Some(&creator)).await;
    assert_eq!(status, 201, "{made}");
    let intent_id = made["id"].as_str().expect("intent").to_owned();
    assert_eq!(
        server.call("POST", &format!("/api/bots/{bot}/publish"), None, Some(&creator)).await.0,
        200
    );

    // Listing publicly needs payouts onboarding first.
    let listing = json!({
        "public": true,
        "description": "Answers a dental practice's patients",
        "prices": [{"amount": 1900, "currency": "EUR", "interval": "month"}],
        "trial_days": 7,
    });
    let path = format!("/api/bots/{bot}/listing");
    let (status, body) =
        server.call("PUT", &path, Some(&listing.to_string()), Some(&creator)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("payouts_not_ready")),
        "{body}"
    );
    let (status, body) = server.post("/api/marketplace/connect", json!({}), Some(&creator)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["url"].as_str().is_some_and(|u| u.starts_with("https://")), "{body}");
    let (_, connect) = server.call("GET", "/api/marketplace/connect", None, Some(&creator)).await;
    let account = connect["account"]["id"].as_str().expect("account").to_owned();
    // Stripe says onboarding is done.
    let updated = json!({
        "id": "evt_account", "object": "event", "type": "account.updated", "created": now - 5,
        "data": {"object": {"id": account, "object": "account", "charges_enabled": true,
            "payouts_enabled": true, "details_submitted": true, "metadata": {"tenant_id": creator_tenant}}},
    })
    .to_string();
    assert_eq!(
        post_event(&server, &updated, &stripe_signature(&updated, SECRET, None)).await.0,
        200
    );
    let listed = until(async || {
        let (status, body) =
            server.call("PUT", &path, Some(&listing.to_string()), Some(&creator)).await;
        (status == 200).then_some(body)
    })
    .await;
    let price = listed["prices"][0]["id"].as_str().expect("a Stripe price").to_owned();
    assert_eq!(listed["prices"][0]["currency"], "eur");

    // Anyone browses, without signing in.
    let (status, found) = server.call("GET", "/api/marketplace/bots?q=dental", None, None).await;
    assert_eq!(status, 200, "{found}");
    let hit = found["data"]
        .as_array()
        .expect("data")
        .iter()
        .find(|b| b["bot_id"] == bot.as_str())
        .cloned();
    let hit: Value = hit.expect("listed");
    assert_eq!((hit["demo"].as_bool(), hit["installs"].as_u64()), (Some(true), Some(0)));
    let (_, none) = server.call("GET", "/api/marketplace/bots?q=plumber", None, None).await;
    assert!(none["data"].as_array().expect("data").iter().all(|b| b["bot_id"] != bot.as_str()));
    let (status, one) =
        server.call("GET", &format!("/api/marketplace/bots/{bot}"), None, None).await;
    assert_eq!((status, one["title"].as_str()), (200, Some("Dentist helper")));
    assert_eq!(server.call("GET", "/api/marketplace/bots/nope", None, None).await.0, 404);

    // The buyer subscribes: a Checkout for the creator's price (Stripe's mock accepts it).
    let buyer = register_owner(&server, "buyer@clinic.example.com").await;
    let buyer_tenant = tenant_of(&server, &buyer).await;
    let (status, body) = server
        .post("/api/marketplace/subscribe", json!({"bot_id": bot, "price_id": price}), Some(&buyer))
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["url"].as_str().is_some_and(|u| u.starts_with("https://checkout.stripe.com/")));
    let (status, body) = server
        .post(
            "/api/marketplace/subscribe",
            json!({"bot_id": bot, "price_id": "price_other"}),
            Some(&buyer),
        )
        .await;
    assert_eq!((status, body["error"]["details"]["field"].as_str()), (422, Some("price_id")));
    let (status, body) = server
        .post(
            "/api/marketplace/subscribe",
            json!({"bot_id": bot, "price_id": price}),
            Some(&creator),
        )
        .await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("own_bot")));
    // Nothing is installed on the redirect: only Stripe's event does it.
    let (_, bots) = server.call("GET", "/api/bots", None, Some(&buyer)).await;
    assert_eq!(bots["data"].as_array().expect("data").len(), 0, "{bots}");

    // Stripe: the subscription started (trialing) — the bot is installed in the buyer's workspace.
    let started = subscription_event("evt_m1", now - 60, &buyer_tenant, &bot, "trialing");
    assert_eq!(
        post_event(&server, &started, &stripe_signature(&started, SECRET, None)).await.0,
        200
    );
    let installed = until(async || {
        let (_, bots) = server.call("GET", "/api/bots", None, Some(&buyer)).await;
        bots["data"].as_array().and_then(|b| b.first().cloned())
    })
    .await;
    let installed_id = installed["id"].as_str().expect("id").to_owned();
    assert_eq!(installed["installed_from"]["bot_id"], bot.as_str());
    assert_eq!(installed["installed_from"]["subscription"], "sub_market_1");
    // Applied again (a redelivery under another id): still one install.
    let again = subscription_event("evt_m1_again", now - 60, &buyer_tenant, &bot, "trialing");
    assert_eq!(post_event(&server, &again, &stripe_signature(&again, SECRET, None)).await.0, 200);

    // It answers the buyer's visitors with the creator's intent.
    assert_eq!(ask(&server, &installed_id, "when do you open").await, Ok("We open at 9.".into()));
    // The creator changes the answer: the installed bot follows.
    let change = json!({"response": {"text": "We open at 8."}}).to_string();
    let (status, _) = server
        .call(
            "PATCH",
            &format!("/api/bots/{bot}/intents/{intent_id}"),
            Some(&change),
            Some(&creator),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(ask(&server, &installed_id, "when do you open").await, Ok("We open at 8.".into()));

    // Unpaid: the visitor's message is kept and they are told; a new visitor is refused.
    let unpaid = subscription_event("evt_m2", now - 30, &buyer_tenant, &bot, "unpaid");
    assert_eq!(post_event(&server, &unpaid, &stripe_signature(&unpaid, SECRET, None)).await.0, 200);
    until(async || {
        let answer = ask(&server, &installed_id, "when do you open").await;
        (answer == Err("bot_unavailable".into())).then_some(())
    })
    .await;
    // Paid again: it answers.
    let paid = subscription_event("evt_m3", now - 10, &buyer_tenant, &bot, "active");
    assert_eq!(post_event(&server, &paid, &stripe_signature(&paid, SECRET, None)).await.0, 200);
    until(async || ask(&server, &installed_id, "when do you open").await.ok()).await;

    let (_, one) = server.call("GET", &format!("/api/marketplace/bots/{bot}"), None, None).await;
    assert_eq!(one["installs"], 1, "{one}");
    let (status, subs) = server.call("GET", "/api/subscriptions", None, Some(&buyer)).await;
    assert_eq!(status, 200);
    assert_eq!(subs["data"][0]["kind"], "bot");
    assert_eq!(subs["data"][0]["installed"], installed_id.as_str());
    // Cancel at the period's end (asked of Stripe's mock); another workspace cannot.
    let cancel = "/api/subscriptions/sub_market_1/cancel";
    let (status, body) = server.call("POST", cancel, Some("{}"), Some(&buyer)).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(server.call("POST", cancel, Some("{}"), Some(&creator)).await.0, 404);
}
