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
