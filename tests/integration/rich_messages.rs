//! Rich messages through the public doors: an intent whose response is a carousel or a form
//! (admin API), what a visitor's socket receives and what is stored, postbacks, and form
//! submissions merged into the conversation's user data.

use crate::common::*;
use serde_json::{Value, json};

/// A published bot with a carousel intent, a plan intent the carousel's button names, and a
/// form intent; returns its id.
async fn shop_bot(server: &TestServer, jwt: &str) -> String {
    let id = published_bot(
        server,
        jwt,
        json!({"name": "Shop", "category": "SALES",
               "config": {"fallback_message": "Sorry, I did not get that."}}),
    )
    .await;
    for intent in [
        json!({"name": "plans", "examples": ["show me your plans", "what plans do you have"],
               "response": {"text": "Here are our plans.", "content": carousel()}}),
        json!({"name": "plan_pro", "examples": ["tell me about the professional tier"],
               "response": {"text": "Pro costs 20 euro a month."}}),
        json!({"name": "contact", "examples": ["I want to be contacted", "call me back"],
               "response": {"text": "Leave us your details.", "content": lead_form()}}),
    ] {
        let (status, body) =
            server.post(&format!("/api/bots/{id}/intents"), intent, Some(jwt)).await;
        assert_eq!(status, 201, "{body}");
    }
    id
}

fn carousel() -> Value {
    json!({"type": "carousel", "cards": [
        {"title": "Basic", "subtitle": "5 euro", "image_url": "https://example.com/basic.png",
         "buttons": [{"label": "Choose Basic", "payload": "plan_basic"}]},
        {"title": "Pro", "subtitle": "20 euro",
         "buttons": [{"label": "Choose Pro", "payload": "plan_pro"},
                     {"label": "Compare", "url": "https://example.com/compare"}]}
    ]})
}

