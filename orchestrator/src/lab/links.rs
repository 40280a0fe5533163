//! The lab's storage links behind the controller's [`StorageLinks`] trait: veth pairs
//! from `bramble_lab::VethLinks` stand in for 802.1Q sub-interfaces.
//!
//! A controller in a process of its own (see `lab::process`) uses [`LastingLinks`]
//! instead: the same pairs, under the same names, that outlive the process that made
//! them, as cables outlive a controller's restart. Its Pis keep their namespaces when it
//! is killed, and the restarted controller takes the pairs over as they are.

use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Mutex;

use bramble_lab::{CmdError, Netns, Veth, VethLinks, VethSpec, run_ip};

use super::wiring::PiNetns;
use crate::links::{LinkError, StorageLinks, check_vid};

impl StorageLinks for VethLinks {
    fn ensure(&self, vid: u16, controller_addr: Ipv4Addr) -> Result<String, LinkError> {
        check_vid(vid)?;
        VethLinks::ensure(self, vid, controller_addr).map_err(|e| LinkError::Setup {
            ifname: self.ifname(vid),
            vid,
            source: e.into(),
        })
    }

    fn remove(&self, vid: u16) -> Result<(), LinkError> {
        check_vid(vid)?;
        VethLinks::remove(self, vid);
        Ok(())
    }
}

impl PiNetns for VethLinks {
    fn pi_netns(&self, vlan: u16) -> Option<String> {
        VethLinks::pi_netns(self, vlan)
    }
}

/// Veth pairs named as [`VethLinks`] names them (`<prefix><vid>` in the controller's
/// namespace, `eth0` in namespace `<prefix><vid>pi`), kept when this value is dropped:
/// a pair that already exists is taken over, so a restarted controller process finds
/// its Pis where they were. `lab::cleanup` removes them with the lab.
pub struct LastingLinks {
    prefix: String,
    controller_netns: String,
    /// Held while a pair is made: two callers must not both make one VLAN's pair.
    making: Mutex<()>,
}

impl LastingLinks {
    pub fn new(prefix: &str, controller_netns: &str) -> Self {
        LastingLinks {
            prefix: prefix.to_string(),
            controller_netns: controller_netns.to_string(),
            making: Mutex::new(()),
        }
    }

    pub fn ifname(&self, vid: u16) -> String {
        format!("{}{vid}", self.prefix)
    }

    fn pi_ns(&self, vid: u16) -> String {
        format!("{}pi", self.ifname(vid))
    }

    fn ctl_ip(&self, args: &[&str]) -> Result<String, CmdError> {
        run_ip(&[&["-n", self.controller_netns.as_str()], args].concat())
    }

    /// Takes over the pair of `vid` if both ends exist: sets the address and the link up.
    fn adopt(&self, vid: u16, controller_addr: Ipv4Addr) -> Result<bool, CmdError> {
        let ifname = self.ifname(vid);
        let exists =
            self.ctl_ip(&["link", "show", "dev", &ifname]).is_ok() && self.pi_netns(vid).is_some();
        if exists {
            self.ctl_ip(&["addr", "replace", &format!("{controller_addr}/30"), "dev", &ifname])?;
            self.ctl_ip(&["link", "set", &ifname, "up"])?;
        }
        Ok(exists)
    }

    fn make(&self, vid: u16, controller_addr: Ipv4Addr) -> Result<(), CmdError> {
        let ns = Netns::new(&self.pi_ns(vid))?;
        let spec = VethSpec {
            host_if: self.ifname(vid),
            host_addr: controller_addr,
            prefix_len: 30,
            peer_if: "eth0".into(),
            peer_addr: None,
        };
        Veth::create_between(spec, &Netns::existing(&self.controller_netns), &ns)?.leak();
        ns.leak();
        Ok(())
    }
}

impl PiNetns for LastingLinks {
    fn pi_netns(&self, vlan: u16) -> Option<String> {
        let name = self.pi_ns(vlan);
        Path::new("/var/run/netns").join(&name).exists().then_some(name)
    }
}

impl StorageLinks for LastingLinks {
    fn ensure(&self, vid: u16, controller_addr: Ipv4Addr) -> Result<String, LinkError> {
        check_vid(vid)?;
        let ifname = self.ifname(vid);
        let _making = self.making.lock().unwrap_or_else(|e| e.into_inner());
        let made = match self.adopt(vid, controller_addr) {
            Ok(true) => Ok(()),
            Ok(false) => self.make(vid, controller_addr),
            Err(e) => Err(e),
        };
        made.map_err(|e| LinkError::Setup { ifname: ifname.clone(), vid, source: e.into() })?;
        tracing::debug!(ifname, vid, %controller_addr, "lab storage link in place");
        Ok(ifname)
    }

    fn remove(&self, vid: u16) -> Result<(), LinkError> {
        check_vid(vid)?;
        let ifname = self.ifname(vid);
        if let Err(e) = self.ctl_ip(&["link", "del", &ifname]) {
            tracing::debug!(ifname, error = %e, "lab storage link already gone");
        }
        if let Err(e) = run_ip(&["netns", "del", &self.pi_ns(vid)]) {
            tracing::debug!(ifname, error = %e, "lab Pi namespace already gone");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vlan_ids_are_checked_before_anything_is_made() {
        let links = VethLinks::new("zzchk");
        let links: &dyn StorageLinks = &links;
        assert!(matches!(
            links.ensure(4095, Ipv4Addr::new(10, 101, 0, 1)),
            Err(LinkError::BadVid { vid: 4095 })
        ));
        assert!(matches!(links.remove(0), Err(LinkError::BadVid { vid: 0 })));
    }

    #[test]
    fn lasting_links_outlive_their_maker_and_are_taken_over() {
        let ctl = Netns::new("zzlstctl").expect("controller namespace");
        let addr = Ipv4Addr::new(10, 101, 0, 1);
        let first = LastingLinks::new("zzlst", ctl.name());
        assert_eq!(first.ensure(7, addr).expect("made"), "zzlst7");
        let pi = first.pi_netns(7).expect("the Pi's namespace");
        // A namespace made again is a new one, with another inode.
        let inode = |name: &str| {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(Path::new("/var/run/netns").join(name)).expect("namespace").ino()
        };
        let before = inode(&pi);
        drop(first);
        let again = LastingLinks::new("zzlst", ctl.name());
        assert_eq!(again.ensure(7, addr).expect("taken over"), "zzlst7");
        assert_eq!(inode(&pi), before, "the Pi's namespace was replaced");
        let shown = ctl.ip(&["-o", "addr", "show", "dev", "zzlst7"]).expect("controller end");
        assert!(shown.contains("10.101.0.1/30"), "{shown}");
        again.remove(7).expect("removed");
        assert_eq!(again.pi_netns(7), None);
        assert!(ctl.ip(&["link", "show", "dev", "zzlst7"]).is_err(), "controller end left");
    }
}
