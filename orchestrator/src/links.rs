//! Controller-side storage interfaces: make sure the interface for a Pi's storage VLAN
//! exists, is up and carries the `.1` of its /30, or remove it.
//!
//! Production uses 802.1Q sub-interfaces of a trunk ([`VlanLinks`]); the lab, whose
//! kernels lack VLAN support, plugs in `bramble_lab::VethLinks` (a veth pair per VLAN
//! with the Pi end in a namespace) through the same [`StorageLinks`] trait (see
//! `crate::lab::links`).

use std::net::Ipv4Addr;
use std::process::{Command, ExitStatus};

/// An `ip` command that could not be started or exited unsuccessfully.
#[derive(Debug, thiserror::Error)]
pub enum IpError {
    #[error("could not start `{command}`")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` exited with {status}: {stderr}")]
    Failed { command: String, status: ExitStatus, stderr: String },
}

/// A storage link operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("could not set up storage interface {ifname} for VLAN {vid}")]
    Setup {
        ifname: String,
        vid: u16,
        #[source]
        source: IpError,
    },
    #[error("could not remove storage interface {ifname}")]
    Remove {
        ifname: String,
        #[source]
        source: IpError,
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

/// Runs `ip ARGS...` and returns its standard output.
pub fn run_ip<S: AsRef<str>>(args: &[S]) -> Result<String, IpError> {
    let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
    let command = format!("ip {}", args.join(" "));
    tracing::debug!(%command, "running");
    let out = Command::new("ip")
        .args(&args)
        .output()
        .map_err(|source| IpError::Spawn { command: command.clone(), source })?;
    if !out.status.success() {
        return Err(IpError::Failed {
            command,
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// 802.1Q sub-interfaces `<trunk>.<vid>` of a trunk interface.
#[derive(Debug, Clone)]
pub struct VlanLinks {
    pub trunk: String,
}

impl VlanLinks {
    pub fn ifname(&self, vid: u16) -> String {
        format!("{}.{vid}", self.trunk)
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

fn link_exists(ifname: &str) -> bool {
    run_ip(&["link", "show", "dev", ifname]).is_ok()
}

impl StorageLinks for VlanLinks {
    fn ensure(&self, vid: u16, controller_addr: Ipv4Addr) -> Result<String, LinkError> {
        check_vid(vid)?;
        let ifname = self.ifname(vid);
        let exists = link_exists(&ifname);
        for (i, args) in
            vlan_setup_commands(&self.trunk, vid, controller_addr).into_iter().enumerate()
        {
            if i == 0 && exists {
                continue;
            }
            run_ip(&args).map_err(|source| LinkError::Setup {
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
        if !link_exists(&ifname) {
            return Ok(());
        }
        run_ip(&vlan_remove_command(&self.trunk, vid))
            .map(drop)
            .map_err(|source| LinkError::Remove { ifname, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let links = VlanLinks { trunk: "eth0".into() };
        assert!(matches!(
            links.ensure(0, Ipv4Addr::new(10, 101, 0, 1)),
            Err(LinkError::BadVid { vid: 0 })
        ));
        assert!(matches!(links.remove(4095), Err(LinkError::BadVid { vid: 4095 })));
    }

    #[test]
    fn a_failed_ip_command_says_what_was_run() {
        let err = run_ip(&["link", "show", "dev", "no-such-if0"]).expect_err("no such link");
        let text = err.to_string();
        assert!(text.starts_with("`ip link show dev no-such-if0` exited with"), "{text}");
    }
}
