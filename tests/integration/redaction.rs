//! PII redaction through the public doors: with `privacy.redact_transcripts` a visitor's email,
//! phone, card and IBAN are masked before the message is stored (the echo, the transcript and
//! the data dir never hold them; a Luhn-invalid number is left alone); with `privacy.redact_llm`
//! alone the LLM provider gets the masked text while the transcript keeps what was written.

use crate::common::*;
use crate::llm::{ask, fake_llm, server_with_llm};
use serde_json::json;

const SAID: &str = "I am mario.rossi@example.com, card 4111 1111 1111 1111, IBAN IT60 X054 2811 \
                    1010 0000 0123 456, phone +39 333 123 4567, order 4111 1111 1111 1112";
const MASKED: &str =
    "I am [email], card [card], IBAN [iban], phone [phone], order 4111 1111 1111 1112";

async fn privacy(server: &TestServer, owner: &str, settings: serde_json::Value) {
    let body = json!({"privacy": settings}).to_string();
    let (status, workspace) =
        server.call("PATCH", "/api/workspace", Some(&body), Some(owner)).await;
    assert_eq!(status, 200, "{workspace}");
    assert_eq!(workspace["privacy"], settings);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workspace_that_masks_transcripts_never_stores_the_clear_text() {
    let server = start().await;
    let owner = register_owner(&server, "owner@redact.example.com").await;
    privacy(&server, &owner, json!({"redact_transcripts": true, "redact_llm": false})).await;
    let bot = published_bot(&server, &owner, json!({"name": "Masked"})).await;
    let mut client = server.client().await;
    let welcome = client.hello(&bot).await;
    let conversation = welcome["conversation_id"].as_str().expect("id").to_owned();
    let exchange = client.exchange("r1", SAID).await;
    assert_eq!(exchange.echo["text"], MASKED, "the echo is what was stored");
    let (_, detail) =
        server.call("GET", &format!("/api/conversations/{conversation}"), None, Some(&owner)).await;
    assert_eq!(detail["messages"][0]["text"], MASKED, "{detail}");
    for needle in ["mario.rossi", "4111 1111 1111 1111,", "X054", "333 123 4567"] {
        assert!(!detail.to_string().contains(needle), "{needle} in {detail}");
    }
    // Nowhere on disk either (nothing to erase: it was never written).
    let disk = std::fs::read(server.dir.path().join("parla.redb")).expect("store file");
    assert!(!disk.windows(11).any(|w| w == b"mario.rossi"), "the clear text is in parla.redb");
    // Another workspace (the default) stores what was written.
    let other = register_owner(&server, "other@redact.example.com").await;
    let bot = published_bot(&server, &other, json!({"name": "Clear"})).await;
    let mut client = server.client().await;
    client.hello(&bot).await;
    assert_eq!(client.exchange("c1", SAID).await.echo["text"], SAID);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workspace_that_masks_for_the_llm_keeps_the_transcript_whole() {
    let (base, seen) = fake_llm().await;
    let server = server_with_llm(&base).await;
    let owner = register_owner(&server, "owner@redact-llm.example.com").await;
    privacy(&server, &owner, json!({"redact_transcripts": false, "redact_llm": true})).await;
    let bot = published_bot(&server, &owner, json!({"name": "Careful"})).await;
    let mut client = server.client().await;
    client.hello(&bot).await;
    let (_, end) = ask(&mut client, "l1", SAID).await;
    assert!(end["stream_id"].is_string());
    let requests = seen.requests.lock().expect("seen").clone();
    let prompt = requests.last().expect("the LLM was asked").1.to_string();
    assert!(prompt.contains("I am [email], card [card]"), "{prompt}");
    assert!(!prompt.contains("mario.rossi") && !prompt.contains("X054"), "{prompt}");
    let (_, list) =
        server.call("GET", &format!("/api/bots/{bot}/conversations"), None, Some(&owner)).await;
    let id = list["data"][0]["id"].as_str().expect("conversation");
    let (_, detail) =
        server.call("GET", &format!("/api/conversations/{id}"), None, Some(&owner)).await;
    assert_eq!(detail["messages"][0]["text"], SAID, "the transcript keeps what was written");
}
