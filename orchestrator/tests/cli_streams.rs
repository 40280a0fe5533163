//! The `bramble` binary's output streams as shells use them: a reader that goes away
//! early (`bramble pi show ID | head`) ends the command quietly, and logs written to a
//! file or pipe carry no colour codes.

use std::process::{Command, Output, Stdio};

use bramble::db::pis::NewPi;
use bramble::lifecycle::PiState;
use bramble::testing::{app_state, sqlite_db};
use bramble_netboot::hw::PiSerial;

const BIN: &str = env!("CARGO_BIN_EXE_bramble");

/// Runs `cmd` with its stdout a pipe whose reading end is already closed, as
/// `| head` leaves it once head has read its lines.
fn with_closed_stdout(cmd: &mut Command) -> Output {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    cmd.stdout(writer).stderr(Stdio::piped()).output().expect("run bramble")
}

/// Quiet like `ls | head`: no panic, no error, and a success or SIGPIPE ending.
fn assert_quiet(what: &str, out: &Output) {
    use std::os::unix::process::ExitStatusExt;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{what}: panicked on a closed pipe:\n{stderr}");
    assert!(!stderr.contains("error"), "{what}: complained about a closed pipe:\n{stderr}");
    let sigpipe = out.status.signal() == Some(13);
    assert!(out.status.success() || sigpipe, "{what}: ended {:?}:\n{stderr}", out.status);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_to_a_closed_pipe_ends_the_command_quietly() {
    let db = sqlite_db();
    let (state, token) = app_state(&db).await;
    let new = NewPi {
        serial: Some(PiSerial(0x1234abcd)),
        mac: None,
        model: "3b".into(),
        slot: None,
        owner: None,
        state: PiState::New,
    };
    let pi = state.db.insert_pi(&new, "test").await.expect("pi");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = format!("http://{}", listener.local_addr().unwrap());
    let server =
        tokio::spawn(axum::serve(listener, bramble::api::app(state.clone())).into_future());
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().to_str().unwrap().to_string();

    let cases: Vec<(&str, Vec<String>)> = vec![
        ("pi show", vec!["pi".into(), "show".into(), pi.id.0.clone()]),
        ("pi show --json", vec!["pi".into(), "show".into(), pi.id.0.clone(), "--json".into()]),
        ("pi list", vec!["pi".into(), "list".into()]),
        ("image recipes", vec!["image".into(), "recipes".into()]),
        (
            "token create",
            ["token", "create", "--role", "operator", "--state-dir", &state_dir]
                .map(String::from)
                .to_vec(),
        ),
    ];
    for (what, args) in cases {
        let (api, token) = (api.clone(), token.clone());
        let out = tokio::task::spawn_blocking(move || {
            with_closed_stdout(
                Command::new(BIN)
                    .args(&args)
                    .env("BRAMBLE_API", api)
                    .env("BRAMBLE_TOKEN", token)
                    .env("BRAMBLE_LOG", "warn"),
            )
        })
        .await
        .unwrap();
        assert_quiet(what, &out);
    }
    server.abort();
    state.db.close().await;
    db.drop().await;
}

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
