//! The lab's stand-in for storage VLANs: per VLAN a veth pair whose controller end is
//! `<prefix><vid>` (in the caller's namespace, or in the controller's namespace given to
//! [`VethLinks::in_netns`]) and whose Pi end is `eth0` in a fresh namespace. The orchestrator
//! plugs it in behind its `StorageLinks` trait; netboot's tests use it directly.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::{Mutex, MutexGuard};

use crate::cmd::CmdError;
use crate::netns::Netns;
use crate::veth::{Veth, VethSpec};

/// Veth pairs standing in for storage VLANs, one per VLAN id; everything is removed on
/// [`VethLinks::remove`] or drop.
pub struct VethLinks {
    prefix: String,
    /// The namespace of the controller ends; `None` = the caller's.
    controller_netns: Option<String>,
    pis: Mutex<HashMap<u16, (Veth, Netns)>>,
}

impl VethLinks {
    /// `prefix` must be unique per run and at most 9 bytes (interface names are 15).
    pub fn new(prefix: &str) -> Self {
        VethLinks {
            prefix: prefix.to_string(),
            controller_netns: None,
            pis: Mutex::new(HashMap::new()),
        }
    }

    /// As [`VethLinks::new`], with every controller end in the namespace `netns` (a
    /// controller running in a namespace of its own).
    pub fn in_netns(prefix: &str, netns: &str) -> Self {
        VethLinks { controller_netns: Some(netns.to_string()), ..Self::new(prefix) }
    }

    pub fn ifname(&self, vid: u16) -> String {
        format!("{}{vid}", self.prefix)
    }

    /// The namespace standing in for the Pi on `vid`, to run clients in.
    pub fn pi_netns(&self, vid: u16) -> Option<String> {
        self.lock().get(&vid).map(|(_, ns)| ns.name().to_string())
    }

    /// Makes sure the pair for `vid` exists with `controller_addr/30` on the controller
    /// end; returns that end's name. Idempotent.
    pub fn ensure(&self, vid: u16, controller_addr: Ipv4Addr) -> Result<String, CmdError> {
        let ifname = self.ifname(vid);
        // Held while the pair is made: two callers racing for one VLAN must not both
        // create (and the loser delete) the same namespace.
        let mut pis = self.lock();
        if pis.contains_key(&vid) {
            return Ok(ifname);
        }
        let ns = Netns::new(&format!("{ifname}pi"))?;
        let spec = VethSpec {
            host_if: ifname.clone(),
            host_addr: controller_addr,
            prefix_len: 30,
            peer_if: "eth0".into(),
            peer_addr: None,
        };
        let veth = match &self.controller_netns {
            Some(host) => Veth::create_between(spec, &Netns::existing(host), &ns)?,
            None => Veth::create(spec, &ns)?,
        };
        pis.insert(vid, (veth, ns));
        Ok(ifname)
    }

    /// Removes the pair and namespace of `vid`; a missing one is not an error.
    pub fn remove(&self, vid: u16) {
        // Dropping the pair and namespace deletes them.
        self.lock().remove(&vid);
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u16, (Veth, Netns)>> {
        self.pis.lock().unwrap_or_else(|e| e.into_inner())
    }
}
