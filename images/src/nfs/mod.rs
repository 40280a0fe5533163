//! NFS exports of per-Pi roots: one export per Pi, read-write only from the Pi's
//! storage address (.2/32), root not squashed. Backends: the kernel server via
//! `exportfs` and nfs-ganesha. A Pi in rescue has a second export, of its rescue root
//! (`roots/<pi>_rescue`, [`crate::PiName::rescue`]), to the same /32 only: its own id and
//! its own pseudo path `/rescue/<client>`.

pub mod exportfs;
pub mod ganesha;

use std::net::Ipv4Addr;
use std::path::PathBuf;

use crate::error::{ImagesError, Result};

pub use exportfs::KernelExporter;
pub use ganesha::{GaneshaControl, GaneshaExporter};

/// One Pi's export.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Export {
    /// Ganesha's Export_Id (1-65535); unique per server.
    pub id: u16,
    /// The Pi's storage address; the only client allowed.
    pub client: Ipv4Addr,
    /// The Pi's root directory.
    pub path: PathBuf,
}

impl Export {
    /// An export whose id is the low 16 bits of the client address (unique within a /16
    /// of per-Pi /30s); validates the path. A rescue root's export
    /// ([`Export::is_rescue`]) takes the id of the client's address with the lowest bit
    /// flipped: the /30's `.3`, which is never a Pi's `.2`.
    pub fn new(client: Ipv4Addr, path: PathBuf) -> Result<Self> {
        let o = client.octets();
        let mut id = u16::from_be_bytes([o[2], o[3]]);
        if is_rescue_path(&path) {
            id ^= 1;
        }
        Export::with_id(id.max(1), client, path)
    }

    pub fn with_id(id: u16, client: Ipv4Addr, path: PathBuf) -> Result<Self> {
        let text = path.to_string_lossy();
        let ok = path.is_absolute()
            && !text.chars().any(|c| c.is_whitespace() || "\"(),;{}#".contains(c));
        if !ok || id == 0 {
            return Err(ImagesError::Export {
                client: client.to_string(),
                path,
                reason:
                    "path must be absolute without whitespace or config punctuation, id non-zero"
                        .into(),
            });
        }
        Ok(Export { id, client, path })
    }

    /// The NFSv4 pseudo path (and, with ganesha's Mount_Path_Pseudo, the v3 mount path):
    /// `/export/<client>`, as in `nfsroot=10.46.189.1:/export/10.46.189.2`.
    /// A rescue root's is `/rescue/<client>`.
    pub fn pseudo_path(&self) -> String {
        let top = if self.is_rescue() { "rescue" } else { "export" };
        format!("/{top}/{}", self.client)
    }

    /// Whether this exports a Pi's rescue root (`roots/<pi>_rescue`) rather than its own.
    pub fn is_rescue(&self) -> bool {
        is_rescue_path(&self.path)
    }
}

fn is_rescue_path(path: &std::path::Path) -> bool {
    path.file_name().is_some_and(|n| n.to_string_lossy().ends_with(crate::customize::RESCUE_SUFFIX))
}

/// Adds and removes per-Pi exports on a live NFS server, keeping them across restarts. A
/// client has at most one own-root export and one rescue export.
pub trait NfsExporter: Send + Sync {
    /// Exports `export.path` to `export.client` only; idempotent.
    fn add(&self, export: &Export) -> Result<()>;
    /// Withdraws the export; removing an absent export is not an error.
    fn remove(&self, export: &Export) -> Result<()>;
    /// The exports this backend manages.
    fn list(&self) -> Result<Vec<Export>>;
    /// The path the Pi mounts (the `nfsroot=` path on its kernel command line).
    fn mount_path(&self, export: &Export) -> String;
    /// Exports `export` after the directory at its path was replaced (a reimage swaps
    /// roots): the server must serve the new directory, not the one it resolved before.
    fn reexport(&self, export: &Export) -> Result<()> {
        self.remove(export)?;
        self.add(export)
    }
    /// Whether the server can export a btrfs subvolume created after it started. The
    /// kernel's nfsd can; nfs-ganesha's VFS FSAL cannot (it logs "may have unsupported
    /// subvols" and fails to resolve the export's filesystem), so roots it serves must be
    /// plain directories ([`crate::ImageStore::without_subvolumes`]).
    fn exports_new_subvolumes(&self) -> bool {
        true
    }
}
