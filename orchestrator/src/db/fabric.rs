//! The physical fabric: switches (with write-only credentials), shelves and their slots.
//!
//! Enrolling a shelf plans every slot's VLAN, /30 and IPv6 address with
//! [`crate::alloc::allocate`] and writes the shelf and all slots in one transaction:
//! a shelf exists whole or not at all.

use std::net::Ipv6Addr;

use sqlx::any::AnyRow;

use super::{Db, DbError, get_i64, get_opt_str, get_str, get_u16};
use crate::alloc::{AddressPools, AllocError, Taken, allocate};
use crate::ids::{PiId, ShelfId, SlotId, SwitchId};
use crate::model::{Shelf, Slot, Switch};
use crate::secret::SnmpCredentials;
use crate::time::now_millis;

#[derive(Debug, Clone)]
pub struct NewSwitch {
    pub name: String,
    pub address: String,
    pub driver: String,
    pub trunk_port: u16,
    pub credentials: SnmpCredentials,
    /// The controller that serves it.
    pub controller: String,
    /// Its layer-2 domain (storage VLANs are unique within one).
    pub l2_domain: String,
}

#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error("no switch {0}")]
    UnknownSwitch(String),
    #[error("a shelf named {0:?} exists already")]
    NameTaken(String),
    #[error("ports {first}-{last} of switch {switch} overlap shelf {shelf}")]
    PortsInUse { switch: String, first: u16, last: u16, shelf: String },
    #[error("port range includes the switch's trunk port {0}")]
    TrunkInRange(u16),
    #[error(transparent)]
    Exhausted(#[from] AllocError),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<sqlx::Error> for EnrollError {
    fn from(e: sqlx::Error) -> Self {
        EnrollError::Db(DbError::Query(e))
    }
}

