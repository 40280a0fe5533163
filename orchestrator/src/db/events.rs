//! The append-only event log: the audit trail (who asked for what) and each Pi's boot
//! timeline (what DHCP and TFTP saw). Rows are only ever inserted.

use sqlx::any::AnyRow;

use super::sql::{Sql, Value};
use super::{Db, DbError, Order, Page, get_i64, get_json, get_opt_str, get_str};
use crate::ids::{CustomerId, JobId, PiId};
use crate::model::Event;
use crate::time::now_millis;

/// An event to append.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub pi: Option<PiId>,
    pub job: Option<JobId>,
    pub customer: Option<CustomerId>,
    pub actor: String,
    pub kind: String,
    pub message: String,
    pub data: serde_json::Value,
    /// Recorded for no customer, whoever owns the Pi: operators only.
    pub operators_only: bool,
}

impl NewEvent {
    pub fn new(kind: &str, actor: &str, message: impl Into<String>) -> Self {
        NewEvent {
            pi: None,
            job: None,
            customer: None,
            actor: actor.to_string(),
            kind: kind.to_string(),
            message: message.into(),
            data: serde_json::Value::Null,
            operators_only: false,
        }
    }

    /// An event only operators read, even about an owned Pi.
    pub fn operators_only(mut self) -> Self {
        self.operators_only = true;
        self
    }

    pub fn pi(mut self, pi: &PiId) -> Self {
        self.pi = Some(pi.clone());
        self
    }

    pub fn job(mut self, job: &JobId) -> Self {
        self.job = Some(job.clone());
        self
    }

    pub fn customer(mut self, c: Option<&CustomerId>) -> Self {
        self.customer = c.cloned();
        self
    }

    pub fn data(mut self, data: serde_json::Value) -> Self {
        self.data = data;
        self
    }
}

/// The boot timeline's kinds (what netboot's `DbEventSink` writes) as one condition on
/// `kind`. The partial indexes `events_boot_pi` and `events_boot_at` (migration 0006) are
/// defined with exactly this text: a query can use them only when it repeats it, so
/// every query about the boot timeline takes it from here.
pub(crate) const BOOT_TIMELINE: &str = "(kind LIKE 'dhcp.%' OR kind LIKE 'tftp.%')";

/// Which events to list.
#[derive(Debug, Default, Clone)]
pub struct EventFilter {
    pub pi: Option<PiId>,
    pub customer: Option<CustomerId>,
    pub kind_prefix: Option<String>,
}

impl Db {
    pub async fn append_event(&self, e: &NewEvent) -> Result<(), DbError> {
        self.append_event_with(self.pool(), e).await
    }

    /// Appends inside a transaction (or on any executor).
    pub async fn append_event_with<'c, E>(&self, exec: E, e: &NewEvent) -> Result<(), DbError>
    where
        E: sqlx::Executor<'c, Database = sqlx::Any>,
    {
        // An event about a Pi belongs to the customer it was for: the one named, else the
        // Pi's owner at this moment (see `Principal::may_see`); none when operators only.
        self.q("INSERT INTO events (at, pi_id, job_id, customer, actor, kind, message, data) \
                VALUES ($1, $2, $3, CASE WHEN $9 = 1 THEN NULL ELSE COALESCE($4, (SELECT owner FROM pis WHERE id = $2)) END, \
                $5, $6, $7, $8)")
            .bind(now_millis())
            .bind(e.pi.as_ref().map(|p| p.0.clone()))
            .bind(e.job.as_ref().map(|j| j.0.clone()))
            .bind(e.customer.as_ref().map(|c| c.0.clone()))
            .bind(e.actor.clone())
            .bind(e.kind.clone())
            .bind(e.message.clone())
            .bind(e.data.to_string())
            .bind(i64::from(e.operators_only))
            .execute(exec)
            .await?;
        Ok(())
    }

    /// Events by id (order of appending) in `order`, after `cursor` (an event id).
    pub async fn list_events(
        &self,
        f: &EventFilter,
        cursor: Option<i64>,
        order: Order,
        limit: usize,
    ) -> Result<Page<Event>, DbError> {
        let sql = list_events_sql(f, cursor, order, limit);
        let rows = self.query(&sql).fetch_all(self.pool()).await?;
        let items = rows.iter().map(event_from_row).collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_rows(items, limit, |e| e.id.to_string()))
    }
}

/// One page of events, keyed by id, naming only the filters in use: a Pi's events read
/// `events_pi` (pi_id, id), a customer's `events_customer` (customer, id), the whole
/// log (the webhook notifier) the primary key.
pub(crate) fn list_events_sql(
    f: &EventFilter,
    cursor: Option<i64>,
    order: Order,
    limit: usize,
) -> Sql {
    let sql =
        Sql::new("SELECT id, at, pi_id, job_id, customer, actor, kind, message, data FROM events")
            .and_opt("pi_id = ?", f.pi.as_ref().map(|p| p.0.clone()))
            .and_opt("customer = ?", f.customer.as_ref().map(|c| c.0.clone()))
            .and_opt("kind LIKE ?", f.kind_prefix.as_ref().map(|k| format!("{k}%")));
    let limit = vec![Value::Int((limit + 1) as i64)];
    match order {
        Order::Asc => sql.and_opt("id > ?", cursor).push(" ORDER BY id LIMIT ?", limit),
        Order::Desc => sql.and_opt("id < ?", cursor).push(" ORDER BY id DESC LIMIT ?", limit),
    }
}

fn event_from_row(row: &AnyRow) -> Result<Event, DbError> {
    Ok(Event {
        id: get_i64(row, "id")?,
        at: get_i64(row, "at")?,
        pi: get_opt_str(row, "pi_id")?.map(PiId),
        job: get_opt_str(row, "job_id")?.map(JobId),
        customer: get_opt_str(row, "customer")?.map(CustomerId),
        actor: get_str(row, "actor")?,
        kind: get_str(row, "kind")?,
        message: get_str(row, "message")?,
        data: get_json(row, "data")?,
    })
}
