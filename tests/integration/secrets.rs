//! Secrets at rest (issue 23): TOTP secrets, a workspace's LLM key, intent webhook secrets and
//! channel credentials are sealed under a master key kept outside the data dir; a data dir
//! without its key refuses to start; `parla rotate-key` re-seals everything under a new key
//! while the server runs, and every secret still works after.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::common::{PASSWORD, TestServer, eventually, now_secs, spawn_parla_with, totp_code};
use crate::sms::{CONTACT, incoming, sent, setup_on};

/// Every file under `dir`, read whole.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push((path, bytes));
        }
    }
    out
}

/// The files of `dir` that hold `needle`.
fn holding(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let needle = needle.as_bytes();
    files(dir)
        .into_iter()
        .filter(|(_, bytes)| bytes.windows(needle.len()).any(|w| w == needle))
        .map(|(path, _)| path)
        .collect()
}

/// A free loopback port for the operations listener (`parla rotate-key` needs its address).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// The real binary on `data`, its keys from `key_file` (or `key` when given), its Twilio the
/// double at `twilio`, its operations listener on `ops`.
fn serve_env(key_file: &Path, key: &str, twilio: &str, ops: u16) -> Vec<(&'static str, String)> {
    vec![
        ("PARLA__SECRETS__MASTER_KEY", key.to_owned()),
        ("PARLA__SECRETS__MASTER_KEY_FILE", key_file.display().to_string()),
        ("PARLA__CHANNELS__TWILIO_API_BASE", twilio.to_owned()),
        ("PARLA__CHANNELS__RETRY_BASE_MS", "10".into()),
        ("PARLA__SERVER__OPS_LISTEN", format!("127.0.0.1:{ops}")),
        ("PARLA__DEMO__ENABLED", "false".into()),
    ]
}

