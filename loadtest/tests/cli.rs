//! The harness's command-line contract, against its own raw baseline (no Parla needed): a
//! clean run exits 0 with its table, bad arguments exit 2. (The end-to-end tests against Parla
//! and Socket.IO are the workspace's tests/integration/loadtest.rs; having tests here also makes
//! `cargo test --workspace` build the `parla-loadtest` binary they run.)

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_parla-loadtest");

#[test]
fn a_clean_run_against_the_raw_baseline_exits_zero() {
    let out = Command::new(BIN)
        .args(["--targets", "raw", "--scenario", "chat", "--connections", "10"])
        .args(["--duration", "1", "--interval-ms", "100", "--settle-ms", "50", "--deadline", "40"])
        .output()
        .expect("the harness runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("| raw | 10/10 |"), "{stdout}");
}

#[test]
fn bad_arguments_exit_two() {
    for args in [
        &["--connections", "0"][..],
        &["--per-worker", "50000"],
        &["--parla-url", "ws://10.1.2.3:80/v1/widget/ws"],
        &["--scenario", "nap"],
    ] {
        let out = Command::new(BIN).args(args).output().expect("the harness runs");
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
