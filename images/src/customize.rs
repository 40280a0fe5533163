//! Per-Pi customisation of a freshly provisioned root: hostname, /etc/hosts, the public
//! network, the customer's authorized_keys, new SSH host keys and machine-id. Nothing
//! here is ever copied from another Pi: identity is generated inside each root.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::beneath;
use crate::cmd::{CommandLine, CommandRunner};
use crate::error::{ImagesError, Result};
use crate::fsutil::{remove_tree, write_file};
use crate::keys::{AuthorizedKey, KeyFingerprint};
use crate::manifest::Manifest;
use crate::network::{self, PublicNetwork};
use crate::recipe::NetworkStyle;

/// Where a rescue system mounts the Pi's own root.
pub const RESCUE_MOUNT: &str = "/mnt/root";

/// The `etc/fstab` line of a rescue root that mounts the Pi's own root (`server:path`,
/// exported to the same Pi) at [`RESCUE_MOUNT`]. NFSv3 over TCP with every option the
/// kernel needs given as text (`addr=`, `nolock`), so util-linux `mount` works without
/// `mount.nfs` (an image without nfs-common) by handing them to the kernel; `nofail`
/// keeps the rescue system booting when the mount fails.
pub fn rescue_mount_line(server: std::net::Ipv4Addr, path: &str) -> String {
    format!(
        "{server}:{path} {RESCUE_MOUNT} nfs vers=3,proto=tcp,nolock,addr={server},mountaddr={server},nofail,_netdev 0 0"
    )
}

/// Makes the rescue root at `root` mount the Pi's own root at [`RESCUE_MOUNT`]: the
/// mount point and one `etc/fstab` line (rewritten, so a re-run changes nothing).
pub fn add_rescue_mount(root: &Path, server: std::net::Ipv4Addr, path: &str) -> Result<()> {
    let mount_point = root.join(RESCUE_MOUNT.trim_start_matches('/'));
    std::fs::create_dir_all(&mount_point)
        .map_err(|e| ImagesError::io("creating the rescue mount point", &mount_point, e))?;
    let fstab = root.join("etc/fstab");
    let old = std::fs::read_to_string(&fstab).unwrap_or_default();
    let mut text: String = old
        .lines()
        .filter(|l| l.split_whitespace().nth(1) != Some(RESCUE_MOUNT))
        .map(|l| format!("{l}\n"))
        .collect();
    text.push_str(&rescue_mount_line(server, path));
    text.push('\n');
    write_file(&fstab, &text, 0o644)
}

/// A Pi's name in the store (`roots/<name>`): lowercase letters, digits, `-`, `_`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PiName(String);

