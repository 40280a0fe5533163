//! Controller-side storage interfaces: make sure the interface for a Pi's storage VLAN
//! exists, is up and carries the `.1` of its /30, or remove it.
//!
//! Production uses 802.1Q sub-interfaces of a trunk ([`VlanLinks`]); the lab, whose
//! kernels lack VLAN support, plugs in `bramble_lab::VethLinks` (a veth pair per VLAN
//! with the Pi end in a namespace) through the same [`StorageLinks`] trait (see
//! `crate::lab::links`).

use std::net::Ipv4Addr;
use std::sync::Arc;

use bramble_images::{CommandLine, CommandRunner, SystemRunner};

/// Why a host command behind a storage link failed (the runner's own error: an `ip`
/// command line with its exit status and stderr, or the lab's veth setup).
pub type HostError = Box<dyn std::error::Error + Send + Sync>;

/// A storage link operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("could not set up storage interface {ifname} for VLAN {vid}")]
    Setup {
        ifname: String,
        vid: u16,
        #[source]
        source: HostError,
    },
    #[error("could not remove storage interface {ifname}")]
    Remove {
        ifname: String,
        #[source]
        source: HostError,
    },
    #[error("VLAN id {vid} is outside 1..=4094")]
    BadVid { vid: u16 },
}

/// What the orchestrator needs from the host for storage networks.
pub trait StorageLinks: Send + Sync {
    /// Makes sure the interface for `vid` exists, is up and has `controller_addr/30`;
    /// returns its name. Idempotent.
    fn ensure(&self, vid: u16, controller_addr: Ipv4Addr) -> Result<String, LinkError>;
    /// Removes the interface for `vid`; removing a missing one is not an error.
    fn remove(&self, vid: u16) -> Result<(), LinkError>;
}

/// 802.1Q sub-interfaces `<trunk>.<vid>` of a trunk interface, made with `ip` through a
/// [`CommandRunner`] (the system's in production, a recorder in tests).
#[derive(Clone)]
pub struct VlanLinks {
    pub trunk: String,
    runner: Arc<dyn CommandRunner>,
}

impl VlanLinks {
    /// Sub-interfaces of `trunk`, made by running `ip` for real.
    pub fn new(trunk: &str) -> Self {
        VlanLinks::with_runner(trunk, Arc::new(SystemRunner))
    }

    pub fn with_runner(trunk: &str, runner: Arc<dyn CommandRunner>) -> Self {
        VlanLinks { trunk: trunk.to_string(), runner }
    }

    pub fn ifname(&self, vid: u16) -> String {
        format!("{}.{vid}", self.trunk)
    }

    fn ip(&self, args: &[String]) -> Result<String, HostError> {
        Ok(self.runner.run(&CommandLine::new("ip").args(args))?)
    }

    fn link_exists(&self, ifname: &str) -> bool {
        self.ip(&["link", "show", "dev", ifname].map(String::from)).is_ok()
    }
}

/// The `ip` argument lists that create, address and raise a VLAN interface, in order.
/// Pure so that it can be tested on kernels without VLAN support.
pub fn vlan_setup_commands(trunk: &str, vid: u16, controller_addr: Ipv4Addr) -> Vec<Vec<String>> {
    let ifname = format!("{trunk}.{vid}");
    let words = |s: &[&str]| s.iter().map(|w| w.to_string()).collect::<Vec<_>>();
    vec![
        words(&[
            "link",
            "add",
            "link",
            trunk,
            "name",
            &ifname,
            "type",
            "vlan",
            "id",
            &vid.to_string(),
        ]),
        words(&["addr", "replace", &format!("{controller_addr}/30"), "dev", &ifname]),
        words(&["link", "set", &ifname, "up"]),
    ]
}

/// The `ip` arguments that delete a VLAN interface.
pub fn vlan_remove_command(trunk: &str, vid: u16) -> Vec<String> {
    vec!["link".into(), "del".into(), format!("{trunk}.{vid}")]
}

/// Refuses a VLAN id outside 1..=4094.
pub fn check_vid(vid: u16) -> Result<(), LinkError> {
    if (1..=4094).contains(&vid) { Ok(()) } else { Err(LinkError::BadVid { vid }) }
}

impl StorageLinks for VlanLinks {
    fn ensure(&self, vid: u16, controller_addr: Ipv4Addr) -> Result<String, LinkError> {
        check_vid(vid)?;
        let ifname = self.ifname(vid);
        let exists = self.link_exists(&ifname);
        for (i, args) in
            vlan_setup_commands(&self.trunk, vid, controller_addr).into_iter().enumerate()
        {
            if i == 0 && exists {
                continue;
            }
            self.ip(&args).map_err(|source| LinkError::Setup {
                ifname: ifname.clone(),
                vid,
                source,
            })?;
        }
        Ok(ifname)
    }

    fn remove(&self, vid: u16) -> Result<(), LinkError> {
        check_vid(vid)?;
        let ifname = self.ifname(vid);
        if !self.link_exists(&ifname) {
            return Ok(());
        }
        self.ip(&vlan_remove_command(&self.trunk, vid))
            .map(drop)
            .map_err(|source| LinkError::Remove { ifname, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bramble_images::RecordingRunner;

    #[test]
    fn vlan_commands_are_the_documented_ones() {
        let cmds = vlan_setup_commands("eth0", 10, Ipv4Addr::new(10, 46, 189, 1));
        let lines: Vec<String> = cmds.iter().map(|c| c.join(" ")).collect();
        assert_eq!(
            lines,
            [
                "link add link eth0 name eth0.10 type vlan id 10",
                "addr replace 10.46.189.1/30 dev eth0.10",
                "link set eth0.10 up",
            ]
        );
        assert_eq!(vlan_remove_command("eth0", 10).join(" "), "link del eth0.10");
    }

    #[test]
    fn vlan_ids_are_checked() {
        let links = VlanLinks::with_runner("eth0", Arc::new(RecordingRunner::default()));
        assert!(matches!(
            links.ensure(0, Ipv4Addr::new(10, 101, 0, 1)),
            Err(LinkError::BadVid { vid: 0 })
        ));
        assert!(matches!(links.remove(4095), Err(LinkError::BadVid { vid: 4095 })));
    }

    #[test]
    fn ensure_and_remove_run_ip_as_documented() {
        // The recorder answers every `ip link show` with success: the link exists, so
        // `ensure` only readdresses and raises it, and `remove` deletes it.
        let runner = Arc::new(RecordingRunner::default());
        let links = VlanLinks::with_runner("eth0", runner.clone());
        assert_eq!(links.ensure(10, Ipv4Addr::new(10, 46, 189, 1)).expect("ensure"), "eth0.10");
        links.remove(10).expect("remove");
        assert_eq!(
            runner.lines(),
            [
                "ip link show dev eth0.10",
                "ip addr replace 10.46.189.1/30 dev eth0.10",
                "ip link set eth0.10 up",
                "ip link show dev eth0.10",
                "ip link del eth0.10",
            ]
        );
    }

    #[test]
    fn a_failed_ip_command_says_what_was_run() {
        let links = VlanLinks::new("no-such-trunk0");
        let err = links.ensure(7, Ipv4Addr::new(10, 101, 0, 1)).expect_err("no such trunk");
        let text = bramble_report::chain(&err);
        assert!(
            text.starts_with("could not set up storage interface no-such-trunk0.7 for VLAN 7: `ip link add link no-such-trunk0"),
            "{text}"
        );
    }
}
