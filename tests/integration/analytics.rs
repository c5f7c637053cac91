//! The analytics API through the public doors: after visitors chatted concurrently over real
//! widget sockets and agents took some conversations over, replied and resolved them, every
//! number of `/api/analytics/*` equals a recount from the transcripts read back through the
//! conversations API; the export (CSV and JSON, streamed) sums to the same; bad requests get
//! clear errors and no tenant sees another's numbers.

use std::collections::{BTreeMap, BTreeSet};

use crate::common::*;
use parla_engine::{
    analytics::{DAY_MS, HOUR_MS},
    model::now_ms,
};
use serde_json::{Value, json};

/// What the visitors say: some match an intent, some do not, some carry sentiment.
const LINES: [&str; 6] = [
    "when are you open",
    "I want a refund please, this was terrible",
    "tell me about the weather on mars",
    "great service, thanks a lot",
    "what are your opening hours",
    "blue elephants dance quietly",
];

async fn setup(server: &TestServer, email: &str) -> (String, String, String) {
    let jwt = register_owner(server, email).await;
    let body =
        json!({"name": "shop", "config": {"fallback_message": "Sorry, I did not get that."}});
    let bot = published_bot(server, &jwt, body).await;
    for (name, example, answer) in [
        ("hours", "when are you open", "9 to 5."),
        ("refund", "i want a refund", "Refunds take 3 days."),
    ] {
        let intent = json!({"name": name, "examples": [example], "response": {"text": answer}});
        let (status, body) =
            server.post(&format!("/api/bots/{bot}/intents"), intent, Some(&jwt)).await;
        assert_eq!(status, 201, "{body}");
    }
    let other = published_bot(server, &jwt, json!({"name": "other"})).await;
    (jwt, bot, other)
}

/// A visitor chats with `bot`: `n` lines, each answered; returns the `welcome` frame.
async fn chat(addr: std::net::SocketAddr, bot: &str, seed: usize, n: usize) -> Value {
    let mut client = Client::connect(addr).await;
    let welcome = client.hello(bot).await;
    for i in 0..n {
        let line = LINES[(seed + i) % LINES.len()];
        client.say(&format!("m{i}"), line).await;
        // The echo, then the answer (perhaps after an escalation notice).
        loop {
            let frame = client.recv().await;
            if frame["type"] == "stream_end" {
                break;
            }
        }
    }
    welcome
}

/// Every conversation of `bot`, with all its messages, read through the conversations API.
async fn transcripts(server: &TestServer, jwt: &str, bot: &str) -> Vec<(Value, Vec<Value>)> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/api/bots/{bot}/conversations?limit=200");
        if let Some(c) = &cursor {
            path.push_str(&format!("&before={c}"));
        }
        let (status, page) = server.call("GET", &path, None, Some(jwt)).await;
        assert_eq!(status, 200, "{page}");
        for c in page["data"].as_array().expect("data") {
            let id = c["id"].as_str().expect("id");
            let (status, detail) = server
                .call("GET", &format!("/api/conversations/{id}?limit=500"), None, Some(jwt))
                .await;
            assert_eq!(status, 200, "{detail}");
            assert!(detail["next_after_seq"].is_null(), "one page holds it");
            let messages = detail["messages"].as_array().expect("messages").clone();
            out.push((detail["conversation"].clone(), messages));
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return out,
        }
    }
}

/// The numbers recounted from transcripts, by the rules `parla_engine::analytics` documents.
#[derive(Debug, Default)]
struct Recount {
    conversations: i64,
    visitor: i64,
    bot: i64,
    agent: i64,
    active_visitor_days: i64,
    handovers: i64,
    resolutions: BTreeMap<String, i64>,
    first_response_sum: i64,
    first_responses: i64,
    duration_sum: i64,
    durations: i64,
    sentiment_sum: f64,
    sentiment_count: i64,
    csat_sum: i64,
    csat_count: i64,
    matched: i64,
    unmatched: BTreeSet<String>,
    unmatched_count: i64,
    intents: BTreeMap<String, (i64, f64)>,
}

