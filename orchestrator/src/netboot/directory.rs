//! An in-memory copy of the slots and Pis the netboot servers ask about on every packet:
//! which slot an interface or storage address belongs to, which Pi a MAC is.
//!
//! Lookups read an immutable [`Snapshot`] behind a short lock (cloning an `Arc`); the
//! snapshot is rebuilt from the database on a timer and on a miss, at most once per
//! [`MIN_REFRESH_GAP`] so a flood of unknown clients cannot hammer the database.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bramble_netboot::hw::PiSerial;

use crate::db::{Db, DbError, get_opt_i64, get_opt_serial, get_opt_str, get_str, get_u16};
use crate::ids::{PiId, SlotId};

/// Misses refresh the snapshot at most this often.
pub const MIN_REFRESH_GAP: Duration = Duration::from_millis(100);

/// A Pi as the netboot servers need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PiEntry {
    pub id: PiId,
    /// `None` while unknown.
    pub serial: Option<PiSerial>,
    pub mac: Option<String>,
    /// An operator has it in maintenance: a new board's serial directory is served.
    pub maintenance: bool,
}

/// A storage slot with its addresses and the Pi in it, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotEntry {
    pub id: SlotId,
    pub vlan: u16,
    pub controller_ip: Ipv4Addr,
    pub pi_ip: Ipv4Addr,
    pub pi: Option<PiEntry>,
}

/// One consistent view of slots and Pis.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub slots: Vec<SlotEntry>,
    by_slot: HashMap<SlotId, usize>,
    by_pi_ip: HashMap<Ipv4Addr, usize>,
    by_mac: HashMap<String, PiEntry>,
}

impl Snapshot {
    pub fn new(slots: Vec<SlotEntry>, pis: Vec<PiEntry>) -> Snapshot {
        let by_slot = slots.iter().enumerate().map(|(i, s)| (s.id.clone(), i)).collect();
        let by_pi_ip = slots.iter().enumerate().map(|(i, s)| (s.pi_ip, i)).collect();
        let by_mac = pis.into_iter().filter_map(|p| Some((p.mac.clone()?, p))).collect();
        Snapshot { slots, by_slot, by_pi_ip, by_mac }
    }

    pub fn slot(&self, id: &SlotId) -> Option<&SlotEntry> {
        self.by_slot.get(id).and_then(|i| self.slots.get(*i))
    }

    pub fn slot_by_pi_ip(&self, ip: Ipv4Addr) -> Option<&SlotEntry> {
        self.by_pi_ip.get(&ip).and_then(|i| self.slots.get(*i))
    }

    pub fn pi_by_mac(&self, mac: &str) -> Option<&PiEntry> {
        self.by_mac.get(mac)
    }
}

/// The shared cache plus the interface names the wiring gave each slot.
pub struct Directory {
    db: Db,
    /// Only the slots of switches this controller serves (`None`: every slot).
    controller: Option<String>,
    snapshot: RwLock<Arc<Snapshot>>,
    ifaces: RwLock<HashMap<String, SlotId>>,
    last_refresh: Mutex<Option<Instant>>,
    /// Refreshes run one at a time, so a reload that read the database earlier can never
    /// overwrite one that read it later (a Pi just created must not vanish again).
    refreshing: tokio::sync::Mutex<()>,
}

impl Directory {
    /// Every slot of the inventory (tests and tools).
    pub fn new(db: Db) -> Directory {
        Directory::with_filter(db, None)
    }

    /// The slots of the switches `controller` serves, and their Pis.
    pub fn serving(db: Db, controller: &str) -> Directory {
        Directory::with_filter(db, Some(controller.to_string()))
    }

    fn with_filter(db: Db, controller: Option<String>) -> Directory {
        Directory {
            db,
            controller,
            snapshot: RwLock::default(),
            ifaces: RwLock::default(),
            last_refresh: Mutex::new(None),
            refreshing: tokio::sync::Mutex::new(()),
        }
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Reloads slots and Pis from the database.
    pub async fn refresh(&self) -> Result<Arc<Snapshot>, DbError> {
        let _one_at_a_time = self.refreshing.lock().await;
        *self.last_refresh.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        let snap = Arc::new(load(&self.db, self.controller.as_deref()).await?);
        *self.snapshot.write().unwrap_or_else(|e| e.into_inner()) = snap.clone();
        Ok(snap)
    }

    /// Reloads unless a reload happened within [`MIN_REFRESH_GAP`]; logs failures.
    pub async fn refresh_on_miss(&self) -> Arc<Snapshot> {
        let recent = self
            .last_refresh
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|t| t.elapsed() < MIN_REFRESH_GAP);
        if recent {
            // Still let a reload in flight (say, after a sighting) finish first.
            drop(self.refreshing.lock().await);
            return self.snapshot();
        }
        match self.refresh().await {
            Ok(s) => s,
            Err(error) => {
                tracing::warn!(error = %error, "netboot cache refresh failed");
                self.snapshot()
            }
        }
    }

