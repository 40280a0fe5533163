//! The `bramble` binary as a user runs it: `serve` with flags only, `token create`
//! printing the token alone, the client subcommands in tables and JSON, and
//! `switch-sim` answering net-snmp's `snmpget`.

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_bramble");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn bramble(args: &[&str], api: &str, token: &str) -> Output {
    Command::new(BIN)
        .args(args)
        .env("BRAMBLE_API", api)
        .env("BRAMBLE_TOKEN", token)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn the_cli_starts_a_controller_mints_a_token_and_talks_to_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().to_str().unwrap();
    let out = Command::new(BIN)
        .args(["token", "create", "--role", "customer", "--state-dir", state])
        .output()
        .unwrap();
    assert!(!out.status.success(), "a customer token without --customer was minted");
    assert!(text(&out).contains("--customer is required"), "{}", text(&out));
    let out = Command::new(BIN)
        .args(["token", "create", "--role", "operator", "--state-dir", state])
        .output()
        .unwrap();
    let token = String::from_utf8(out.stdout).unwrap();
    assert_eq!(token.lines().count(), 1, "token create must print the token alone: {token:?}");
    let token = token.trim().to_string();

    let port = free_port();
    let api = format!("http://127.0.0.1:{port}");
    let _server = Killed(
        Command::new(BIN)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--state-dir", state])
            .env("BRAMBLE_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "bramble serve did not start");
        std::thread::sleep(Duration::from_millis(50));
    }

    // A second controller on the same SQLite inventory is refused, saying why.
    let second = Command::new(BIN)
        .args(["serve", "--listen", &format!("127.0.0.1:{}", free_port()), "--state-dir", state])
        .env("BRAMBLE_LOG", "warn")
        .output()
        .unwrap();
    assert!(!second.status.success(), "a second controller started on one SQLite file");
    assert!(text(&second).contains("use PostgreSQL for several"), "{}", text(&second));
    let controllers = bramble(&["controller", "list"], &api, &token);
    assert!(controllers.status.success(), "{}", text(&controllers));
    let table = String::from_utf8_lossy(&controllers.stdout);
    assert!(table.starts_with("NAME") && table.contains("alive"), "{table}");

    let images = bramble(&["image", "list"], &api, &token);
    assert!(images.status.success(), "{}", text(&images));
    let table = String::from_utf8_lossy(&images.stdout);
    assert!(table.starts_with("NAME"), "{table}");
    assert!(
        table.contains("debian-bookworm-armhf") && table.contains("raspbian-jessie"),
        "{table}"
    );

    let pis = bramble(&["pi", "list", "--json"], &api, &token);
    let v: serde_json::Value =
        serde_json::from_slice(&pis.stdout).unwrap_or_else(|_| panic!("{}", text(&pis)));
    assert_eq!(v["items"], serde_json::json!([]));

    let bad = bramble(&["pi", "list"], &api, "brm_wrong");
    assert!(!bad.status.success());
    assert!(text(&bad).contains("BRAMBLE_TOKEN"), "{}", text(&bad));
    for args in [
        &["pi", "reboot", "pi-nope"][..],
        &["pi", "snapshots", "pi-nope"],
        &["pi", "snapshot", "pi-nope"],
        &["pi", "restore", "pi-nope", "snap-nope"],
    ] {
        let missing = bramble(args, &api, &token);
        assert!(!missing.status.success(), "{args:?}");
        assert!(
            text(&missing).contains("404") && text(&missing).contains("not_found"),
            "{args:?}: {}",
            text(&missing)
        );
    }
}

