//! Account mail through a real SMTP server (aiosmtpd, from PyPI, started by the test): a
//! registration's verification mail is relayed with SMTP AUTH and its link works; when the
//! relay is down or refuses the credentials, the mail lands in the outbox with the error —
//! never dropped — and the API answers as usual.
//!
//! Needs the test virtualenv: `./scripts/test.sh` makes it (scripts/python-env.sh) and sets
//! PARLA_TEST_PYTHON.

use std::{path::Path, process::Stdio, time::Duration};

use crate::common::*;
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;

const USER: &str = "parla";
const PASSWORD_SMTP: &str = "smtp-relay-password";

/// A free local port (bound, then released for the SMTP server to take).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port()
}

/// The SMTP server, killed on drop.
struct Sink {
    _child: tokio::process::Child,
    port: u16,
    dir: tempfile::TempDir,
}

async fn sink() -> Sink {
    sink_on(free_port()).await
}

async fn sink_on(port: u16) -> Sink {
    let python = std::env::var("PARLA_TEST_PYTHON")
        .unwrap_or_else(|_| "/var/tmp/parla-py/bin/python".to_owned());
    let dir = tempfile::tempdir().expect("dir");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/smtp/sink.py");
    let mut child = tokio::process::Command::new(&python)
        .arg(script)
        .arg(port.to_string())
        .arg(dir.path())
        .args([USER, PASSWORD_SMTP])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run {python} ({e}); run ./scripts/test.sh, which installs aiosmtpd")
        });
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let ready = tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await;
    assert!(
        matches!(ready, Ok(Ok(Some(ref line))) if line == "READY"),
        "the SMTP sink did not start ({python} needs aiosmtpd: run ./scripts/test.sh)"
    );
    Sink { _child: child, port, dir }
}

