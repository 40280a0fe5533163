//! Jobs in the database: creation with idempotency keys and the one-active-job-per-Pi
//! rule, listing, cancelling, and the runner's lease-based claiming.
//!
//! **Invariant:** every change of a job's state is computed by
//! [`job_transition`] from the state its UPDATE checks (`WHERE state = <from>`), so SQL
//! never moves a job under rules of its own. A runner changes a job only while it holds
//! the job's lease; every runner update checks `lease_owner`, so a runner that lost its
//! lease cannot overwrite the new owner's progress. The Pi lifecycle change a job makes
//! at its start or end commits in the same transaction as the job's, as a
//! compare-and-set on the Pi's state.

use std::time::Duration;

use sqlx::AssertSqlSafe;
use sqlx::any::AnyRow;

use super::events::NewEvent;
use super::sql::{Sql, Value};
use super::{
    Backend, Db, DbError, Order, Page, get_i64, get_json, get_opt_i64, get_opt_str, get_str,
};
use crate::auth::Principal;
use crate::ids::{CustomerId, JobId, PiId, ShelfId};
use crate::jobs::model::{
    JobEvent, JobKind, JobState, JobStep, JobTransitionError, claim_path, job_transition,
    job_transitions, progress_percent,
};
use crate::lifecycle::{LifecycleEvent, transition};
use crate::model::Job;
use crate::time::now_millis;

const COLUMNS: &str = "id, kind, pi_id, shelf_id, params, state, step, attempts, last_error, customer_message, \
    requested_by, controller, runner, created_at, updated_at, finished_at";

/// The controller serving a Pi's switch (`$1`: the Pi), or a shelf's (`$2`: the shelf).
const SERVING_CONTROLLER: &str = "SELECT sw.controller FROM switches sw JOIN shelves sh ON sh.switch_id = sw.id \
    WHERE sh.id = COALESCE((SELECT s.shelf_id FROM pis p JOIN slots s ON s.id = p.slot_id WHERE p.id = $1), $2)";

/// How often a job request is inserted when it collides with an active job that
/// ends before the collision can be explained.
const CREATE_ATTEMPTS: u32 = 5;

/// A job to create.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub kind: JobKind,
    pub pi: Option<PiId>,
    pub shelf: Option<ShelfId>,
    pub params: serde_json::Value,
    pub idempotency_key: Option<String>,
}

/// What happened when a job was requested.
#[derive(Debug)]
pub enum CreateOutcome {
    Created(Job),
    /// The same request was made before with this Idempotency-Key.
    Replayed(Job),
    /// The Idempotency-Key was used before for a different request.
    KeyReused {
        existing: JobId,
    },
    /// The Pi already has an active job.
    Busy {
        running: JobId,
    },
    /// The Pi is in maintenance and this job may not run then
    /// (`hardware::maintenance_allows`).
    Maintenance,
}

#[derive(Debug, Default, Clone)]
pub struct JobFilter {
    pub pi: Option<PiId>,
    pub state: Option<JobState>,
    pub visible_to: Option<CustomerId>,
}

impl NewJob {
    /// A fingerprint of what was asked, to tell a replay from a reused key.
    fn request_hash(&self) -> String {
        use sha2::{Digest, Sha256};
        let text = format!(
            "{}|{}|{}|{}",
            self.kind,
            self.pi.as_ref().map(|p| p.as_str()).unwrap_or(""),
            self.shelf.as_ref().map(|s| s.as_str()).unwrap_or(""),
            self.params
        );
        hex::encode(Sha256::digest(text.as_bytes()))
    }
}

