//! Shared core of the virtual switch: the committed state, the cached MIB view, SET
//! transactions in flight, fault switches, events, counters and persistence.

use super::counters::ReadCounter;
use super::state::{self, Change, SimEvent, SimState};
use super::stp::StpClock;
use super::view;
use crate::error::SimError;
use async_snmp::{Oid, SetTestError, Value};
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use tokio::sync::broadcast;

/// Runtime fault switches.
#[derive(Debug, Default)]
pub struct Faults {
    pub silent: AtomicBool,
    /// Fraction of requests dropped, in millionths.
    pub drop_ppm: AtomicU64,
    pub reject_sets: AtomicBool,
    pub delay_ms: AtomicU64,
}

/// A SET request being processed: the state with its varbinds applied so far (for
/// checking later varbinds), the changes themselves (replayed onto the committed state
/// at commit, so concurrent requests from other managers are not overwritten), and the
/// committed state from before the commit (for undo).
struct Txn {
    staged: SimState,
    changes: Vec<Change>,
    before: Option<SimState>,
}

type TxnKey = (SocketAddr, i32);

pub struct SimCore {
    state: Mutex<SimState>,
    view: Mutex<Option<Arc<BTreeMap<Oid, Value>>>>,
    txns: Mutex<HashMap<TxnKey, Txn>>,
    pub faults: Faults,
    pub events: broadcast::Sender<SimEvent>,
    power_changes: Mutex<BTreeMap<u16, u64>>,
    /// SET requests that reached the test phase.
    sets: AtomicU64,
    /// Times a port was refused power for the budget.
    power_denials: AtomicU64,
    reads: Mutex<ReadCounter>,
    state_file: Option<PathBuf>,
    pub started: Instant,
    /// When each port whose link is up forwards (spanning tree).
    pub stp: StpClock,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock only means another request panicked; the data is still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl SimCore {
    /// Loads state from `state_file` if it exists, else starts factory-fresh.
    pub fn load(pi_ports: u16, cisco: bool, state_file: Option<PathBuf>) -> Result<Self, SimError> {
        let state = match &state_file {
            Some(path) if path.exists() => {
                let display = path.display().to_string();
                let text = std::fs::read_to_string(path)
                    .map_err(|source| SimError::ReadState { path: display.clone(), source })?;
                serde_json::from_str(&text)
                    .map_err(|source| SimError::ParseState { path: display, source })?
            }
            _ if cisco => SimState::new_cisco(pi_ports),
            _ => SimState::new(pi_ports),
        };
        let mut state = state;
        super::poe::settle(&mut state);
        let (events, _) = broadcast::channel(1024);
        Ok(Self {
            state: Mutex::new(state),
            view: Mutex::new(None),
            txns: Mutex::new(HashMap::new()),
            faults: Faults::default(),
            events,
            power_changes: Mutex::new(BTreeMap::new()),
            sets: AtomicU64::new(0),
            power_denials: AtomicU64::new(0),
            reads: Mutex::new(ReadCounter::default()),
            state_file,
            started: Instant::now(),
            stp: StpClock::default(),
        })
    }

    /// A copy of the committed state.
    pub fn state(&self) -> SimState {
        lock(&self.state).clone()
    }

    /// The MIB view of the committed state (cached until the next change).
    pub fn view(&self) -> Arc<BTreeMap<Oid, Value>> {
        let mut cache = lock(&self.view);
        if let Some(v) = cache.as_ref() {
            return v.clone();
        }
        let v = Arc::new(view::build(&lock(&self.state), self.stp.forward_delay()));
        *cache = Some(v.clone());
        v
    }

    /// Starts the spanning-tree clock with `forward_delay`: every port whose link is up
    /// now comes up as a switch's ports do when it boots.
    pub fn start_stp(&self, forward_delay: std::time::Duration) {
        self.stp.set_forward_delay(forward_delay);
        let now = self.state();
        let mut dark = now.clone();
        dark.poe_admin.clear();
        dark.powered.clear();
        self.stp.observe(&dark, &now, Instant::now());
        *lock(&self.view) = None;
    }

    /// SET requests received since start (each once, however many varbinds).
    pub fn sets(&self) -> u64 {
        self.sets.load(Ordering::Relaxed)
    }

    /// Times a port that wanted power was refused it for the budget, since start.
    pub fn power_denials(&self) -> u64 {
        self.power_denials.load(Ordering::Relaxed)
    }

    /// PoE admin changes seen on `port` since start.
    pub fn power_changes(&self, port: u16) -> u64 {
        lock(&self.power_changes).get(&port).copied().unwrap_or(0)
    }

    /// Read requests so far, by manager address.
    pub fn reads(&self) -> BTreeMap<IpAddr, u64> {
        lock(&self.reads).by_manager()
    }

    /// The read counter, for the relay and the MIB handler to feed.
    pub fn read_counter(&self) -> MutexGuard<'_, ReadCounter> {
        lock(&self.reads)
    }

