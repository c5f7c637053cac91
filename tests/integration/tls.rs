//! TLS on the public listener, through the real binary and OpenSSL's own client
//! (`openssl s_client`): the certificate served, HSTS on every answer, TLS 1.2 refused when
//! `tls_min_version = "1.3"` (and accepted by default), a renewed certificate served after
//! `SIGHUP` without a restart, and a certificate without its key refused at start.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::common::*;

/// A self-signed certificate for `localhost`/127.0.0.1 named `cn`, written to `dir`.
fn self_signed(dir: &Path, cn: &str) {
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"])
        .args(["-nodes", "-days", "2", "-subj", &format!("/CN={cn}")])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .output()
        .expect("openssl");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// `openssl s_client` at `addr` with `args`, sending `input`: (succeeded, its output).
fn s_client(addr: std::net::SocketAddr, args: &[&str], input: &str) -> (bool, String) {
    use std::io::Write;
    let mut child = Command::new("openssl")
        .args(["s_client", "-connect", &addr.to_string(), "-servername", "localhost"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl s_client");
    child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write");
    let out = child.wait_with_output().expect("s_client");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

fn tls_env(dir: &Path, min: &str) -> Vec<(&'static str, String)> {
    vec![
        ("PARLA__SERVER__TLS_CERT", dir.join("cert.pem").display().to_string()),
        ("PARLA__SERVER__TLS_KEY", dir.join("key.pem").display().to_string()),
        ("PARLA__SERVER__TLS_MIN_VERSION", min.to_owned()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_speaks_tls_reloads_its_certificate_and_keeps_to_its_minimum_version() {
    if Command::new("openssl").arg("version").output().is_err() {
        println!("skipped: no openssl command");
        return;
    }
    let certs = tempfile::tempdir().expect("dir");
    self_signed(certs.path(), "parla-first");
    let data = tempfile::tempdir().expect("dir");
    let (child, addr) = spawn_parla_with(data.path(), &tls_env(certs.path(), "1.3")).await;
    let ca = certs.path().join("cert.pem").display().to_string();

    // Served over TLS 1.3, verified against the certificate, with HSTS.
    let request = "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let (ok, answer) =
        s_client(addr, &["-quiet", "-tls1_3", "-CAfile", &ca, "-verify_return_error"], request);
    assert!(ok, "{answer}");
    assert!(answer.contains("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.to_lowercase().contains("strict-transport-security: max-age=31536000"),
        "{answer}"
    );
    // TLS 1.2 is refused at "1.3".
    let (ok, answer) = s_client(addr, &["-tls1_2"], "");
    assert!(!ok, "a TLS 1.2 client got in: {answer}");

    // A renewed certificate, served after SIGHUP.
    self_signed(certs.path(), "parla-renewed");
    let pid = child.id().expect("pid").to_string();
    assert!(Command::new("kill").args(["-HUP", &pid]).status().expect("kill").success());
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let (_, answer) = s_client(addr, &["-tls1_3"], "");
        if answer.contains("parla-renewed") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still the old certificate: {answer}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    drop(child);

    // By default TLS 1.2 is accepted too.
    let data = tempfile::tempdir().expect("dir");
    let (_child, addr) = spawn_parla_with(data.path(), &tls_env(certs.path(), "1.2")).await;
    let (ok, answer) = s_client(addr, &["-tls1_2"], "");
    assert!(ok && answer.contains("parla-renewed"), "{answer}");
}

#[test]
fn a_certificate_without_its_key_is_refused_at_start() {
    let out = Command::new(env!("CARGO_BIN_EXE_parla"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("PARLA__SERVER__TLS_CERT", "/nonexistent/cert.pem")
        .output()
        .expect("parla");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("server.tls_cert"), "{err}");
}