fn lead_form() -> Value {
    json!({"type": "form", "form_id": "lead", "submit_label": "Send", "fields": [
        {"name": "email", "label": "Email", "input": "email", "required": true},
        {"name": "name", "label": "Name", "input": "text"}
    ]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_intent_answers_with_a_carousel_and_a_button_sends_a_postback() {
    let server = start().await;
    let jwt = register_owner(&server, "shop@example.com").await;
    let bot = shop_bot(&server, &jwt).await;
    let mut c = server.client().await;
    let welcome = c.hello(&bot).await;

    let ex = c.exchange("q1", "show me your plans").await;
    assert_eq!(ex.reply.end["kind"], "carousel", "{}", ex.reply.end);
    assert_eq!(ex.reply.end["content"], carousel(), "stream_end carries the content");
    assert_eq!(ex.reply.end["text"], "Here are our plans.", "text stays the fallback");

    // The button's payload names an intent: that intent answers, whatever its phrases.
    c.send(json!({"type": "message", "client_msg_id": "b1", "text": "Choose Pro",
                  "postback": "plan_pro"}))
        .await;
    let echo = c.expect("message").await;
    assert_eq!(
        (echo["client_msg_id"].as_str(), echo["text"].as_str()),
        (Some("b1"), Some("Choose Pro"))
    );
    let reply = c.read_stream().await;
    assert_eq!(reply.tokens, "Pro costs 20 euro a month.");
    // A retry of the same postback is acknowledged with the original, not stored twice.
    c.send(json!({"type": "message", "client_msg_id": "b1", "text": "Choose Pro",
                  "postback": "plan_pro"}))
        .await;
    let again = c.expect("message").await;
    assert_eq!(again["seq"], echo["seq"]);

    // Stored: a resuming socket gets the carousel back, with its content.
    let mut r = server.client().await;
    r.send(json!({"type": "hello", "bot_id": bot, "conversation_id": welcome["conversation_id"],
                  "resume_token": welcome["resume_token"], "last_seq": 0}))
        .await;
    r.expect("welcome").await;
    let replayed: Vec<Value> = {
        let mut v = Vec::new();
        for _ in 0..4 {
            v.push(r.expect("message").await);
        }
        v
    };
    assert_eq!(replayed[1]["kind"], "carousel");
    assert_eq!(replayed[1]["content"], carousel());
    assert!(replayed[0].get("content").is_none(), "a text message has no content");

    // The admin API shows the stored message's content and the visitor's postback.
    let conversation = welcome["conversation_id"].as_str().expect("id");
    let (status, detail) =
        server.call("GET", &format!("/api/conversations/{conversation}"), None, Some(&jwt)).await;
    assert_eq!(status, 200, "{detail}");
    let messages = detail["messages"].as_array().expect("messages");
    assert_eq!(messages[1]["content"]["type"], "carousel");
    assert_eq!(messages[2]["postback"], "plan_pro");
    assert_eq!(messages[3]["intent"], "plan_pro");
    assert_eq!(messages.len(), 4, "the retried postback was not stored twice");

    // A payload the bot never offered here does not pick its intent (nor fire its actions):
    // it is read as its text.
    c.send(json!({"type": "message", "client_msg_id": "b2", "text": "zzz",
                  "postback": "contact"}))
        .await;
    c.expect("message").await;
    let reply = c.read_stream().await;
    assert_eq!(reply.tokens, "Sorry, I did not get that.");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submitted_form_lands_in_the_conversations_user_data() {
    let server = start().await;
    let jwt = register_owner(&server, "lead@example.com").await;
    let bot = shop_bot(&server, &jwt).await;
    let mut c = server.client().await;
    let welcome = c.hello(&bot).await;
    let conversation = welcome["conversation_id"].as_str().expect("id").to_owned();
    let detail_path = format!("/api/conversations/{conversation}");

    let ex = c.exchange("q1", "please call me back").await;
    assert_eq!(ex.reply.end["kind"], "form");
    assert_eq!(ex.reply.end["content"]["form_id"], "lead");
    let (_, detail) = server.call("GET", &detail_path, None, Some(&jwt)).await;
    assert_eq!(detail["user_data"], json!({}), "nothing collected yet");

    let form = |id: &str, values: Value| {
        json!({"type": "message", "client_msg_id": id, "text": "my details",
               "form": {"form_id": "lead", "values": values}})
    };
    // Refusals, each with its code and the client_msg_id, nothing stored.
    for (id, frame, code) in [
        ("f-missing", form("f-missing", json!({"name": "Ada"})), "invalid_form"),
        ("f-email", form("f-email", json!({"email": "not an email"})), "invalid_form"),
        ("f-extra", form("f-extra", json!({"email": "a@b.it", "admin": "yes"})), "invalid_form"),
        (
            "f-long",
            form("f-long", json!({"email": "a@b.it", "name": "x".repeat(1001)})),
            "invalid_form",
        ),
        (
            "f-unknown",
            json!({"type": "message", "client_msg_id": "f-unknown", "text": "x",
                   "form": {"form_id": "nope", "values": {"email": "a@b.it"}}}),
            "invalid_form",
        ),
        (
            "p-long",
            json!({"type": "message", "client_msg_id": "p-long", "text": "x",
                   "postback": "p".repeat(1001)}),
            "invalid_postback",
        ),
    ] {
        c.send(frame).await;
        let error = c.expect("error").await;
        assert_eq!(
            (error["code"].as_str(), error["client_msg_id"].as_str()),
            (Some(code), Some(id)),
            "{error}"
        );
    }
    c.send(json!({"type": "message", "client_msg_id": "bad", "text": "x",
                  "form": {"form_id": "lead", "values": "not an object"}}))
        .await;
    assert_eq!(c.expect("error").await["code"], "malformed_frame");
    let (_, detail) = server.call("GET", &detail_path, None, Some(&jwt)).await;
    assert_eq!(detail["user_data"], json!({}), "refused forms collect nothing");
    assert_eq!(detail["messages"].as_array().map(Vec::len), Some(2), "nor are they stored");

    c.send(form("f1", json!({"email": "ada@example.com", "name": "Ada"}))).await;
    let echo = c.expect("message").await;
    assert_eq!(echo["client_msg_id"], "f1");
    let thanks = c.expect("message").await;
    assert_eq!(
        (thanks["sender"].as_str(), thanks["text"].as_str()),
        (Some("bot"), Some("Thank you, we have received your details."))
    );
    // A second submission merges: the email changes, the name stays.
    c.send(form("f2", json!({"email": "ada@lovelace.org"}))).await;
    c.expect("message").await;
    c.expect("message").await;
    // A stale resend of the first (another tab's outbox), even with other values: acknowledged
    // with the stored message, nothing merged again.
    c.send(form("f1", json!({"email": "stale@example.com", "name": "Old"}))).await;
    let ack = c.expect("message").await;
    assert_eq!((ack["client_msg_id"].as_str(), ack["seq"].as_u64()), (Some("f1"), Some(3)));
    // Details left after the conversation was resolved open it again (the inbox shows it).
    let resolve = json!({"resolution": "RESOLVED"});
    let (status, resolved) =
        server.post(&format!("{detail_path}/resolve"), resolve, Some(&jwt)).await;
    assert_eq!((status, resolved["status"].as_str()), (200, Some("RESOLVED")), "{resolved}");
    c.send(form("f3", json!({"email": "ada@lovelace.org", "name": "Ada"}))).await;
    c.expect("message").await;
    c.expect("message").await;
    let (_, reopened) = server.call("GET", &detail_path, None, Some(&jwt)).await;
    assert_eq!(reopened["conversation"]["status"], "OPEN", "{reopened}");

    let (status, detail) = server.call("GET", &detail_path, None, Some(&jwt)).await;
    assert_eq!(status, 200, "{detail}");
    assert_eq!(detail["user_data"], json!({"email": "ada@lovelace.org", "name": "Ada"}));
    let stored = &detail["messages"][2];
    assert_eq!(stored["form"]["values"]["email"], "ada@example.com", "{stored}");

    // Another workspace cannot read it.
    let other = register_owner(&server, "other@example.com").await;
    let (status, body) = server.call("GET", &detail_path, None, Some(&other)).await;
    assert_eq!((status, error_code(&body)), (404, "not_found"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_refuses_rich_responses_that_are_unsafe_oversized_or_ambiguous() {
    let server = start().await;
    let jwt = register_owner(&server, "rules@example.com").await;
    let bot = shop_bot(&server, &jwt).await;
    let path = format!("/api/bots/{bot}/intents");
    let intent = |content: Value| json!({"name": "x", "examples": ["x"], "response": {"text": "x", "content": content}});
    let script = json!({"type": "card", "title": "Hi",
                        "buttons": [{"label": "Go", "url": "javascript:alert(1)"}]});
    let (status, body) = server.post(&path, intent(script), Some(&jwt)).await;
    assert_eq!((status, error_code(&body)), (422, "validation_failed"), "{body}");
    assert_eq!(body["error"]["details"]["field"], "response.content.buttons[0].url", "{body}");

    let card = json!({"title": "c", "buttons": []});
    let too_many = json!({"type": "carousel", "cards": vec![card; 11]});
    let (status, body) = server.post(&path, intent(too_many), Some(&jwt)).await;
    assert_eq!(
        (status, body["error"]["details"]["field"].as_str()),
        (422, Some("response.content.cards")),
        "{body}"
    );

    let image = json!({"type": "image", "url": "/relative.png"});
    let (status, body) = server.post(&path, intent(image), Some(&jwt)).await;
    assert_eq!(
        (status, body["error"]["details"]["field"].as_str()),
        (422, Some("response.content.url")),
        "{body}"
    );

    let (status, body) = server.post(&path, intent(json!({"type": "video"})), Some(&jwt)).await;
    assert_eq!((status, error_code(&body)), (400, "malformed_body"), "unknown type: {body}");

    let (status, body) = server.post(&path, intent(lead_form()), Some(&jwt)).await;
    assert_eq!((status, error_code(&body)), (409, "form_id_taken"), "{body}");

    let (status, body) = server
        .post(
            &path,
            intent(json!({"type": "image", "url": "https://example.com/a.png"})),
            Some(&jwt),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["response"]["content"]["type"], "image");
}
