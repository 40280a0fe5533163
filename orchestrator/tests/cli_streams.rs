//! The `bramble` binary's output streams as shells use them: a reader that goes away
//! early (`bramble pi show ID | head`) ends the command quietly, and logs written to a
//! file or pipe carry no colour codes.

use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_bramble");

#[test]
fn logs_to_a_file_carry_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("bramble.log");
    let log = std::fs::File::create(&log_path).unwrap();
    // Opening and migrating the database logs at debug level.
    let out = Command::new(BIN)
        .args(["token", "create", "--role", "operator", "--state-dir"])
        .arg(dir.path())
        .env("BRAMBLE_LOG", "debug")
        .env_remove("NO_COLOR")
        .env_remove("BRAMBLE_LOG_FORMAT")
        .stdout(Stdio::null())
        .stderr(log)
        .output()
        .expect("run bramble");
    let text = std::fs::read_to_string(&log_path).unwrap();
    assert!(out.status.success(), "token create failed: {text}");
    assert!(text.contains("DEBUG"), "no log lines to check: {text:?}");
    let first = text.lines().find(|l| l.contains("\x1b[")).unwrap_or_default();
    assert!(first.is_empty(), "colour codes in a log file: {first:?}");
}
