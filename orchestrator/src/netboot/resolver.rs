//! [`DbBootResolver`]: tells the TFTP server which slot a client address belongs to and
//! what that slot boots, from the cached slots and Pis and the slot's
//! [`BootPlan`](crate::bootplan::BootPlan) (the same plan the reimage job checks the boot
//! files against).

use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;
use bramble_netboot::tftp::{BootResolver, MacAddr, SlotBoot};

use super::directory::{Directory, SlotEntry};
use crate::bootplan::BootPlanner;

pub struct DbBootResolver {
    directory: Arc<Directory>,
    plans: Arc<BootPlanner>,
}

impl DbBootResolver {
    pub fn new(directory: Arc<Directory>, plans: Arc<BootPlanner>) -> DbBootResolver {
        DbBootResolver { directory, plans }
    }
}

#[async_trait]
impl BootResolver for DbBootResolver {
    async fn resolve(&self, client: IpAddr) -> Option<SlotBoot> {
        let IpAddr::V4(ip) = client else { return None };
        let boot = |snap: &super::directory::Snapshot| {
            snap.slot_by_pi_ip(ip).and_then(|s| slot_boot(s, &self.plans))
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

/// What a slot boots, or `None` when no Pi is in it (nothing to serve) or its plan
/// cannot be made (logged).
pub fn slot_boot(slot: &SlotEntry, plans: &BootPlanner) -> Option<SlotBoot> {
    let pi = slot.pi.as_ref()?;
    let plan = match plans.plan(slot.controller_ip, slot.pi_ip, &pi.id) {
        Ok(plan) => plan,
        Err(error) => {
            tracing::warn!(slot = %slot.id, error = %crate::netboot::chain(&error), "no boot plan");
            return None;
        }
    };
    let mac: MacAddr = pi.mac.as_deref().and_then(|m| m.parse().ok()).unwrap_or(MacAddr([0; 6]));
    Some(SlotBoot { serial: pi.serial, mac, params: plan.params(), boot_dir: plan.boot_dir })
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::path::PathBuf;

    use bramble_netboot::bootfiles::BootParams;

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
        let plans = BootPlanner::new(PathBuf::from("/r"), None, None);
        assert_eq!(slot_boot(&slot(None), &plans), None);
        let pi = PiEntry {
            id: PiId("pi-7".into()),
            serial: None,
            mac: Some("b8:27:eb:00:00:07".into()),
        };
        let b = slot_boot(&slot(Some(pi)), &plans).expect("slot with a Pi");
        assert_eq!(b.boot_dir, PathBuf::from("/r/pi-7/boot"));
        assert_eq!(b.serial, None);
        assert_eq!(b.mac.to_string(), "b8:27:eb:00:00:07");
        assert_eq!(b.params, BootParams::example());
    }
}
