//! Per visitor message: sentiment (offline, English and Italian) and intent with confidence are
//! stored on the message, the conversation's sentiment is their mean, and a request for a
//! person or repeated misunderstanding marks the conversation ESCALATED — visible and
//! filterable through the admin API.

use crate::common::*;
use serde_json::{Value, json};

async fn setup(server: &TestServer) -> (String, String) {
    let jwt = register_owner(server, "esc@example.com").await;
    let (_, bot) = server
        .post(
            "/api/bots",
            json!({"name": "esc", "config": {"fallback_message": "Sorry?"}}),
            Some(&jwt),
        )
        .await;
    let bot = bot["id"].as_str().expect("id").to_owned();
    server
        .post(
            &format!("/api/bots/{bot}/intents"),
            json!({"name": "hours", "examples": ["when are you open"], "response": {"text": "9 to 5."}}),
            Some(&jwt),
        )
        .await;
    server.call("POST", &format!("/api/bots/{bot}/publish"), None, Some(&jwt)).await;
    (jwt, bot)
}

async fn conversation(server: &TestServer, jwt: &str, id: &str) -> Value {
    server.call("GET", &format!("/api/conversations/{id}"), None, Some(jwt)).await.1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_carry_sentiment_and_intent_and_a_request_for_a_person_escalates() {
    let server = start().await;
    let (jwt, bot) = setup(&server).await;
    let mut client = server.client().await;
    let welcome = client.hello(&bot).await;
    let id = welcome["conversation_id"].as_str().expect("id").to_owned();

    client.exchange("a", "great, thanks! when are you open?").await;
    client.exchange("b", "your delivery was terrible and late").await;
    let detail = conversation(&server, &jwt, &id).await;
    let visitor: Vec<&Value> = detail["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter(|m| m["sender"] == "user")
        .collect();
    assert!(visitor[0]["sentiment"].as_f64().is_some_and(|s| s > 0.3), "{}", visitor[0]);
    assert_eq!(visitor[0]["intent"], "hours");
    assert!(visitor[0]["confidence"].as_f64().is_some_and(|c| c > 0.45));
    assert!(visitor[1]["sentiment"].as_f64().is_some_and(|s| s < -0.3), "{}", visitor[1]);
    let mean = detail["conversation"]["sentiment"].as_f64().expect("mean");
    let expected = (visitor[0]["sentiment"].as_f64().unwrap_or(0.0)
        + visitor[1]["sentiment"].as_f64().unwrap_or(0.0))
        / 2.0;
    assert!((mean - expected).abs() < 1e-4, "{mean} vs {expected}");
    assert_eq!(detail["conversation"]["status"], "OPEN");

    client.say("c", "voglio parlare con un operatore").await;
    client.expect("message").await;
    // Nobody of the team is online: the visitor is told (in the bot's language), then the bot
    // answers as before.
    let notice = client.expect("message").await;
    assert_eq!(notice["sender"], "bot");
    assert!(notice["text"].as_str().is_some_and(|t| t.contains("online")), "{notice}");
    client.read_stream().await;
    assert_eq!(conversation(&server, &jwt, &id).await["conversation"]["status"], "ESCALATED");
    let (_, escalated) = server
        .call("GET", &format!("/api/bots/{bot}/conversations?status=ESCALATED"), None, Some(&jwt))
        .await;
    assert_eq!(escalated["data"].as_array().map(Vec::len), Some(1));
    assert_eq!(escalated["data"][0]["id"], id.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_answers_in_a_row_not_understood_escalate() {
    let server = start().await;
    let (jwt, bot) = setup(&server).await;
    let mut client = server.client().await;
    let id = client.hello(&bot).await["conversation_id"].as_str().expect("id").to_owned();
    let first = client.exchange("x1", "zxq wvvb").await;
    assert_eq!(first.reply.tokens, "Sorry?");
    client.exchange("x2", "when are you open").await; // Understood: the count restarts.
    client.exchange("x3", "plokk zzzt").await;
    assert_eq!(conversation(&server, &jwt, &id).await["conversation"]["status"], "OPEN");
    client.exchange("x4", "qwfp arst").await;
    let notice = client.expect("message").await;
    assert!(notice["text"].as_str().is_some_and(|t| t.contains("online")), "{notice}");
    assert_eq!(conversation(&server, &jwt, &id).await["conversation"]["status"], "ESCALATED");
}
