//! The lab's storage links behind the controller's [`StorageLinks`] trait: veth pairs
//! from `bramble_lab::VethLinks` stand in for 802.1Q sub-interfaces.

use std::net::Ipv4Addr;

use bramble_lab::VethLinks;

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
}
