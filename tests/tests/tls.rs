//! HTTPS end to end, against peers nobody here wrote: the real `bramble serve` with
//! `[tls]` on 127.0.0.1, certificates made by the `openssl` command, `curl` and
//! `openssl s_client` as clients, the `bramble` CLI, and a Python `ssl` webhook
//! receiver. Covers verification with and without the CA, client certificates, the
//! certificate reload on SIGHUP (an open connection keeps answering, a new one sees
//! the renewed certificate, bad files keep the old one) and webhooks over HTTPS.
//! (Needs openssl, curl and python3.)

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bramble::tls::testpki::{TestPki, Usage};
use bramble_tests::output_text;

const BIN: &str = env!("CARGO_BIN_EXE_bramble-e2e");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Lines a child prints on stdout, read by a thread.
fn lines_of(stdout: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits up to `limit` for a line containing `want`, returning it.
fn wait_line(rx: &mpsc::Receiver<String>, want: &str, limit: Duration) -> Option<String> {
    let deadline = Instant::now() + limit;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(want) => return Some(line),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
    None
}

/// `bramble serve` as a process, on its own state directory; killed when dropped.
struct Serve {
    child: Child,
    port: u16,
    token: String,
    log: PathBuf,
    _state: tempfile::TempDir,
}

impl Serve {
    /// Starts it with `sections` appended to the config, and waits until it answers
    /// HTTPS (verified with `ca`, presenting `client` when given).
    fn start(sections: &str, ca: &Path, client: Option<(&Path, &Path)>) -> Serve {
        let state = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = state.path().join("bramble.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:{port}\"\nstate_dir = \"{}\"\n{sections}",
                state.path().display()
            ),
        )
        .unwrap();
        let out = Command::new(BIN)
            .args(["token", "create", "--role", "operator", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        assert!(out.status.success(), "token create: {}", output_text(&out));
        let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let log = state.path().join("serve.log");
        let child = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(&config)
            .env("BRAMBLE_LOG", "info,sqlx=warn,bramble::tls=debug")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut serve = Serve { child, port, token, log, _state: state };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let mut args = vec!["--cacert".to_string(), ca.display().to_string()];
            if let Some((cert, key)) = client {
                args.extend(["--cert".into(), cert.display().to_string()]);
                args.extend(["--key".into(), key.display().to_string()]);
            }
            if curl(&serve, "/healthz", &args).status.success() {
                return serve;
            }
            if let Ok(Some(status)) = serve.child.try_wait() {
                panic!("bramble serve exited {status}: {}", serve.log_text());
            }
            assert!(Instant::now() < deadline, "no HTTPS answer in 15 s: {}", serve.log_text());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn hangup(&self) {
        let ok = Command::new("kill").args(["-HUP", &self.child.id().to_string()]).status();
        assert!(ok.unwrap().success());
    }

    /// Runs the CLI against this controller with `args` after the command words.
    fn cli(&self, words: &[&str], args: &[&str], env: &[(&str, &Path)]) -> Output {
        let mut cmd = Command::new(BIN);
        cmd.args(words).args(["--api", &self.url(""), "--token", &self.token]).args(args);
        cmd.env_remove("BRAMBLE_CA_FILE").env_remove("SSL_CERT_FILE").env_remove("SSL_CERT_DIR");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `curl -sv` of `path`, with extra arguments.
fn curl(serve: &Serve, path: &str, args: &[String]) -> Output {
    Command::new("curl")
        .args(["-sv", "--max-time", "5"])
        .args(args)
        .arg(serve.url(path))
        .output()
        .expect("run curl")
}

/// The subject of the certificate a new connection sees, as curl prints it.
fn served_subject(serve: &Serve, ca: &Path) -> String {
    let out = curl(serve, "/healthz", &["--cacert".into(), ca.display().to_string()]);
    assert!(out.status.success(), "{}", output_text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    err.lines()
        .find_map(|l| l.trim_start_matches('*').trim().strip_prefix("subject: "))
        .unwrap_or_else(|| panic!("curl printed no subject: {err}"))
        .to_string()
}

/// The expiry gauge's value in `/metrics`.
fn expiry_gauge(serve: &Serve, ca: &Path) -> i64 {
    let out = curl(
        serve,
        "/metrics",
        &[
            "--cacert".into(),
            ca.display().to_string(),
            "-H".into(),
            format!("Authorization: Bearer {}", serve.token),
        ],
    );
    let body = String::from_utf8_lossy(&out.stdout);
    body.lines()
        .find_map(|l| l.strip_prefix("bramble_tls_cert_expiry_timestamp_seconds "))
        .unwrap_or_else(|| panic!("no expiry gauge in /metrics: {}", output_text(&out)))
        .parse::<f64>()
        .unwrap() as i64
}

/// One `openssl s_client` connection, kept open to send requests on.
struct KeptConnection {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl KeptConnection {
    fn open(port: u16, ca: &Path) -> KeptConnection {
        let mut child = Command::new("openssl")
            .args(["s_client", "-connect", &format!("127.0.0.1:{port}"), "-CAfile"])
            .arg(ca)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run openssl s_client");
        let stdin = child.stdin.take().unwrap();
        let lines = lines_of(child.stdout.take().unwrap());
        KeptConnection { child, stdin, lines }
    }

    /// Sends a request and waits for its status line.
    fn get_ok(&mut self, path: &str) -> bool {
        write!(self.stdin, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
        self.stdin.flush().unwrap();
        wait_line(&self.lines, "HTTP/1.1 200", Duration::from_secs(5)).is_some()
    }
}

impl Drop for KeptConnection {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A child process killed when dropped, even by a failing assertion.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A webhook receiver in Python's `ssl`: prints `ready PORT`, then `hook KIND` per POST.
fn python_receiver(cert: &Path, key: &Path) -> (Killed, u16, mpsc::Receiver<String>) {
    let script = r#"
import http.server, json, ssl, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers['Content-Length']))
        kind = json.loads(body)['event']['kind']
        self.send_response(200); self.end_headers()
        print('hook', kind, self.headers.get('X-Bramble-Signature', '-')[:7], flush=True)
    def log_message(self, *a): pass
srv = http.server.HTTPServer(('127.0.0.1', 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print('ready', srv.server_address[1], flush=True)
srv.serve_forever()
"#;
    let mut child = Command::new("python3")
        .args(["-c", script])
        .arg(cert)
        .arg(key)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run python3");
    let lines = lines_of(child.stdout.take().unwrap());
    let child = Killed(child);
    let ready = wait_line(&lines, "ready ", Duration::from_secs(10)).expect("receiver ready");
    let port = ready.trim_start_matches("ready ").parse().unwrap();
    (child, port, lines)
}

#[test]
fn https_serving_cli_reload_on_sighup_and_webhooks() {
    let pki = TestPki::new();
    let ca = &pki.ca_cert;
    // The files the controller serves, replaced in place later.
    let (cert, key) = (pki.dir.join("live.pem"), pki.dir.join("live.key"));
    std::fs::copy(&pki.server_cert, &cert).unwrap();
    std::fs::copy(&pki.server_key, &key).unwrap();
    let (_receiver, hook_port, hooks) = python_receiver(&pki.server_cert, &pki.server_key);
    let serve = Serve::start(
        &format!(
            "[tls]\ncert = \"{}\"\nkey = \"{}\"\n\
             [webhooks]\nurl = \"https://127.0.0.1:{hook_port}/hooks\"\nsecret = \"correct-horse-battery-staple\"\n\
             ca_file = \"{}\"\nkinds = [\"*\"]\nfirst_backoff_ms = 100\n",
            cert.display(),
            key.display(),
            ca.display()
        ),
        ca,
        None,
    );

    // curl: verified with the CA; without it, a certificate problem (exit 60).
    assert_eq!(served_subject(&serve, ca), "CN=bramble server 1");
    let out = curl(&serve, "/healthz", &[]);
    assert_eq!(out.status.code(), Some(60), "unverified server accepted: {}", output_text(&out));
    // Plain HTTP on the HTTPS port is a failed handshake, not an answer.
    let out = Command::new("curl")
        .args(["-s", "--max-time", "5", &format!("http://127.0.0.1:{}/healthz", serve.port)])
        .output()
        .unwrap();
    assert!(!out.status.success(), "plain HTTP answered: {}", output_text(&out));

    // The CLI: with --ca-file; through the system's roots (SSL_CERT_FILE); and refused
    // with neither.
    let out = serve.cli(&["shelf", "list"], &["--ca-file", &ca.display().to_string()], &[]);
    assert!(out.status.success(), "CLI with --ca-file: {}", output_text(&out));
    let out = serve.cli(&["shelf", "list"], &[], &[("SSL_CERT_FILE", ca)]);
    assert!(out.status.success(), "CLI with the CA as the system's roots: {}", output_text(&out));
    let out = serve.cli(&["shelf", "list"], &[], &[]);
    assert!(!out.status.success(), "CLI trusted an unknown CA: {}", output_text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot reach the controller"), "{err}");

    // A webhook over HTTPS, verified with `ca_file`: registering a Pi sends events.
    let api = |path: &str, body: &str| {
        let out = curl(
            &serve,
            path,
            &[
                "--cacert".into(),
                ca.display().to_string(),
                "-H".into(),
                format!("Authorization: Bearer {}", serve.token),
                "-H".into(),
                "Content-Type: application/json".into(),
                "-d".into(),
                body.into(),
                "--fail-with-body".into(),
            ],
        );
        assert!(out.status.success(), "POST {path}: {}", output_text(&out));
    };
    api(
        "/v1/switches",
        r#"{"name": "sw1", "address": "192.0.2.10:161", "trunk_port": 49, "credentials": {"version": "v3", "user": "bramble", "auth_pass": "authpass1", "priv_pass": "privpass1"}}"#,
    );
    api("/v1/shelves", r#"{"name": "rack1", "switch": "sw1", "first_port": 1, "last_port": 4}"#);
    let hook = wait_line(&hooks, "hook ", Duration::from_secs(15));
    assert!(hook.is_some(), "no webhook delivered over HTTPS: {}", serve.log_text());
    assert!(hook.unwrap().contains("sha256="), "the delivery is signed");

    // A connection opened before the renewal, kept open across it.
    let mut kept = KeptConnection::open(serve.port, ca);
    assert!(kept.get_ok("/healthz"), "the kept connection answers before the reload");
    let v1 = bramble::tls::inspect(&pki.server_cert, None).unwrap();
    assert_eq!(expiry_gauge(&serve, ca), v1.not_after_unix());

    // Renewal: new certificate and key in place, SIGHUP.
    let (new_cert, new_key) = pki.issue("server2", "bramble server 2", 90, 1002, Usage::Server);
    std::fs::copy(&new_cert, &cert).unwrap();
    std::fs::copy(&new_key, &key).unwrap();
    serve.hangup();
    let deadline = Instant::now() + Duration::from_secs(5);
    while served_subject(&serve, ca) != "CN=bramble server 2" {
        assert!(Instant::now() < deadline, "renewed cert not served: {}", serve.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
    let v2 = bramble::tls::inspect(&new_cert, None).unwrap();
    assert!(v2.not_after > v1.not_after);
    assert_eq!(expiry_gauge(&serve, ca), v2.not_after_unix());
    assert!(kept.get_ok("/healthz"), "the connection opened before the reload was dropped");

    // A bad replacement (the old certificate with the new key): logged, the renewed
    // certificate still served, the controller still up.
    std::fs::copy(&pki.server_cert, &cert).unwrap();
    serve.hangup();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !serve.log_text().contains("TLS certificate not reloaded") {
        assert!(Instant::now() < deadline, "no reload error logged: {}", serve.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        serve.log_text().contains("does not belong to the certificate"),
        "{}",
        serve.log_text()
    );
    assert_eq!(served_subject(&serve, ca), "CN=bramble server 2");
    assert_eq!(expiry_gauge(&serve, ca), v2.not_after_unix());
    assert!(kept.get_ok("/healthz"));
}

#[test]
fn client_ca_admits_only_clients_with_a_certificate_it_signed() {
    let pki = TestPki::new();
    let ca = &pki.ca_cert;
    // A client certificate from another CA must not do either.
    let other = TestPki::new();
    let serve = Serve::start(
        &format!(
            "[tls]\ncert = \"{}\"\nkey = \"{}\"\nclient_ca = \"{}\"\n",
            pki.server_cert.display(),
            pki.server_key.display(),
            ca.display()
        ),
        ca,
        Some((&pki.client_cert, &pki.client_key)),
    );
    let with = |cert: &Path, key: &Path| {
        vec![
            "--cacert".to_string(),
            ca.display().to_string(),
            "--cert".into(),
            cert.display().to_string(),
            "--key".into(),
            key.display().to_string(),
        ]
    };
    let out = curl(&serve, "/healthz", &with(&pki.client_cert, &pki.client_key));
    assert!(out.status.success(), "client certificate refused: {}", output_text(&out));
    let out = curl(&serve, "/healthz", &["--cacert".into(), ca.display().to_string()]);
    assert!(!out.status.success(), "admitted without a client certificate: {}", output_text(&out));
    let out = curl(&serve, "/healthz", &with(&other.client_cert, &other.client_key));
    assert!(!out.status.success(), "admitted a foreign client certificate: {}", output_text(&out));

    let ca_arg = ["--ca-file", &ca.display().to_string()].map(String::from);
    let id = [
        "--client-cert",
        &pki.client_cert.display().to_string(),
        "--client-key",
        &pki.client_key.display().to_string(),
    ]
    .map(String::from);
    let args: Vec<&str> = ca_arg.iter().chain(&id).map(String::as_str).collect();
    let out = serve.cli(&["shelf", "list"], &args, &[]);
    assert!(out.status.success(), "CLI with --client-cert: {}", output_text(&out));
    let out = serve.cli(
        &["shelf", "list"],
        &["--ca-file", &ca.display().to_string()],
        &[("BRAMBLE_CLIENT_CERT", &pki.client_cert), ("BRAMBLE_CLIENT_KEY", &pki.client_key)],
    );
    assert!(out.status.success(), "CLI with BRAMBLE_CLIENT_CERT/KEY: {}", output_text(&out));
    let out = serve.cli(&["shelf", "list"], &["--ca-file", &ca.display().to_string()], &[]);
    assert!(!out.status.success(), "CLI admitted without a certificate: {}", output_text(&out));
    // Failed handshakes are counted.
    let metrics = curl(&serve, "/metrics", &with(&pki.client_cert, &pki.client_key));
    let body = String::from_utf8_lossy(&metrics.stdout);
    let failures = body
        .lines()
        .find_map(|l| l.strip_prefix("bramble_tls_handshake_failures_total "))
        .and_then(|v| v.parse::<u64>().ok());
    assert!(failures.is_some_and(|n| n >= 2), "{body}");
}
