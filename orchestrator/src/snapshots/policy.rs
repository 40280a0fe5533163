//! Which snapshots pruning deletes: a pure function of the rows, the config and the
//! time. Per Pi: anything older than `max_age_days`; of those kept by reinstalls and
//! restores, all but the newest `keep`. On-demand snapshots are bounded at creation
//! (`max_manual`) and by age only. A snapshot an active job is restoring is never
//! pruned (the caller passes those ids in `in_use`).

use super::{Reason, Snapshot, SnapshotsConfig};

const DAY_MS: i64 = 86_400_000;

/// The ids to delete among `rows` (any order) as of `now_ms`.
pub fn prune(
    rows: &[Snapshot],
    cfg: &SnapshotsConfig,
    now_ms: i64,
    in_use: &[String],
) -> Vec<String> {
    let mut rows: Vec<&Snapshot> = rows.iter().collect();
    // Newest first within each Pi (ids are time-ordered; created_at breaks no tie).
    rows.sort_by(|a, b| {
        a.pi.cmp(&b.pi).then(b.created_at.cmp(&a.created_at)).then(b.id.cmp(&a.id))
    });
    let cutoff = cfg.max_age_days.map(|d| now_ms.saturating_sub(d as i64 * DAY_MS));
    let mut out = Vec::new();
    let mut kept_auto = 0u32;
    let mut pi = None;
    for s in rows {
        if pi != Some(&s.pi) {
            pi = Some(&s.pi);
            kept_auto = 0;
        }
        let too_old = cutoff.is_some_and(|c| s.created_at < c);
        let over = s.reason != Reason::Manual && {
            kept_auto += 1;
            kept_auto > cfg.keep
        };
        if (too_old || over) && !in_use.contains(&s.id) {
            out.push(s.id.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{JobId, PiId};

    fn snap(pi: &str, id: &str, reason: Reason, at: i64) -> Snapshot {
        Snapshot {
            id: id.into(),
            pi: PiId(pi.into()),
            owner: None,
            job: JobId("job-x".into()),
            reason,
            image: None,
            version: None,
            size_bytes: None,
            created_at: at,
        }
    }

    #[test]
    fn keeps_the_newest_automatic_ones_and_prunes_by_age() {
        let cfg = SnapshotsConfig { keep: 2, max_age_days: Some(10), ..SnapshotsConfig::default() };
        let now = 100 * DAY_MS;
        let rows = [
            snap("pi-a", "s1", Reason::Reinstall, now - DAY_MS * 3),
            snap("pi-a", "s2", Reason::Restore, now - DAY_MS * 2),
            snap("pi-a", "s3", Reason::Reinstall, now - DAY_MS),
            snap("pi-a", "m1", Reason::Manual, now - DAY_MS * 20),
            snap("pi-a", "m2", Reason::Manual, now - DAY_MS * 5),
            snap("pi-b", "s4", Reason::Reinstall, now - DAY_MS * 3),
        ];
        let mut got = prune(&rows, &cfg, now, &[]);
        got.sort();
        assert_eq!(got, ["m1", "s1"]);
        assert_eq!(prune(&rows, &cfg, now, &["s1".into()]), ["m1"], "a restore in flight keeps it");
        let forever = SnapshotsConfig { keep: 0, max_age_days: None, ..cfg };
        let mut got = prune(&rows, &forever, now, &[]);
        got.sort();
        assert_eq!(got, ["s1", "s2", "s3", "s4"]);
        assert!(prune(&[], &cfg, now, &[]).is_empty());
    }
}
