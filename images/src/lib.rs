//! OS images and per-Pi roots: image recipes (TOML data), debootstrap builds into
//! immutable versioned bases, per-Pi root provisioning (btrfs snapshot, reflink, copy)
//! with atomic swaps, per-Pi customisation, and NFS exports (kernel exportfs, nfs-ganesha).

mod beneath;
pub mod build;
pub mod catalogue;
pub mod cmd;
pub mod customize;
mod error;
pub mod fixture;
pub mod fsutil;
pub mod keys;
pub mod manifest;
pub mod network;
pub mod nfs;
pub mod provision;
pub mod recipe;
pub mod store;

pub use build::{BuildProgress, BuildStage, NoProgress, build, build_cached};
pub use catalogue::Catalogue;
pub use cmd::{CommandLine, CommandRunner, RecordingRunner, SystemRunner};
pub use customize::{PiIdentity, PiName, RESCUE_MOUNT, add_rescue_mount, host_key_fingerprints};
pub use error::{ImagesError, Result};
pub use keys::KeyFingerprint;
pub use manifest::Manifest;
pub use nfs::{Export, NfsExporter};
pub use provision::strategy::Strategy;
pub use provision::{PiRoot, Roots};
pub use recipe::{NetworkStyle, Recipe};
pub use store::{Base, ImageStore};