impl Db {
    /// Creates a queued job (and its audit event) unless the request is a replay, reuses
    /// a key, or the Pi is busy. The one-active-job rule is a unique index, so two
    /// controllers racing cannot both win.
    pub async fn create_job(&self, new: &NewJob, by: &Principal) -> Result<CreateOutcome, DbError> {
        let hash = new.request_hash();
        if let Some(key) = &new.idempotency_key
            && let Some(found) = self.job_by_key(by, key).await?
        {
            return Ok(found.into_outcome(&hash));
        }
        let mut attempt = 1;
        loop {
            match self.insert_job(new, by, &hash).await {
                Err(e) if e.is_unique_violation() => {
                    if let Some(outcome) = self.explain_conflict(new, by, &hash).await? {
                        return Ok(outcome);
                    }
                    // The active job in the way ended between the insert and the look
                    // (or the key's job was not yet visible): the insert may now pass.
                    if attempt == CREATE_ATTEMPTS {
                        return Err(e);
                    }
                    attempt += 1;
                }
                inserted => {
                    return inserted
                        .map(|j| j.map_or(CreateOutcome::Maintenance, CreateOutcome::Created));
                }
            }
        }
    }

    /// Inserts the job and its `job.created` event in one transaction; a unique
    /// violation (key reused, Pi busy) is returned as is, with nothing written; `None`
    /// when the Pi is in maintenance and the job may not run then.
    async fn insert_job(
        &self,
        new: &NewJob,
        by: &Principal,
        hash: &str,
    ) -> Result<Option<Job>, DbError> {
        let id = JobId::generate();
        let now = now_millis();
        let mut tx = self.begin_write().await?;
        if let Some(pi) = &new.pi
            && !crate::hardware::maintenance_allows(new.kind, by.is_operator())
            && self.maintenance_locked(&mut tx, pi).await?
        {
            tx.rollback().await?;
            return Ok(None);
        }
        // A job belongs to the customer it is done for: the requester, or the owner of
        // the Pi when an operator asks. It stays theirs if the Pi changes hands.
        let customer = match (by.customer(), &new.pi) {
            (Some(c), _) => Some(c.clone()),
            (None, Some(pi)) => {
                let row = self
                    .q("SELECT owner FROM pis WHERE id = $1")
                    .bind(pi.0.clone())
                    .fetch_optional(&mut *tx)
                    .await?;
                row.as_ref().map(|r| get_opt_str(r, "owner")).transpose()?.flatten().map(CustomerId)
            }
            (None, None) => None,
        };
        // Only the controller serving the Pi's or shelf's switch runs the job.
        let controller = self
            .q(SERVING_CONTROLLER)
            .bind(new.pi.as_ref().map(|p| p.0.clone()))
            .bind(new.shelf.as_ref().map(|s| s.0.clone()))
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| get_opt_str(&r, "controller"))
            .transpose()?
            .flatten();
        let inserted = self
            .q("INSERT INTO jobs (id, kind, pi_id, shelf_id, params, state, step, attempts, idempotency_key, \
                request_hash, requested_by, customer, created_at, updated_at, controller) \
                VALUES ($1, $2, $3, $4, $5, $11, 0, 0, $6, $7, $8, $9, $10, $10, $12)")
            .bind(id.0.clone())
            .bind(new.kind.as_str())
            .bind(new.pi.as_ref().map(|p| p.0.clone()))
            .bind(new.shelf.as_ref().map(|s| s.0.clone()))
            .bind(new.params.to_string())
            .bind(new.idempotency_key.clone())
            .bind(hash.to_string())
            .bind(by.token().0.clone())
            .bind(customer.as_ref().map(|c| c.0.clone()))
            .bind(now)
            .bind(JobState::INITIAL.as_str())
            .bind(controller)
            .execute(&mut *tx)
            .await;
        if let Err(e) = inserted {
            tx.rollback().await?;
            return Err(e.into());
        }
        let mut event =
            NewEvent::new("job.created", by.token().as_str(), format!("{} requested", new.kind))
                .job(&id)
                .customer(customer.as_ref())
                .data(serde_json::json!({ "kind": new.kind, "params": new.params }));
        event.pi = new.pi.clone();
        self.append_event_with(&mut *tx, &event).await?;
        tx.commit().await?;
        self.get_job(&id)
            .await?
            .ok_or(DbError::Corrupt { column: "jobs.id", value: id.0 })
            .map(Some)
    }

    /// What a request carrying idempotency key `key` replays, judged before anything
    /// else about the request (the Pi's state, the power limit, a busy shelf), which may
    /// have changed because of the job the key created: `Replayed` when the key's job
    /// was made by a request equal to one of `candidates` (the kinds the request may
    /// have become), `KeyReused` when by another; `None` when the key is new.
    pub async fn replay(
        &self,
        by: &Principal,
        key: &str,
        candidates: &[NewJob],
    ) -> Result<Option<CreateOutcome>, DbError> {
        let Some(found) = self.job_by_key(by, key).await? else { return Ok(None) };
        let same = candidates.iter().any(|c| c.request_hash() == found.hash);
        Ok(Some(if same {
            CreateOutcome::Replayed(found.job)
        } else {
            CreateOutcome::KeyReused { existing: found.job.id }
        }))
    }

    async fn explain_conflict(
        &self,
        new: &NewJob,
        by: &Principal,
        hash: &str,
    ) -> Result<Option<CreateOutcome>, DbError> {
        if let Some(key) = &new.idempotency_key
            && let Some(found) = self.job_by_key(by, key).await?
        {
            return Ok(Some(found.into_outcome(hash)));
        }
        if let Some(pi) = &new.pi
            && let Some(running) = self.active_job_for(pi).await?
        {
            return Ok(Some(CreateOutcome::Busy { running }));
        }
        Ok(None)
    }

    async fn job_by_key(&self, by: &Principal, key: &str) -> Result<Option<KeyedJob>, DbError> {
        let row = self
            .q(const_format::concatcp!(
                "SELECT ",
                COLUMNS,
                ", request_hash FROM jobs WHERE requested_by = $1 AND idempotency_key = $2"
            ))
            .bind(by.token().0.clone())
            .bind(key.to_string())
            .fetch_optional(self.pool())
            .await?;
        row.map(|r| Ok(KeyedJob { job: job_from_row(&r)?, hash: get_str(&r, "request_hash")? }))
            .transpose()
    }

    /// The queued or running job of a Pi, if any.
    pub async fn active_job_for(&self, pi: &PiId) -> Result<Option<JobId>, DbError> {
        let row = self.query(&active_job_sql(pi)).fetch_optional(self.pool()).await?;
        row.map(|r| Ok(JobId(get_str(&r, "id")?))).transpose()
    }

    /// The queued or running job of a shelf (racking), if any.
    pub async fn active_job_for_shelf(&self, shelf: &ShelfId) -> Result<Option<JobId>, DbError> {
        let row = self
            .q("SELECT id FROM jobs WHERE shelf_id = $1 AND state IN ('queued', 'running')")
            .bind(shelf.0.clone())
            .fetch_optional(self.pool())
            .await?;
        row.map(|r| Ok(JobId(get_str(&r, "id")?))).transpose()
    }

    /// The SSH keys of the Pi's latest reinstall that succeeded for `customer` (its
    /// current owner): the keys its root was provisioned with. A previous owner's
    /// reinstalls never count. One probe of `jobs_pi_id`.
    pub async fn current_ssh_keys(
        &self,
        pi: &PiId,
        customer: &CustomerId,
    ) -> Result<Option<Vec<String>>, DbError> {
        let row = self
            .q("SELECT params FROM jobs WHERE pi_id = $1 AND kind = 'reimage' \
                AND state = 'succeeded' AND customer = $2 ORDER BY id DESC LIMIT 1")
            .bind(pi.0.clone())
            .bind(customer.0.clone())
            .fetch_optional(self.pool())
            .await?;
        let Some(row) = row else { return Ok(None) };
        let params = get_json(&row, "params")?;
        Ok(serde_json::from_value(params["ssh_keys"].clone()).ok())
    }

    /// A job as `customer` may see it: only a job done for them (`None`: any job).
    pub async fn get_job_for(
        &self,
        id: &JobId,
        customer: Option<&CustomerId>,
    ) -> Result<Option<Job>, DbError> {
        let row = self
            .q(const_format::concatcp!(
                "SELECT ",
                COLUMNS,
                " FROM jobs WHERE id = $1 AND ($2 IS NULL OR customer = $2)"
            ))
            .bind(id.0.clone())
            .bind(customer.map(|c| c.0.clone()))
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(job_from_row).transpose()
    }

    pub async fn get_job(&self, id: &JobId) -> Result<Option<Job>, DbError> {
        let row = self
            .q(const_format::concatcp!("SELECT ", COLUMNS, " FROM jobs WHERE id = $1"))
            .bind(id.0.clone())
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(job_from_row).transpose()
    }

    /// Jobs by ID (creation order) in `order`, after `cursor` (a job ID).
    pub async fn list_jobs(
        &self,
        f: &JobFilter,
        cursor: Option<&str>,
        order: Order,
        limit: usize,
    ) -> Result<Page<Job>, DbError> {
        let sql = list_jobs_sql(f, cursor, order, limit);
        let rows = self.query(&sql).fetch_all(self.pool()).await?;
        let items = rows.iter().map(job_from_row).collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_rows(items, limit, |j| j.id.0.clone()))
    }

    /// Cancels a job no runner has started; false otherwise (a job handed back to the
    /// queue at a shutdown has done some of its steps and is finished, not abandoned).
    pub async fn cancel_job(&self, id: &JobId, by: &Principal) -> Result<bool, DbError> {
        let from = JobState::Queued;
        let to = checked(id, from, JobEvent::Cancelled)?;
        let now = now_millis();
        let mut tx = self.begin_write().await?;
        let r = self
            .q("UPDATE jobs SET state = $1, updated_at = $2, finished_at = $2 WHERE id = $3 AND state = $4 AND attempts = 0")
            .bind(to.as_str())
            .bind(now)
            .bind(id.0.clone())
            .bind(from.as_str())
            .execute(&mut *tx)
            .await?;
        if r.rows_affected() == 1 {
            let e = NewEvent::new("job.cancelled", by.token().as_str(), "job cancelled")
                .job(id)
                .customer(by.customer());
            self.append_event_with(&mut *tx, &e).await?;
        }
        tx.commit().await?;
        Ok(r.rows_affected() == 1)
    }

    /// Claims the oldest running job of one of `kinds` whose lease expired (its runner
    /// died), else the oldest queued one, for `runner`, holding it for `lease`. Only
    /// jobs for controller `runner` (or for any controller) are claimed. On the
    /// first claim of a job that moves its Pi (a reimage deploys it), the Pi's change
    /// commits with the claim.
    pub async fn claim_job(
        &self,
        runner: &str,
        kinds: &[JobKind],
        lease: Duration,
    ) -> Result<Option<Job>, DbError> {
        if kinds.is_empty() {
            return Ok(None);
        }
        let mut tx = self.begin_write().await?;
        let mut claimed = None;
        for from in [JobState::Running, JobState::Queued] {
            claimed = self.claim_from(&mut tx, runner, kinds, lease, from).await?;
            if claimed.is_some() {
                break;
            }
        }
        let Some(job) = claimed else {
            tx.rollback().await?;
            return Ok(None);
        };
        if job.attempts == 1
            && let (Some(pi), Some(event)) = (&job.pi, job.kind.lifecycle_at_start())
        {
            self.move_pi_with(&mut tx, &job.id, pi, event, None).await?;
        }
        tx.commit().await?;
        Ok(Some(job))
    }

    /// Claims the oldest job of `kinds` in state `from` (a running one only once its
    /// lease expired), moving it as [`claim_path`] says.
    async fn claim_from(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        runner: &str,
        kinds: &[JobKind],
        lease: Duration,
        from: JobState,
    ) -> Result<Option<Job>, DbError> {
        let to = job_transitions(from, claim_path(from))
            .map_err(|source| DbError::JobTransition { job: "(claim)".into(), source })?;
        let sql = claim_sql(self.backend(), kinds, from);
        let now = now_millis();
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(runner.to_string())
            .bind(now + lease.as_millis() as i64)
            .bind(now)
            .bind(to.as_str())
            .bind(from.as_str())
            .fetch_optional(&mut **tx)
            .await?;
        row.as_ref().map(job_from_row).transpose()
    }

    /// Records that the runner is on `step` and extends its lease. False if the lease
    /// was lost.
    pub async fn advance_job(
        &self,
        id: &JobId,
        runner: &str,
        step: usize,
        lease: Duration,
    ) -> Result<bool, DbError> {
        let from = JobState::Running;
        let to = checked(id, from, JobEvent::Renewed)?;
        let now = now_millis();
        let r = self
            .q("UPDATE jobs SET state = $1, step = $2, lease_expires_at = $3, updated_at = $4 \
                WHERE id = $5 AND lease_owner = $6 AND state = $7")
            .bind(to.as_str())
            .bind(step as i64)
            .bind(now + lease.as_millis() as i64)
            .bind(now)
            .bind(id.0.clone())
            .bind(runner.to_string())
            .bind(from.as_str())
            .execute(self.pool())
            .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Hands a running job back to the queue (its runner is shutting down): the next
    /// runner resumes it at its step without waiting for the lease. False if the runner
    /// no longer held it.
    pub async fn release_job(&self, id: &JobId, runner: &str) -> Result<bool, DbError> {
        let from = JobState::Running;
        let to = checked(id, from, JobEvent::HandedBack)?;
        let r = self
            .q("UPDATE jobs SET state = $1, lease_owner = NULL, lease_expires_at = NULL, updated_at = $2 \
                WHERE id = $3 AND lease_owner = $4 AND state = $5")
            .bind(to.as_str())
            .bind(now_millis())
            .bind(id.0.clone())
            .bind(runner.to_string())
            .bind(from.as_str())
            .execute(self.pool())
            .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Ends a job as succeeded or failed (with messages), with its audit event and its
    /// Pi's lifecycle change (deployed after a reimage, failed at the step after any
    /// failure), in one transaction, if the runner still holds the lease.
    pub async fn finish_job(
        &self,
        id: &JobId,
        runner: &str,
        outcome: &JobOutcome,
    ) -> Result<bool, DbError> {
        let now = now_millis();
        let (event, err, msg, failed_step) = match outcome {
            JobOutcome::Succeeded => (JobEvent::Finished, None, None, None),
            JobOutcome::Failed { step, operator, customer } => {
                (JobEvent::Failed, Some(operator.clone()), Some(customer.clone()), Some(*step))
            }
        };
        let from = JobState::Running;
        let state = checked(id, from, event)?;
        let mut tx = self.begin_write().await?;
        let r = self
            .q("UPDATE jobs SET state = $1, last_error = $2, customer_message = $3, updated_at = $4, finished_at = $4, \
                lease_owner = NULL, lease_expires_at = NULL WHERE id = $5 AND lease_owner = $6 AND state = $7")
            .bind(state.as_str())
            .bind(err.clone())
            .bind(msg)
            .bind(now)
            .bind(id.0.clone())
            .bind(runner.to_string())
            .bind(from.as_str())
            .execute(&mut *tx)
            .await?;
        if r.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        let row = self.q("SELECT j.pi_id, j.kind, COALESCE(j.customer, p.owner) AS customer FROM jobs j LEFT JOIN pis p ON p.id = j.pi_id WHERE j.id = $1").bind(id.0.clone()).fetch_one(&mut *tx).await?;
        let pi = get_opt_str(&row, "pi_id")?.map(PiId);
        let kind_text = get_str(&row, "kind")?;
        let kind = JobKind::parse(&kind_text)
            .ok_or(DbError::Corrupt { column: "jobs.kind", value: kind_text })?;
        let mut e = NewEvent::new(
            &format!("job.{state}"),
            runner,
            err.unwrap_or_else(|| format!("job {state}")),
        )
        .job(id);
        e.pi = pi.clone();
        e.customer = get_opt_str(&row, "customer")?.map(CustomerId);
        self.append_event_with(&mut *tx, &e).await?;
        if let (Some(pi), Some(change)) = (&pi, kind.lifecycle_at_end(failed_step.is_none())) {
            let step = failed_step.map(JobStep::as_str);
            self.move_pi_with(&mut tx, id, pi, change, step).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Moves job `job`'s Pi by lifecycle `event` inside `tx`, as a compare-and-set on the
    /// state read in the same transaction (locked on PostgreSQL). A change the
    /// lifecycle refuses (an operator put the Pi in maintenance meanwhile, say) is
    /// logged and leaves the Pi as it is.
    async fn move_pi_with(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        job: &JobId,
        pi: &PiId,
        event: LifecycleEvent,
        failed_step: Option<&str>,
    ) -> Result<(), DbError> {
        let lock = match self.backend() {
            Backend::Postgres => " FOR UPDATE",
            Backend::Sqlite => "",
        };
        let sql = format!("SELECT state FROM pis WHERE id = $1{lock}");
        let sql = if self.backend() == Backend::Sqlite { sql.replace('$', "?") } else { sql };
        let row =
            sqlx::query(AssertSqlSafe(sql)).bind(pi.0.clone()).fetch_optional(&mut **tx).await?;
        let Some(row) = row else { return Ok(()) };
        let text = get_str(&row, "state")?;
        let from = crate::lifecycle::PiState::parse(&text)
            .ok_or(DbError::Corrupt { column: "pis.state", value: text })?;
        let to = match transition(from, event) {
            Ok(to) => to,
            Err(e) => {
                tracing::warn!(pi = %pi, job = %job, error = %e, "the job's lifecycle change does not fit the Pi's state; state left as is");
                return Ok(());
            }
        };
        if !self.set_pi_state_with(&mut **tx, pi, from, to, failed_step).await? {
            return Err(DbError::StateChanged {
                table: "pis",
                id: pi.0.clone(),
                expected: from.to_string(),
            });
        }
        Ok(())
    }
}

/// The claim of the oldest job of `kinds` in state `from` (a running one only once its
/// lease expired) for runner `$1` (lease until `$2`, now `$3`, new state `$4`, `$5` =
/// `from`). Two index scans of `jobs_claim`, one for the runner's own controller's jobs
/// and one for jobs any controller may run, rather than an OR that defeats the index.
/// Kind and state names are the fixed [`JobKind`] and [`JobState`] strings, never input.
pub(crate) fn claim_sql(backend: Backend, kinds: &[JobKind], from: JobState) -> String {
    let kind_list =
        kinds.iter().map(|k| format!("'{}'", k.as_str())).collect::<Vec<_>>().join(", ");
    let lock = match backend {
        Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        Backend::Sqlite => "",
    };
    let expired = if from == JobState::Running { " AND lease_expires_at < $3" } else { "" };
    // The state is written into the candidate searches, not bound: a prepared
    // statement's generic plan then knows it looks for the few queued (or running) jobs
    // and uses `jobs_claim`, where with `state = $5` it walked every job by id.
    let state = from.as_str();
    let sql = format!(
        "UPDATE jobs SET state = $4, lease_owner = $1, runner = $1, lease_expires_at = $2, attempts = attempts + 1, updated_at = $3 \
         WHERE id = (SELECT id FROM (\
           SELECT id FROM (SELECT id FROM jobs WHERE controller = $1 AND state = '{state}' AND kind IN ({kind_list}){expired} ORDER BY id LIMIT 1{lock}) AS mine \
           UNION ALL \
           SELECT id FROM (SELECT id FROM jobs WHERE controller IS NULL AND state = '{state}' AND kind IN ({kind_list}){expired} ORDER BY id LIMIT 1{lock}) AS unrouted\
         ) AS candidates ORDER BY id LIMIT 1) \
         AND state = $5{expired} RETURNING {COLUMNS}"
    );
    match backend {
        Backend::Postgres => sql,
        Backend::Sqlite => sql.replace('$', "?"),
    }
}

/// The state `event` takes a job in state `from` to; a refusal is a typed error.
/// One page of jobs by ID (the keyset), naming only the filters in use: a customer's
/// jobs read `jobs_customer` (customer, id), a Pi's `jobs_pi` (pi_id, id).
pub(crate) fn list_jobs_sql(
    f: &JobFilter,
    cursor: Option<&str>,
    order: Order,
    limit: usize,
) -> Sql {
    let sql = Sql::new(const_format::concatcp!("SELECT ", COLUMNS, " FROM jobs"))
        .and_opt("pi_id = ?", f.pi.as_ref().map(|p| p.0.clone()))
        .and_opt("state = ?", f.state.map(|s| s.as_str()))
        .and_opt("customer = ?", f.visible_to.as_ref().map(|c| c.0.clone()));
    let limit = vec![Value::Int((limit + 1) as i64)];
    match order {
        Order::Asc => sql.and_opt("id > ?", cursor).push(" ORDER BY id LIMIT ?", limit),
        Order::Desc => sql.and_opt("id < ?", cursor).push(" ORDER BY id DESC LIMIT ?", limit),
    }
}

/// A Pi's queued or running job, through the `jobs_one_active_per_pi` partial index
/// (its predicate is repeated word for word so the planner can use it).
pub(crate) fn active_job_sql(pi: &PiId) -> Sql {
    Sql::new("SELECT id FROM jobs")
        .and("pi_id = ?", pi.0.clone())
        .push(" AND state IN ('queued', 'running')", Vec::new())
}

fn checked(id: &JobId, from: JobState, event: JobEvent) -> Result<JobState, DbError> {
    job_transition(from, event)
        .map_err(|source: JobTransitionError| DbError::JobTransition { job: id.0.clone(), source })
}

/// How a job ended.
#[derive(Debug, Clone)]
pub enum JobOutcome {
    Succeeded,
    /// Failed at `step`, which the Pi records as its `failed_step`.
    Failed {
        step: JobStep,
        operator: String,
        customer: String,
    },
}

struct KeyedJob {
    job: Job,
    hash: String,
}

impl KeyedJob {
    fn into_outcome(self, hash: &str) -> CreateOutcome {
        if self.hash == hash {
            CreateOutcome::Replayed(self.job)
        } else {
            CreateOutcome::KeyReused { existing: self.job.id }
        }
    }
}

fn job_from_row(row: &AnyRow) -> Result<Job, DbError> {
    let kind_text = get_str(row, "kind")?;
    let kind = JobKind::parse(&kind_text)
        .ok_or(DbError::Corrupt { column: "jobs.kind", value: kind_text })?;
    let state_text = get_str(row, "state")?;
    let state = JobState::parse(&state_text)
        .ok_or(DbError::Corrupt { column: "jobs.state", value: state_text })?;
    let step = usize::try_from(get_i64(row, "step")?).unwrap_or(0);
    let steps = kind.steps();
    let current_step = match state {
        JobState::Running | JobState::Failed => {
            steps.get(step.min(steps.len().saturating_sub(1))).map(|s| s.to_string())
        }
        _ => None,
    };
    Ok(Job {
        id: JobId(get_str(row, "id")?),
        kind,
        pi: get_opt_str(row, "pi_id")?.map(PiId),
        shelf: get_opt_str(row, "shelf_id")?.map(ShelfId),
        state,
        steps: steps.iter().map(|s| s.to_string()).collect(),
        current_step,
        progress_percent: progress_percent(kind, state, step),
        attempts: get_i64(row, "attempts")?,
        executable: false,
        operator_message: match state {
            JobState::Failed => get_opt_str(row, "last_error")?,
            _ => None,
        },
        last_error: get_opt_str(row, "last_error")?,
        customer_message: get_opt_str(row, "customer_message")?,
        params: get_json(row, "params")?,
        requested_by: get_str(row, "requested_by")?,
        controller: get_opt_str(row, "controller")?,
        runner: get_opt_str(row, "runner")?,
        waiting_for: None,
        created_at: get_i64(row, "created_at")?,
        updated_at: get_i64(row, "updated_at")?,
        finished_at: get_opt_i64(row, "finished_at")?,
    })
}
