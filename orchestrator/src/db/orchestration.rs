//! What jobs and the reconciler read and write beyond plain inventory: where a slot is
//! wired (switch, port, addresses), slot flags, boot evidence in the event log and a
//! job's result.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::events::BOOT_TIMELINE;
use super::sql::Sql;
use super::{Db, DbError, get_i64, get_opt_str, get_str, get_u16};
use crate::diagnosis::{LastBoot, Seen};
use crate::ids::{JobId, PiId, ShelfId, SlotId, SwitchId};
use crate::model::SshHostKey;
use crate::time::now_millis;

/// A slot with everything needed to act on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotLocation {
    pub slot: SlotId,
    pub shelf: ShelfId,
    pub switch: SwitchId,
    pub port: u16,
    pub vlan: u16,
    pub controller_ip: Ipv4Addr,
    pub pi_ip: Ipv4Addr,
    pub public_ipv6: Ipv6Addr,
    pub flag: Option<String>,
}

/// Most boot-timeline events read for one diagnosis.
pub const TIMELINE_MAX: i64 = 2_000;

/// What the event log shows of a Pi's boot after a given event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BootEvidence {
    /// The DHCP server answered it (offer or ack).
    pub dhcp: bool,
    /// It read a kernel image over TFTP.
    pub kernel: bool,
}

impl BootEvidence {
    pub fn booted(self) -> bool {
        self.dhcp && self.kernel
    }
}

const LOCATION: &str = "SELECT id, shelf_id, switch_id, port, vlan, controller_ip, pi_ip, public_ipv6, flag FROM slots";

impl Db {
    pub async fn slot_location(&self, slot: &SlotId) -> Result<Option<SlotLocation>, DbError> {
        let row = self
            .q(const_format::concatcp!(LOCATION, " WHERE id = $1"))
            .bind(slot.0.clone())
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(location_from_row).transpose()
    }

    /// Every slot of a shelf, by port.
    pub async fn shelf_locations(&self, shelf: &ShelfId) -> Result<Vec<SlotLocation>, DbError> {
        let rows = self
            .q(const_format::concatcp!(LOCATION, " WHERE shelf_id = $1 ORDER BY port"))
            .bind(shelf.0.clone())
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(location_from_row).collect()
    }

    /// Every slot on a switch, by port.
    pub async fn switch_locations(&self, switch: &SwitchId) -> Result<Vec<SlotLocation>, DbError> {
        let rows = self
            .q(const_format::concatcp!(LOCATION, " WHERE switch_id = $1 ORDER BY port"))
            .bind(switch.0.clone())
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(location_from_row).collect()
    }

