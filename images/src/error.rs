//! The crate's error type: one enum whose variants carry the context (file, command,
//! recipe, Pi) needed to act on them without the source being repeated in the message.

use std::path::PathBuf;

/// Everything that can go wrong building images, provisioning roots or exporting them.
#[derive(Debug, thiserror::Error)]
pub enum ImagesError {
    #[error("could not read recipe {path}")]
    RecipeRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("recipe {origin} is not valid TOML for a recipe")]
    RecipeParse {
        origin: String,
        #[source]
        source: Box<toml::de::Error>,
    },
    #[error("recipe {origin}: {reason}")]
    RecipeInvalid { origin: String, reason: String },
    #[error("no recipe named {name:?} in the catalogue")]
    UnknownRecipe { name: String },
    #[error("image {name:?} has no registered base")]
    NoBase { name: String },
    #[error("{what} {value:?} is not valid: {reason}")]
    InvalidInput { what: &'static str, value: String, reason: String },
    #[error("I/O error on {path} while {action}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the filesystem holding {path} is full")]
    DiskFull { path: PathBuf },
    #[error("could not start `{command}`")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` exited with {status}: {stderr}")]
    CommandFailed { command: String, status: String, stderr: String },
    #[error("host is missing {what}: {hint}")]
    HostMissing { what: String, hint: String },
    #[error("the boot directory cannot be assembled: {reason}")]
    BootFiles { reason: String },
    #[error("manifest {path} is malformed")]
    Manifest {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("reimage journal {path} is malformed: {reason}")]
    Journal { path: PathBuf, reason: String },
    #[error("Pi {pi} has no snapshot {id:?}")]
    SnapshotMissing { pi: String, id: String },
    #[error("{path} cannot be written safely: {reason}")]
    UnsafeRoot { path: PathBuf, reason: String },
    #[error("injected crash at {point}")]
    InjectedCrash { point: String },
    #[error("NFS export of {path} for {client} failed: {reason}")]
    Export { client: String, path: PathBuf, reason: String },
    #[error("nfs-ganesha did not log a finished export reload in {log} within {waited:?}")]
    ReloadNotSeen { log: PathBuf, waited: std::time::Duration },
}

impl ImagesError {
    /// Wraps an I/O error, turning ENOSPC/EDQUOT into [`ImagesError::DiskFull`] so callers
    /// can tell a full disk from other failures.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        let path = path.into();
        match source.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => ImagesError::DiskFull { path },
            _ => ImagesError::Io { action, path, source },
        }
    }

    /// True when the failure was the disk filling up.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, ImagesError::DiskFull { .. })
    }
}

pub type Result<T, E = ImagesError> = std::result::Result<T, E>;
