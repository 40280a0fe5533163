//! The power-cycle count behind `[power]`'s rate limit: a Pi's recent jobs that
//! power-cycle it ([`crate::poe::limit::cycles`]), read on `jobs_pi_id`.

use std::sync::OnceLock;

use super::{Db, DbError, get_i64};
use crate::ids::PiId;
use crate::jobs::model::JobKind;
use crate::poe::limit::cycles;

/// The query, with the cycling kinds (this program's constants, never input) inlined.
fn sql() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| {
        let kinds: Vec<String> = JobKind::ALL
            .into_iter()
            .filter(|k| cycles(*k))
            .map(|k| format!("'{}'", k.as_str()))
            .collect();
        format!(
            "SELECT created_at FROM jobs WHERE pi_id = $1 AND created_at >= $2 \
             AND kind IN ({}) ORDER BY created_at DESC LIMIT $3",
            kinds.join(", ")
        )
    })
}

impl Db {
    /// Creation times (ms) of `pi`'s power-cycling jobs created at or after `since_ms`,
    /// newest first, at most `limit`.
    pub async fn power_cycle_times(
        &self,
        pi: &PiId,
        since_ms: i64,
        limit: u32,
    ) -> Result<Vec<i64>, DbError> {
        let rows = self
            .q(sql())
            .bind(pi.0.clone())
            .bind(since_ms)
            .bind(i64::from(limit))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(|r| get_i64(r, "created_at")).collect()
    }
}
