//! Picks a driver by sysObjectID, as OpenStack Ironic does: Cisco (1.3.6.1.4.1.9.*)
//! gets the Cisco driver, everything else the standard-MIB driver.

use crate::cisco::CiscoDriver;
use crate::driver::SwitchDriver;
use crate::error::SwitchError;
use crate::oids;
use crate::session::{Session, SessionConfig};
use crate::standard::StandardDriver;
use async_snmp::Oid;

/// Which driver a sysObjectID selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriverKind {
    Standard,
    Cisco,
}

/// Pure selection from a sysObjectID.
pub fn kind_for(sys_object_id: &Oid) -> DriverKind {
    if sys_object_id.arcs().starts_with(oids::CISCO_ENTERPRISE) {
        DriverKind::Cisco
    } else {
        DriverKind::Standard
    }
}

/// Connects, GETs sysObjectID and returns the matching driver.
pub async fn connect(cfg: SessionConfig) -> Result<Box<dyn SwitchDriver>, SwitchError> {
    let session = Session::connect(cfg.clone()).await?;
    let oid = Oid::from_slice(oids::SYS_OBJECT_ID);
    let vbs = session.get(std::slice::from_ref(&oid)).await?;
    let id = vbs.first().and_then(|vb| vb.value.as_oid().cloned()).ok_or_else(|| {
        SwitchError::BadValue {
            switch: cfg.addr,
            oid: oid.to_string(),
            detail: "sysObjectID missing or not an OBJECT IDENTIFIER".into(),
        }
    })?;
    let kind = kind_for(&id);
    tracing::info!(switch = %cfg.addr, sys_object_id = %id, ?kind, "switch driver selected");
    Ok(match kind {
        DriverKind::Standard => Box::new(StandardDriver::new(session)),
        DriverKind::Cisco => Box::new(CiscoDriver::new(session, Session::connect(cfg).await?)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cisco_prefix_selects_cisco() {
        assert_eq!(kind_for(&Oid::from_slice(&[1, 3, 6, 1, 4, 1, 9, 1, 2277])), DriverKind::Cisco);
        assert_eq!(kind_for(&Oid::from_slice(oids::SIM_OBJECT_ID)), DriverKind::Standard);
        assert_eq!(kind_for(&Oid::from_slice(&[1, 3, 6, 1, 4, 1, 99])), DriverKind::Standard);
    }
}
