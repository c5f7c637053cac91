//! Presence, routing of escalated conversations to online agents, and what a visitor hears
//! when nobody can answer — through the agent socket, the REST API and the widget socket.

use std::time::Duration;

use crate::common::*;
use serde_json::{Value, json};

async fn workspace(server: &TestServer) -> (String, String, String, String) {
    let owner = register_owner(server, "owner@routing.example.com").await;
    let ann = invite_and_join(server, &owner, "ann@routing.example.com", "agent").await;
    let bob = invite_and_join(server, &owner, "bob@routing.example.com", "agent").await;
    let bot = published_bot(server, &owner, json!({"name": "routing"})).await;
    (owner, ann, bob, bot)
}

async fn set_agents(server: &TestServer, owner: &str, agents: Value) -> Value {
    let (status, body) = server
        .call("PATCH", "/api/workspace", Some(&json!({"agents": agents}).to_string()), Some(owner))
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn me(server: &TestServer, jwt: &str) -> String {
    let (_, me) = server.call("GET", "/api/auth/me", None, Some(jwt)).await;
    me["id"].as_str().expect("id").to_owned()
}

async fn presence_of(server: &TestServer, jwt: &str, id: &str) -> String {
    let (_, agents) = server.call("GET", "/api/agents", None, Some(jwt)).await;
    agents["data"]
        .as_array()
        .expect("agents")
        .iter()
        .find(|a| a["agent"]["id"] == id)
        .map(|a| a["status"].as_str().expect("status").to_owned())
        .expect("listed")
}

/// A visitor who asks for a person; returns the socket and the conversation id.
async fn asks_for_a_person(server: &TestServer, bot: &str, key: &str) -> (Client, String) {
    let mut client = server.client().await;
    let welcome = client.hello(bot).await;
    client.say(key, "I want to talk to a human").await;
    client.expect("message").await;
    (client, welcome["conversation_id"].as_str().expect("id").to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_follows_the_socket_and_times_out_when_it_goes_silent() {
    let server = start_with(|s| s.engine.presence_timeout_ms = 400).await;
    let (owner, ann, bob, _) = workspace(&server).await;
    let ann_id = me(&server, &ann).await;
    assert_eq!(presence_of(&server, &owner, &ann_id).await, "offline", "never connected");
    let (mut ann_socket, welcome, _) = Client::agent(server.addr, &ann).await;
    assert_eq!(welcome["agents"][0]["status"], "online", "{welcome}");
    assert_eq!(presence_of(&server, &owner, &ann_id).await, "online");
    ann_socket.send(json!({"type": "presence", "status": "away"})).await;
    let (mut bob_socket, _, _) = Client::agent(server.addr, &bob).await;
    // Ann's console goes silent (a frozen laptop): Bob, who keeps pinging, hears her go.
    let mut heard = Vec::new();
    for _ in 0..50 {
        bob_socket.send(json!({"type": "ping"})).await;
        let (frame, _) = bob_socket.until_either("pong", "presence").await;
        if frame["type"] == "presence" && frame["agent"]["id"] == ann_id.as_str() {
            heard.push(frame["status"].as_str().expect("status").to_owned());
            if heard.last().is_some_and(|s| s == "offline") {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(heard.last().map(String::as_str), Some("offline"), "timed out: {heard:?}");
    assert_eq!(presence_of(&server, &owner, &ann_id).await, "offline");
    // A frame brings her back, as she left it (away).
    ann_socket.send(json!({"type": "ping"})).await;
    ann_socket.until("pong").await;
    assert_eq!(presence_of(&server, &owner, &ann_id).await, "away");
    drop(ann_socket);
    for _ in 0..100 {
        if presence_of(&server, &owner, &ann_id).await == "offline" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(presence_of(&server, &owner, &ann_id).await, "offline", "closing is leaving");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escalated_conversations_go_to_online_agents_within_their_cap() {
    let server = start().await;
    let (owner, ann, _bob, bot) = workspace(&server).await;
    set_agents(&server, &owner, json!({"assignment": "least_loaded", "max_chats_per_agent": 1}))
        .await;
    let ann_id = me(&server, &ann).await;
    let (mut ann_socket, _, _) = Client::agent(server.addr, &ann).await;

    let (mut first, first_id) = asks_for_a_person(&server, &bot, "f1").await;
    let (handoff, _) = first.until("handoff").await;
    assert_eq!((handoff["to"].as_str(), handoff["agent"].as_str()), (Some("human"), Some("M")));
    let (_, stored) =
        server.call("GET", &format!("/api/conversations/{first_id}"), None, Some(&owner)).await;
    assert_eq!(stored["conversation"]["status"], "ASSIGNED");
    assert_eq!(stored["conversation"]["assignee"]["id"], ann_id.as_str());

    // Ann is at her cap: the next visitor waits, and the bot keeps answering meanwhile.
    let (mut second, second_id) = asks_for_a_person(&server, &bot, "s1").await;
    second.read_stream().await;
    let (_, waiting) =
        server.call("GET", &format!("/api/conversations/{second_id}"), None, Some(&owner)).await;
    assert_eq!(waiting["conversation"]["status"], "ESCALATED", "queued: {waiting}");
    // Ann resolves the first: the second is hers at once.
    ann_socket
        .send(json!({"type": "resolve", "conversation_id": first_id, "resolution": "RESOLVED"}))
        .await;
    let (handoff, _) = second.until("handoff").await;
    assert_eq!(handoff["to"], "human");
    let (_, now) =
        server.call("GET", &format!("/api/conversations/{second_id}"), None, Some(&owner)).await;
    assert_eq!(now["conversation"]["assignee"]["id"], ann_id.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_loaded_spreads_conversations_and_manual_leaves_them_waiting() {
    let server = start().await;
    let (owner, ann, bob, bot) = workspace(&server).await;
    let (_ann_socket, _, _) = Client::agent(server.addr, &ann).await;
    let (_bob_socket, _, _) = Client::agent(server.addr, &bob).await;
    let mut holders = Vec::new();
    for key in ["a", "b"] {
        let (mut client, id) = asks_for_a_person(&server, &bot, key).await;
        client.until("handoff").await;
        let (_, c) =
            server.call("GET", &format!("/api/conversations/{id}"), None, Some(&owner)).await;
        holders.push(c["conversation"]["assignee"]["id"].as_str().expect("assigned").to_owned());
    }
    holders.sort();
    let mut both = vec![me(&server, &ann).await, me(&server, &bob).await];
    both.sort();
    assert_eq!(holders, both, "one each");

    set_agents(&server, &owner, json!({"assignment": "manual"})).await;
    let (mut client, id) = asks_for_a_person(&server, &bot, "c").await;
    client.read_stream().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, c) = server.call("GET", &format!("/api/conversations/{id}"), None, Some(&owner)).await;
    assert_eq!(c["conversation"]["status"], "ESCALATED", "manual: agents pick from the inbox");
    assert!(client.drain().await.iter().all(|f| f["type"] != "handoff"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_nobody_online_or_outside_hours_the_visitor_is_told_and_the_bot_carries_on() {
    let server = start().await;
    let (owner, _ann, _bob, bot) = workspace(&server).await;
    let (mut client, _) = asks_for_a_person(&server, &bot, "n1").await;
    let notice = client.expect("message").await;
    assert_eq!(notice["sender"], "bot");
    assert!(
        notice["text"].as_str().expect("text").contains("No one from our team is online"),
        "{notice}"
    );
    client.read_stream().await; // The bot still answers the message.

    // Closed all week: the closed notice, in the tenant's own words.
    let agents = json!({"business_hours": {"utc_offset_minutes": 0, "days": []},
        "offline_message": "We are closed. Leave your email and we will write back."});
    let view = set_agents(&server, &owner, agents).await;
    assert_eq!(
        view["agents"]["offline_message"],
        "We are closed. Leave your email and we will write back."
    );
    let (mut later, _) = asks_for_a_person(&server, &bot, "n2").await;
    assert_eq!(
        later.expect("message").await["text"],
        "We are closed. Leave your email and we will write back."
    );

    for (agents, field) in [
        (json!({"max_chats_per_agent": 0}), "agents.max_chats_per_agent"),
        (
            json!({"business_hours": {"utc_offset_minutes": 0, "days": [{"day": 8, "open": "09:00", "close": "18:00"}]}}),
            "agents.business_hours.days",
        ),
        (
            json!({"business_hours": {"utc_offset_minutes": 0, "days": [{"day": 1, "open": "18:00", "close": "09:00"}]}}),
            "agents.business_hours.days",
        ),
        (
            json!({"business_hours": {"utc_offset_minutes": 9999, "days": []}}),
            "agents.business_hours.utc_offset_minutes",
        ),
    ] {
        let (status, body) = server
            .call(
                "PATCH",
                "/api/workspace",
                Some(&json!({"agents": agents}).to_string()),
                Some(&owner),
            )
            .await;
        assert_eq!(
            (status, body["error"]["details"]["field"].as_str()),
            (422, Some(field)),
            "{body}"
        );
    }
}
