//! [`Sightings`]: applies what the DHCP server (a packet's MAC, model and serial) and the
//! TFTP server (a serial directory in a path) saw to the inventory, through the pure rule
//! [`sightings::decide`]. One at a time (two packets of one new Pi must not both create
//! it), off the reply path, each decision written in its own transaction; a change
//! refreshes the netboot [`Directory`] so TFTP serves the new identity at once.

use std::sync::Arc;

use bramble_netboot::dhcp::Sighting;
use bramble_netboot::hw::PiSerial;
use serde_json::json;

use super::directory::Directory;
use super::sightings::{self, Claims, Decision, Holder, Known, Seen, Source};
use crate::db::events::NewEvent;
use crate::db::hardware::{By, How, Written};
use crate::db::pis::NewPi;
use crate::db::{Db, DbError};
use crate::ids::SlotId;
use crate::lifecycle::PiState;

/// The sighting side of netboot, shared by the lease store (DHCP) and the event sink
/// (TFTP).
pub struct Sightings {
    db: Db,
    directory: Arc<Directory>,
    one_at_a_time: tokio::sync::Mutex<()>,
}

impl Sightings {
    pub fn new(db: Db, directory: Arc<Directory>) -> Arc<Sightings> {
        Arc::new(Sightings { db, directory, one_at_a_time: tokio::sync::Mutex::new(()) })
    }

    /// A DHCP client seen on a storage interface (or a Pi on a flat network).
    pub async fn dhcp(&self, s: &Sighting) -> Result<bool, DbError> {
        let seen = Seen {
            source: Source::Dhcp,
            mac: Some(s.mac.to_string()),
            serial: s.serial,
            model: sightings::model_name(s.model),
        };
        let slot = s.slot.as_ref().map(|k| SlotId(k.0.clone()));
        self.record(slot.as_ref(), &seen, &s.interface).await
    }

    /// A TFTP path on `slot` naming `serial` as its directory, when it is not the serial
    /// the netboot directory holds for the slot's Pi.
    pub async fn tftp(&self, slot: &SlotId, serial: PiSerial) -> Result<bool, DbError> {
        let seen = Seen { source: Source::Tftp, mac: None, serial: Some(serial), model: None };
        let changed = self.record(Some(slot), &seen, "tftp").await?;
        if !changed {
            // An operator may have accepted this serial since the last refresh.
            self.directory.refresh_on_miss().await;
        }
        Ok(changed)
    }

    async fn record(&self, slot: Option<&SlotId>, seen: &Seen, via: &str) -> Result<bool, DbError> {
        let _turn = self.one_at_a_time.lock().await;
        let changed = apply(&self.db, slot, seen, via).await?;
        if changed {
            // The new or changed Pi must be visible to TFTP and the timeline at once.
            self.directory.refresh().await?;
        }
        Ok(changed)
    }
}

/// Applies one sighting; returns whether a Pi's identity or slot changed.
pub async fn apply(
    db: &Db,
    slot: Option<&SlotId>,
    seen: &Seen,
    via: &str,
) -> Result<bool, DbError> {
    let known = match slot {
        Some(slot) => db.sighting_pi(By::Slot, &slot.0).await?,
        None => find_by_identity(db, seen).await?,
    };
    let claims = Claims {
        mac: match &seen.mac {
            Some(mac) => db.sighting_pi(By::Mac, mac).await?.map(holder),
            None => None,
        },
        serial: match seen.serial {
            Some(serial) => db.sighting_pi(By::Serial, &serial.to_string()).await?.map(holder),
            None => None,
        },
    };
    let decision = sightings::decide(slot, known.as_ref(), seen, &claims);
    tracing::debug!(via, slot = ?slot, mac = ?seen.mac, serial = ?seen.serial, ?decision, "hardware sighting");
    let stale = |pi: &crate::ids::PiId, w: Written| {
        if w != Written::Done {
            tracing::info!(pi = %pi, outcome = ?w, "sighting not applied: the Pi changed meanwhile");
        }
        w == Written::Done
    };
    match decision {
        Decision::Nothing => Ok(false),
        Decision::Create => create(db, seen, slot).await,
        Decision::Fill { pi, identity } => {
            let Some(k) = &known else { return Ok(false) };
            Ok(stale(&pi, db.fill_identity(&pi, &k.identity, &identity).await?))
        }
        Decision::Adopt { pi } => match slot {
            Some(slot) => db.adopt_pi(&pi, slot, seen).await,
            None => Ok(false),
        },
        Decision::Replace { pi, identity } => {
            let Some(k) = &known else { return Ok(false) };
            tracing::warn!(pi = %pi, old = ?k.identity, new = ?identity, "Pi replaced in its slot during maintenance");
            let how = How::Maintenance;
            Ok(stale(
                &pi,
                db.replace_hardware(&pi, &k.identity, &identity, how, seen.source.as_str()).await?,
            ))
        }
        Decision::Flag { pi, reason } => {
            let new = db.flag_sighting(&pi, slot, seen, &reason).await?;
            if new {
                tracing::warn!(pi = %pi, reason = reason.name(), mac = ?seen.mac, serial = ?seen.serial,
                    model = ?seen.model, "hardware sighting flagged for an operator; inventory unchanged");
            }
            Ok(false)
        }
        Decision::Foreign { claim, other } => {
            tracing::warn!(slot = ?slot, other = %other, ?claim, mac = ?seen.mac, serial = ?seen.serial,
                "a packet claimed another Pi's identity; inventory unchanged");
            let msg = format!(
                "a packet on slot {} claimed the {claim:?} of Pi {other}",
                slot.map_or("(flat network)", |s| s.0.as_str())
            );
            let data = json!({ "slot": slot, "other_pi": other, "mac": seen.mac, "serial": seen.serial, "source": seen.source.as_str() });
            let event = NewEvent::new("slot.foreign_identity", seen.source.as_str(), msg)
                .data(data)
                .operators_only();
            db.append_event(&event).await?;
            Ok(false)
        }
    }
}

fn holder(k: Known) -> Holder {
    Holder { id: k.id, slot: k.slot, trust: k.trust }
}

async fn create(db: &Db, seen: &Seen, slot: Option<&SlotId>) -> Result<bool, DbError> {
    let Some(mac) = &seen.mac else { return Ok(false) };
    let new = NewPi {
        serial: seen.serial,
        mac: Some(mac.clone()),
        model: seen.model.unwrap_or(sightings::UNKNOWN_MODEL).to_string(),
        slot: slot.cloned(),
        owner: None,
        state: PiState::New,
    };
    match db.insert_pi(&new, "dhcp").await {
        Ok(pi) => {
            tracing::info!(pi = %pi.id, mac = %mac, slot = ?slot, "new Pi discovered by dhcp");
            Ok(true)
        }
        // Another controller (or an operator) recorded it first.
        Err(e) if e.is_unique_violation() => Ok(false),
        Err(e) => Err(e),
    }
}

async fn find_by_identity(db: &Db, seen: &Seen) -> Result<Option<Known>, DbError> {
    if let Some(mac) = &seen.mac
        && let Some(k) = db.sighting_pi(By::Mac, mac).await?
    {
        return Ok(Some(k));
    }
    match &seen.serial {
        Some(serial) => db.sighting_pi(By::Serial, &serial.to_string()).await,
        None => Ok(None),
    }
}
