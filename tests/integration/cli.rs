//! The `parla` binary's command line: configuration errors are clear, never a panic.

use std::process::Command;

#[test]
fn an_invalid_setting_stops_the_start_with_a_message_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_parla"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("PARLA__GATEWAY__HARD_FRAME_BYTES", "1")
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("gateway.hard_frame_bytes"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_bad_listen_address_and_a_missing_config_file_are_clear_errors() {
    let out = Command::new(env!("CARGO_BIN_EXE_parla"))
        .args(["serve", "--listen", "nowhere"])
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(stderr.contains("server.listen"), "{stderr}");

    let out = Command::new(env!("CARGO_BIN_EXE_parla"))
        .args(["serve", "--config", "/nonexistent/parla.toml"])
        .output()
        .expect("runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
}

#[test]
fn parla_config_prints_the_effective_settings() {
    let out = Command::new(env!("CARGO_BIN_EXE_parla"))
        .arg("config")
        .env("PARLA__GATEWAY__MAX_TEXT_CHARS", "1234")
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let settings: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(settings["gateway"]["max_text_chars"], 1234);
    assert_eq!(settings["store"]["data_dir"], "./parla-data");
}

/// `parla demo-reply` (hidden; the load harness's source of the frames to expect) answers as the
/// demo bot's built-in responder: an intent's reply for its phrase, the fallback otherwise,
/// each word a token with the whitespace before it.
#[test]
fn demo_reply_prints_the_demo_bots_tokens() {
    let reply = |text: &str| -> Vec<String> {
        let out = Command::new(env!("CARGO_BIN_EXE_parla"))
            .args(["demo-reply", "--text", text])
            .output()
            .expect("runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("a JSON array of tokens")
    };
    let reload = reply("what happens if I reload the page");
    assert!(reload.concat().starts_with("Nothing is lost."), "{reload:?}");
    assert!(reload.len() > 30, "one token per word: {}", reload.len());
    assert!(reload[1].starts_with(' '), "{reload:?}");
    let unknown = reply("zzzz qqqq");
    assert!(unknown.concat().starts_with("I'm not sure I understood."), "{unknown:?}");
}