    /// Records that `ifname` is the storage interface of `slot`.
    pub fn set_interface(&self, ifname: &str, slot: &SlotId) {
        self.ifaces
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(ifname.to_string(), slot.clone());
    }

    pub fn slot_of_interface(&self, ifname: &str) -> Option<SlotId> {
        self.ifaces.read().unwrap_or_else(|e| e.into_inner()).get(ifname).cloned()
    }

    pub fn interfaces(&self) -> HashMap<String, SlotId> {
        self.ifaces.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

const ALL_SLOTS: &str = "SELECT s.id, s.vlan, s.controller_ip, s.pi_ip, p.id AS pi_id, p.serial, p.mac, p.maintenance_since \
    FROM slots s LEFT JOIN pis p ON p.slot_id = s.id WHERE s.retired_at IS NULL ORDER BY s.id";
const SERVED_SLOTS: &str = "SELECT s.id, s.vlan, s.controller_ip, s.pi_ip, p.id AS pi_id, p.serial, p.mac, p.maintenance_since \
    FROM slots s JOIN switches sw ON sw.id = s.switch_id LEFT JOIN pis p ON p.slot_id = s.id \
    WHERE s.retired_at IS NULL AND sw.controller = $1 ORDER BY s.id";
const ALL_PIS: &str = "SELECT id, serial, mac, maintenance_since FROM pis WHERE mac IS NOT NULL AND state <> 'retired'";
/// Pis in served slots, and Pis in no slot (a board that has not been racked yet).
const SERVED_PIS: &str = "SELECT p.id, p.serial, p.mac, p.maintenance_since FROM pis p LEFT JOIN slots s ON s.id = p.slot_id \
    LEFT JOIN switches sw ON sw.id = s.switch_id \
    WHERE p.mac IS NOT NULL AND p.state <> 'retired' AND (p.slot_id IS NULL OR sw.controller = $1)";

async fn load(db: &Db, controller: Option<&str>) -> Result<Snapshot, DbError> {
    let rows = match controller {
        Some(c) => db.q(SERVED_SLOTS).bind(c.to_string()).fetch_all(db.pool()).await?,
        None => db.q(ALL_SLOTS).fetch_all(db.pool()).await?,
    };
    let mut slots = Vec::with_capacity(rows.len());
    for r in &rows {
        let pi = match get_opt_str(r, "pi_id")? {
            Some(id) => Some(PiEntry {
                id: PiId(id),
                serial: get_opt_serial(r, "serial", "pis.serial")?,
                mac: get_opt_str(r, "mac")?,
                maintenance: get_opt_i64(r, "maintenance_since")?.is_some(),
            }),
            None => None,
        };
        slots.push(SlotEntry {
            id: SlotId(get_str(r, "id")?),
            vlan: get_u16(r, "vlan")?,
            controller_ip: parse_ip(r, "controller_ip")?,
            pi_ip: parse_ip(r, "pi_ip")?,
            pi,
        });
    }
    let rows = match controller {
        Some(c) => db.q(SERVED_PIS).bind(c.to_string()).fetch_all(db.pool()).await?,
        None => db.q(ALL_PIS).fetch_all(db.pool()).await?,
    };
    let pis = rows
        .iter()
        .map(|r| {
            Ok(PiEntry {
                id: PiId(get_str(r, "id")?),
                serial: get_opt_serial(r, "serial", "pis.serial")?,
                mac: get_opt_str(r, "mac")?,
                maintenance: get_opt_i64(r, "maintenance_since")?.is_some(),
            })
        })
        .collect::<Result<Vec<_>, DbError>>()?;
    Ok(Snapshot::new(slots, pis))
}

fn parse_ip(row: &sqlx::any::AnyRow, col: &'static str) -> Result<Ipv4Addr, DbError> {
    let text = get_str(row, col)?;
    text.parse().map_err(|_| DbError::Corrupt { column: col, value: text })
}