fn recount(all: &[(Value, Vec<Value>)], handed_over: &BTreeSet<String>) -> Recount {
    let mut r = Recount::default();
    for (c, messages) in all {
        r.conversations += 1;
        let id = c["id"].as_str().expect("id");
        let status = c["status"].as_str().expect("status");
        if handed_over.contains(id) || matches!(status, "ESCALATED" | "ASSIGNED") {
            r.handovers += 1;
        }
        if status == "RESOLVED" {
            let resolution = c["resolution"].as_str().expect("resolution").to_lowercase();
            *r.resolutions.entry(resolution).or_default() += 1;
            let ended = c["ended_at"].as_i64().expect("ended_at");
            r.duration_sum += ended - c["started_at"].as_i64().expect("started_at");
            r.durations += 1;
        }
        if let Some(score) = c["csat"].as_i64() {
            r.csat_sum += score;
            r.csat_count += 1;
        }
        let mut first_visitor: Option<i64> = None;
        let mut answered = false;
        let mut days = BTreeSet::new();
        for m in messages {
            let at = m["created_at"].as_i64().expect("created_at");
            match m["sender"].as_str().expect("sender") {
                "user" => {
                    r.visitor += 1;
                    days.insert(at.div_euclid(DAY_MS));
                    first_visitor.get_or_insert(at);
                    if let Some(s) = m["sentiment"].as_f64() {
                        r.sentiment_sum += f64::from(s as f32);
                        r.sentiment_count += 1;
                    }
                    match m["intent"].as_str() {
                        Some(intent) => {
                            r.matched += 1;
                            let e = r.intents.entry(intent.to_owned()).or_default();
                            e.0 += 1;
                            e.1 += f64::from(m["confidence"].as_f64().expect("confidence") as f32);
                        }
                        None if m.get("form").is_none() && m.get("postback").is_none() => {
                            r.unmatched_count += 1;
                            r.unmatched.insert(m["text"].as_str().expect("text").to_owned());
                        }
                        None => {}
                    }
                }
                sender => {
                    if sender == "bot" {
                        r.bot += 1;
                    } else {
                        r.agent += 1;
                    }
                    if let (Some(asked), false) = (first_visitor, answered) {
                        r.first_response_sum += (at - asked).max(0);
                        r.first_responses += 1;
                        answered = true;
                    }
                }
            }
        }
        r.active_visitor_days += days.len() as i64;
    }
    r
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6 * a.abs().max(1.0)
}

async fn export(server: &TestServer, jwt: &str, query: &str) -> (String, String) {
    let request = format!(
        "GET /api/analytics/export?{query} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAuthorization: Bearer {jwt}\r\n\r\n",
        server.addr
    );
    let (status, head, body) = raw_http(server.addr, &request).await;
    assert_eq!(status, 200, "{head}\n{body}");
    (head.to_lowercase(), body)
}

/// Sums the numeric columns of export rows (from CSV or JSON) by column name.
fn column_sums(rows: &[BTreeMap<String, Value>]) -> BTreeMap<String, f64> {
    let mut sums = BTreeMap::new();
    for row in rows {
        for (k, v) in row {
            if let Some(n) = v.as_f64().filter(|_| k != "hour") {
                *sums.entry(k.clone()).or_insert(0.0) += n;
            }
        }
    }
    sums
}

