//! Pis in the inventory.

use bramble_netboot::hw::PiSerial;
use sqlx::any::AnyRow;

use super::events::NewEvent;
use super::sql::{Sql, Value};
use super::{Db, DbError, Page, get_i64, get_opt_i64, get_opt_serial, get_opt_str, get_str};
use crate::ids::{CustomerId, PiId, SlotId};
use crate::lifecycle::PiState;
use crate::model::{Pi, PowerState, SshHostKey};
use crate::time::now_millis;

const SELECT: &str = "SELECT p.id, p.serial, p.mac, p.model, p.slot_id, p.owner, p.image, p.state, \
    p.failed_step, p.power, p.ssh_host_keys, p.maintenance_since, p.maintenance_by, p.last_boot, p.created_at, p.updated_at, s.port, s.pi_ip, s.public_ipv6, sh.name AS shelf_name \
    FROM pis p LEFT JOIN slots s ON s.id = p.slot_id LEFT JOIN shelves sh ON sh.id = s.shelf_id";

/// Which Pis to list. `visible_to` restricts to one customer's Pis (customer tokens).
#[derive(Debug, Default, Clone)]
pub struct PiFilter {
    pub shelf: Option<String>,
    pub state: Option<PiState>,
    pub owner: Option<CustomerId>,
    pub visible_to: Option<CustomerId>,
}

/// A Pi to add (operators register Pis; DHCP discovery adds them too).
#[derive(Debug, Clone)]
pub struct NewPi {
    pub serial: Option<PiSerial>,
    pub mac: Option<String>,
    pub model: String,
    pub slot: Option<SlotId>,
    pub owner: Option<CustomerId>,
    pub state: PiState,
}

impl Db {
    pub async fn list_pis(
        &self,
        f: &PiFilter,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Pi>, DbError> {
        let rows = self.query(&list_pis_sql(f, cursor, limit)).fetch_all(self.pool()).await?;
        let items = rows.iter().map(pi_from_row).collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_rows(items, limit, |p| p.id.0.clone()))
    }

    pub async fn get_pi(&self, id: &PiId) -> Result<Option<Pi>, DbError> {
        let row = self.query(&get_pi_sql(id)).fetch_optional(self.pool()).await?;
        row.as_ref().map(pi_from_row).transpose()
    }

