//! [`DbBootResolver`]: tells the TFTP server which slot a client address belongs to and
//! what that slot boots, from the cached slots and Pis.
//!
//! The boot directory is the `/boot` of the Pi's own root as the image store lays it out
//! (`<roots_dir>/<pi id>/boot`, or `boot/firmware` where the image keeps its firmware
//! there), so a kernel upgraded inside the Pi is what it boots next. The NFS export is
//! `/export/<pi storage ip>`, as in the original deployment's `nfsroot=`.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bramble_netboot::bootfiles::BootParams;
use bramble_netboot::tftp::{BootResolver, MacAddr, Serial, SlotBoot};

use super::directory::{Directory, SlotEntry};

pub struct DbBootResolver {
    directory: Arc<Directory>,
    roots_dir: PathBuf,
}

impl DbBootResolver {
    pub fn new(directory: Arc<Directory>, roots_dir: impl Into<PathBuf>) -> DbBootResolver {
        DbBootResolver { directory, roots_dir: roots_dir.into() }
    }
}

#[async_trait]
impl BootResolver for DbBootResolver {
    async fn resolve(&self, client: IpAddr) -> Option<SlotBoot> {
        let IpAddr::V4(ip) = client else { return None };
        let boot = |snap: &super::directory::Snapshot| {
            snap.slot_by_pi_ip(ip).and_then(|s| slot_boot(s, &self.roots_dir))
        };
        if let Some(found) = boot(&self.directory.snapshot()) {
            return Some(found);
        }
        let found = boot(&*self.directory.refresh_on_miss().await);
        if found.is_none() {
            tracing::debug!(%ip, "tftp client is no slot's Pi");
        }
        found
    }
}

/// What a slot boots, or `None` when no Pi is in it (nothing to serve).
pub fn slot_boot(slot: &SlotEntry, roots_dir: &Path) -> Option<SlotBoot> {
    let pi = slot.pi.as_ref()?;
    let serial: Serial =
        pi.serial.as_deref().and_then(|s| s.parse().ok()).unwrap_or_else(Serial::unknown);
    let mac: MacAddr = pi.mac.as_deref().and_then(|m| m.parse().ok()).unwrap_or(MacAddr([0; 6]));
    Some(SlotBoot {
        serial,
        mac,
        boot_dir: boot_dir(&roots_dir.join(pi.id.as_str())),
        params: params(slot),
    })
}

/// `<root>/boot/firmware` when the image keeps its firmware there, else `<root>/boot`.
pub fn boot_dir(root: &Path) -> PathBuf {
    let firmware = root.join("boot/firmware");
    if firmware.join("config.txt").is_file() { firmware } else { root.join("boot") }
}

/// The generated `cmdline.txt` inputs of a storage /30.
pub fn params(slot: &SlotEntry) -> BootParams {
    boot_params(slot.controller_ip, slot.pi_ip)
}

/// The generated `cmdline.txt` inputs of the /30 with these two ends.
pub fn boot_params(controller: Ipv4Addr, pi: Ipv4Addr) -> BootParams {
    BootParams {
        controller,
        pi,
        netmask: Ipv4Addr::new(255, 255, 255, 252),
        nfs_export: format!("/export/{pi}"),
        console: Vec::new(),
        extra_args: Vec::new(),
        config_additions: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{PiId, SlotId};
    use crate::netboot::directory::PiEntry;

    fn slot(pi: Option<PiEntry>) -> SlotEntry {
        SlotEntry {
            id: SlotId("slot-1".into()),
            vlan: 10,
            controller_ip: Ipv4Addr::new(10, 46, 189, 1),
            pi_ip: Ipv4Addr::new(10, 46, 189, 2),
            pi,
        }
    }

    #[test]
    fn a_slot_boots_its_pis_root() {
        assert_eq!(slot_boot(&slot(None), Path::new("/r")), None);
        let pi = PiEntry {
            id: PiId("pi-7".into()),
            serial: None,
            mac: Some("b8:27:eb:00:00:07".into()),
        };
        let b = slot_boot(&slot(Some(pi)), Path::new("/r")).expect("slot with a Pi");
        assert_eq!(b.boot_dir, PathBuf::from("/r/pi-7/boot"));
        assert!(b.serial.is_unknown());
        assert_eq!(b.mac.to_string(), "b8:27:eb:00:00:07");
        assert_eq!(b.params.nfs_export, "/export/10.46.189.2");
        assert_eq!(b.params, BootParams::example());
    }
}
