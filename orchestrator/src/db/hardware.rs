//! A Pi's hardware rows (migration `0009_hardware`): the maintenance mark on `pis`, the
//! sighting waiting for an operator (`hardware_sightings`, one per Pi) and accepted
//! replacements (`pi_hardware_history`). Identity writes are compare-and-sets on the
//! identity they were decided from, so a sighting and an operator's accept never both
//! apply.

use bramble_netboot::hw::PiSerial;
use serde_json::json;
use sqlx::any::AnyRow;

use super::events::NewEvent;
use super::sql::Sql;
use super::{
    Backend, Db, DbError, Query, get_i64, get_opt_i64, get_opt_serial, get_opt_str, get_str,
};
use crate::hardware::{HardwareChange, HardwareSighting, Maintenance};
use crate::ids::{CustomerId, JobId, PiId, SlotId};
use crate::lifecycle::PiState;
use crate::netboot::sightings::{FlagReason, Identity, Known, Seen, Source, trust};
use crate::time::now_millis;

/// How a replacement was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    /// Seen while the Pi was in maintenance.
    Maintenance,
    /// An operator accepted a flagged sighting.
    Operator,
}

impl How {
    pub fn as_str(self) -> &'static str {
        match self {
            How::Maintenance => "maintenance",
            How::Operator => "operator",
        }
    }
}

/// What an identity write found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    Done,
    /// The Pi's identity is no longer the one the change was computed from.
    Stale,
    /// Another Pi holds the MAC or serial (a unique index refused it).
    Taken,
}

/// What a maintenance change found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MaintenanceChange {
    Changed,
    Unchanged,
    /// A job is queued or running on the Pi: it must finish (or be cancelled) first.
    Busy {
        running: JobId,
    },
    Retired,
    NotFound,
}

/// Which column a Pi is looked up by for a sighting.
#[derive(Debug, Clone, Copy)]
pub enum By {
    Id,
    Slot,
    Mac,
    Serial,
}

const KNOWN: &str =
    "SELECT id, serial, mac, model, slot_id, state, owner, image, maintenance_since FROM pis";
const SIGHTING: &str = "SELECT pi_id, id, slot_id, source, reason, other_pi, mac, serial, model, \
    first_at, last_at, seen_count FROM hardware_sightings WHERE pi_id = $1";

pub(crate) fn maintenance_from_row(row: &AnyRow) -> Result<Option<Maintenance>, DbError> {
    Ok(match get_opt_i64(row, "maintenance_since")? {
        Some(since) => {
            Some(Maintenance { since, by: get_opt_str(row, "maintenance_by")?.unwrap_or_default() })
        }
        None => None,
    })
}

fn known_from_row(row: &AnyRow) -> Result<Known, DbError> {
    let state_text = get_str(row, "state")?;
    let state = PiState::parse(&state_text)
        .ok_or(DbError::Corrupt { column: "pis.state", value: state_text })?;
    let owned = get_opt_str(row, "owner")?.is_some();
    let has_root = get_opt_str(row, "image")?.is_some();
    let maintenance = get_opt_i64(row, "maintenance_since")?.is_some();
    Ok(Known {
        id: PiId(get_str(row, "id")?),
        identity: Identity {
            mac: get_opt_str(row, "mac")?,
            serial: get_opt_serial(row, "serial", "pis.serial")?,
            model: get_str(row, "model")?,
        },
        slot: get_opt_str(row, "slot_id")?.map(SlotId),
        trust: trust(state, owned, has_root, maintenance),
    })
}

fn sighting_from_row(row: &AnyRow) -> Result<HardwareSighting, DbError> {
    Ok(HardwareSighting {
        id: get_str(row, "id")?,
        slot: get_opt_str(row, "slot_id")?.map(SlotId),
        source: get_str(row, "source")?,
        reason: get_str(row, "reason")?,
        other_pi: get_opt_str(row, "other_pi")?.map(PiId),
        mac: get_opt_str(row, "mac")?,
        serial: get_opt_serial(row, "serial", "hardware_sightings.serial")?,
        model: get_opt_str(row, "model")?,
        first_at: get_i64(row, "first_at")?,
        last_at: get_i64(row, "last_at")?,
        count: get_i64(row, "seen_count")?,
    })
}