impl PiName {
    pub fn new(name: &str) -> Result<Self> {
        let ok = !name.is_empty()
            && name.len() <= 63
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if ok {
            Ok(PiName(name.to_string()))
        } else {
            Err(ImagesError::InvalidInput {
                what: "Pi name",
                value: name.into(),
                reason: "use [a-z0-9_-], at most 63".into(),
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name of this Pi's rescue root (`<name>_rescue`): a sibling of its own root,
    /// never a Pi's own name (inventory ids have no `_`), and exported as a rescue export
    /// ([`crate::nfs::Export::is_rescue`]).
    pub fn rescue(&self) -> Result<PiName> {
        PiName::new(&format!("{}{RESCUE_SUFFIX}", self.0))
    }

    /// Whether this names a rescue root.
    pub fn is_rescue(&self) -> bool {
        self.0.ends_with(RESCUE_SUFFIX)
    }
}

/// What [`PiName::rescue`] appends.
pub const RESCUE_SUFFIX: &str = "_rescue";

impl TryFrom<String> for PiName {
    type Error = ImagesError;
    fn try_from(s: String) -> Result<Self> {
        PiName::new(&s)
    }
}

impl From<PiName> for String {
    fn from(p: PiName) -> String {
        p.0
    }
}

impl fmt::Display for PiName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Everything written into one Pi's root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PiIdentity {
    pub hostname: String,
    pub public_vlan: u16,
    pub ipv6_address: std::net::Ipv6Addr,
    pub ipv6_prefix_len: u8,
    pub ipv6_gateway: std::net::Ipv6Addr,
    /// Validated key lines (see [`AuthorizedKey`]).
    pub authorized_keys: Vec<String>,
}

impl PiIdentity {
    /// Checks the hostname (RFC 1123 label), VLAN, prefix and every key line.
    pub fn validate(&self) -> Result<Vec<AuthorizedKey>> {
        let h = &self.hostname;
        let label_ok = !h.is_empty()
            && h.len() <= 63
            && !h.starts_with('-')
            && !h.ends_with('-')
            && h.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !label_ok {
            return Err(ImagesError::InvalidInput {
                what: "hostname",
                value: h.clone(),
                reason: "must be one RFC 1123 label".into(),
            });
        }
        if !(1..=4094).contains(&self.public_vlan) {
            return Err(ImagesError::InvalidInput {
                what: "public VLAN",
                value: self.public_vlan.to_string(),
                reason: "must be 1-4094".into(),
            });
        }
        if !(1..=128).contains(&self.ipv6_prefix_len) {
            return Err(ImagesError::InvalidInput {
                what: "IPv6 prefix length",
                value: self.ipv6_prefix_len.to_string(),
                reason: "must be 1-128".into(),
            });
        }
        self.authorized_keys.iter().map(|k| AuthorizedKey::parse(k)).collect()
    }

    pub fn network(&self) -> PublicNetwork {
        PublicNetwork {
            vlan: self.public_vlan,
            address: self.ipv6_address,
            prefix_len: self.ipv6_prefix_len,
            gateway: self.ipv6_gateway,
        }
    }
}

/// SSH host key types generated per Pi.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKeyType {
    Ed25519,
    /// 3072-bit; needed by old clients, but costs about a second of CPU per Pi.
    Rsa,
}

impl HostKeyType {
    pub fn name(self) -> &'static str {
        match self {
            HostKeyType::Ed25519 => "ed25519",
            HostKeyType::Rsa => "rsa",
        }
    }
}

/// The host keys a Pi gets unless configured otherwise.
pub const DEFAULT_HOST_KEYS: &[HostKeyType] = &[HostKeyType::Ed25519, HostKeyType::Rsa];

/// Writes the identity into `root` (built from the base described by `manifest`),
/// generating the `host_keys` types afresh.
pub fn customize(
    runner: &dyn CommandRunner,
    root: &Path,
    manifest: &Manifest,
    id: &PiIdentity,
    host_keys: &[HostKeyType],
) -> Result<()> {
    let keys = id.validate()?;
    write_file(&root.join("etc/hostname"), &format!("{}\n", id.hostname), 0o644)?;
    write_file(&root.join("etc/hosts"), &render_hosts(id), 0o644)?;
    for (rel, text) in network::render(manifest.network, &id.network()) {
        write_file(&root.join(rel), &text, 0o644)?;
    }
    if manifest.network == NetworkStyle::SystemdNetworkd {
        enable_networkd(root)?;
    }
    let mut ak: String = keys.iter().map(|k| format!("{}\n", k.as_str())).collect();
    if ak.is_empty() {
        ak.push_str("# No keys uploaded.\n");
    }
    let ssh_dir = root.join("root/.ssh");
    write_file(&ssh_dir.join("authorized_keys"), &ak, 0o600)?;
    set_mode(&ssh_dir, 0o700)?;
    generate_host_keys(runner, root, &id.hostname, host_keys)?;
    write_file(&root.join("etc/machine-id"), &format!("{}\n", random_hex(16)?), 0o444)?;
    tracing::info!(root = %root.display(), hostname = %id.hostname, keys = keys.len(), "customised root");
    Ok(())
}

/// `/etc/hosts` naming the Pi on loopback and on its public address.
pub fn render_hosts(id: &PiIdentity) -> String {
    format!(
        "127.0.0.1\tlocalhost\n127.0.1.1\t{h}\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         ff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n{a}\t{h}\n",
        h = id.hostname,
        a = id.ipv6_address
    )
}

/// Where a root keeps its SSH host keys, relative to the root.
const HOST_KEY_DIR: &str = "etc/ssh";

/// The ssh-keygen command creating one host key of `kind` inside `root`.
pub fn host_key_command(root: &Path, kind: HostKeyType, hostname: &str) -> CommandLine {
    let file = root.join(HOST_KEY_DIR).join(format!("ssh_host_{}_key", kind.name()));
    let mut cmd = CommandLine::new("ssh-keygen")
        .args(["-q", "-t", kind.name(), "-N", "", "-C"])
        .arg(format!("root@{hostname}"));
    if kind == HostKeyType::Rsa {
        cmd = cmd.args(["-b", "3072"]);
    }
    cmd.arg("-f").path_arg(&file)
}

fn generate_host_keys(
    runner: &dyn CommandRunner,
    root: &Path,
    hostname: &str,
    kinds: &[HostKeyType],
) -> Result<()> {
    let ssh = root.join(HOST_KEY_DIR);
    std::fs::create_dir_all(&ssh).map_err(|e| ImagesError::io("creating directory", &ssh, e))?;
    // Whatever the base or an earlier customisation left, no key survives.
    crate::build::nfsroot::strip_identity(root)?;
    for kind in kinds {
        runner.run(&host_key_command(root, *kind, hostname))?;
    }
    Ok(())
}

/// The fingerprints of the SSH host keys in `root`, read from its
/// `etc/ssh/ssh_host_*_key.pub` files (so what is reported is what is on disk), in file
/// name order. A root without `etc/ssh` has none. The root is its Pi's: a file that is
/// not a small regular public key, or a path through a symlink, is left out and logged.
pub fn host_key_fingerprints(root: &Path) -> Result<Vec<KeyFingerprint>> {
    const MAX: u64 = 16 * 1024;
    let rel = Path::new(HOST_KEY_DIR);
    let dir = match beneath::open_dir(root, rel) {
        Ok(dir) => dir,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) if beneath::is_escape(&e) => {
            tracing::warn!(root = %root.display(), "etc/ssh is reached through a symlink; no host keys read");
            return Ok(Vec::new());
        }
        Err(e) => return Err(ImagesError::io("opening", root.join(rel), e)),
    };
    let names =
        beneath::file_names(&dir).map_err(|e| ImagesError::io("listing", root.join(rel), e))?;
    let mut found = Vec::new();
    for name in names.iter().filter(|n| n.starts_with("ssh_host_") && n.ends_with("_key.pub")) {
        let path = root.join(rel).join(name);
        let text = match beneath::read_small_at(&dir, Path::new(name), MAX) {
            Ok(Some(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
            Ok(None) => {
                tracing::warn!(file = %path.display(), "host key is not a small regular file; left out");
                continue;
            }
            Err(e) if beneath::is_escape(&e) => {
                tracing::warn!(file = %path.display(), "host key is a symlink; left out");
                continue;
            }
            Err(e) => return Err(ImagesError::io("reading", path, e)),
        };
        match KeyFingerprint::of_line(&text) {
            Ok(fp) => found.push(fp),
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "host key unreadable; left out")
            }
        }
    }
    Ok(found)
}

