//! Picks a driver by sysObjectID, as OpenStack Ironic does: Cisco (1.3.6.1.4.1.9.*)
//! gets the Cisco driver, everything else the standard-MIB driver; and, for the
//! standard driver, which spanning-tree MIB makes edge ports ([`stp_mib_for`]).

use crate::cisco::CiscoDriver;
use crate::driver::SwitchDriver;
use crate::error::SwitchError;
use crate::oids;
use crate::session::{Session, SessionConfig};
use crate::standard::StandardDriver;
use crate::stp::StpMib;
use async_snmp::{Oid, Value};

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

/// Pure selection from the answer to a GET of `dot1dStpVersion.0`: a bridge that has
/// it has the RSTP-MIB (whatever version it runs, `dot1dStpPortAdminEdgePort` is
/// there); noSuchObject and the like mean plain BRIDGE-MIB spanning tree.
pub fn stp_mib_for(version: &Value) -> StpMib {
    match version {
        Value::Integer(_) => StpMib::Rstp,
        _ => StpMib::Stp,
    }
}

/// GETs `dot1dStpVersion.0` and selects the edge-port MIB of a standard switch.
pub async fn detect_stp(session: &Session) -> Result<StpMib, SwitchError> {
    let oid = Oid::from_slice(oids::DOT1D_STP_VERSION);
    let vbs = session.get(std::slice::from_ref(&oid)).await?;
    let mib = vbs.first().map(|vb| stp_mib_for(&vb.value)).unwrap_or(StpMib::Stp);
    tracing::info!(switch = %session.addr(), ?mib, "edge-port MIB selected");
    Ok(mib)
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

/// Connects and GETs sysObjectID and sysDescr: which switch answers, and which driver
/// [`connect`] would pick for it (`bramble doctor` compares it with the inventory's).
pub async fn identify(
    cfg: SessionConfig,
) -> Result<(crate::driver::SwitchIdentity, DriverKind), SwitchError> {
    let addr = cfg.addr;
    let session = Session::connect(cfg).await?;
    let oids = [Oid::from_slice(oids::SYS_OBJECT_ID), Oid::from_slice(oids::SYS_DESCR)];
    let vbs = session.get(&oids).await?;
    let id = vbs.first().and_then(|vb| vb.value.as_oid().cloned()).ok_or_else(|| {
        SwitchError::BadValue {
            switch: addr,
            oid: oids[0].to_string(),
            detail: "sysObjectID missing or not an OBJECT IDENTIFIER".into(),
        }
    })?;
    let descr = vbs
        .get(1)
        .and_then(|vb| vb.value.as_bytes().map(|b| String::from_utf8_lossy(b).into_owned()))
        .unwrap_or_default();
    let kind = kind_for(&id);
    Ok((crate::driver::SwitchIdentity { sys_object_id: id.to_string(), sys_descr: descr }, kind))
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

    #[test]
    fn rstp_version_present_selects_admin_edge() {
        assert_eq!(stp_mib_for(&Value::Integer(2)), StpMib::Rstp);
        assert_eq!(stp_mib_for(&Value::Integer(0)), StpMib::Rstp);
        assert_eq!(stp_mib_for(&Value::NoSuchObject), StpMib::Stp);
        assert_eq!(stp_mib_for(&Value::NoSuchInstance), StpMib::Stp);
    }
}
