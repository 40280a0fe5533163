//! The README's main command end to end: `bramble lab up` starts a virtual shelf in the
//! background, racks and deploys it through the API and prints it once every simulated
//! Pi has booted; `bramble pi show` prints a deployed Pi's SSH host keys; `bramble lab
//! down` leaves no namespace, link or process behind.
//! (Needs root, nfs-ganesha, rpcbind and libnfs-utils, as `scripts/install-deps.sh run`
//! installs. Its servers live in a namespace of their own: ports 67, 69, 111 and 2049
//! of this machine may be taken.)

use std::process::Command;

fn bramble(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_bramble")).args(args).output().expect("run bramble")
}

fn count(cmd: &[&str], prefix: &str) -> usize {
    let out = Command::new(cmd[0]).args(&cmd[1..]).output().expect("ip");
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.contains(prefix)).count()
}

/// `bramble pi show` of a deployed Pi of the lab `lab up` printed (`export BRAMBLE_API=...
/// BRAMBLE_TOKEN=...`): one `host_key` line per SSH host key the API reports for it,
/// and `--json` carries them.
fn pi_show_prints_the_host_keys(up_stdout: &str) {
    let exports = up_stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("export "))
        .unwrap_or_else(|| panic!("no export line in {up_stdout}"));
    let env: Vec<(&str, &str)> = exports.split(' ').filter_map(|kv| kv.split_once('=')).collect();
    let cli = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_bramble"))
            .args(args)
            .envs(env.iter().copied())
            .output()
            .expect("run bramble");
        assert!(out.status.success(), "bramble {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let list: serde_json::Value =
        serde_json::from_str(&cli(&["pi", "list", "--json"])).expect("pi list --json");
    let id = list["items"][0]["id"].as_str().expect("a Pi").to_string();
    let shown: serde_json::Value =
        serde_json::from_str(&cli(&["pi", "show", &id, "--json"])).expect("pi show --json");
    let keys = shown["pi"]["ssh_host_keys"].as_array().expect("ssh_host_keys").clone();
    assert_eq!(keys.len(), 2, "a deployed Pi has an ed25519 and an RSA host key: {shown}");
    let want: Vec<String> = keys
        .iter()
        .map(|k| {
            format!(
                "host_key     {} {}",
                k["type"].as_str().unwrap(),
                k["fingerprint"].as_str().unwrap()
            )
        })
        .collect();
    let text = cli(&["pi", "show", &id]);
    let printed: Vec<&str> = text.lines().filter(|l| l.starts_with("host_key")).collect();
    assert_eq!(printed, want, "{text}");
    assert!(want.iter().all(|l| l.contains(" SHA256:")), "{want:?}");
}

#[test]
fn lab_up_shows_a_booted_shelf_and_lab_down_removes_everything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().to_str().expect("utf-8 path");
    let prefix = "clilab";
    let up = bramble(&[
        "lab",
        "up",
        "--pis",
        "3",
        "--listen",
        "127.0.0.1:0",
        "--prefix",
        prefix,
        "--timeout",
        "240",
        "--state-dir",
        state,
    ]);
    // Any failed check below still takes the lab down (the guard drops before `dir`).
    let mut guard = DownOnDrop { state, done: false };
    let stdout = String::from_utf8_lossy(&up.stdout);
    let stderr = String::from_utf8_lossy(&up.stderr);
    let log = std::fs::read_to_string(dir.path().join("lab.log")).unwrap_or_default();
    let down_anyway = || bramble(&["lab", "down", "--state-dir", state]);
    if !up.status.success() {
        down_anyway();
        panic!(
            "lab up failed:\n{stdout}\n{stderr}\nlab.log tail:\n{}",
            log.lines().rev().take(30).collect::<Vec<_>>().join("\n")
        );
    }
    assert!(stdout.contains("3 slots: 3 deployed"), "{stdout}");
    assert!(stdout.contains("lab Pis: 3 booted"), "{stdout}");
    assert!(stdout.contains("export BRAMBLE_API=http://127.0.0.1:"), "{stdout}");
    let ctl = format!("{prefix}ctl");
    assert!(stdout.contains(&format!("sudo ip netns exec {ctl} ss -lnp")), "{stdout}");
    assert_eq!(
        count(&["ip", "netns", "list"], prefix),
        4,
        "a namespace per Pi and the controller's"
    );
    assert_eq!(count(&["ip", "netns", "list"], &ctl), 1, "the controller's namespace");
    // Checked before `lab down`, which runs even if the check fails.
    let shown = std::panic::catch_unwind(|| pi_show_prints_the_host_keys(&stdout));

    let down = down_anyway();
    guard.done = true;
    if let Err(failed) = shown {
        std::panic::resume_unwind(failed);
    }
    assert!(down.status.success(), "{}", String::from_utf8_lossy(&down.stderr));
    assert_eq!(count(&["ip", "netns", "list"], prefix), 0, "namespaces left");
    assert_eq!(count(&["ip", "-o", "link", "show"], prefix), 0, "links left");
    let ganesha =
        Command::new("pgrep").args(["-f", &format!("{state}/ganesha")]).output().expect("pgrep");
    assert!(!ganesha.status.success(), "the lab's ganesha is still running");
    assert!(!dir.path().join("lab.pid").exists());
}

/// Runs `bramble lab down` when dropped unless the test already did, so a failed
/// assertion never leaves a lab (its controller, ganesha, namespaces) running.
struct DownOnDrop<'a> {
    state: &'a str,
    done: bool,
}

impl Drop for DownOnDrop<'_> {
    fn drop(&mut self) {
        if !self.done {
            let _ = bramble(&["lab", "down", "--state-dir", self.state]);
        }
    }
}