fn change_from_row(row: &AnyRow) -> Result<HardwareChange, DbError> {
    let serial = |col| get_opt_serial(row, col, "pi_hardware_history.serial");
    Ok(HardwareChange {
        at: get_i64(row, "at")?,
        slot: get_opt_str(row, "slot_id")?.map(SlotId),
        customer: get_opt_str(row, "customer")?.map(CustomerId),
        old_mac: get_opt_str(row, "old_mac")?,
        old_serial: serial("old_serial")?,
        old_model: get_str(row, "old_model")?,
        new_mac: get_opt_str(row, "new_mac")?,
        new_serial: serial("new_serial")?,
        new_model: get_str(row, "new_model")?,
        how: get_str(row, "how")?,
        accepted_by: get_str(row, "accepted_by")?,
    })
}

fn text(serial: Option<PiSerial>) -> Option<String> {
    serial.map(|s| s.to_string())
}

/// What a pending sighting showed, as the rule reads a sighting.
pub fn seen_of(s: &HardwareSighting) -> Seen {
    let source = if s.source == Source::Tftp.as_str() { Source::Tftp } else { Source::Dhcp };
    // The model as one of the rule's names, when it is one.
    let model = s
        .model
        .as_deref()
        .and_then(|m| crate::validate::MODELS.iter().copied().find(|k| *k == m && *k != "unknown"));
    Seen { source, mac: s.mac.clone(), serial: s.serial, model }
}

/// The Pi a sighting is about: a probe of one unique column (every DHCP packet makes one).
pub(crate) fn sighting_pi_sql(by: By, value: &str) -> Sql {
    let column = match by {
        By::Id => "id = ?",
        By::Slot => "slot_id = ?",
        By::Mac => "mac = ?",
        By::Serial => "serial = ?",
    };
    Sql::new(KNOWN).and(column, value.to_string())
}

/// A Pi's accepted replacements, oldest first; only `customer`'s when given.
pub(crate) fn hardware_history_sql(pi: &PiId, customer: Option<&CustomerId>) -> Sql {
    Sql::new(
        "SELECT at, slot_id, customer, old_mac, old_serial, old_model, new_mac, new_serial, \
         new_model, how, accepted_by FROM pi_hardware_history",
    )
    .and("pi_id = ?", pi.0.clone())
    .and_opt("customer = ?", customer.map(|c| c.0.clone()))
    .push(" ORDER BY id", Vec::new())
}