    /// Flags a slot with why it is not ready, or clears the flag with `None`.
    pub async fn set_slot_flag(&self, slot: &SlotId, flag: Option<&str>) -> Result<(), DbError> {
        self.q("UPDATE slots SET flag = $1, flagged_at = $2 WHERE id = $3")
            .bind(flag.map(str::to_string))
            .bind(flag.map(|_| now_millis()))
            .bind(slot.0.clone())
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// The Pi in a slot, if any.
    pub async fn pi_in_slot(&self, slot: &SlotId) -> Result<Option<PiId>, DbError> {
        let row = self
            .q("SELECT id FROM pis WHERE slot_id = $1")
            .bind(slot.0.clone())
            .fetch_optional(self.pool())
            .await?;
        row.map(|r| Ok(PiId(get_str(&r, "id")?))).transpose()
    }

    /// The id and data of the newest event of `kind` a job recorded, if any.
    pub async fn last_job_event(
        &self,
        job: &JobId,
        kind: &str,
    ) -> Result<Option<(i64, serde_json::Value)>, DbError> {
        let row = self
            .q("SELECT id, data FROM events WHERE job_id = $1 AND kind = $2 ORDER BY id DESC LIMIT 1")
            .bind(job.0.clone())
            .bind(kind.to_string())
            .fetch_optional(self.pool())
            .await?;
        row.map(|r| Ok((get_i64(&r, "id")?, super::get_json(&r, "data")?))).transpose()
    }

    /// The job's latest `power.on`: when it was recorded (Unix ms) and the event id boot
    /// evidence counts from (see [`Db::boot_evidence`]).
    pub async fn job_power_on(&self, job: &JobId) -> Result<Option<(i64, i64)>, DbError> {
        let row = self
            .q("SELECT id, at, data FROM events WHERE job_id = $1 AND kind = 'power.on' ORDER BY id DESC LIMIT 1")
            .bind(job.0.clone())
            .fetch_optional(self.pool())
            .await?;
        row.map(|r| {
            let id = get_i64(&r, "id")?;
            let after = super::get_json(&r, "data")?["after_event"].as_i64().unwrap_or(id);
            Ok((get_i64(&r, "at")?, after))
        })
        .transpose()
    }

    /// The Pi's boot timeline after event `after`, oldest first (at most [`TIMELINE_MAX`]
    /// events: a boot attempt has a few dozen).
    pub async fn boot_timeline(&self, pi: &PiId, after: i64) -> Result<Vec<Seen>, DbError> {
        let rows = self.query(&boot_timeline_sql(pi, after)).fetch_all(self.pool()).await?;
        rows.iter()
            .map(|r| {
                Ok(Seen::from_event(
                    get_i64(r, "at")?,
                    &get_str(r, "kind")?,
                    &super::get_json(r, "data")?,
                ))
            })
            .collect()
    }

    /// Records the Pi's last boot attempt (its diagnosis).
    pub async fn set_last_boot(&self, pi: &PiId, boot: &LastBoot) -> Result<(), DbError> {
        let text = serde_json::to_string(boot).unwrap_or_else(|_| "null".into());
        self.q("UPDATE pis SET last_boot = $1 WHERE id = $2")
            .bind(text)
            .bind(pi.0.clone())
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// The newest event id in the log (0 when empty).
    pub async fn last_event_id(&self) -> Result<i64, DbError> {
        let row = self.q("SELECT MAX(id) AS id FROM events").fetch_one(self.pool()).await?;
        Ok(super::get_opt_i64(&row, "id")?.unwrap_or(0))
    }

    /// Whether the Pi's timeline after event `after` shows a DHCP answer and a kernel
    /// read over TFTP.
    pub async fn boot_evidence(&self, pi: &PiId, after: i64) -> Result<BootEvidence, DbError> {
        let rows = self
            .q("SELECT kind, data FROM events WHERE pi_id = $1 AND id > $2 \
                AND kind IN ('dhcp.offer', 'dhcp.ack', 'tftp.read', 'tftp.complete')")
            .bind(pi.0.clone())
            .bind(after)
            .fetch_all(self.pool())
            .await?;
        let mut ev = BootEvidence::default();
        for r in &rows {
            match get_str(r, "kind")?.as_str() {
                "dhcp.offer" | "dhcp.ack" => ev.dhcp = true,
                _ => {
                    let data = get_str(r, "data")?;
                    if is_kernel_read(&data) {
                        ev.kernel = true;
                    }
                }
            }
        }
        Ok(ev)
    }

    /// Records what a Pi's live root holds now: its image and the fingerprints of its SSH
    /// host keys, in one statement.
    pub async fn set_pi_root(
        &self,
        pi: &PiId,
        image: Option<&str>,
        ssh_host_keys: &[SshHostKey],
    ) -> Result<(), DbError> {
        let keys = serde_json::to_string(ssh_host_keys).unwrap_or_else(|_| "[]".into());
        self.q("UPDATE pis SET image = $1, ssh_host_keys = $2, updated_at = $3 WHERE id = $4")
            .bind(image.map(str::to_string))
            .bind(keys)
            .bind(now_millis())
            .bind(pi.0.clone())
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Stores what a job found (JSON), e.g. each slot's outcome of a racking.
    pub async fn set_job_result(
        &self,
        job: &JobId,
        result: &serde_json::Value,
    ) -> Result<(), DbError> {
        self.q("UPDATE jobs SET result = $1 WHERE id = $2")
            .bind(result.to_string())
            .bind(job.0.clone())
            .execute(self.pool())
            .await?;
        Ok(())
    }

    pub async fn job_result(&self, job: &JobId) -> Result<Option<serde_json::Value>, DbError> {
        let row = self
            .q("SELECT result FROM jobs WHERE id = $1")
            .bind(job.0.clone())
            .fetch_optional(self.pool())
            .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(get_opt_str(&row, "result")?.and_then(|t| serde_json::from_str(&t).ok()))
    }
}

/// A TFTP event about a kernel image (`kernel*.img`, `Image`, `vmlinuz*`), from its data.
pub(crate) fn is_kernel_read(data: &str) -> bool {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(data) else { return false };
    // `data` is `{"stage": {"stage": "tftp_read", "file": ...}, "client": ...}`.
    v["stage"]["file"].as_str().is_some_and(crate::diagnosis::is_kernel_file)
}

fn location_from_row(r: &sqlx::any::AnyRow) -> Result<SlotLocation, DbError> {
    let parse = |column: &'static str| -> Result<String, DbError> { get_str(r, column) };
    let bad = |column: &'static str, value: String| DbError::Corrupt { column, value };
    let controller = parse("controller_ip")?;
    let pi = parse("pi_ip")?;
    let v6 = parse("public_ipv6")?;
    Ok(SlotLocation {
        slot: SlotId(get_str(r, "id")?),
        shelf: ShelfId(get_str(r, "shelf_id")?),
        switch: SwitchId(get_str(r, "switch_id")?),
        port: get_u16(r, "port")?,
        vlan: get_u16(r, "vlan")?,
        controller_ip: controller
            .parse()
            .map_err(|_| bad("slots.controller_ip", controller.clone()))?,
        pi_ip: pi.parse().map_err(|_| bad("slots.pi_ip", pi.clone()))?,
        public_ipv6: v6.parse().map_err(|_| bad("slots.public_ipv6", v6.clone()))?,
        flag: get_opt_str(r, "flag")?,
    })
}

/// A Pi's boot timeline after event `after`, oldest first, at most [`TIMELINE_MAX`]
/// events (through the `events_boot_pi` partial index, whose predicate this repeats).
pub(crate) fn boot_timeline_sql(pi: &PiId, after: i64) -> Sql {
    Sql::new("SELECT at, kind, data FROM events")
        .and("pi_id = ?", pi.0.clone())
        .and("id > ?", after)
        .push(
            const_format::concatcp!(" AND ", BOOT_TIMELINE, " ORDER BY id LIMIT ", TIMELINE_MAX),
            Vec::new(),
        )
}

#[cfg(test)]
mod tests {
    use super::is_kernel_read;

    #[test]
    fn kernel_reads_are_recognised_by_file_name() {
        assert!(is_kernel_read(r#"{"stage":{"stage":"tftp_read","file":"1234abcd/kernel7.img"}}"#));
        assert!(is_kernel_read(
            r#"{"stage":{"stage":"tftp_complete","file":"kernel8.img","bytes":3}}"#
        ));
        assert!(!is_kernel_read(r#"{"stage":{"stage":"tftp_read","file":"start.elf"}}"#));
        assert!(!is_kernel_read("not json"));
    }
}