impl Sink {
    async fn mails(&self, want: usize) -> Vec<Value> {
        for _ in 0..250 {
            let mut mails: Vec<(u64, Value)> = std::fs::read_dir(self.dir.path())
                .expect("dir")
                .filter_map(|e| e.ok())
                .filter_map(|e| {
                    let name = e.file_name().into_string().ok()?;
                    let n = name.strip_suffix(".json")?.parse().ok()?;
                    let text = std::fs::read_to_string(e.path()).ok()?;
                    Some((n, serde_json::from_str(&text).ok()?))
                })
                .collect();
            if mails.len() >= want {
                mails.sort_by_key(|(n, _)| *n);
                return mails.into_iter().map(|(_, m)| m).collect();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("fewer than {want} mails reached the SMTP server");
    }
}

fn quoted_printable_decode(text: &str) -> String {
    let joined = text.replace("=\r\n", "").replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escape = (bytes[i] == b'=')
            .then(|| joined.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match escape {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn outbox(server: &TestServer) -> Vec<Value> {
    std::fs::read_to_string(server.dir.path().join("outbox.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("outbox line"))
        .collect()
}

async fn register(server: &TestServer, email: &str) -> u16 {
    let body = json!({"email": email, "password": PASSWORD, "name": "Mia"});
    server.post("/api/auth/register", body, None).await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_is_relayed_over_smtp_with_auth_and_its_link_works() {
    let sink = sink().await;
    let server = start_with(|s| {
        s.mail.smtp_url = format!("smtp://127.0.0.1:{}", sink.port);
        s.mail.smtp_username = USER.into();
        s.mail.smtp_password = PASSWORD_SMTP.into();
        s.mail.from = "Parla <no-reply@parla.test>".into();
    })
    .await;
    assert_eq!(register(&server, "mia@example.com").await, 201);

    let mail = sink.mails(1).await.remove(0);
    assert_eq!(mail["login"], USER, "relayed with SMTP AUTH");
    assert_eq!(mail["mail_from"], "no-reply@parla.test");
    assert_eq!(mail["rcpt_tos"], json!(["mia@example.com"]));
    let raw = mail["data"].as_str().expect("data");
    // Long lines travel quoted-printable: undo soft line breaks and `=XX` escapes.
    let data = &if raw.contains("Content-Transfer-Encoding: quoted-printable") {
        quoted_printable_decode(raw)
    } else {
        raw.to_owned()
    };
    assert!(data.contains("Subject: Verify your Parla email"), "{data}");
    assert!(data.contains("From: Parla <no-reply@parla.test>"), "{data}");
    assert!(outbox(&server).is_empty(), "relayed mail is not also queued");

    // The token in the relayed mail verifies the address.
    let token = data[data.find("token=").expect("token") + 6..]
        .split_whitespace()
        .next()
        .expect("token value")
        .to_owned();
    let (status, _) = server.post("/api/auth/verify-email", json!({"token": token}), None).await;
    assert_eq!(status, 204);
    let jwt = sign_in(&server, "mia@example.com").await;
    let (_, me) = server.call("GET", "/api/auth/me", None, Some(&jwt)).await;
    assert_eq!(me["email_verified"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_relay_leaves_the_mail_in_the_outbox_with_the_error() {
    let sink = sink().await;
    // Wrong credentials: the relay refuses AUTH.
    let server = start_with(|s| {
        s.mail.smtp_url = format!("smtp://127.0.0.1:{}", sink.port);
        s.mail.smtp_username = USER.into();
        s.mail.smtp_password = "wrong password".into();
        s.mail.smtp_timeout_ms = 5000;
    })
    .await;
    assert_eq!(register(&server, "ann@example.com").await, 201);
    let queued = outbox(&server);
    assert_eq!(queued.len(), 1, "{queued:?}");
    assert_eq!(queued[0]["to"], "ann@example.com");
    assert!(queued[0]["relay_error"].as_str().is_some_and(|e| !e.is_empty()));
    assert!(!queued[0].to_string().contains("wrong password"), "the password is not recorded");

    // No relay listening at all.
    let server = start_with(|s| {
        s.mail.smtp_url = format!("smtp://127.0.0.1:{}", free_port());
        s.mail.smtp_timeout_ms = 2000;
    })
    .await;
    assert_eq!(register(&server, "bo@example.com").await, 201);
    let (status, _) =
        server.post("/api/auth/forgot-password", json!({"email": "bo@example.com"}), None).await;
    assert_eq!(status, 202);
    let queued = outbox(&server);
    assert_eq!(queued.len(), 2, "verification and reset: {queued:?}");
    assert!(queued.iter().all(|m| m["relay_error"].is_string()));
    assert!(sink.mails(0).await.is_empty());
}

/// Mail queued while the relay was down is relayed once it is back, and leaves the outbox: the
/// reset link it holds does not stay on disk after it was mailed (issue 19, item 10).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_mail_is_relayed_when_the_relay_returns_and_leaves_the_outbox() {
    let port = free_port();
    let server = start_with(|s| {
        s.mail.smtp_url = format!("smtp://127.0.0.1:{port}");
        s.mail.smtp_username = USER.into();
        s.mail.smtp_password = PASSWORD_SMTP.into();
        s.mail.smtp_timeout_ms = 2000;
        s.mail.outbox_retry_secs = 1;
    })
    .await;
    assert_eq!(register(&server, "cy@example.com").await, 201);
    let (status, _) =
        server.post("/api/auth/forgot-password", json!({"email": "cy@example.com"}), None).await;
    assert_eq!(status, 202);
    let queued = outbox(&server);
    assert_eq!(queued.len(), 2, "the relay is down: both mails queued: {queued:?}");
    let path = server.dir.path().join("outbox.jsonl");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&path).expect("outbox").permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "the outbox is its owner's alone");

    // The relay comes up on the configured port: both mails reach it, and the outbox empties.
    let sink = sink_on(port).await;
    let mails = sink.mails(2).await;
    let subjects: Vec<&str> = mails.iter().filter_map(|m| m["data"].as_str()).collect();
    assert!(subjects.iter().any(|d| d.contains("Reset your Parla password")), "{subjects:?}");
    for _ in 0..250 {
        if outbox(&server).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(outbox(&server).is_empty(), "relayed mail left the outbox: {:?}", outbox(&server));
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&path).expect("outbox").permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "rewritten owner-only");
}
