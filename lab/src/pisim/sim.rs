//! The handle the lab holds for one simulated Pi: power switch, observable status
//! (state, timeline, counters) on a watch channel, and the task running the boot.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;

use super::boot::{self, Stop};
use super::netio;
use super::state::{Event, PiState, next};
use super::{PiSimConfig, PiSimError, Serial};

/// One thing the Pi did, with when it did it.
#[derive(Debug, Clone, PartialEq)]
pub struct TimelineEntry {
    pub at: SystemTime,
    /// Time since the simulator was created (monotonic).
    pub elapsed: Duration,
    pub event: Event,
}

/// Oldest entries are dropped beyond this many, so a Pi cycled for days stays bounded.
pub const TIMELINE_LIMIT: usize = 4096;

/// Totals since the simulator was created.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    pub power_ons: u64,
    pub boots: u64,
    pub dhcp_discovers: u64,
    pub files_fetched: u64,
    pub bytes_fetched: u64,
}

/// Everything observable about a simulated Pi.
#[derive(Debug, Clone, PartialEq)]
pub struct PiStatus {
    pub state: PiState,
    pub timeline: Vec<TimelineEntry>,
    pub counters: Counters,
}

impl PiStatus {
    fn apply(&mut self, event: Event, elapsed: Duration) {
        match next(&self.state, &event) {
            Ok(state) => self.state = state,
            // The driver only emits events that fit; log rather than corrupt the state.
            Err(e) => tracing::error!(error = %e, "pisim: refused transition"),
        }
        let c = &mut self.counters;
        match &event {
            Event::PowerOn => c.power_ons += 1,
            Event::Booted => c.boots += 1,
            Event::DhcpDiscover { .. } => c.dhcp_discovers += 1,
            Event::TftpFetched { bytes, .. } => {
                c.files_fetched += 1;
                c.bytes_fetched += bytes;
            }
            _ => {}
        }
        if self.timeline.len() >= TIMELINE_LIMIT {
            self.timeline.drain(..TIMELINE_LIMIT / 4);
        }
        self.timeline.push(TimelineEntry { at: SystemTime::now(), elapsed, event });
    }
}

/// Applies events to the shared status; what the boot driver reports into.
pub(crate) struct Recorder {
    tx: watch::Sender<PiStatus>,
    created: Instant,
    serial: String,
}

impl Recorder {
    /// A recorder for the Pi with `serial`, in state `Off`.
    pub(crate) fn new(serial: Serial) -> Self {
        let status =
            PiStatus { state: PiState::Off, timeline: Vec::new(), counters: Counters::default() };
        let (tx, _) = watch::channel(status);
        Recorder { tx, created: Instant::now(), serial: serial.to_string() }
    }

