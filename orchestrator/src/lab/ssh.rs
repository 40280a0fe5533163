//! The lab's SSH key pair: made with the real `ssh-keygen` at every lab start, deployed
//! to every Pi (simulators check it is in their root, QEMU Pis let its holder in), and
//! the `ssh` command line that logs into a QEMU Pi from the controller's namespace (the
//! only place its storage address is reachable from).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::LabError;

/// The lab's private key under its state directory (the public half is beside it,
/// `.pub`).
pub fn identity(state_dir: &Path) -> PathBuf {
    state_dir.join("ssh/id_ed25519")
}

/// Makes a fresh ed25519 key pair at [`identity`] and returns its public line.
pub fn generate(state_dir: &Path) -> Result<String, LabError> {
    let key = identity(state_dir);
    let public = key.with_extension("pub");
    let setup = |what: &str, e: &dyn std::fmt::Display| {
        LabError::Setup(format!("lab SSH key {}: {what}: {e}", key.display()))
    };
    if let Some(dir) = key.parent() {
        std::fs::create_dir_all(dir).map_err(|e| setup("creating its directory", &e))?;
    }
    for old in [&key, &public] {
        match std::fs::remove_file(old) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(setup("removing the old one", &e));
            }
            _ => {}
        }
    }
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "bramble-lab", "-f"])
        .arg(&key)
        .output()
        .map_err(|e| setup("running ssh-keygen (Debian package openssh-client)", &e))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(setup("ssh-keygen failed", &stderr.trim()));
    }
    let line = std::fs::read_to_string(&public).map_err(|e| setup("reading it", &e))?;
    Ok(line.trim().to_string())
}

/// `ip netns exec <controller netns> ssh ... root@<address> <remote...>`: batch mode
/// with the lab's key, no host-key bookkeeping (every reinstall makes new host keys).
pub fn ssh_argv(ctl_netns: &str, key: &Path, address: &str, remote: &[&str]) -> Vec<String> {
    let mut argv: Vec<String> =
        ["ip", "netns", "exec", ctl_netns, "ssh", "-i"].iter().map(|s| s.to_string()).collect();
    argv.push(key.display().to_string());
    for option in [
        "BatchMode=yes",
        "StrictHostKeyChecking=no",
        "UserKnownHostsFile=/dev/null",
        "LogLevel=ERROR",
        "ConnectTimeout=5",
    ] {
        argv.push("-o".into());
        argv.push(option.into());
    }
    argv.push(format!("root@{address}"));
    argv.extend(remote.iter().map(|s| s.to_string()));
    argv
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_runs_in_the_controller_namespace_with_the_labs_key() {
        let argv = ssh_argv("blabctl", Path::new("/l/ssh/id_ed25519"), "10.46.0.2", &["hostname"]);
        assert_eq!(
            argv.join(" "),
            "ip netns exec blabctl ssh -i /l/ssh/id_ed25519 -o BatchMode=yes \
             -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR \
             -o ConnectTimeout=5 root@10.46.0.2 hostname"
        );
    }

    #[test]
    fn a_fresh_key_pair_at_every_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = generate(dir.path()).expect("ssh-keygen");
        assert!(first.starts_with("ssh-ed25519 ") && first.ends_with(" bramble-lab"), "{first}");
        assert!(identity(dir.path()).is_file());
        let second = generate(dir.path()).expect("ssh-keygen again");
        assert_ne!(first, second, "a new pair replaces the old one");
        let checked = bramble_images::keys::parse_authorized_keys(&second);
        assert!(checked.is_ok(), "the API accepts the lab's key: {checked:?}");
    }
}
