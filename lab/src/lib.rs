//! Virtual hardware for Bramble's lab and tests: network namespaces that stand in for
//! Pis and veth pairs that stand in for per-Pi storage VLANs.
//!
//! The kernels Bramble is developed on have no 802.1Q or bridge support, so the
//! controller side of a storage network is one end of a veth pair and the Pi side is the
//! other end, moved into the Pi's namespace. Everything here shells out to `ip` from
//! iproute2 and needs root. Lab Pis are simulated (`pisim`) or QEMU machines running a
//! real kernel (`qemupi`).

pub mod anchor;
mod cmd;
mod error;
pub mod ganesha;
mod links;
mod netns;
pub mod pisim;
pub mod qemupi;
mod runtime;
pub mod storm;
mod veth;

pub use cmd::{CmdError, run as run_cmd, run_ip};
pub use error::{LabError, require_tools};
pub use links::VethLinks;
pub use netns::{Netns, enter as enter_netns};
pub use runtime::{NetnsRuntime, NetnsRuntimeError, runtime_in};
pub use veth::{Veth, VethSpec};

/// A process-unique name with the given prefix, short enough for an interface name
/// (15 bytes) when the prefix is at most 5 bytes.
pub fn unique_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{:x}{n:x}", std::process::id() & 0xffff)
}