    /// Adds a Pi and its `pi.registered` audit event, atomically.
    pub async fn insert_pi(&self, new: &NewPi, actor: &str) -> Result<Pi, DbError> {
        let id = PiId::generate();
        let now = now_millis();
        let mut tx = self.begin_write().await?;
        self.q("INSERT INTO pis (id, serial, mac, model, slot_id, owner, image, state, failed_step, power, created_at, updated_at) \
                VALUES ($1, $2, $3, $4, $5, $6, NULL, $7, NULL, 'unknown', $8, $8)")
            .bind(id.0.clone())
            .bind(new.serial.map(|s| s.to_string()))
            .bind(new.mac.clone())
            .bind(new.model.clone())
            .bind(new.slot.as_ref().map(|s| s.0.clone()))
            .bind(new.owner.as_ref().map(|o| o.0.clone()))
            .bind(new.state.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let event = NewEvent::new("pi.registered", actor, "Pi registered")
            .pi(&id)
            .customer(new.owner.as_ref());
        self.append_event_with(&mut *tx, &event).await?;
        tx.commit().await?;
        self.get_pi(&id).await?.ok_or(DbError::Corrupt { column: "pis.id", value: id.0 })
    }

    /// Assigns (or with `None` clears) the customer who owns a Pi. When the owner
    /// changes, every snapshot of the Pi is deleted in the same transaction, so no API
    /// path reaches a previous owner's snapshot (their directories are swept after).
    pub async fn set_pi_owner(
        &self,
        id: &PiId,
        owner: Option<&CustomerId>,
    ) -> Result<bool, DbError> {
        let owner = owner.map(|o| o.0.clone());
        let mut tx = self.begin_write().await?;
        let row = self
            .q("SELECT owner FROM pis WHERE id = $1")
            .bind(id.0.clone())
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else { return Ok(false) };
        if get_opt_str(&row, "owner")? != owner {
            self.delete_pi_snapshots_with(&mut *tx, id).await?;
        }
        let r = self
            .q("UPDATE pis SET owner = $1, updated_at = $2 WHERE id = $3")
            .bind(owner)
            .bind(now_millis())
            .bind(id.0.clone())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(r.rows_affected() == 1)
    }

    /// Moves a Pi from lifecycle state `from` to `to` (computed by
    /// `lifecycle::transition`) with its failed step, only if it is still in `from`.
    /// False if it is not (someone else moved it first); nothing is written then.
    pub async fn set_pi_state(
        &self,
        id: &PiId,
        from: PiState,
        to: PiState,
        failed_step: Option<&str>,
    ) -> Result<bool, DbError> {
        self.set_pi_state_with(self.pool(), id, from, to, failed_step).await
    }

    /// [`Db::set_pi_state`] inside a transaction (or on any executor).
    pub async fn set_pi_state_with<'c, E>(
        &self,
        exec: E,
        id: &PiId,
        from: PiState,
        to: PiState,
        failed_step: Option<&str>,
    ) -> Result<bool, DbError>
    where
        E: sqlx::Executor<'c, Database = sqlx::Any>,
    {
        let r = self
            .q("UPDATE pis SET state = $1, failed_step = $2, updated_at = $3 WHERE id = $4 AND state = $5")
            .bind(to.as_str())
            .bind(failed_step.map(str::to_string))
            .bind(now_millis())
            .bind(id.0.clone())
            .bind(from.as_str())
            .execute(exec)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    pub async fn set_pi_power(&self, id: &PiId, power: PowerState) -> Result<(), DbError> {
        self.q("UPDATE pis SET power = $1, updated_at = $2 WHERE id = $3")
            .bind(power.as_str())
            .bind(now_millis())
            .bind(id.0.clone())
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Records the power a switch read showed at `read_at`, unless the Pi's record changed
    /// since (a job may have acted after the read) or no longer says `from`. False when it
    /// was left as it is.
    pub async fn observe_pi_power(
        &self,
        id: &PiId,
        from: PowerState,
        to: PowerState,
        read_at: i64,
    ) -> Result<bool, DbError> {
        let r = self
            .q("UPDATE pis SET power = $1, updated_at = $2 WHERE id = $3 AND power = $4 AND updated_at < $5")
            .bind(to.as_str())
            .bind(now_millis())
            .bind(id.0.clone())
            .bind(from.as_str())
            .bind(read_at)
            .execute(self.pool())
            .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Counts Pis per lifecycle state, for metrics.
    pub async fn count_pis_by_state(&self) -> Result<Vec<(String, i64)>, DbError> {
        let rows = self
            .q("SELECT state, COUNT(*) AS n FROM pis GROUP BY state")
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(|r| Ok((get_str(r, "state")?, get_i64(r, "n")?))).collect()
    }
}

/// One page of Pis by ID (the primary key, so the keyset is indexed), naming only the
/// filters in use: a customer's list reads `pis_owner_id` (owner, id), a shelf's the
/// shelf's slots (`slots_shelf`) and their Pis (`pis.slot_id` is unique).
pub(crate) fn list_pis_sql(f: &PiFilter, cursor: Option<&str>, limit: usize) -> Sql {
    Sql::new(SELECT)
        // Through the shelf's slots rather than `sh.name = ?` on the joined row: SQLite
        // would then walk every Pi in ID order to skip the sort of 96 rows.
        .and_opt(
            "p.slot_id IN (SELECT ss.id FROM slots ss JOIN shelves ssh ON ssh.id = ss.shelf_id \
             WHERE ssh.name = ?)",
            f.shelf.clone(),
        )
        .and_opt("p.state = ?", f.state.map(|s| s.as_str()))
        .and_opt("p.owner = ?", f.owner.as_ref().map(|o| o.0.clone()))
        .and_opt("p.owner = ?", f.visible_to.as_ref().map(|o| o.0.clone()))
        .and_opt("p.id > ?", cursor)
        .push(" ORDER BY p.id LIMIT ?", vec![Value::Int((limit + 1) as i64)])
}

/// One Pi by ID.
pub(crate) fn get_pi_sql(id: &PiId) -> Sql {
    Sql::new(SELECT).and("p.id = ?", id.0.clone())
}

fn pi_from_row(row: &AnyRow) -> Result<Pi, DbError> {
    let state_text = get_str(row, "state")?;
    let state = PiState::parse(&state_text)
        .ok_or(DbError::Corrupt { column: "pis.state", value: state_text })?;
    Ok(Pi {
        id: PiId(get_str(row, "id")?),
        serial: get_opt_serial(row, "serial", "pis.serial")?,
        mac: get_opt_str(row, "mac")?,
        model: get_str(row, "model")?,
        slot: get_opt_str(row, "slot_id")?.map(SlotId),
        shelf: get_opt_str(row, "shelf_name")?,
        port: get_opt_i64(row, "port")?.and_then(|p| u16::try_from(p).ok()),
        owner: get_opt_str(row, "owner")?.map(CustomerId),
        image: get_opt_str(row, "image")?,
        state,
        failed_step: get_opt_str(row, "failed_step")?,
        power: PowerState::parse(&get_str(row, "power")?),
        storage_ip: get_opt_str(row, "pi_ip")?,
        public_ipv6: get_opt_str(row, "public_ipv6")?,
        ssh_host_keys: host_keys_from_row(row)?,
        maintenance: super::hardware::maintenance_from_row(row)?,
        hardware_sighting: None,
        hardware_history: None,
        last_boot: last_boot_from_row(row)?,
        created_at: get_i64(row, "created_at")?,
        updated_at: get_i64(row, "updated_at")?,
    })
}

/// The `ssh_host_keys` JSON column.
fn host_keys_from_row(row: &AnyRow) -> Result<Vec<SshHostKey>, DbError> {
    let text = get_str(row, "ssh_host_keys")?;
    serde_json::from_str(&text)
        .map_err(|_| DbError::Corrupt { column: "pis.ssh_host_keys", value: text })
}

/// The `last_boot` JSON column (NULL until a job waited for a boot).
pub(crate) fn last_boot_from_row(
    row: &AnyRow,
) -> Result<Option<crate::diagnosis::LastBoot>, DbError> {
    get_opt_str(row, "last_boot")?
        .map(|text| {
            serde_json::from_str(&text)
                .map_err(|_| DbError::Corrupt { column: "pis.last_boot", value: text })
        })
        .transpose()
}