impl Db {
    pub async fn insert_switch(&self, new: &NewSwitch) -> Result<Switch, DbError> {
        let id = SwitchId::generate();
        let now = now_millis();
        let mut tx = self.begin_write().await?;
        self.q("INSERT INTO switches (id, name, address, driver, trunk_port, created_at, controller, l2_domain) \
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
            .bind(id.0.clone())
            .bind(new.name.clone())
            .bind(new.address.clone())
            .bind(new.driver.clone())
            .bind(i64::from(new.trunk_port))
            .bind(now)
            .bind(new.controller.clone())
            .bind(new.l2_domain.clone())
            .execute(&mut *tx)
            .await?;
        self.q("INSERT INTO switch_credentials (switch_id, credentials) VALUES ($1, $2)")
            .bind(id.0.clone())
            .bind(new.credentials.to_stored())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.get_switch(&id).await?.ok_or(DbError::Corrupt { column: "switches.id", value: id.0 })
    }

    pub async fn list_switches(&self) -> Result<Vec<Switch>, DbError> {
        let rows = self.q(SWITCH_SELECT).fetch_all(self.pool()).await?;
        rows.iter().map(switch_from_row).collect()
    }

    pub async fn get_switch(&self, id: &SwitchId) -> Result<Option<Switch>, DbError> {
        let row = self
            .q(const_format::concatcp!(SWITCH_SELECT, " WHERE s.id = $1 OR s.name = $1"))
            .bind(id.0.clone())
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(switch_from_row).transpose()
    }

    /// The stored credentials of a switch, for drivers only; never for the API.
    pub async fn switch_credentials(
        &self,
        id: &SwitchId,
    ) -> Result<Option<SnmpCredentials>, DbError> {
        let row = self
            .q("SELECT credentials FROM switch_credentials WHERE switch_id = $1")
            .bind(id.0.clone())
            .fetch_optional(self.pool())
            .await?;
        row.map(|r| {
            let text = get_str(&r, "credentials")?;
            SnmpCredentials::from_stored(&text).ok_or(DbError::Corrupt {
                column: "switch_credentials",
                value: "<unreadable>".into(),
            })
        })
        .transpose()
    }

    /// Creates a shelf of ports `first..=last` on `switch`, planning every slot's
    /// addresses from `pools`.
    pub async fn enroll_shelf(
        &self,
        name: &str,
        switch: &SwitchId,
        first: u16,
        last: u16,
        pools: &AddressPools,
    ) -> Result<Shelf, EnrollError> {
        let sw = self
            .get_switch(switch)
            .await?
            .ok_or_else(|| EnrollError::UnknownSwitch(switch.0.clone()))?;
        if (first..=last).contains(&sw.trunk_port) {
            return Err(EnrollError::TrunkInRange(sw.trunk_port));
        }
        let named = self.q("SELECT id FROM shelves WHERE name = $1").bind(name.to_string());
        if named.fetch_optional(self.pool()).await?.is_some() {
            return Err(EnrollError::NameTaken(name.to_string()));
        }
        let overlapping = self
            .q("SELECT name FROM shelves WHERE switch_id = $1 AND first_port <= $2 AND $3 <= last_port")
            .bind(sw.id.0.clone())
            .bind(i64::from(last))
            .bind(i64::from(first))
            .fetch_optional(self.pool())
            .await?;
        if let Some(other) = overlapping {
            return Err(EnrollError::PortsInUse {
                switch: sw.name,
                first,
                last,
                shelf: get_str(&other, "name")?,
            });
        }
        // Two controllers enrolling at once may plan the same addresses: the unique
        // constraints let one commit, and the other plans again from what is now taken.
        let mut attempt = 1;
        loop {
            match self.enroll_planned(name, &sw, first, last, pools).await {
                Err(EnrollError::Db(e)) if e.is_unique_violation() && attempt < ENROLL_ATTEMPTS => {
                    tracing::info!(
                        shelf = name,
                        attempt,
                        "addresses taken by a concurrent enrolment; planning again"
                    );
                    attempt += 1;
                }
                outcome => return outcome,
            }
        }
    }

    async fn enroll_planned(
        &self,
        name: &str,
        sw: &Switch,
        first: u16,
        last: u16,
        pools: &AddressPools,
    ) -> Result<Shelf, EnrollError> {
        let taken = self.taken_addresses(&sw.l2_domain).await?;
        let plan = allocate(pools, &taken, usize::from(last - first) + 1)?;
        let id = ShelfId::generate();
        let mut tx = self.begin_write().await?;
        self.q("INSERT INTO shelves (id, name, switch_id, first_port, last_port, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(id.0.clone())
            .bind(name.to_string())
            .bind(sw.id.0.clone())
            .bind(i64::from(first))
            .bind(i64::from(last))
            .bind(now_millis())
            .execute(&mut *tx)
            .await?;
        for (port, addrs) in (first..=last).zip(&plan) {
            self.q("INSERT INTO slots (id, shelf_id, switch_id, port, vlan, storage_net, controller_ip, pi_ip, public_ipv6, l2_domain) \
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)")
                .bind(SlotId::generate().0)
                .bind(id.0.clone())
                .bind(sw.id.0.clone())
                .bind(i64::from(port))
                .bind(i64::from(addrs.vlan))
                .bind(addrs.storage_net.to_string())
                .bind(addrs.controller_ip().to_string())
                .bind(addrs.pi_ip().to_string())
                .bind(addrs.public_ipv6.to_string())
                .bind(sw.l2_domain.clone())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        self.get_shelf(&id.0)
            .await?
            .ok_or_else(|| EnrollError::Db(DbError::Corrupt { column: "shelves.id", value: id.0 }))
    }

    /// What a new slot in layer-2 domain `domain` cannot have: the VLANs of that
    /// domain, and every /30 and IPv6 address of any slot (addresses stay unique
    /// everywhere, so no two Pis a controller interface could reach ever share one).
    pub async fn taken_addresses(&self, domain: &str) -> Result<Taken, DbError> {
        let rows = self
            .q("SELECT vlan, storage_net, public_ipv6, l2_domain FROM slots")
            .fetch_all(self.pool())
            .await?;
        let mut taken = Taken::default();
        for r in &rows {
            let net = get_str(r, "storage_net")?;
            let v6 = get_str(r, "public_ipv6")?;
            if get_str(r, "l2_domain")? == domain {
                taken.vlans.insert(get_u16(r, "vlan")?);
            }
            taken.add_addresses(
                net.parse().map_err(|_| DbError::Corrupt {
                    column: "slots.storage_net",
                    value: net.clone(),
                })?,
                v6.parse::<Ipv6Addr>().map_err(|_| DbError::Corrupt {
                    column: "slots.public_ipv6",
                    value: v6.clone(),
                })?,
            );
        }
        Ok(taken)
    }

    /// Moves switch `id` to `controller`, with its shelves' active jobs: queued jobs
    /// wait for the new controller, and a running job goes to it if its runner's lease
    /// lapses. Returns the switch as it is now, `None` if there is no such switch.
    pub async fn set_switch_controller(
        &self,
        id: &SwitchId,
        controller: &str,
    ) -> Result<Option<Switch>, DbError> {
        let Some(sw) = self.get_switch(id).await? else { return Ok(None) };
        let mut tx = self.begin_write().await?;
        self.q("UPDATE switches SET controller = $1 WHERE id = $2")
            .bind(controller.to_string())
            .bind(sw.id.0.clone())
            .execute(&mut *tx)
            .await?;
        self.q("UPDATE jobs SET controller = $1 WHERE state IN ('queued', 'running') AND ( \
                pi_id IN (SELECT p.id FROM pis p JOIN slots s ON s.id = p.slot_id WHERE s.switch_id = $2) \
                OR shelf_id IN (SELECT id FROM shelves WHERE switch_id = $2))")
            .bind(controller.to_string())
            .bind(sw.id.0.clone())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.get_switch(&sw.id).await
    }

    pub async fn list_shelves(&self) -> Result<Vec<Shelf>, DbError> {
        let rows = self.q("SELECT id, name, switch_id, first_port, last_port, created_at FROM shelves ORDER BY name").fetch_all(self.pool()).await?;
        let mut shelves = rows.iter().map(shelf_from_row).collect::<Result<Vec<_>, _>>()?;
        for s in &mut shelves {
            s.slots = self.slots_of(&s.id).await?;
        }
        Ok(shelves)
    }

    /// A shelf by id or name.
    pub async fn get_shelf(&self, id_or_name: &str) -> Result<Option<Shelf>, DbError> {
        let row = self
            .q("SELECT id, name, switch_id, first_port, last_port, created_at FROM shelves WHERE id = $1 OR name = $1")
            .bind(id_or_name.to_string())
            .fetch_optional(self.pool())
            .await?;
        let Some(row) = row else { return Ok(None) };
        let mut shelf = shelf_from_row(&row)?;
        shelf.slots = self.slots_of(&shelf.id).await?;
        Ok(Some(shelf))
    }

    async fn slots_of(&self, shelf: &ShelfId) -> Result<Vec<Slot>, DbError> {
        let rows = self
            .q("SELECT s.id, s.port, s.vlan, s.storage_net, s.controller_ip, s.pi_ip, s.public_ipv6, p.id AS pi_id \
                FROM slots s LEFT JOIN pis p ON p.slot_id = s.id WHERE s.shelf_id = $1 ORDER BY s.port")
            .bind(shelf.0.clone())
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(slot_from_row).collect()
    }
}

/// How often an enrolment plans again after losing a race for its addresses.
const ENROLL_ATTEMPTS: u32 = 5;

const SWITCH_SELECT: &str = "SELECT s.id, s.name, s.address, s.driver, s.trunk_port, s.created_at, s.controller, s.l2_domain, c.credentials \
    FROM switches s LEFT JOIN switch_credentials c ON c.switch_id = s.id";

fn switch_from_row(row: &AnyRow) -> Result<Switch, DbError> {
    let creds = get_opt_str(row, "credentials")?.and_then(|c| SnmpCredentials::from_stored(&c));
    Ok(Switch {
        id: SwitchId(get_str(row, "id")?),
        name: get_str(row, "name")?,
        address: get_str(row, "address")?,
        driver: get_str(row, "driver")?,
        trunk_port: get_u16(row, "trunk_port")?,
        snmp_version: creds.as_ref().map_or_else(|| "unknown".into(), |c| c.version().to_string()),
        snmp_protocols: creds.as_ref().and_then(SnmpCredentials::protocols),
        controller: get_opt_str(row, "controller")?,
        l2_domain: get_str(row, "l2_domain")?,
        created_at: get_i64(row, "created_at")?,
    })
}

fn shelf_from_row(row: &AnyRow) -> Result<Shelf, DbError> {
    Ok(Shelf {
        id: ShelfId(get_str(row, "id")?),
        name: get_str(row, "name")?,
        switch: SwitchId(get_str(row, "switch_id")?),
        first_port: get_u16(row, "first_port")?,
        last_port: get_u16(row, "last_port")?,
        slots: Vec::new(),
        created_at: get_i64(row, "created_at")?,
    })
}

fn slot_from_row(row: &AnyRow) -> Result<Slot, DbError> {
    Ok(Slot {
        id: SlotId(get_str(row, "id")?),
        port: get_u16(row, "port")?,
        vlan: get_u16(row, "vlan")?,
        storage_net: get_str(row, "storage_net")?,
        controller_ip: get_str(row, "controller_ip")?,
        pi_ip: get_str(row, "pi_ip")?,
        public_ipv6: get_str(row, "public_ipv6")?,
        pi: get_opt_str(row, "pi_id")?.map(PiId),
    })
}
