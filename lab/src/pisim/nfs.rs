//! Checking an NFS root the way a booting kernel would find it wanting: read
//! `etc/hostname` and `root/.ssh/authorized_keys` through libnfs's `nfs-cat` (NFSv3 by
//! default), run inside the Pi's namespace so the request leaves from the Pi's address.

use std::net::Ipv4Addr;
use std::time::Duration;

use super::state::BootFailure;

/// What the root must contain.
#[derive(Debug, Clone)]
pub struct RootExpectation<'a> {
    pub hostname: &'a str,
    pub key: &'a str,
}

/// Reads the two files and compares them with `expect`.
pub async fn check_root(
    netns: &str,
    server: Ipv4Addr,
    path: &str,
    expect: RootExpectation<'_>,
    limit: Duration,
) -> Result<(), BootFailure> {
    let base = path.trim_end_matches('/');
    let wrong = |problem: String| BootFailure::WrongRoot { path: path.to_string(), problem };
    let hostname = match cat(netns, server, &format!("{base}/etc/hostname"), limit).await? {
        Some(text) => text,
        None => return Err(wrong("no etc/hostname".into())),
    };
    if hostname.trim() != expect.hostname {
        return Err(wrong(format!(
            "hostname is {:?}, expected {:?}",
            hostname.trim(),
            expect.hostname
        )));
    }
    let keys = cat(netns, server, &format!("{base}/root/.ssh/authorized_keys"), limit)
        .await?
        .ok_or_else(|| wrong("no root/.ssh/authorized_keys".into()))?;
    if !keys.lines().any(|l| l.trim() == expect.key.trim()) {
        return Err(wrong("authorized_keys lacks the expected key".into()));
    }
    Ok(())
}

/// `nfs-cat nfs://SERVER/FILE` in `netns`: `Ok(None)` when the server answered but the
/// file is missing, `NfsUnreachable` when the server or export could not be used.
async fn cat(
    netns: &str,
    server: Ipv4Addr,
    file: &str,
    limit: Duration,
) -> Result<Option<String>, BootFailure> {
    let url = format!("nfs://{server}{file}");
    let unreachable =
        |detail: String| BootFailure::NfsUnreachable { server, path: file.to_string(), detail };
    let mut cmd = tokio::process::Command::new("ip");
    cmd.args(["netns", "exec", netns, "nfs-cat", &url]).kill_on_drop(true);
    tracing::debug!(%url, netns, "nfs-cat");
    let out = match tokio::time::timeout(limit, cmd.output()).await {
        Err(_) => return Err(unreachable(format!("nfs-cat gave no answer in {limit:?}"))),
        Ok(Err(e)) => return Err(unreachable(format!("could not run nfs-cat: {e}"))),
        Ok(Ok(out)) => out,
    };
    if out.status.success() {
        return Ok(Some(String::from_utf8_lossy(&out.stdout).into_owned()));
    }
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if is_missing_file(&stderr) { Ok(None) } else { Err(unreachable(stderr)) }
}

/// libnfs reports a missing file with NFS3ERR_NOENT from the open/lookup, after a
/// successful mount; a missing export fails in the mount call instead.
fn is_missing_file(stderr: &str) -> bool {
    let lower = stderr.to_ascii_lowercase();
    lower.contains("noent") && !lower.contains("mount")
}