/// Starts the binary expecting a refusal; its stderr.
fn refused(data: &Path, env: &[(&'static str, String)]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_parla"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("parla runs");
    assert!(!out.status.success(), "started: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The key ids in the key file, the sealing one first.
fn key_ids(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).expect("key file");
    let keys = parla_keyring::parse(&text).expect("keys");
    keys.iter().map(|k| parla_keyring::key_id(k)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_sealed_on_disk_rotated_live_and_a_data_dir_without_its_key_does_not_start() {
    let keys = tempfile::tempdir().expect("keys dir");
    let key_file = keys.path().join("master.key");
    let (twilio, forms) = crate::sms::twilio().await;
    let ops = free_port();
    let env = serve_env(&key_file, "", &twilio, ops);
    let dir = tempfile::tempdir().expect("data dir");
    let data = dir.path().to_path_buf();
    let (mut child, addr) = spawn_parla_with(&data, &env).await;
    let server = TestServer { addr, running: None, dir };
    let mut s = setup_on(server, twilio, forms).await;
    assert!(key_file.exists(), "a new store gets a key, written beside it");
    let first_key = key_ids(&key_file);
    assert_eq!(first_key.len(), 1);
    assert!(!key_file.starts_with(s.server.dir.path()), "the key is outside the data dir");

    // The owner's secrets: a TOTP second factor, the workspace's LLM key, a webhook's secret
    // (the SMS connection's auth token is the setup's).
    let jwt = s.owner.clone();
    let (status, enrolled) = s.server.post("/api/auth/totp/enroll", json!({}), Some(&jwt)).await;
    assert_eq!(status, 200, "{enrolled}");
    let totp = enrolled["secret"].as_str().expect("secret").to_owned();
    let code = totp_code(&totp, now_secs());
    let (status, _) =
        s.server.post("/api/auth/totp/confirm", json!({"code": code}), Some(&jwt)).await;
    assert_eq!(status, 200);
    let patch = json!({"llm": {"base_url": "http://127.0.0.1:9/v1", "model": "m", "api_key": "sk-sealed-llm-key"}});
    let (status, body) =
        s.server.call("PATCH", "/api/workspace", Some(&patch.to_string()), Some(&jwt)).await;
    assert_eq!(status, 200, "{body}");
    let intent = json!({"name": "hours", "examples": ["opening hours"], "response": {"text": "9-17"},
        "actions": [{"type": "webhook", "url": "https://hooks.example.com/h", "secret": "whsec-sealed-secret"}]});
    let (status, body) =
        s.server.post(&format!("/api/bots/{}/intents", s.bot), intent, Some(&jwt)).await;
    assert_eq!(status, 201, "{body}");

    // None of them is on disk in clear; each is sealed under the key the file names.
    for secret in
        [totp.as_str(), "sk-sealed-llm-key", "whsec-sealed-secret", "twilio-auth-token-5e8f"]
    {
        assert_eq!(holding(&data, secret), Vec::<PathBuf>::new(), "{secret} in clear");
    }
    assert!(!holding(&data, &format!("pk1.{}.", first_key[0])).is_empty(), "sealed values");
    assert!(!data.join("channels.key").exists(), "no key in the data dir");

    // Rotation while the server runs: a new key first in the file, every secret re-sealed,
    // then the old key retired.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_parla"))
        .args(["rotate-key", "--data-dir"])
        .arg(&data)
        .args(["--ops", &format!("127.0.0.1:{ops}"), "--retire"])
        .env("PARLA__SECRETS__MASTER_KEY_FILE", &key_file)
        .output()
        .expect("rotate-key runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout} {}", String::from_utf8_lossy(&out.stderr));
    let resealed: Value = stdout
        .lines()
        .find_map(|l| l.split_once("under ").and_then(|(_, r)| r.split_once(": ")))
        .map(|(_, json)| serde_json::from_str(json).expect("counts"))
        .unwrap_or_else(|| panic!("no counts in {stdout}"));
    let second_key = key_ids(&key_file);
    assert_eq!(second_key.len(), 1, "old key retired: {stdout}");
    assert_ne!(second_key, first_key);
    assert_eq!(resealed["key"], second_key[0]);
    assert_eq!(
        (
            &resealed["workspaces"],
            &resealed["accounts"],
            &resealed["intent_sets"],
            &resealed["connections"]
        ),
        (&json!(1), &json!(1), &json!(1), &json!(1)),
        "{resealed}"
    );
    // A second pass finds everything under the current key and writes nothing.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_parla"))
        .args(["rotate-key", "--reseal", "--data-dir"])
        .arg(&data)
        .args(["--ops", &format!("127.0.0.1:{ops}")])
        .env("PARLA__SECRETS__MASTER_KEY_FILE", &key_file)
        .output()
        .expect("rotate-key --reseal runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout} {}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains(r#""workspaces":0,"accounts":0,"intent_sets":0,"connections":0"#),
        "{stdout}"
    );

    // After a restart with the new key alone, every secret still works: a TOTP sign-in, and
    // an SMS answered through Twilio with the connection's credentials.
    child.kill().await.expect("stop");
    let (_child, addr) = spawn_parla_with(&data, &env).await;
    s.server.addr = addr;
    let login = json!({"email": "owner@sms.example.com", "password": PASSWORD,
        "totp": totp_code(&totp, now_secs() + 30)});
    let (status, body) = s.server.post("/api/auth/login", login, None).await;
    assert_eq!(status, 200, "TOTP secret opens after the rotation: {body}");
    let (status, _) = incoming(&s, "SMsealed0001", "hello after rotation", true).await;
    assert_eq!(status, 200);
    let forms = sent(&s, 1).await;
    assert!(forms.iter().any(|f| f.iter().any(|(k, v)| k == "To" && v == CONTACT)), "{forms:?}");

    // Without its key, or with another key, the store refuses to start, saying why.
    drop(_child);
    let moved = keys.path().join("elsewhere.key");
    std::fs::rename(&key_file, &moved).expect("move the key away");
    let why = eventually(async || {
        let why = refused(&data, &env);
        if why.contains("Database already open") { Err(why) } else { Ok(why) }
    })
    .await;
    assert!(why.contains(&format!("sealed under master key {}", second_key[0])), "{why}");
    assert!(!key_file.exists(), "no new key generated over sealed secrets");
    let other = serve_env(&key_file, &parla_keyring::generate(), &s.twilio, ops);
    let why = refused(&data, &other);
    assert!(why.contains("do not open this store's secrets"), "{why}");
}