#[test]
fn switch_sim_answers_snmpget() {
    let port = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().port()
    };
    let addr = format!("127.0.0.1:{port}");
    let _sim = Killed(
        Command::new(BIN)
            .args(["switch-sim", "--listen", &addr, "--ports", "8", "--community", "labcommunity"])
            .env("BRAMBLE_LOG", "warn")
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // pethPsePortAdminEnable of port 8 (group 1): the simulator answers for every port.
        let out = Command::new("snmpget")
            .args([
                "-v2c",
                "-c",
                "labcommunity",
                "-t",
                "1",
                "-r",
                "0",
                "-On",
                &addr,
                "1.3.6.1.2.1.105.1.1.1.3.1.8",
            ])
            .output()
            .expect("snmpget (Debian package snmp) must be installed");
        if out.status.success() {
            let t = text(&out);
            assert!(t.contains(".1.3.6.1.2.1.105.1.1.1.3.1.8 = INTEGER:"), "{t}");
            break;
        }
        assert!(Instant::now() < deadline, "switch-sim never answered: {}", text(&out));
        std::thread::sleep(Duration::from_millis(200));
    }
    // The wrong community gets nothing.
    let out = Command::new("snmpget")
        .args(["-v2c", "-c", "wrong", "-t", "1", "-r", "0", &addr, "1.3.6.1.2.1.1.2.0"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", text(&out));
}

/// `bramble pi console` prints a Pi's latest console boot with every control character
/// visible (a Pi cannot drive the operator's terminal), `--boot N` an earlier one, and
/// `--json` the API's answer.
#[test]
fn pi_console_prints_the_lines_with_controls_visible() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().to_str().unwrap();
    let out = Command::new(BIN)
        .args(["token", "create", "--role", "operator", "--state-dir", state])
        .output()
        .unwrap();
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let port = free_port();
    let api = format!("http://127.0.0.1:{port}");
    let _server = Killed(
        Command::new(BIN)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--state-dir", state])
            .env("BRAMBLE_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "bramble serve did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let pi: String = rt.block_on(async {
        let created = bramble::tls::client::http()
            .post(format!("{api}/v1/pis"))
            .bearer_auth(&token)
            .json(&serde_json::json!({"serial": "0000c0de", "model": "4b"}))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), 201);
        created.json::<serde_json::Value>().await.unwrap()["id"].as_str().unwrap().into()
    });
    let none = bramble(&["pi", "console", &pi], &api, &token);
    assert!(text(&none).contains("no console output yet"), "{}", text(&none));

    // Two boots' lines, as the receiver would store them.
    let url = format!("sqlite://{}/bramble.db", state);
    rt.block_on(async {
        use bramble::db::console::ConsoleLimits;
        let db = bramble::db::Db::connect(&url).await.unwrap();
        let limits = ConsoleLimits { keep_boots: 5, boot_bytes: 1 << 20 };
        let id = bramble::ids::PiId(pi.clone());
        db.append_console(&[(id.clone(), vec![(1, b"first boot".to_vec())])], limits).await.unwrap();
        db.q("INSERT INTO events (at, pi_id, actor, kind, message, data) VALUES (1, $1, 'tftp', \
              'tftp.read', 'TFTP read', '{\"stage\":{\"stage\":\"tftp_read\",\"file\":\"vmlinuz-6.1\"}}')")
            .bind(pi.clone())
            .execute(db.pool())
            .await
            .unwrap();
        let lines = vec![(2, b"\x1b[31mred\x1b[0m \x07bell".to_vec()), (3, b"tail \xff".to_vec())];
        db.append_console(&[(id, lines)], limits).await.unwrap();
        db.close().await;
    });
    let out = bramble(&["pi", "console", &pi], &api, &token);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "-- boot 2 of 2 kept --\n␛[31mred␛[0m \\x07bell\ntail \\xff\n"
    );
    let out = bramble(&["pi", "console", &pi, "--boot", "1"], &api, &token);
    assert!(String::from_utf8_lossy(&out.stdout).contains("first boot"), "{}", text(&out));
    let out = bramble(&["pi", "console", &pi, "--json"], &api, &token);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["lines"][1]["raw_hex"], "7461696c20ff");
}