    /// Replaces the committed state (lab API and SET commits), then persists and
    /// announces what changed.
    pub fn replace(&self, f: impl FnOnce(&mut SimState)) -> Result<(), SimError> {
        let (before, after) = {
            let mut st = lock(&self.state);
            let before = st.clone();
            f(&mut st);
            super::poe::settle(&mut st);
            (before, st.clone())
        };
        *lock(&self.view) = None;
        self.stp.observe(&before, &after, Instant::now());
        for (&port, &on) in &after.poe_admin {
            if before.poe_admin.get(&port) != Some(&on) {
                *lock(&self.power_changes).entry(port).or_default() += 1;
            }
        }
        let newly_denied = after.denied.difference(&before.denied).count() as u64;
        self.power_denials.fetch_add(newly_denied, Ordering::Relaxed);
        for ev in state::events(&before, &after) {
            tracing::debug!(event = ?ev, "virtual switch event");
            let _ = self.events.send(ev);
        }
        self.persist(&after)
    }

    fn persist(&self, st: &SimState) -> Result<(), SimError> {
        let Some(path) = &self.state_file else {
            return Ok(());
        };
        let display = path.display().to_string();
        let tmp = path.with_extension("tmp");
        let text = serde_json::to_string_pretty(st)
            .map_err(|source| SimError::ParseState { path: display.clone(), source })?;
        std::fs::write(&tmp, text)
            .map_err(|source| SimError::WriteState { path: display.clone(), source })?;
        std::fs::rename(&tmp, path).map_err(|source| SimError::WriteState { path: display, source })
    }

    /// SET test phase for one varbind: decode, check against the request's staged
    /// state, stage it.
    pub fn test_set(&self, key: TxnKey, oid: &Oid, value: &Value) -> Result<(), SetTestError> {
        if self.faults.reject_sets.load(Ordering::Relaxed) {
            self.drop_txn(key);
            return Err(SetTestError::ResourceUnavailable);
        }
        let mut txns = lock(&self.txns);
        if !txns.contains_key(&key) {
            self.sets.fetch_add(1, Ordering::Relaxed);
        }
        let txn = txns.entry(key).or_insert_with(|| Txn {
            staged: self.state(),
            changes: Vec::new(),
            before: None,
        });
        let result = state::decode(&txn.staged, oid, value).and_then(|c: Change| {
            state::check(&txn.staged, &c)?;
            state::apply(&mut txn.staged, &c);
            txn.changes.push(c);
            Ok(())
        });
        if result.is_err() {
            txns.remove(&key);
        }
        result
    }

    /// Commit: the first commit of a request applies all its changes at once (a SET
    /// is atomic); later commits of the same request have nothing left to do.
    pub fn commit(&self, key: TxnKey) -> bool {
        let changes = {
            let txns = lock(&self.txns);
            let Some(txn) = txns.get(&key) else {
                return false;
            };
            if txn.before.is_some() {
                return true;
            }
            txn.changes.clone()
        };
        let mut before = None;
        let persisted = self.replace(|st| {
            before = Some(st.clone());
            for c in &changes {
                state::apply(st, c);
            }
        });
        if let Some(txn) = lock(&self.txns).get_mut(&key) {
            txn.before = before;
        }
        if let Err(e) = persisted {
            tracing::warn!(error = %e, "virtual switch could not persist state");
        }
        true
    }

    /// Undo: puts back the state from before the request's commit.
    pub fn undo(&self, key: TxnKey) {
        let before = lock(&self.txns).get_mut(&key).and_then(|t| t.before.take());
        if let Some(before) = before
            && let Err(e) = self.replace(|st| *st = before)
        {
            tracing::warn!(error = %e, "virtual switch could not persist state");
        }
    }

    /// Forgets a finished request.
    pub fn drop_txn(&self, key: TxnKey) {
        lock(&self.txns).remove(&key);
    }
}