fn csv_rows(csv: &str) -> Vec<BTreeMap<String, Value>> {
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    lines
        .map(|line| {
            let cells: Vec<&str> = line.split(',').collect();
            assert_eq!(cells.len(), header.len(), "{line}");
            header
                .iter()
                .zip(cells)
                .map(|(k, v)| {
                    let value = match v.parse::<f64>() {
                        Ok(n) if *k != "bot_id" => json!(n),
                        _ => json!(v),
                    };
                    ((*k).to_owned(), value)
                })
                .collect()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analytics_equal_a_recount_of_the_transcripts_after_a_concurrent_run() {
    let server = start().await;
    let (jwt, bot, other) = setup(&server, "stats@example.com").await;
    let agent = invite_and_join(&server, &jwt, "agent@stats.example.com", "agent").await;

    // Visitors chat at once, with both bots.
    let visitors = 12;
    let mut tasks = Vec::new();
    for i in 0..visitors {
        let server_addr = server.addr;
        let bot = if i % 4 == 3 { other.clone() } else { bot.clone() };
        tasks.push(tokio::spawn(async move { chat(server_addr, &bot, i, 2 + i % 3).await }));
    }
    let mut welcomes = Vec::new();
    for t in tasks {
        welcomes.push(t.await.expect("visitor"));
    }
    let ids: Vec<String> =
        welcomes.iter().map(|w| w["conversation_id"].as_str().expect("id").to_owned()).collect();

    // Agents take some over, reply, and resolve them in different ways, concurrently.
    let mut handed_over = BTreeSet::new();
    let resolutions = ["RESOLVED", "ABANDONED", "UNRESOLVED", "RESOLVED"];
    let mut work = Vec::new();
    for (k, id) in ids.iter().take(4).enumerate() {
        handed_over.insert(id.clone());
        let (addr, agent, id) = (server.addr, agent.clone(), id.clone());
        work.push(tokio::spawn(async move {
            let post = |action: &str, body: Value| {
                let path = format!("/api/conversations/{id}/{action}");
                let agent = agent.clone();
                async move {
                    http_call(addr, "POST", &path, Some(&body.to_string()), Some(&agent)).await
                }
            };
            let (status, body) = post("claim", json!({})).await;
            assert_eq!(status, 200, "{body}");
            let reply = json!({"client_msg_id": "r1", "text": "Let me check that for you."});
            let (status, body) = post("replies", reply).await;
            assert_eq!(status, 201, "{body}");
            let resolve = json!({"resolution": resolutions[k], "csat": k == 1});
            let (status, body) = post("resolve", resolve).await;
            assert_eq!(status, 200, "{body}");
        }));
    }
    for w in work {
        w.await.expect("agent work");
    }
    // One is resolved twice: first as unresolved, then as resolved — counted as it ends.
    let path = format!("/api/conversations/{}/resolve", ids[2]);
    let (status, body) = server.post(&path, json!({"resolution": "RESOLVED"}), Some(&agent)).await;
    assert_eq!(status, 200, "{body}");

    // The visitor asked for a score comes back and gives one.
    let mut client = server.client().await;
    let w = &welcomes[1];
    let hello = json!({"type": "hello", "bot_id": bot, "conversation_id": w["conversation_id"],
        "resume_token": w["resume_token"], "last_seq": 0});
    client.send(hello).await;
    client.expect("welcome").await;
    client.say("score", "4").await;
    loop {
        let frame = client.recv().await;
        if frame["text"] == "Thank you for your rating!" {
            break;
        }
    }
    drop(client);

    let mut all = transcripts(&server, &jwt, &bot).await;
    all.extend(transcripts(&server, &jwt, &other).await);
    assert_eq!(all.len(), visitors);
    let expected = recount(&all, &handed_over);

    let (from, to) = (now_ms() - DAY_MS, now_ms() + HOUR_MS);
    let range = format!("from={from}&to={to}");
    let (status, o) =
        server.call("GET", &format!("/api/analytics/overview?{range}"), None, Some(&jwt)).await;
    assert_eq!(status, 200, "{o}");
    assert_eq!(o["conversations"], expected.conversations, "{o}");
    assert_eq!(o["messages"]["visitor"], expected.visitor, "{o}");
    assert_eq!(o["messages"]["bot"], expected.bot, "{o}");
    assert_eq!(o["messages"]["agent"], expected.agent, "{o}");
    assert_eq!(o["messages"]["total"], expected.visitor + expected.bot + expected.agent);
    assert_eq!(o["active_visitors"], expected.active_visitor_days, "{o}");
    assert_eq!(o["handovers"], expected.handovers, "{o}");
    for (kind, n) in &expected.resolutions {
        assert_eq!(o["resolutions"][kind], *n, "{kind}: {o}");
    }
    let ended = (o["resolutions"]["resolved"].as_i64(), o["resolutions"]["unresolved"].as_i64());
    assert_eq!(ended, (Some(3), Some(0)), "one resolved twice counts as it ended: {o}");
    let mean = |sum: f64, n: i64| sum / n as f64;
    let first = o["avg_first_response_ms"].as_f64().expect("first response");
    assert!(close(first, mean(expected.first_response_sum as f64, expected.first_responses)));
    let duration = o["avg_duration_ms"].as_f64().expect("duration");
    assert!(close(duration, mean(expected.duration_sum as f64, expected.durations)));
    let sentiment = o["sentiment"].as_f64().expect("sentiment");
    assert!(close(sentiment, mean(expected.sentiment_sum, expected.sentiment_count)), "{o}");
    assert_eq!(o["csat"]["responses"], expected.csat_count);
    assert_eq!((expected.csat_count, o["csat"]["average"].as_f64()), (1, Some(4.0)), "{o}");
    assert_eq!(o["intents_matched"], expected.matched, "{o}");
    assert_eq!(o["intents_unmatched"], expected.unmatched_count, "{o}");
    assert!(expected.matched > 0 && expected.unmatched_count > 0, "both kinds occurred");
    assert_eq!(o["by_channel"]["web"]["conversations"], expected.conversations);
    // Every visitor has left (a closed socket is let go of a moment later).
    let mut online = o["visitors_online"].as_u64();
    for _ in 0..100 {
        if online == Some(0) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let (_, again) =
            server.call("GET", &format!("/api/analytics/overview?{range}"), None, Some(&jwt)).await;
        online = again["visitors_online"].as_u64();
    }
    assert_eq!(online, Some(0), "visitors have left");
    let rate = o["escalation_rate"].as_f64().expect("rate");
    assert!(close(rate, expected.handovers as f64 / expected.conversations as f64));

    // One bot's numbers are its share.
    let (status, b) =
        server.call("GET", &format!("/api/analytics/bots/{other}?{range}"), None, Some(&jwt)).await;
    assert_eq!(status, 200, "{b}");
    let others = all.iter().filter(|(c, _)| c["bot_id"] == other.as_str()).count();
    assert_eq!(
        (b["conversations"].as_u64(), b["bot_id"].as_str()),
        (Some(others as u64), Some(other.as_str()))
    );
    assert!(b["visitors_online"].is_null());

    // The series add up to the same, by hour and by day.
    for interval in ["hour", "day"] {
        let path = format!("/api/analytics/conversations?{range}&interval={interval}");
        let (status, s) = server.call("GET", &path, None, Some(&jwt)).await;
        assert_eq!(status, 200, "{s}");
        let points = s["points"].as_array().expect("points");
        let sum = |field: &str| points.iter().map(|p| p[field].as_i64().unwrap_or(0)).sum::<i64>();
        assert_eq!(sum("conversations"), expected.conversations, "{interval}");
        assert_eq!(sum("messages"), expected.visitor + expected.bot + expected.agent);
        let step = if interval == "hour" { HOUR_MS } else { DAY_MS };
        let starts: Vec<i64> = points.iter().map(|p| p["start"].as_i64().unwrap()).collect();
        assert!(starts.windows(2).all(|w| w[1] - w[0] == step), "dense, in order");
        assert_eq!(s["by_channel"]["web"]["messages"], o["messages"]["total"]);
    }

    // Intents: hits and confidence as recounted; the unmatched messages are the visitors'.
    let path = format!("/api/analytics/intents?{range}&unmatched_limit=200");
    let (status, i) = server.call("GET", &path, None, Some(&jwt)).await;
    assert_eq!(status, 200, "{i}");
    let stats = i["intents"].as_array().expect("intents");
    let got: BTreeMap<String, (i64, f64)> = stats
        .iter()
        .map(|s| {
            let hits = s["hits"].as_i64().unwrap();
            let sum = s["avg_confidence"].as_f64().unwrap() * hits as f64;
            (s["intent"].as_str().unwrap().to_owned(), (hits, sum))
        })
        .collect();
    assert_eq!(got.keys().collect::<Vec<_>>(), expected.intents.keys().collect::<Vec<_>>());
    for (name, (hits, sum)) in &expected.intents {
        assert_eq!(got[name].0, *hits, "{name}");
        assert!(close(got[name].1, *sum), "{name}: {} vs {sum}", got[name].1);
    }
    assert_eq!(i["unmatched_total"], expected.unmatched_count);
    let listed = i["unmatched"].as_array().expect("unmatched");
    assert_eq!(listed.len() as i64, expected.unmatched_count);
    for u in listed {
        assert!(expected.unmatched.contains(u["text"].as_str().unwrap()), "{u}");
    }
    let times: Vec<i64> = listed.iter().map(|u| u["created_at"].as_i64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first");

    // The export, both formats, streamed: the same rows, summing to the overview.
    let (csv_head, csv) = export(&server, &jwt, &format!("{range}&format=csv")).await;
    assert!(csv_head.contains("content-type: text/csv"), "{csv_head}");
    assert!(csv_head.contains("attachment; filename="), "{csv_head}");
    let (json_head, json_body) = export(&server, &jwt, &format!("{range}&format=json")).await;
    assert!(json_head.contains("content-type: application/json"), "{json_head}");
    let from_json: Vec<BTreeMap<String, Value>> =
        serde_json::from_str(&json_body).expect("a JSON array");
    let from_csv = csv_rows(&csv);
    assert!(!from_json.is_empty());
    assert_eq!(from_csv.len(), from_json.len());
    let (sums_csv, sums_json) = (column_sums(&from_csv), column_sums(&from_json));
    for (column, total) in &sums_json {
        assert!(close(sums_csv[column], *total), "{column}: CSV {} JSON {total}", sums_csv[column]);
    }
    assert_eq!(sums_json["conversations"] as i64, expected.conversations);
    assert_eq!(sums_json["visitor_messages"] as i64, expected.visitor);
    assert_eq!(sums_json["agent_messages"] as i64, expected.agent);
    assert_eq!(sums_json["unmatched"] as i64, expected.unmatched_count);
    assert!(close(sums_json["sentiment_sum"], expected.sentiment_sum));
    let (_, one_bot) = export(&server, &jwt, &format!("{range}&format=json&bot_id={other}")).await;
    let one_bot: Vec<Value> = serde_json::from_str(&one_bot).expect("array");
    assert!(!one_bot.is_empty() && one_bot.iter().all(|r| r["bot_id"] == other.as_str()));

    // Another tenant sees none of it.
    let stranger = register_owner(&server, "stranger@example.com").await;
    let (status, theirs) = server
        .call("GET", &format!("/api/analytics/overview?{range}"), None, Some(&stranger))
        .await;
    assert_eq!((status, theirs["conversations"].as_i64()), (200, Some(0)), "{theirs}");
    let (_, empty) = export(&server, &stranger, &format!("{range}&format=json")).await;
    assert_eq!(serde_json::from_str::<Vec<Value>>(&empty).expect("array").len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_analytics_requests_get_clear_errors() {
    let server = start().await;
    let (jwt, bot, _) = setup(&server, "bad@example.com").await;
    let now = now_ms();
    let cases: Vec<(String, u16, &str)> = vec![
        (format!("/api/analytics/overview?from={now}&to={now}"), 422, "validation_failed"),
        (
            format!("/api/analytics/overview?from={}&to={now}", now - 400 * DAY_MS),
            422,
            "validation_failed",
        ),
        ("/api/analytics/overview?from=-5".into(), 422, "validation_failed"),
        // Near the end of i64: refused, never an overflow.
        (
            format!("/api/analytics/export?from=9223372036850400000&to={}", i64::MAX),
            422,
            "validation_failed",
        ),
        (
            format!("/api/analytics/conversations?interval=day&to={}", i64::MAX),
            422,
            "validation_failed",
        ),
        ("/api/analytics/overview?from=253402300800001".into(), 422, "validation_failed"),
        ("/api/analytics/overview?from=yesterday".into(), 400, "malformed_query"),
        ("/api/analytics/overview?bot_id=no-such-bot".into(), 404, "not_found"),
        ("/api/analytics/bots/no-such-bot".into(), 404, "not_found"),
        ("/api/analytics/conversations?interval=week".into(), 400, "malformed_query"),
        ("/api/analytics/intents?unmatched_limit=201".into(), 422, "validation_failed"),
        ("/api/analytics/export?format=xml".into(), 400, "malformed_query"),
    ];
    for (path, status, code) in cases {
        let (got, body) = server.call("GET", &path, None, Some(&jwt)).await;
        assert_eq!((got, error_code(&body)), (status, code), "{path}: {body}");
    }
    // No token, a key without the scope, another tenant's bot.
    let (status, body) = server.call("GET", "/api/analytics/overview", None, None).await;
    assert_eq!((status, error_code(&body)), (401, "unauthenticated"));
    let (_, key) = server
        .post("/api/api-keys", json!({"name": "k", "scopes": ["bots:read"]}), Some(&jwt))
        .await;
    let key = key["key"].as_str().expect("key");
    let (status, body) = server.call("GET", "/api/analytics/export", None, Some(key)).await;
    assert_eq!((status, error_code(&body)), (403, "insufficient_scope"), "{body}");
    let (_, scoped) = server
        .post("/api/api-keys", json!({"name": "a", "scopes": ["analytics:read"]}), Some(&jwt))
        .await;
    let scoped = scoped["key"].as_str().expect("key");
    let (status, _) = server.call("GET", "/api/analytics/overview", None, Some(scoped)).await;
    assert_eq!(status, 200, "a key with analytics:read reads them");
    let stranger = register_owner(&server, "intruder@example.com").await;
    let path = format!("/api/analytics/bots/{bot}");
    let (status, body) = server.call("GET", &path, None, Some(&stranger)).await;
    assert_eq!((status, error_code(&body)), (404, "not_found"), "another tenant's bot: {body}");
    let path = format!("/api/analytics/intents?bot_id={bot}");
    let (status, _) = server.call("GET", &path, None, Some(&stranger)).await;
    assert_eq!(status, 404);
}

/// A message whose closest intent is below the responder's threshold got the fallback: it is
/// unmatched (the console offers exactly these as new training phrases), not a weak hit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_answered_by_the_fallback_is_unmatched_whatever_intent_came_closest() {
    let server = start().await;
    let jwt = register_owner(&server, "near@example.com").await;
    let body = json!({"name": "spa", "config": {"fallback_message": "I do not know that yet."}});
    let bot = published_bot(&server, &jwt, body).await;
    let intent = json!({"name": "hours", "examples": ["when do you open", "opening hours", "when are you open"],
        "response": {"text": "We open at 9."}});
    let (status, created) =
        server.post(&format!("/api/bots/{bot}/intents"), intent, Some(&jwt)).await;
    assert_eq!(status, 201, "{created}");
    let mut client = Client::connect(server.addr).await;
    client.hello(&bot).await;
    let mut answers = Vec::new();
    for (i, line) in ["when are you open", "is there parking for bicycles"].into_iter().enumerate()
    {
        client.say(&format!("m{i}"), line).await;
        loop {
            let frame = client.recv().await;
            if frame["type"] == "stream_end" {
                answers.push(frame["text"].as_str().expect("text").to_owned());
                break;
            }
        }
    }
    assert_eq!(answers, ["We open at 9.", "I do not know that yet."]);
    let now = now_ms();
    let path = format!(
        "/api/analytics/intents?bot_id={bot}&from={}&to={}&unmatched_limit=10",
        now - DAY_MS,
        now + HOUR_MS
    );
    let (status, report) = server.call("GET", &path, None, Some(&jwt)).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["intents"][0]["hits"], 1, "{report}");
    let unmatched: Vec<&str> = report["unmatched"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|u| u["text"].as_str())
        .collect();
    assert_eq!(unmatched, ["is there parking for bicycles"], "{report}");
}
