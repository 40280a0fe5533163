//! The inventory's switches as drivers: one SNMP driver per switch, built from its stored
//! credentials and kept for reuse, and the configuration each switch should have,
//! derived from its shelves and slots.
//!
//! Jobs and the reconciler both come here, so there is one place that turns inventory
//! rows into [`SwitchDriver`] calls. **Invariant:** credentials go from the database
//! straight into the driver's session; nothing here logs or returns them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bramble_switch::{
    DesiredConfig, PortNo, SessionConfig, ShelfPlan, SwitchDriver, SwitchError, VlanId,
};

use crate::db::{Db, DbError};
use crate::ids::SwitchId;
use crate::model::{Shelf, Switch};

#[derive(Debug, thiserror::Error)]
pub enum FabricError {
    #[error("no switch {0}")]
    UnknownSwitch(SwitchId),
    #[error("switch {switch} has no readable credentials")]
    NoCredentials { switch: String },
    #[error("switch {switch} has an unusable address {address:?}")]
    BadAddress { switch: String, address: String },
    #[error("switch {switch}")]
    Switch {
        switch: String,
        #[source]
        source: SwitchError,
    },
    /// A PoE change on ports that are not enrolled slots, refused before any SET
    /// ([`crate::poe::guard`]).
    #[error("switch {switch}: PoE change on port(s) {ports:?} refused: {reason}")]
    NotASlot { switch: String, ports: Vec<u16>, reason: String },
    #[error(transparent)]
    Db(#[from] DbError),
}

impl FabricError {
    /// Worth retrying: the switch did not answer or the database hiccuped. A refused
    /// SET or a bad configuration is not.
    pub fn is_transient(&self) -> bool {
        match self {
            FabricError::Switch { source, .. } => {
                matches!(source, SwitchError::Timeout { .. } | SwitchError::Transport { .. })
            }
            FabricError::Db(_) => true,
            _ => false,
        }
    }
}

/// SNMP timing for the controller's sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnmpTiming {
    pub timeout: Duration,
    pub retries: u32,
}

impl Default for SnmpTiming {
    fn default() -> Self {
        SnmpTiming { timeout: Duration::from_secs(1), retries: 2 }
    }
}

/// Drivers for the inventory's switches, connected on first use.
pub struct Fabric {
    db: Db,
    timing: SnmpTiming,
    /// In a controller: `[switches]` SNMP timing as configured now (a reload may change
    /// it; drivers made with another timing are made again). Else `timing`.
    live: Option<crate::reload::LiveConfig>,
    public_vlan: u16,
    drivers: Mutex<Drivers>,
}

/// Cached drivers by switch, each with the SNMP timing it was made with.
type Drivers = HashMap<SwitchId, (SnmpTiming, Arc<dyn SwitchDriver>)>;

impl Fabric {
    pub fn new(db: Db, timing: SnmpTiming, public_vlan: u16) -> Self {
        Fabric { db, timing, live: None, public_vlan, drivers: Mutex::new(HashMap::new()) }
    }

    /// Takes the SNMP timing from the running configuration at each connection.
    pub fn live(mut self, config: crate::reload::LiveConfig) -> Self {
        self.live = Some(config);
        self
    }

    fn timing(&self) -> SnmpTiming {
        self.live.as_ref().map_or(self.timing, |c| c.get().switches.snmp)
    }

    /// The driver of `switch`, connecting (and picking the driver by sysObjectID) the
    /// first time.
    pub async fn driver(&self, switch: &SwitchId) -> Result<Arc<dyn SwitchDriver>, FabricError> {
        let timing = self.timing();
        if let Some((made, d)) = self.lock().get(switch)
            && *made == timing
        {
            return Ok(d.clone());
        }
        let sw = self
            .db
            .get_switch(switch)
            .await?
            .ok_or_else(|| FabricError::UnknownSwitch(switch.clone()))?;
        let creds = self
            .db
            .switch_credentials(&sw.id)
            .await?
            .ok_or_else(|| FabricError::NoCredentials { switch: sw.name.clone() })?;
        let addr: SocketAddr = sw.address.parse().map_err(|_| FabricError::BadAddress {
            switch: sw.name.clone(),
            address: sw.address.clone(),
        })?;
        let mut cfg = SessionConfig::new(addr, creds.to_driver());
        cfg.timeout = timing.timeout;
        cfg.retries = timing.retries;
        let driver: Arc<dyn SwitchDriver> = Arc::from(
            bramble_switch::connect(cfg)
                .await
                .map_err(|source| FabricError::Switch { switch: sw.name.clone(), source })?,
        );
        self.lock().insert(sw.id.clone(), (timing, driver.clone()));
        Ok(driver)
    }

    /// Drops a cached driver (after the switch misbehaved), so the next use reconnects.
    pub fn forget(&self, switch: &SwitchId) {
        self.lock().remove(switch);
    }

