//! A shelf's live status for operators: every slot with its flag, its Pi, the Pi's latest
//! boot stage and its active job, read in one query.
//!
//! The shelf view (`bramble shelf show`, the `/ui` page) polls this every second or two
//! per watcher, so it must cost the same for 8 ports as for 96: one statement joins
//! slots → Pis → the active job (at most one per Pi, by the `jobs_one_active_per_pi`
//! index) → the newest `dhcp.*`/`tftp.*` event (found through the `events_boot_pi`
//! partial index, newest first). **Invariant:** this file only reads.

use std::collections::BTreeMap;

use bramble_netboot::hw::PiSerial;
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use utoipa::ToSchema;

use super::events::BOOT_TIMELINE;
use super::sql::{Sql, Value};
use super::{Db, DbError, get_i64, get_opt_i64, get_opt_serial, get_opt_str, get_str, get_u16};
use crate::ids::{CustomerId, JobId, PiId, ShelfId, SlotId, SwitchId};
use crate::jobs::model::{JobKind, JobState, progress_percent};
use crate::lifecycle::PiState;
use crate::model::PowerState;
use crate::time::now_millis;

/// A shelf as an operator watches it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ShelfStatus {
    pub id: ShelfId,
    pub name: String,
    pub switch: SwitchId,
    pub switch_name: String,
    /// The controller serving the shelf's switch (its DHCP, TFTP, roots and jobs).
    pub controller: Option<String>,
    pub first_port: u16,
    pub last_port: u16,
    /// When this snapshot was read, Unix milliseconds (the controller's clock).
    pub read_at: i64,
    /// Slots in port order.
    pub slots: Vec<SlotStatus>,
}

/// One port of the shelf.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SlotStatus {
    pub slot: SlotId,
    pub port: u16,
    pub vlan: u16,
    /// The Pi's address on its storage /30.
    pub storage_ip: String,
    /// Why the slot is not ready (no Pi found when racking, stopped drawing power, ...);
    /// absent when nothing is wrong.
    pub flag: Option<String>,
    pub flagged_at: Option<i64>,
    /// The Pi in this slot, if any.
    pub pi: Option<PiSummary>,
    /// The Pi's most recent DHCP or TFTP event.
    pub boot: Option<LatestBoot>,
    /// The Pi's queued or running job.
    pub job: Option<ActiveJob>,
}

/// The fields of a Pi an operator needs at a glance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PiSummary {
    pub id: PiId,
    #[schema(value_type = Option<String>, pattern = "^[0-9a-f]{8}$")]
    pub serial: Option<PiSerial>,
    pub mac: Option<String>,
    pub model: String,
    pub state: PiState,
    pub power: PowerState,
    pub owner: Option<CustomerId>,
    pub image: Option<String>,
    /// The job step that failed, when `state` is `failed`.
    pub failed_step: Option<String>,
    /// An operator has it in maintenance (a board swap).
    #[serde(default)]
    pub maintenance: bool,
    /// The reason of a hardware sighting waiting for an operator (`differs`, `adds`,
    /// `mac_taken`, `serial_taken`); the slot's `flag` says so too.
    #[serde(default)]
    pub hardware_sighting: Option<String>,
    /// The last boot attempt's stage and diagnosis (with the port's PoE then).
    #[serde(default)]
    pub last_boot: Option<crate::diagnosis::LastBoot>,
}

/// The newest boot-timeline event of a Pi.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LatestBoot {
    /// `dhcp.discover`, `dhcp.offer`, `dhcp.ack`, `tftp.read`, `tftp.complete`, ...
    pub kind: String,
    pub at: i64,
    pub message: String,
}

/// A Pi's active job and how far it got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ActiveJob {
    pub id: JobId,
    pub kind: JobKind,
    /// `queued` or `running`.
    pub state: JobState,
    /// The step being run; absent while queued.
    pub step: Option<String>,
    pub percent: u8,
}

impl SlotStatus {
    /// What a tile or table row shows as the slot's state: the Pi's lifecycle state, or
    /// `empty` without a Pi.
    pub fn shown_state(&self) -> &'static str {
        self.pi.as_ref().map_or("empty", |p| p.state.as_str())
    }
}