    pub(crate) fn emit(&self, event: Event) {
        tracing::debug!(pi = %self.serial, ?event, "pisim event");
        let elapsed = self.created.elapsed();
        self.tx.send_modify(|s| s.apply(event, elapsed));
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<PiStatus> {
        self.tx.subscribe()
    }

    pub(crate) fn status(&self) -> PiStatus {
        self.tx.borrow().clone()
    }

    pub(crate) fn state(&self) -> PiState {
        self.tx.borrow().state.clone()
    }

    /// Waits until the state satisfies `done`, at most `limit`; returns the state then.
    pub(crate) async fn wait_for(
        &self,
        limit: Duration,
        done: impl Fn(&PiState) -> bool,
    ) -> PiState {
        let mut rx = self.subscribe();
        let result = tokio::time::timeout(limit, rx.wait_for(|s| done(&s.state))).await;
        match result {
            Ok(Ok(status)) => status.state.clone(),
            _ => self.state(),
        }
    }
}

/// A simulated Pi. Created powered off; drop aborts a running boot.
pub struct PiSim {
    cfg: Arc<PiSimConfig>,
    rec: Arc<Recorder>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl PiSim {
    /// A Pi in state `Off`. Its namespace and interface must exist when powered on.
    pub fn new(cfg: PiSimConfig) -> Self {
        let rec = Recorder::new(cfg.serial);
        PiSim { cfg: Arc::new(cfg), rec: Arc::new(rec), task: Mutex::new(None) }
    }

    pub fn config(&self) -> &PiSimConfig {
        &self.cfg
    }

    /// A receiver that sees every status change.
    pub fn subscribe(&self) -> watch::Receiver<PiStatus> {
        self.rec.subscribe()
    }

    pub fn status(&self) -> PiStatus {
        self.rec.status()
    }

    pub fn state(&self) -> PiState {
        self.rec.state()
    }

    /// Power on: link up and the boot ROM starts from scratch (no-op if already on).
    /// Power off: the running boot is aborted, addresses flushed, link taken down.
    pub async fn set_power(&self, on: bool) -> Result<(), PiSimError> {
        let mut task = self.task.lock().await;
        if let Some(running) = task.take() {
            if on && self.state() != PiState::Off {
                *task = Some(running);
                return Ok(());
            }
            running.abort();
            let _ = running.await;
        }
        if on {
            if self.state() != PiState::Off {
                return Ok(()); // Booted, GaveUp or Failed: on already, waiting for a power cycle.
            }
            netio::plug(&self.cfg).await.map_err(|e| self.link_error(e))?;
            tracing::info!(pi = %self.cfg.serial, model = ?self.cfg.model, "pisim power on");
            self.rec.emit(Event::PowerOn);
            let (cfg, rec) = (self.cfg.clone(), self.rec.clone());
            *task = Some(tokio::spawn(async move {
                match boot::run(&cfg, &rec).await {
                    Ok(()) => rec.emit(Event::Booted),
                    Err(Stop::GaveUp) => rec.emit(Event::DhcpExhausted),
                    Err(Stop::Failed(reason)) => rec.emit(Event::Failed(reason)),
                }
            }));
        } else {
            netio::unplug(&self.cfg).await.map_err(|e| self.link_error(e))?;
            if self.state() != PiState::Off {
                tracing::info!(pi = %self.cfg.serial, "pisim power off");
                self.rec.emit(Event::PowerOff);
            }
        }
        Ok(())
    }

    fn link_error(&self, source: crate::CmdError) -> PiSimError {
        PiSimError::Link {
            netns: self.cfg.netns.clone(),
            interface: self.cfg.interface.clone(),
            source,
        }
    }

    /// Waits until the state satisfies `done`, at most `limit`; returns the state then
    /// (which does not satisfy `done` if the time ran out).
    pub async fn wait_for(&self, limit: Duration, done: impl Fn(&PiState) -> bool) -> PiState {
        self.rec.wait_for(limit, done).await
    }
}

impl Drop for PiSim {
    fn drop(&mut self) {
        if let Ok(mut task) = self.task.try_lock()
            && let Some(t) = task.take()
        {
            t.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pisim::state::BootFailure;

    fn fresh() -> PiStatus {
        PiStatus { state: PiState::Off, timeline: Vec::new(), counters: Counters::default() }
    }

    #[test]
    fn counters_follow_the_events() {
        let mut s = fresh();
        let events = [
            Event::PowerOn,
            Event::DhcpDiscover { attempt: 1 },
            Event::TftpRequest { file: "bootcode.bin".into() },
            Event::TftpFetched { file: "bootcode.bin".into(), bytes: 100, blksize: 512 },
            Event::Failed(BootFailure::NoDhcpOffer),
            Event::PowerOff,
            Event::PowerOn,
        ];
        for e in events {
            s.apply(e, Duration::ZERO);
        }
        let want = Counters {
            power_ons: 2,
            boots: 0,
            dhcp_discovers: 1,
            files_fetched: 1,
            bytes_fetched: 100,
        };
        assert_eq!(s.counters, want);
        assert_eq!(s.state, PiState::DhcpDiscovering { attempt: 0 });
        assert_eq!(s.timeline.len(), 7);
    }

    #[test]
    fn a_refused_event_is_recorded_but_leaves_the_state() {
        let mut s = fresh();
        s.apply(Event::Booted, Duration::ZERO);
        assert_eq!(s.state, PiState::Off);
        assert_eq!(s.timeline.len(), 1);
    }

    #[test]
    fn the_timeline_stays_bounded() {
        let mut s = fresh();
        for _ in 0..TIMELINE_LIMIT + 10 {
            s.apply(Event::PowerOff, Duration::ZERO);
        }
        assert!(s.timeline.len() <= TIMELINE_LIMIT);
    }
}