    /// Runs `op` against `switch`'s driver, naming the switch in errors and forgetting
    /// the driver when the switch stopped answering. The driver is wrapped in
    /// [`crate::poe::guard::PoeGuard`]: a PoE change on a port that is not an enrolled
    /// slot comes back as [`FabricError::NotASlot`], and nothing was sent.
    pub async fn with_driver<T, F, Fut>(&self, switch: &Switch, op: F) -> Result<T, FabricError>
    where
        F: FnOnce(Arc<dyn SwitchDriver>) -> Fut,
        Fut: std::future::Future<Output = Result<T, SwitchError>>,
    {
        let driver = crate::poe::guard::PoeGuard::wrap(
            self.driver(&switch.id).await?,
            self.db.clone(),
            switch.clone(),
        );
        op(driver).await.map_err(|source| {
            if let SwitchError::PowerRefused { ports, reason, .. } = source {
                return FabricError::NotASlot { switch: switch.name.clone(), ports, reason };
            }
            let e = FabricError::Switch { switch: switch.name.clone(), source };
            if e.is_transient() {
                self.forget(&switch.id);
            }
            e
        })
    }

    /// The shelf's switch configuration: every slot's storage VLAN untagged on its port
    /// with the public VLAN tagged, all of them tagged on the trunk.
    pub fn shelf_plan(&self, shelf: &Shelf, trunk: u16) -> ShelfPlan {
        ShelfPlan {
            public_vlan: VlanId(self.public_vlan),
            trunk: PortNo(trunk),
            pis: shelf.slots.iter().map(|s| (PortNo(s.port), VlanId(s.vlan))).collect(),
        }
    }

    /// What `switch` should look like: the union of its shelves' plans (PoE left alone).
    pub async fn desired_for(&self, switch: &Switch) -> Result<DesiredConfig, FabricError> {
        let shelves = self.db.list_shelves().await?;
        let plans = shelves
            .iter()
            .filter(|s| s.switch == switch.id)
            .map(|s| self.shelf_plan(s, switch.trunk_port).desired());
        Ok(merge(plans))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Drivers> {
        self.drivers.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One desired configuration holding all of `parts` (shelves on one switch do not share
/// ports; they share the trunk and the public VLAN).
pub fn merge(parts: impl IntoIterator<Item = DesiredConfig>) -> DesiredConfig {
    let mut out = DesiredConfig::default();
    for d in parts {
        out.vlans.extend(d.vlans);
        out.absent_vlans.extend(d.absent_vlans);
        out.access_ports.extend(d.access_ports);
        out.poe.extend(d.poe);
        out.edge.extend(d.edge);
        for (port, vlans) in d.trunk_tagged {
            out.trunk_tagged.entry(port).or_insert_with(BTreeSet::new).extend(vlans);
        }
        for (port, vlans) in d.trunk_removed {
            out.trunk_removed.entry(port).or_insert_with(BTreeSet::new).extend(vlans);
        }
    }
    out
}

/// Only the parts of `desired` that concern `ports` (plus the VLANs they use and the
/// trunk carrying them): lets a job configure a few ports without rewriting the rest.
pub fn restrict(desired: &DesiredConfig, ports: &BTreeSet<u16>) -> DesiredConfig {
    let mut out = DesiredConfig::default();
    let mut used: BTreeSet<VlanId> = BTreeSet::new();
    for (port, access) in desired.access_ports.iter().filter(|(p, _)| ports.contains(&p.0)) {
        used.insert(access.untagged);
        used.extend(access.tagged.iter().copied());
        out.access_ports.insert(*port, access.clone());
    }
    out.edge =
        desired.edge.iter().filter(|(p, _)| ports.contains(&p.0)).map(|(p, e)| (*p, *e)).collect();
    out.vlans = desired
        .vlans
        .iter()
        .filter(|(v, _)| used.contains(v))
        .map(|(v, n)| (*v, n.clone()))
        .collect();
    out.trunk_tagged = desired
        .trunk_tagged
        .iter()
        .map(|(p, vs)| (*p, vs.intersection(&used).copied().collect::<BTreeSet<_>>()))
        .filter(|(_, vs)| !vs.is_empty())
        .collect::<BTreeMap<_, _>>();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(ports: &[(u16, u16)]) -> DesiredConfig {
        ShelfPlan {
            public_vlan: VlanId(131),
            trunk: PortNo(49),
            pis: ports.iter().map(|&(p, v)| (PortNo(p), VlanId(v))).collect(),
        }
        .desired()
    }

    #[test]
    fn shelves_on_one_switch_share_the_trunk() {
        let d = merge([plan(&[(1, 200), (2, 201)]), plan(&[(3, 202)])]);
        assert_eq!(d.access_ports.len(), 3);
        assert_eq!(d.edge.len(), 3, "every Pi port an edge port");
        let trunk: Vec<u16> = d.trunk_tagged[&PortNo(49)].iter().map(|v| v.0).collect();
        assert_eq!(trunk, [131, 200, 201, 202]);
    }

    #[test]
    fn restricting_keeps_only_the_ports_and_their_vlans() {
        let d = restrict(&plan(&[(1, 200), (2, 201), (3, 202)]), &[2].into_iter().collect());
        assert_eq!(d.access_ports.keys().map(|p| p.0).collect::<Vec<_>>(), [2]);
        assert_eq!(d.edge, [(PortNo(2), true)].into_iter().collect());
        assert_eq!(d.vlans.keys().map(|v| v.0).collect::<Vec<_>>(), [131, 201]);
        assert_eq!(d.trunk_tagged[&PortNo(49)].iter().map(|v| v.0).collect::<Vec<_>>(), [131, 201]);
    }
}