impl ShelfStatus {
    /// How many slots show each state (see [`SlotStatus::shown_state`]), plus `flagged`.
    pub fn counts(&self) -> BTreeMap<&'static str, usize> {
        let mut counts = BTreeMap::new();
        for s in &self.slots {
            *counts.entry(s.shown_state()).or_insert(0) += 1;
            if s.flag.is_some() {
                *counts.entry("flagged").or_insert(0) += 1;
            }
        }
        counts
    }
}

/// The whole read but its WHERE. Enrollment writes a shelf with all its slots in one
/// transaction and a shelf has at least one port, so "no rows" means "no such shelf".
/// Slots are found through their unique (switch, port) index: a shelf is a port range of
/// one switch. Each Pi's latest boot event is one probe, newest first, of the partial
/// index `events_boot_pi` (pi_id, id) over the boot timeline alone, so a Pi's audit
/// events since its last boot are never read; the condition is [`BOOT_TIMELINE`] word for
/// word, which is what lets the planner use that index.
const STATUS_SQL: &str = const_format::concatcp!(
    "SELECT sh.id AS shelf_id, sh.name AS shelf_name, sh.switch_id, sw.name AS switch_name, sw.controller, \
        sh.first_port, sh.last_port, \
        s.id AS slot_id, s.port, s.vlan, s.pi_ip, s.flag, s.flagged_at, \
        p.id AS pi_id, p.serial, p.mac, p.model, p.state, p.power, p.owner, p.image, p.failed_step, p.last_boot, \
        p.maintenance_since, hs.reason AS hw_reason, \
        j.id AS job_id, j.kind AS job_kind, j.state AS job_state, j.step AS job_step, \
        e.kind AS boot_kind, e.at AS boot_at, e.message AS boot_message \
    FROM shelves sh \
    JOIN switches sw ON sw.id = sh.switch_id \
    JOIN slots s ON s.switch_id = sh.switch_id AND s.port BETWEEN sh.first_port AND sh.last_port AND s.shelf_id = sh.id \
    LEFT JOIN pis p ON p.slot_id = s.id \
    LEFT JOIN hardware_sightings hs ON hs.pi_id = p.id \
    LEFT JOIN jobs j ON j.pi_id = p.id AND j.state IN ('queued', 'running') \
    LEFT JOIN events e ON e.id = (SELECT id FROM events WHERE pi_id = p.id AND ",
    BOOT_TIMELINE,
    " ORDER BY id DESC LIMIT 1)"
);

/// The status read of the shelf with this id or name.
pub(crate) fn status_sql(id_or_name: &str) -> Sql {
    let v = Value::from(id_or_name);
    Sql::new(STATUS_SQL)
        .push(" WHERE (sh.id = ? OR sh.name = ?) ORDER BY s.port", vec![v.clone(), v])
}

impl Db {
    /// The status of the shelf with this id or name, or `None` if there is none.
    pub async fn shelf_status(&self, id_or_name: &str) -> Result<Option<ShelfStatus>, DbError> {
        let rows = self.query(&status_sql(id_or_name)).fetch_all(self.pool()).await?;
        let Some(first) = rows.first() else { return Ok(None) };
        Ok(Some(ShelfStatus {
            id: ShelfId(get_str(first, "shelf_id")?),
            name: get_str(first, "shelf_name")?,
            switch: SwitchId(get_str(first, "switch_id")?),
            switch_name: get_str(first, "switch_name")?,
            controller: get_opt_str(first, "controller")?,
            first_port: get_u16(first, "first_port")?,
            last_port: get_u16(first, "last_port")?,
            read_at: now_millis(),
            slots: rows.iter().map(slot_from_row).collect::<Result<_, _>>()?,
        }))
    }
}

