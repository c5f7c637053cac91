//! Durability through the real binary: `parla serve` killed with SIGKILL mid-traffic, restarted
//! on the same data dir, loses nothing it confirmed.

use std::{collections::HashMap, net::SocketAddr, path::Path};

use crate::common::*;
use tokio::process::Child;

/// Starts the real binary on port 0 and returns it with the address it printed.
async fn spawn_parla(data_dir: &Path) -> (Child, SocketAddr) {
    spawn_parla_paced(data_dir, 0).await
}

/// Like [`spawn_parla`], with `token_delay_ms` between streamed tokens.
async fn spawn_parla_paced(data_dir: &Path, token_delay_ms: u64) -> (Child, SocketAddr) {
    spawn_parla_with(data_dir, &[("PARLA__RESPONDER__TOKEN_DELAY_MS", token_delay_ms.to_string())])
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_mid_traffic_loses_nothing_confirmed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut child, addr) = spawn_parla(dir.path()).await;
    let mut c = Client::connect(addr).await;
    let (welcome, _) = c.hello_demo().await;

    let total = 1000;
    // Send from another task while this one reads: one socket, both directions busy.
    let (mut sink, mut c) = c.split();
    tokio::spawn(async move {
        for i in 0..total {
            let frame = serde_json::json!({"type": "message", "client_msg_id": format!("k{i}"),
                                           "text": format!("message {i} what is parla")});
            if sink.send(frame).await.is_err() {
                break; // The server was killed.
            }
        }
    });
    // Read confirmations; kill the server once some are in, while the rest are in flight.
    let mut confirmed: HashMap<u64, String> = HashMap::new();
    let mut killed = false;
    loop {
        let frame = if killed {
            match c.try_recv().await {
                Some(frame) => frame,
                None => break,
            }
        } else {
            c.recv().await
        };
        if frame["type"] == "message" || frame["type"] == "stream_end" {
            let seq = frame["seq"].as_u64().expect("seq");
            let what = frame["client_msg_id"].as_str().map_or("bot".to_owned(), str::to_owned);
            confirmed.insert(seq, what);
        }
        if !killed && confirmed.len() >= 100 {
            child.start_kill().expect("SIGKILL");
            child.wait().await.expect("reaped");
            killed = true;
        }
    }
    assert!(confirmed.len() >= 100);

    let (_child, addr) = spawn_parla(dir.path()).await;
    let mut r = Client::connect(addr).await;
    r.resume(&welcome, 0).await;
    // The replayed messages; a reply the kill cut off may already be streaming again (the
    // actor answers it when the visitor is back): its frames are live, not replayed.
    let stored: Vec<serde_json::Value> =
        r.drain().await.into_iter().filter(|f| f["type"] == "message").collect();
    let seqs: Vec<u64> = stored
        .iter()
        .map(|f| f["seq"].as_u64().unwrap_or_else(|| panic!("a message without seq: {f}")))
        .collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "contiguous, no gap or repeat");
    let by_seq: HashMap<u64, String> = stored
        .iter()
        .map(|f| {
            let what = f["client_msg_id"].as_str().map_or("bot".to_owned(), str::to_owned);
            (f["seq"].as_u64().expect("seq"), what)
        })
        .collect();
    for (seq, what) in &confirmed {
        assert_eq!(by_seq.get(seq), Some(what), "confirmed seq {seq} must survive the kill");
    }
    let mut ids: Vec<&String> = by_seq.values().filter(|w| *w != "bot").collect();
    let before = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), before, "no client_msg_id stored twice");

    // Retrying everything after the restart stores only what was lost, once.
    let last = *seqs.last().expect("some stored");
    let (mut sink, mut r) = r.split();
    tokio::spawn(async move {
        for i in 0..total {
            let frame = serde_json::json!({"type": "message", "client_msg_id": format!("k{i}"),
                                           "text": format!("message {i} what is parla")});
            sink.send(frame).await.expect("send");
        }
    });
    let mut echoes = 0;
    let mut highest = last;
    while echoes < total {
        let f = r.recv().await;
        if f["type"] == "message" && f["client_msg_id"].is_string() {
            echoes += 1;
        }
        if let Some(seq) = f["seq"].as_u64() {
            highest = highest.max(seq);
        }
    }
    let mut v = Client::connect(addr).await;
    v.resume(&welcome, 0).await;
    let all = v.drain().await;
    let users = all.iter().filter(|f| f["sender"] == "user").count();
    assert_eq!(users, total, "each client_msg_id stored exactly once after retries");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_left_unanswered_by_a_kill_is_answered_after_the_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Tokens a minute apart: the reply is still streaming when the process dies.
    let (mut child, addr) = spawn_parla_paced(dir.path(), 60_000).await;
    let mut c = Client::connect(addr).await;
    let (welcome, _) = c.hello_demo().await;
    c.say("q1", "what is parla").await;
    assert_eq!(c.expect("message").await["seq"], 2, "stored and confirmed");
    c.expect("stream_start").await;
    child.start_kill().expect("SIGKILL");
    child.wait().await.expect("reaped");

    let (_child, addr) = spawn_parla(dir.path()).await;
    let mut r = Client::connect(addr).await;
    let w = r.resume(&welcome, 2).await;
    assert_eq!(w["last_seq"], 2, "the reply never got stored before the kill");
    let reply = r.read_stream().await;
    assert_eq!(reply.end["seq"], 3);
    assert!(reply.tokens.contains("messaging engine"), "{}", reply.tokens);

    // Resuming again does not answer twice.
    let mut again = Client::connect(addr).await;
    again.resume(&welcome, 3).await;
    assert!(again.drain().await.is_empty(), "answered once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_access_tokens_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut child, addr) = spawn_parla(dir.path()).await;
    let creds =
        serde_json::json!({"email": "ann@example.com", "password": "a long enough password"});
    let mut reg = creds.clone();
    reg["name"] = "Ann".into();
    let (status, _) =
        http_call(addr, "POST", "/api/auth/register", Some(&reg.to_string()), None).await;
    assert_eq!(status, 201);
    let (status, session) =
        http_call(addr, "POST", "/api/auth/login", Some(&creds.to_string()), None).await;
    assert_eq!(status, 200);
    let token = session["access_token"].as_str().expect("token").to_owned();
    child.start_kill().expect("SIGKILL");
    child.wait().await.expect("reaped");

    let (_child, addr) = spawn_parla(dir.path()).await;
    let (status, body) = http_call(addr, "GET", "/api/bots", None, Some(&token)).await;
    assert_eq!(status, 200, "the generated secret was kept in the data dir: {body}");
    let secret = dir.path().join("jwt-secret");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&secret).expect("secret file").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "only the owner may read the secret");
    }
}