fn enable_networkd(root: &Path) -> Result<()> {
    let link: PathBuf =
        root.join("etc/systemd/system/multi-user.target.wants/systemd-networkd.service");
    if let Some(parent) = link.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| ImagesError::io("creating directory", parent, e))?;
    }
    remove_tree(&link)?;
    std::os::unix::fs::symlink("/lib/systemd/system/systemd-networkd.service", &link)
        .map_err(|e| ImagesError::io("enabling systemd-networkd", &link, e))
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| ImagesError::io("chmod", path, e))
}

/// `n` random bytes from the kernel as lowercase hex.
pub fn random_hex(n: usize) -> Result<String> {
    let mut buf = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(|e| ImagesError::io("reading", "/dev/urandom", e))?;
    Ok(hex::encode(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn identity() -> PiIdentity {
        PiIdentity {
            hostname: "pi-0042".into(),
            public_vlan: 131,
            ipv6_address: "2a00:1098:0:84:1000:1::2".parse().expect("addr"),
            ipv6_prefix_len: 64,
            ipv6_gateway: "2a00:1098:0:84::1".parse().expect("gw"),
            authorized_keys: vec![],
        }
    }

    #[test]
    fn a_rescue_root_mounts_the_pis_root_once_whatever_the_re_runs() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("etc")).expect("etc");
        std::fs::write(dir.path().join("etc/fstab"), "proc /proc proc defaults 0 0\n")
            .expect("fstab");
        let server = std::net::Ipv4Addr::new(10, 46, 189, 1);
        for _ in 0..2 {
            add_rescue_mount(dir.path(), server, "/export/10.46.189.2").expect("mount");
        }
        let fstab = std::fs::read_to_string(dir.path().join("etc/fstab")).expect("fstab");
        assert_eq!(
            fstab,
            "proc /proc proc defaults 0 0\n10.46.189.1:/export/10.46.189.2 /mnt/root nfs \
             vers=3,proto=tcp,nolock,addr=10.46.189.1,mountaddr=10.46.189.1,nofail,_netdev 0 0\n"
        );
        assert!(dir.path().join("mnt/root").is_dir());
        let name = PiName::new("pi-1").expect("name");
        assert_eq!(name.rescue().expect("rescue").as_str(), "pi-1_rescue");
        assert!(name.rescue().expect("rescue").is_rescue() && !name.is_rescue());
    }

    #[test]
    fn identity_validation() {
        assert!(identity().validate().is_ok());
        for bad in ["", "-x", "a.b", "pi 1", &"x".repeat(64)] {
            let id = PiIdentity { hostname: bad.into(), ..identity() };
            assert!(id.validate().is_err(), "{bad:?}");
        }
        assert!(PiIdentity { public_vlan: 0, ..identity() }.validate().is_err());
        assert!(
            PiIdentity { authorized_keys: vec!["nope".into()], ..identity() }.validate().is_err()
        );
        assert!(
            PiName::new("pi-7").is_ok()
                && PiName::new("pi.7").is_err()
                && PiName::new("../x").is_err()
        );
    }

    #[test]
    fn hosts_and_host_key_commands() {
        let hosts = render_hosts(&identity());
        assert!(
            hosts.contains("127.0.1.1\tpi-0042\n")
                && hosts.contains("2a00:1098:0:84:1000:1:0:2\tpi-0042\n")
        );
        assert_eq!(
            host_key_command(Path::new("/r"), HostKeyType::Rsa, "pi-0042").to_string(),
            "ssh-keygen -q -t rsa -N  -C root@pi-0042 -b 3072 -f /r/etc/ssh/ssh_host_rsa_key"
        );
    }
}
