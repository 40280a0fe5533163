//! [`DbConsoleSink`]: the receiver's batches into the database. A line's slot (the
//! interface it came in on) is mapped to the Pi in that slot now; lines of a slot with
//! no Pi are dropped and counted.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bramble_netboot::console::{ConsoleLine, ConsoleSink, SinkError};

use crate::db::Db;
use crate::db::console::{ConsoleLimits, PiLines};
use crate::ids::{PiId, SlotId};
use crate::netboot::directory::Directory;
use crate::time::to_millis;

/// Counters of the database side, for `/metrics`.
#[derive(Debug, Default)]
pub struct StoreCounters {
    /// Lines of a slot holding no Pi.
    pub unmatched: AtomicU64,
    /// Lines over their boot's byte limit.
    pub over_boot_limit: AtomicU64,
    pub boots_started: AtomicU64,
    pub boots_pruned: AtomicU64,
}

pub struct DbConsoleSink {
    db: Db,
    directory: Arc<Directory>,
    limits: ConsoleLimits,
    counters: Arc<StoreCounters>,
}

impl DbConsoleSink {
    pub fn new(db: Db, directory: Arc<Directory>, limits: ConsoleLimits) -> Self {
        DbConsoleSink { db, directory, limits, counters: Arc::default() }
    }

    pub fn counters(&self) -> Arc<StoreCounters> {
        self.counters.clone()
    }
}

/// Groups a batch by Pi, each Pi's lines in the order received.
fn by_pi(lines: Vec<ConsoleLine>, pi_of: impl Fn(&SlotId) -> Option<PiId>) -> (Vec<PiLines>, u64) {
    let mut grouped: BTreeMap<PiId, Vec<(i64, Vec<u8>)>> = BTreeMap::new();
    let mut unmatched = 0;
    for line in lines {
        match pi_of(&SlotId(line.slot.0)) {
            Some(pi) => grouped.entry(pi).or_default().push((to_millis(line.at), line.bytes)),
            None => unmatched += 1,
        }
    }
    (grouped.into_iter().collect(), unmatched)
}

#[async_trait::async_trait]
impl ConsoleSink for DbConsoleSink {
    async fn store(&self, lines: Vec<ConsoleLine>) -> Result<(), SinkError> {
        let snap = self.directory.snapshot();
        let (batch, unmatched) =
            by_pi(lines, |slot| snap.slot(slot).and_then(|s| s.pi.as_ref()).map(|p| p.id.clone()));
        self.counters.unmatched.fetch_add(unmatched, Ordering::Relaxed);
        if batch.is_empty() {
            return Ok(());
        }
        let out = self
            .db
            .append_console(&batch, self.limits)
            .await
            .map_err(|e| SinkError(bramble_report::chain(&e)))?;
        let c = &self.counters;
        c.over_boot_limit.fetch_add(out.dropped, Ordering::Relaxed);
        c.boots_started.fetch_add(out.boots_started, Ordering::Relaxed);
        c.boots_pruned.fetch_add(out.boots_pruned, Ordering::Relaxed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use bramble_netboot::dhcp::SlotKey;

    use super::*;

    #[test]
    fn lines_group_by_the_pi_in_their_slot_in_order() {
        let line = |slot: &str, text: &str| ConsoleLine {
            slot: SlotKey(slot.into()),
            at: SystemTime::now(),
            bytes: text.as_bytes().to_vec(),
        };
        let lines = vec![line("s1", "a"), line("s2", "x"), line("s1", "b"), line("empty", "?")];
        let (batch, unmatched) =
            by_pi(lines, |s| (s.0 != "empty").then(|| PiId(format!("pi-{}", s.0))));
        assert_eq!(unmatched, 1);
        let texts: Vec<(String, Vec<Vec<u8>>)> = batch
            .into_iter()
            .map(|(pi, l)| (pi.0, l.into_iter().map(|(_, b)| b).collect()))
            .collect();
        assert_eq!(
            texts,
            vec![
                ("pi-s1".into(), vec![b"a".to_vec(), b"b".to_vec()]),
                ("pi-s2".into(), vec![b"x".to_vec()])
            ]
        );
    }
}