fn slot_from_row(row: &AnyRow) -> Result<SlotStatus, DbError> {
    let pi = get_opt_str(row, "pi_id")?.map(|id| pi_from_row(row, id)).transpose()?;
    let boot = match (get_opt_str(row, "boot_kind")?, get_opt_i64(row, "boot_at")?) {
        (Some(kind), Some(at)) => Some(LatestBoot {
            kind,
            at,
            message: get_opt_str(row, "boot_message")?.unwrap_or_default(),
        }),
        _ => None,
    };
    let job = get_opt_str(row, "job_id")?.map(|id| job_from_row(row, id)).transpose()?;
    Ok(SlotStatus {
        slot: SlotId(get_str(row, "slot_id")?),
        port: get_u16(row, "port")?,
        vlan: get_u16(row, "vlan")?,
        storage_ip: get_str(row, "pi_ip")?,
        // A hardware sighting waiting for an operator flags the slot too.
        flag: get_opt_str(row, "flag")?.or(get_opt_str(row, "hw_reason")?
            .map(|r| format!("hardware sighting ({r}): accept or dismiss it (bramble pi show)"))),
        flagged_at: get_opt_i64(row, "flagged_at")?,
        pi,
        boot,
        job,
    })
}

fn pi_from_row(row: &AnyRow, id: String) -> Result<PiSummary, DbError> {
    let state_text = get_str(row, "state")?;
    let state = PiState::parse(&state_text)
        .ok_or(DbError::Corrupt { column: "pis.state", value: state_text })?;
    Ok(PiSummary {
        id: PiId(id),
        serial: get_opt_serial(row, "serial", "pis.serial")?,
        mac: get_opt_str(row, "mac")?,
        model: get_str(row, "model")?,
        state,
        power: PowerState::parse(&get_str(row, "power")?),
        owner: get_opt_str(row, "owner")?.map(CustomerId),
        image: get_opt_str(row, "image")?,
        failed_step: get_opt_str(row, "failed_step")?,
        maintenance: get_opt_i64(row, "maintenance_since")?.is_some(),
        hardware_sighting: get_opt_str(row, "hw_reason")?,
        last_boot: super::pis::last_boot_from_row(row)?,
    })
}

fn job_from_row(row: &AnyRow, id: String) -> Result<ActiveJob, DbError> {
    let kind_text = get_str(row, "job_kind")?;
    let kind = JobKind::parse(&kind_text)
        .ok_or(DbError::Corrupt { column: "jobs.kind", value: kind_text })?;
    let state_text = get_str(row, "job_state")?;
    let state = JobState::parse(&state_text)
        .ok_or(DbError::Corrupt { column: "jobs.state", value: state_text })?;
    let step = usize::try_from(get_i64(row, "job_step")?).unwrap_or(0);
    let name = match state {
        JobState::Running => kind.steps().get(step).map(|s| s.to_string()),
        _ => None,
    };
    Ok(ActiveJob {
        id: JobId(id),
        kind,
        state,
        step: name,
        percent: progress_percent(kind, state, step),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(port: u16, state: Option<PiState>, flag: Option<&str>) -> SlotStatus {
        SlotStatus {
            slot: SlotId(format!("slot-{port}")),
            port,
            vlan: port + 100,
            storage_ip: "10.0.0.2".into(),
            flag: flag.map(str::to_string),
            flagged_at: flag.map(|_| 1),
            pi: state.map(|state| PiSummary {
                id: PiId(format!("pi-{port}")),
                serial: None,
                mac: None,
                model: "3b".into(),
                state,
                power: PowerState::Unknown,
                owner: None,
                image: None,
                failed_step: None,
                maintenance: false,
                hardware_sighting: None,
                last_boot: None,
            }),
            boot: None,
            job: None,
        }
    }

    #[test]
    fn counts_show_states_empties_and_flags() {
        let status = ShelfStatus {
            id: ShelfId("shelf-1".into()),
            name: "a".into(),
            switch: SwitchId("sw-1".into()),
            switch_name: "sw".into(),
            controller: Some("c1".into()),
            first_port: 1,
            last_port: 4,
            read_at: 0,
            slots: vec![
                slot(1, Some(PiState::Ready), None),
                slot(2, Some(PiState::Ready), None),
                slot(3, None, Some("no Pi answered")),
                slot(4, Some(PiState::Failed), Some("stopped drawing power")),
            ],
        };
        let counts = status.counts();
        assert_eq!(counts.get("ready"), Some(&2));
        assert_eq!(counts.get("empty"), Some(&1));
        assert_eq!(counts.get("failed"), Some(&1));
        assert_eq!(counts.get("flagged"), Some(&2));
        assert_eq!(status.slots[2].shown_state(), "empty");
    }
}
