//! A veth pair standing in for a storage VLAN: one end on the controller, the other in a
//! Pi's namespace, named `eth0` there as on a real Pi.

use std::net::Ipv4Addr;

use crate::cmd::{CmdError, run_ip};
use crate::netns::Netns;

/// What to build: the controller-side name and address, the namespace and address of the
/// far end. `peer_addr` of `None` leaves the Pi side unaddressed, as a Pi is before DHCP.
#[derive(Debug, Clone)]
pub struct VethSpec {
    pub host_if: String,
    pub host_addr: Ipv4Addr,
    pub prefix_len: u8,
    pub peer_if: String,
    pub peer_addr: Option<Ipv4Addr>,
}

/// A live veth pair; the host end is deleted on drop (which deletes the peer too).
#[derive(Debug)]
pub struct Veth {
    spec: VethSpec,
    /// The namespace of the host end; `None` = the caller's.
    host_ns: Option<String>,
    owned: bool,
}

impl Veth {
    /// Creates the pair, moves the peer into `ns`, addresses both ends and brings them up.
    /// A stale host interface of the same name is removed first.
    pub fn create(spec: VethSpec, ns: &Netns) -> Result<Self, CmdError> {
        Self::make(spec, None, ns)
    }

    /// As [`Veth::create`], with the host end in `host` instead of the caller's namespace
    /// (a controller that runs in a namespace of its own).
    pub fn create_between(spec: VethSpec, host: &Netns, ns: &Netns) -> Result<Self, CmdError> {
        Self::make(spec, Some(host.name().to_string()), ns)
    }

    fn make(spec: VethSpec, host_ns: Option<String>, ns: &Netns) -> Result<Self, CmdError> {
        let host = |args: &[&str]| host_ip(host_ns.as_deref(), args);
        let _ = host(&["link", "del", &spec.host_if]);
        let tmp_peer = format!("{}p", truncate(&spec.host_if, 14));
        host(&["link", "add", &spec.host_if, "type", "veth", "peer", "name", &tmp_peer])?;
        let veth = Veth { spec, host_ns: host_ns.clone(), owned: true };
        let s = &veth.spec;
        host(&["link", "set", &tmp_peer, "netns", ns.name()])?;
        ns.ip(&["link", "set", &tmp_peer, "name", &s.peer_if])?;
        host(&["addr", "add", &format!("{}/{}", s.host_addr, s.prefix_len), "dev", &s.host_if])?;
        host(&["link", "set", &s.host_if, "up"])?;
        if let Some(peer) = s.peer_addr {
            ns.ip(&["addr", "add", &format!("{peer}/{}", s.prefix_len), "dev", &s.peer_if])?;
        }
        ns.ip(&["link", "set", &s.peer_if, "up"])?;
        Ok(veth)
    }

    pub fn spec(&self) -> &VethSpec {
        &self.spec
    }

    pub fn host_if(&self) -> &str {
        &self.spec.host_if
    }

    /// Sets the link state of the host end; a Pi "loses power" when its link goes down.
    pub fn set_up(&self, up: bool) -> Result<(), CmdError> {
        let state = if up { "up" } else { "down" };
        host_ip(self.host_ns.as_deref(), &["link", "set", &self.spec.host_if, state]).map(drop)
    }

    /// Keeps the pair after this value is dropped.
    pub fn leak(mut self) {
        self.owned = false;
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        if self.owned {
            let _ = host_ip(self.host_ns.as_deref(), &["link", "del", &self.spec.host_if]);
        }
    }
}

/// `ip ARGS...` in `netns`, or in the caller's namespace for `None`.
fn host_ip(netns: Option<&str>, args: &[&str]) -> Result<String, CmdError> {
    match netns {
        Some(ns) => run_ip(&[&["-n", ns], args].concat()),
        None => run_ip(args),
    }
}

fn truncate(s: &str, max: usize) -> &str {
    &s[..s.len().min(max)]
}
