//! [`DbEventSink`]: boot events from the DHCP and TFTP servers into each Pi's timeline.
//!
//! `record` only `try_send`s into a bounded queue (a full queue drops the event and
//! counts it), so a reply never waits on the database. One task drains the queue in
//! batches, maps each event to a Pi (storage interface → slot → Pi, storage address →
//! slot → Pi, else MAC → Pi) and appends `dhcp.*` / `tftp.*` rows to `events`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bramble_netboot::events::{BootEvent, BootEventSink, BootStage};
use serde_json::json;
use tokio::sync::mpsc;

use bramble_netboot::hw::PiSerial;

use super::directory::{Directory, Snapshot};
use super::identity::Sightings;
use super::sightings::serial_in_path;
use crate::db::{Db, DbError};
use crate::ids::{PiId, SlotId};
use crate::time::to_millis;

/// Events waiting to be written; beyond this, new events are dropped (and counted).
pub const QUEUE_CAPACITY: usize = 8192;
/// Most events written in one transaction.
const MAX_BATCH: usize = 256;
/// How long an event on a slot without a Pi waits for the sighting that creates it.
const NEW_PI_GRACE: Duration = Duration::from_millis(1500);

/// Counters of the sink, for `/metrics`.
#[derive(Debug, Default)]
pub struct SinkCounters {
    pub queued: AtomicU64,
    pub dropped: AtomicU64,
    pub written: AtomicU64,
    /// Events about clients that are no Pi in the inventory (not stored).
    pub unmatched: AtomicU64,
    pub write_failures: AtomicU64,
}

/// The queueing side, handed to the servers.
pub struct DbEventSink {
    tx: mpsc::Sender<BootEvent>,
    counters: Arc<SinkCounters>,
}

