//! The verdicts about the image store: its filesystem and root strategy, and the disk
//! the enrolled slots' roots still need.

use std::path::PathBuf;

use bramble_images::Strategy;

use super::{COPY_WARN_SLOTS, COW_ROOT_BYTES};
use crate::doctor::Check;

/// The image store's filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreFacts {
    pub dir: PathBuf,
    /// False when the store is created at first start (the facts are of its parent).
    pub exists: bool,
    pub filesystem: String,
    pub strategy: Result<Strategy, String>,
    pub free: Result<u64, String>,
    /// Size of each registered base.
    pub base_sizes: Vec<u64>,
    /// Per-Pi roots on disk.
    pub roots: u64,
}

pub fn store(facts: &StoreFacts, slots: Option<u64>) -> Check {
    const NAME: &str = "image store";
    let place = if facts.exists {
        format!("{} on {}", facts.dir.display(), facts.filesystem)
    } else {
        format!("{} (created at first start) on {}", facts.dir.display(), facts.filesystem)
    };
    match &facts.strategy {
        Err(e) => Check::warn(
            NAME,
            format!("{place}: cannot probe the root strategy: {e}"),
            "run doctor as the service user (or root) so it can write a probe file there",
        ),
        Ok(Strategy::Copy) if slots.unwrap_or(0) > COPY_WARN_SLOTS => Check::warn(
            NAME,
            format!(
                "{place}: roots are full copies (copy) for {} enrolled slots",
                slots.unwrap_or(0)
            ),
            "put the store on btrfs (snapshots) or XFS with reflink=1: every reimage copies a whole root",
        ),
        Ok(s) => Check::ok(NAME, format!("{place}: roots made by {s}")),
    }
}

/// Disk the roots of the enrolled slots still need.
pub fn roots_needed(strategy: Strategy, slots: u64, roots: u64, base_sizes: &[u64]) -> u64 {
    let missing = slots.saturating_sub(roots);
    let per_root = match strategy {
        Strategy::Copy => base_sizes.iter().copied().max().unwrap_or(0),
        Strategy::BtrfsSnapshot | Strategy::Reflink => COW_ROOT_BYTES,
    };
    missing.saturating_mul(per_root)
}

pub fn disk(facts: &StoreFacts, slots: Option<u64>) -> Check {
    const NAME: &str = "disk";
    let free = match &facts.free {
        Ok(f) => *f,
        Err(e) => {
            return Check::warn(
                NAME,
                format!("cannot read free space: {e}"),
                "check the store directory",
            );
        }
    };
    let Some(slots) = slots else {
        return Check::ok(NAME, format!("{} free (enrolled slots unknown)", bytes(free)));
    };
    let strategy = facts.strategy.clone().unwrap_or(Strategy::Copy);
    let need = roots_needed(strategy, slots, facts.roots, &facts.base_sizes);
    let detail = format!(
        "{} free; the roots of {slots} enrolled slots ({} on disk) need about {} more ({strategy})",
        bytes(free),
        facts.roots,
        bytes(need)
    );
    if free < need {
        Check::fail(
            NAME,
            detail,
            "free disk on the image store, or move it to a larger (copy-on-write) filesystem",
        )
    } else if free < need.saturating_mul(2) {
        Check::warn(
            NAME,
            detail,
            "reinstalls keep the replaced root as a snapshot: leave room for them",
        )
    } else {
        Check::ok(NAME, detail)
    }
}

fn bytes(n: u64) -> String {
    const G: f64 = (1u64 << 30) as f64;
    const M: f64 = (1u64 << 20) as f64;
    if n >= 1 << 30 {
        format!("{:.1} GiB", n as f64 / G)
    } else {
        format!("{:.0} MiB", n as f64 / M)
    }
}
