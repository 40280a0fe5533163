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
        let mut slot = self.directory.snapshot().slot_by_pi_ip(ip).cloned();
        // A slot or Pi enrolled since the last refresh is not cached yet.
        if slot.as_ref().is_none_or(|s| s.pi.is_none()) {
            slot = self.directory.refresh_on_miss().await.slot_by_pi_ip(ip).cloned();
        }
        let Some(slot) = slot else {
            tracing::debug!(%ip, "tftp client is no slot's Pi");
            return None;
        };
        // The plan reads the root's marker from disk: off the async workers, so a slow
        // disk delays only this request.
        let plans = self.plans.clone();
        tokio::task::spawn_blocking(move || slot_boot(&slot, &plans)).await.ok().flatten()
    }
}

/// What a slot boots, or `None` when no Pi is in it (nothing to serve) or its plan
/// cannot be made (logged).
pub fn slot_boot(slot: &SlotEntry, plans: &BootPlanner) -> Option<SlotBoot> {
    let pi = slot.pi.as_ref()?;
    let plan = match plans.plan(slot.controller_ip, slot.pi_ip, &pi.id) {
        Ok(plan) => plan,
        Err(error) => {
            tracing::warn!(slot = %slot.id, error = %bramble_report::chain(&error), "no boot plan");
            return None;
        }
    };
    let mac: MacAddr = pi.mac.as_deref().and_then(|m| m.parse().ok()).unwrap_or(MacAddr([0; 6]));
    // In maintenance the board in the slot may be a new one: its serial directory is the
    // slot's (the source address chose the slot; the path never does).
    let serial = if pi.maintenance { None } else { pi.serial };
    Some(SlotBoot { serial, mac, params: plan.params(), boot_dir: plan.boot_dir })
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
            maintenance: false,
        };
        let b = slot_boot(&slot(Some(pi)), &plans).expect("slot with a Pi");
        assert_eq!(b.boot_dir, PathBuf::from("/r/pi-7/boot"));
        assert_eq!(b.serial, None);
        assert_eq!(b.mac.to_string(), "b8:27:eb:00:00:07");
        assert_eq!(b.params, BootParams::example());
    }
}