impl BootEventSink for DbEventSink {
    fn record(&self, event: BootEvent) {
        match self.tx.try_send(event) {
            Ok(()) => {
                self.counters.queued.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl DbEventSink {
    /// The sink and the task that drains it (ends when every sink clone is dropped).
    pub fn start(
        db: Db,
        directory: Arc<Directory>,
    ) -> (Arc<DbEventSink>, Arc<SinkCounters>, tokio::task::JoinHandle<()>) {
        DbEventSink::start_with(db, directory, None)
    }

    /// [`DbEventSink::start`], also handing TFTP paths that name a serial directory other
    /// than the slot's Pi's to `sightings` (how a Pi 3B's serial is learned).
    pub fn start_with(
        db: Db,
        directory: Arc<Directory>,
        sightings: Option<Arc<Sightings>>,
    ) -> (Arc<DbEventSink>, Arc<SinkCounters>, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let counters = Arc::new(SinkCounters::default());
        let task = tokio::spawn(drain(rx, db, directory, counters.clone(), sightings));
        (Arc::new(DbEventSink { tx, counters: counters.clone() }), counters, task)
    }
}

/// The timeline kind for a stage: `dhcp_offer` → `dhcp.offer`.
pub fn kind(stage: &BootStage) -> String {
    stage.name().replacen('_', ".", 1)
}

/// A one-line description for the timeline.
pub fn message(stage: &BootStage) -> String {
    match stage {
        BootStage::DhcpDiscover { .. } => "DHCP DISCOVER received".into(),
        BootStage::DhcpOffer { yiaddr, .. } => format!("DHCP OFFER of {yiaddr} sent"),
        BootStage::DhcpRequest => "DHCP REQUEST received".into(),
        BootStage::DhcpAck { yiaddr } => format!("DHCP ACK of {yiaddr} sent"),
        BootStage::DhcpNak { reason } => format!("DHCP NAK sent: {reason}"),
        BootStage::DhcpInform => "DHCP INFORM received".into(),
        BootStage::DhcpRelease => "DHCP RELEASE received".into(),
        BootStage::DhcpDecline => "DHCP DECLINE received: address in use".into(),
        BootStage::TftpRead { file } => format!("TFTP read of {file}"),
        BootStage::TftpComplete { file, bytes } => format!("TFTP sent {file} ({bytes} bytes)"),
        BootStage::TftpEarlyTerminate { file } => {
            format!("TFTP {file}: client stopped after the size")
        }
        BootStage::TftpError { file, reason } => format!("TFTP {file} failed: {reason}"),
    }
}

/// Who an event is about, as far as one snapshot tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    Pi(PiId),
    /// No Pi in the inventory: not stored.
    Unknown,
    /// A slot whose Pi the inventory does not hold yet (a sighting is probably creating it).
    EmptySlot,
}

/// Maps an event to a Pi: interface → slot, storage address → slot, else MAC.
pub fn pi_for(event: &BootEvent, snap: &Snapshot, directory: &Directory) -> Match {
    let c = &event.client;
    let slot = c
        .interface
        .as_deref()
        .and_then(|i| directory.slot_of_interface(i))
        .and_then(|id| snap.slot(&id))
        .or_else(|| match c.addr {
            Some(IpAddr::V4(ip)) => snap.slot_by_pi_ip(ip),
            _ => None,
        });
    if let Some(slot) = slot {
        return slot.pi.as_ref().map_or(Match::EmptySlot, |p| Match::Pi(p.id.clone()));
    }
    match c.mac.as_deref().and_then(|m| snap.pi_by_mac(m)) {
        Some(p) => Match::Pi(p.id.clone()),
        None => Match::Unknown,
    }
}

async fn drain(
    mut rx: mpsc::Receiver<BootEvent>,
    db: Db,
    directory: Arc<Directory>,
    counters: Arc<SinkCounters>,
    sightings: Option<Arc<Sightings>>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut serials = SerialSightings::default();
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        if let Some(sightings) = &sightings {
            serials.apply(&batch, &directory, sightings).await;
        }
        let mut rows = Vec::with_capacity(batch.len());
        // One grace period per batch, not per event: a fresh shelf's first DISCOVERs all
        // land on empty slots, and waiting for each in turn would stall the queue.
        let deadline = tokio::time::Instant::now() + NEW_PI_GRACE;
        for event in batch.drain(..) {
            match resolve(&event, &directory, deadline).await {
                Some(pi) => rows.push((pi, event)),
                None => {
                    counters.unmatched.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        if rows.is_empty() {
            continue;
        }
        match write(&db, &rows).await {
            Ok(()) => {
                counters.written.fetch_add(rows.len() as u64, Ordering::Relaxed);
            }
            Err(error) => {
                counters.write_failures.fetch_add(rows.len() as u64, Ordering::Relaxed);
                tracing::warn!(events = rows.len(), error = %error, "could not store boot events");
            }
        }
    }
}

/// Maps an event to a Pi, refreshing the cache on a miss; until `deadline`, waits for a
/// Pi about to be created from a sighting in a known slot.
async fn resolve(
    event: &BootEvent,
    directory: &Directory,
    deadline: tokio::time::Instant,
) -> Option<PiId> {
    if let Match::Pi(pi) = pi_for(event, &directory.snapshot(), directory) {
        return Some(pi);
    }
    loop {
        match pi_for(event, &*directory.refresh_on_miss().await, directory) {
            Match::Pi(pi) => return Some(pi),
            Match::Unknown => return None,
            Match::EmptySlot if tokio::time::Instant::now() >= deadline => return None,
            Match::EmptySlot => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// How long the same serial on the same slot is not looked at again.
const SERIAL_RECHECK: Duration = Duration::from_secs(30);

/// TFTP paths naming a serial directory that is not the slot's Pi's serial, handed to
/// the sighting rule once per slot and serial every [`SERIAL_RECHECK`].
#[derive(Default)]
struct SerialSightings {
    recent: HashMap<SlotId, (PiSerial, tokio::time::Instant)>,
}

impl SerialSightings {
    async fn apply(&mut self, batch: &[BootEvent], directory: &Directory, sightings: &Sightings) {
        for event in batch {
            let Some((slot, serial)) = serial_sighting(event, &directory.snapshot()) else {
                continue;
            };
            let now = tokio::time::Instant::now();
            if self
                .recent
                .get(&slot)
                .is_some_and(|(s, at)| *s == serial && now.duration_since(*at) < SERIAL_RECHECK)
            {
                continue;
            }
            if self.recent.len() > 4096 {
                self.recent.clear();
            }
            self.recent.insert(slot.clone(), (serial, now));
            if let Err(error) = sightings.tftp(&slot, serial).await {
                tracing::warn!(slot = %slot, %serial, error = %bramble_report::chain(&error), "could not record a tftp serial sighting");
            }
        }
    }
}

/// The slot and serial of a TFTP request (served or refused) whose path names a serial
/// directory other than the slot's Pi's. The slot is the client address's, never the
/// path's.
pub fn serial_sighting(event: &BootEvent, snap: &Snapshot) -> Option<(SlotId, PiSerial)> {
    let file = match &event.stage {
        BootStage::TftpRead { file } | BootStage::TftpError { file, .. } => file,
        _ => return None,
    };
    let serial = serial_in_path(file)?;
    let IpAddr::V4(ip) = event.client.addr? else { return None };
    let slot = snap.slot_by_pi_ip(ip)?;
    let pi = slot.pi.as_ref()?;
    (pi.serial != Some(serial)).then(|| (slot.id.clone(), serial))
}

async fn write(db: &Db, rows: &[(PiId, BootEvent)]) -> Result<(), DbError> {
    let mut tx = db.begin_write().await?;
    for (pi, event) in rows {
        let actor = if event.stage.name().starts_with("dhcp") { "dhcp" } else { "tftp" };
        let data = json!({ "stage": event.stage, "client": event.client });
        db.q("INSERT INTO events (at, pi_id, job_id, customer, actor, kind, message, data) \
              VALUES ($1, $2, NULL, (SELECT owner FROM pis WHERE id = $2), $3, $4, $5, $6)")
            .bind(to_millis(event.at))
            .bind(pi.0.clone())
            .bind(actor.to_string())
            .bind(kind(&event.stage))
            .bind(message(&event.stage))
            .bind(data.to_string())
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_dotted() {
        assert_eq!(
            kind(&BootStage::DhcpOffer {
                yiaddr: "10.0.0.2".parse().unwrap(),
                options: vec![],
                next_server: None
            }),
            "dhcp.offer"
        );
        assert_eq!(
            kind(&BootStage::TftpEarlyTerminate { file: "x".into() }),
            "tftp.early_terminate"
        );
    }
}