impl Db {
    /// `sql`, locking the rows it reads on PostgreSQL (`locked` is `sql` + ` FOR UPDATE`;
    /// SQLite's write transactions hold the whole database already).
    fn q_locked(&self, sql: &'static str, locked: &'static str) -> Query<'static> {
        match self.backend() {
            Backend::Postgres => self.q(locked),
            Backend::Sqlite => self.q(sql),
        }
    }

    /// The row `sql` (`locked`: the same ` FOR UPDATE`) reads by the Pi's id as `$1`,
    /// inside `tx`, locked on PostgreSQL until `tx` ends.
    async fn locked_row(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        (sql, locked): (&'static str, &'static str),
        pi: &PiId,
    ) -> Result<Option<AnyRow>, DbError> {
        Ok(self.q_locked(sql, locked).bind(pi.0.clone()).fetch_optional(&mut **tx).await?)
    }

    /// The Pi a sighting is about, looked up `by` a column.
    pub async fn sighting_pi(&self, by: By, value: &str) -> Result<Option<Known>, DbError> {
        let row = self.query(&sighting_pi_sql(by, value)).fetch_optional(self.pool()).await?;
        row.as_ref().map(known_from_row).transpose()
    }

    /// Writes `new` over the Pi's identity if it is still `old` (a fill: no event).
    pub async fn fill_identity(
        &self,
        pi: &PiId,
        old: &Identity,
        new: &Identity,
    ) -> Result<Written, DbError> {
        let mut tx = self.begin_write().await?;
        let r = self.write_identity(&mut tx, pi, old, new).await;
        let written = match r {
            Ok(w) => w,
            Err(e) if e.is_unique_violation() => Written::Taken,
            Err(e) => return Err(e),
        };
        if written != Written::Done {
            tx.rollback().await?;
            return Ok(written);
        }
        // A replacement 3B shows its serial only over TFTP, after the replacement.
        if old.serial.is_none() && new.serial.is_some() {
            self.q("UPDATE pi_hardware_history SET new_serial = $1 WHERE pi_id = $2 AND new_serial IS NULL \
                    AND new_mac IS NOT DISTINCT FROM $3 AND id = (SELECT MAX(id) FROM pi_hardware_history WHERE pi_id = $2)")
                .bind(text(new.serial))
                .bind(pi.0.clone())
                .bind(new.mac.clone())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(Written::Done)
    }

    async fn write_identity(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        pi: &PiId,
        old: &Identity,
        new: &Identity,
    ) -> Result<Written, DbError> {
        let r = self
            .q("UPDATE pis SET mac = $1, serial = $2, model = $3, updated_at = $4 WHERE id = $5 \
                AND mac IS NOT DISTINCT FROM $6 AND serial IS NOT DISTINCT FROM $7 AND model = $8")
            .bind(new.mac.clone())
            .bind(text(new.serial))
            .bind(new.model.clone())
            .bind(now_millis())
            .bind(pi.0.clone())
            .bind(old.mac.clone())
            .bind(text(old.serial))
            .bind(old.model.clone())
            .execute(&mut **tx)
            .await?;
        Ok(if r.rows_affected() == 1 { Written::Done } else { Written::Stale })
    }

    /// Puts a slotless Pi into `slot`, filling in what its record lacks from `seen`.
    pub async fn adopt_pi(&self, pi: &PiId, slot: &SlotId, seen: &Seen) -> Result<bool, DbError> {
        let mut tx = self.begin_write().await?;
        let r = self
            .q("UPDATE pis SET slot_id = $1, mac = COALESCE(mac, $2), serial = COALESCE(serial, $3), \
                model = CASE WHEN model = 'unknown' AND $4 IS NOT NULL THEN $4 ELSE model END, updated_at = $5 \
                WHERE id = $6 AND slot_id IS NULL")
            .bind(slot.0.clone())
            .bind(seen.mac.clone())
            .bind(text(seen.serial))
            .bind(seen.model.map(str::to_string))
            .bind(now_millis())
            .bind(pi.0.clone())
            .execute(&mut *tx)
            .await?;
        if r.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        let msg = format!("seen on the storage network of slot {slot}");
        self.append_event_with(&mut *tx, &NewEvent::new("pi.slotted", "dhcp", msg).pi(pi)).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Makes `new` the Pi's hardware if its identity is still `old`: the history row, the
    /// `pi.replaced` event (its owner's, and the webhook's) and the end of any pending
    /// sighting, in one transaction. Owner, addresses, root, keys and snapshots are the
    /// Pi's and stay.
    pub async fn replace_hardware(
        &self,
        pi: &PiId,
        old: &Identity,
        new: &Identity,
        how: How,
        actor: &str,
    ) -> Result<Written, DbError> {
        let mut tx = self.begin_write().await?;
        const OWNER: &str = "SELECT owner, slot_id FROM pis WHERE id = $1";
        let row = self
            .locked_row(&mut tx, (OWNER, const_format::concatcp!(OWNER, " FOR UPDATE")), pi)
            .await?;
        let Some(row) = row else {
            tx.rollback().await?;
            return Ok(Written::Stale);
        };
        let (owner, slot) = (get_opt_str(&row, "owner")?, get_opt_str(&row, "slot_id")?);
        let written = match self.write_identity(&mut tx, pi, old, new).await {
            Ok(w) => w,
            Err(e) if e.is_unique_violation() => Written::Taken,
            Err(e) => return Err(e),
        };
        if written != Written::Done {
            tx.rollback().await?;
            return Ok(written);
        }
        let now = now_millis();
        self.q("INSERT INTO pi_hardware_history (pi_id, slot_id, customer, at, old_mac, old_serial, old_model, \
                new_mac, new_serial, new_model, how, accepted_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)")
            .bind(pi.0.clone())
            .bind(slot.clone())
            .bind(owner)
            .bind(now)
            .bind(old.mac.clone())
            .bind(text(old.serial))
            .bind(old.model.clone())
            .bind(new.mac.clone())
            .bind(text(new.serial))
            .bind(new.model.clone())
            .bind(how.as_str())
            .bind(actor.to_string())
            .execute(&mut *tx)
            .await?;
        self.q("DELETE FROM hardware_sightings WHERE pi_id = $1")
            .bind(pi.0.clone())
            .execute(&mut *tx)
            .await?;
        let data = json!({
            "slot": slot, "how": how.as_str(), "accepted_by": actor,
            "old_mac": old.mac, "old_serial": old.serial, "old_model": old.model,
            "new_mac": new.mac, "new_serial": new.serial, "new_model": new.model,
        });
        let msg = format!(
            "board replaced: {} ({}) is now {} ({})",
            old.mac.as_deref().unwrap_or("no MAC"),
            old.model,
            new.mac.as_deref().unwrap_or("no MAC"),
            new.model
        );
        let event = NewEvent::new("pi.replaced", actor, msg).pi(pi).data(data);
        self.append_event_with(&mut *tx, &event).await?;
        tx.commit().await?;
        Ok(Written::Done)
    }

    /// Records what was seen on a Pi that the rule did not apply, as its pending sighting.
    /// Fields this sighting lacks keep the pending one's (a 3B shows its MAC in DHCP and
    /// its serial over TFTP). The `pi.hardware_flagged` event (operators only) is written
    /// when the Pi had no pending sighting, so a flood of packets adds no audit rows.
    /// Returns whether the Pi was newly flagged.
    pub async fn flag_sighting(
        &self,
        pi: &PiId,
        slot: Option<&SlotId>,
        seen: &Seen,
        reason: &FlagReason,
    ) -> Result<bool, DbError> {
        let mut tx = self.begin_write().await?;
        let row = self
            .locked_row(&mut tx, (SIGHTING, const_format::concatcp!(SIGHTING, " FOR UPDATE")), pi)
            .await?;
        let before = row.as_ref().map(sighting_from_row).transpose()?;
        let now = now_millis();
        let mac = seen.mac.clone().or_else(|| before.as_ref().and_then(|b| b.mac.clone()));
        let serial = seen.serial.or_else(|| before.as_ref().and_then(|b| b.serial));
        let model = seen
            .model
            .map(str::to_string)
            .or_else(|| before.as_ref().and_then(|b| b.model.clone()));
        let other = reason.other().map(|o| o.0.clone());
        let same = before.as_ref().is_some_and(|b| {
            (&b.mac, b.serial, &b.model, b.reason.as_str(), b.other_pi.as_ref().map(|o| &o.0))
                == (&mac, serial, &model, reason.name(), other.as_ref())
        });
        let id = match &before {
            Some(b) if same => b.id.clone(),
            _ => format!("hws-{now:012x}{:06x}", rand::random::<u32>() & 0xff_ffff),
        };
        match &before {
            Some(b) => {
                self.q("UPDATE hardware_sightings SET id = $1, slot_id = $2, source = $3, reason = $4, other_pi = $5, \
                        mac = $6, serial = $7, model = $8, last_at = $9, seen_count = $10 WHERE pi_id = $11")
                    .bind(id.clone())
                    .bind(slot.map(|s| s.0.clone()))
                    .bind(seen.source.as_str())
                    .bind(reason.name())
                    .bind(other.clone())
                    .bind(mac.clone())
                    .bind(text(serial))
                    .bind(model.clone())
                    .bind(now)
                    .bind(b.count + 1)
                    .bind(pi.0.clone())
                    .execute(&mut *tx)
                    .await?;
            }
            None => {
                self.q("INSERT INTO hardware_sightings (pi_id, id, slot_id, source, reason, other_pi, mac, serial, model, \
                        first_at, last_at, seen_count) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, 1)")
                    .bind(pi.0.clone())
                    .bind(id.clone())
                    .bind(slot.map(|s| s.0.clone()))
                    .bind(seen.source.as_str())
                    .bind(reason.name())
                    .bind(other.clone())
                    .bind(mac.clone())
                    .bind(text(serial))
                    .bind(model.clone())
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                let data = json!({
                    "sighting": id, "slot": slot, "source": seen.source.as_str(), "reason": reason.name(),
                    "other_pi": other, "mac": mac, "serial": serial, "model": model,
                });
                let msg = format!(
                    "hardware sighting flagged ({}): {} seen in the Pi's slot; nothing changed",
                    reason.name(),
                    mac.as_deref().unwrap_or("a serial directory")
                );
                let event = NewEvent::new("pi.hardware_flagged", seen.source.as_str(), msg)
                    .pi(pi)
                    .data(data)
                    .operators_only();
                self.append_event_with(&mut *tx, &event).await?;
            }
        }
        tx.commit().await?;
        Ok(before.is_none())
    }

    /// The Pi's sighting waiting for an operator, if any.
    pub async fn pending_sighting(&self, pi: &PiId) -> Result<Option<HardwareSighting>, DbError> {
        let row = self.q(SIGHTING).bind(pi.0.clone()).fetch_optional(self.pool()).await?;
        row.as_ref().map(sighting_from_row).transpose()
    }

    /// Drops the Pi's pending sighting `id` (false if it is not the pending one).
    pub async fn dismiss_sighting(
        &self,
        pi: &PiId,
        id: &str,
        actor: &str,
    ) -> Result<bool, DbError> {
        let mut tx = self.begin_write().await?;
        let r = self
            .q("DELETE FROM hardware_sightings WHERE pi_id = $1 AND id = $2")
            .bind(pi.0.clone())
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        if r.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        let event =
            NewEvent::new("pi.hardware_dismissed", actor, format!("sighting {id} dismissed"))
                .pi(pi)
                .data(json!({ "sighting": id }))
                .operators_only();
        self.append_event_with(&mut *tx, &event).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The Pi's accepted replacements, oldest first; a customer's own only.
    pub async fn hardware_history(
        &self,
        pi: &PiId,
        customer: Option<&CustomerId>,
    ) -> Result<Vec<HardwareChange>, DbError> {
        let rows = self.query(&hardware_history_sql(pi, customer)).fetch_all(self.pool()).await?;
        rows.iter().map(change_from_row).collect()
    }

    /// Marks (or unmarks) the Pi for maintenance. Marking waits for no job: it is refused
    /// while one is queued or running, and once marked no job is created but an
    /// operator's power (`hardware::maintenance_allows`, checked by `create_job` under
    /// the same row lock).
    pub async fn set_maintenance(
        &self,
        pi: &PiId,
        on: bool,
        actor: &str,
    ) -> Result<MaintenanceChange, DbError> {
        let mut tx = self.begin_write().await?;
        const MARK: &str = "SELECT state, maintenance_since FROM pis WHERE id = $1";
        let row = self
            .locked_row(&mut tx, (MARK, const_format::concatcp!(MARK, " FOR UPDATE")), pi)
            .await?;
        let Some(row) = row else { return Ok(MaintenanceChange::NotFound) };
        if get_opt_i64(&row, "maintenance_since")?.is_some() == on {
            return Ok(MaintenanceChange::Unchanged);
        }
        if on && get_str(&row, "state")? == PiState::Retired.as_str() {
            return Ok(MaintenanceChange::Retired);
        }
        if on {
            let active = self
                .q("SELECT id FROM jobs WHERE pi_id = $1 AND state IN ('queued', 'running')")
                .bind(pi.0.clone())
                .fetch_optional(&mut *tx)
                .await?;
            if let Some(job) = active {
                return Ok(MaintenanceChange::Busy { running: JobId(get_str(&job, "id")?) });
            }
        }
        let now = now_millis();
        self.q("UPDATE pis SET maintenance_since = $1, maintenance_by = $2, updated_at = $3 WHERE id = $4")
            .bind(on.then_some(now))
            .bind(on.then(|| actor.to_string()))
            .bind(now)
            .bind(pi.0.clone())
            .execute(&mut *tx)
            .await?;
        let msg = if on { "maintenance on" } else { "maintenance off" };
        let event = NewEvent::new("pi.maintenance", actor, msg).pi(pi).data(json!({ "on": on }));
        self.append_event_with(&mut *tx, &event).await?;
        tx.commit().await?;
        Ok(MaintenanceChange::Changed)
    }

    /// Whether the Pi is in maintenance, read under its row lock inside `tx` (job
    /// creation, so a job and a maintenance mark cannot both commit).
    pub(crate) async fn maintenance_locked(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        pi: &PiId,
    ) -> Result<bool, DbError> {
        const MARK: &str = "SELECT maintenance_since FROM pis WHERE id = $1";
        let row =
            self.locked_row(tx, (MARK, const_format::concatcp!(MARK, " FOR UPDATE")), pi).await?;
        Ok(match row {
            Some(r) => get_opt_i64(&r, "maintenance_since")?.is_some(),
            None => false,
        })
    }
}
