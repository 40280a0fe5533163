//! Persistence the DHCP server needs from the inventory: durable leases, releases,
//! declines and client sightings. The orchestrator implements [`LeaseStore`] over its
//! SQLite/PostgreSQL inventory; [`MemoryLeaseStore`] is for tests and the lab.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::SystemTime;

use async_trait::async_trait;
use serde::Serialize;

use super::types::{ClientKey, MacAddr, PiModel, PiSerial, SlotKey};

/// A binding of an address to a client, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lease {
    pub key: ClientKey,
    pub addr: Ipv4Addr,
    pub expires_at: SystemTime,
    pub serial: Option<PiSerial>,
    /// The storage slot, for leases on storage interfaces.
    pub slot: Option<SlotKey>,
}

/// A client seen on the wire, so the inventory can create `new` Pis and notice a Pi
/// replaced in its slot (a different MAC or serial on the same slot).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sighting {
    pub interface: String,
    pub slot: Option<SlotKey>,
    pub mac: MacAddr,
    pub serial: Option<PiSerial>,
    pub model: Option<PiModel>,
    /// False for a flat-network Pi without a reservation (discovery mode).
    pub reserved: bool,
    pub at: SystemTime,
}

/// A client said the address we gave it is in use by someone else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decline {
    pub key: ClientKey,
    pub addr: Ipv4Addr,
    pub at: SystemTime,
}

/// The store could not do what was asked; the server answers nothing in that case.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("lease store unavailable: {reason}")]
    Unavailable { reason: String },
    #[error("lease store {operation} failed")]
    Backend {
        operation: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Durable lease storage. `commit_leases` must return only once the leases are durable:
/// the server sends the ACKs after it returns `Ok`, and none if it fails.
#[async_trait]
pub trait LeaseStore: Send + Sync + 'static {
    /// Every lease not yet released, to rebuild the bindings at startup.
    async fn load_leases(&self) -> Result<Vec<Lease>, StoreError>;
    /// Stores (inserts or replaces, by key) a batch of leases durably, all or none.
    async fn commit_leases(&self, leases: &[Lease]) -> Result<(), StoreError>;
    /// Forgets the lease of a client that released it.
    async fn release_lease(&self, key: &ClientKey, addr: Ipv4Addr) -> Result<(), StoreError>;
    async fn record_decline(&self, decline: &Decline) -> Result<(), StoreError>;
    /// Records a client sighting. Not on the reply path: failures are logged only.
    async fn record_sighting(&self, sighting: &Sighting) -> Result<(), StoreError>;
}

/// An in-memory store with fault switches, for tests.
#[derive(Debug, Default)]
pub struct MemoryLeaseStore {
    leases: Mutex<HashMap<ClientKey, Lease>>,
    sightings: Mutex<Vec<Sighting>>,
    declines: Mutex<Vec<Decline>>,
    fail_commits: AtomicBool,
    commit_calls: AtomicU64,
}

impl MemoryLeaseStore {
    pub fn with_leases(leases: Vec<Lease>) -> Self {
        let store = MemoryLeaseStore::default();
        store.lock_leases().extend(leases.into_iter().map(|l| (l.key.clone(), l)));
        store
    }

    /// Makes every later commit fail (or succeed again).
    pub fn set_fail_commits(&self, fail: bool) {
        self.fail_commits.store(fail, Ordering::SeqCst);
    }

    pub fn leases(&self) -> Vec<Lease> {
        let mut all: Vec<Lease> = self.lock_leases().values().cloned().collect();
        all.sort_by(|a, b| a.key.cmp(&b.key));
        all
    }

    pub fn sightings(&self) -> Vec<Sighting> {
        self.sightings.lock().map(|s| s.clone()).unwrap_or_default()
    }

    pub fn declines(&self) -> Vec<Decline> {
        self.declines.lock().map(|d| d.clone()).unwrap_or_default()
    }

    /// How many times `commit_leases` was called (batches, not leases).
    pub fn commit_calls(&self) -> u64 {
        self.commit_calls.load(Ordering::SeqCst)
    }

    fn lock_leases(&self) -> std::sync::MutexGuard<'_, HashMap<ClientKey, Lease>> {
        // A poisoned map still holds consistent leases (inserts are single calls).
        self.leases.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl LeaseStore for MemoryLeaseStore {
    async fn load_leases(&self) -> Result<Vec<Lease>, StoreError> {
        Ok(self.leases())
    }

    async fn commit_leases(&self, leases: &[Lease]) -> Result<(), StoreError> {
        self.commit_calls.fetch_add(1, Ordering::SeqCst);
        if self.fail_commits.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable { reason: "fault injected".into() });
        }
        let mut map = self.lock_leases();
        for lease in leases {
            map.insert(lease.key.clone(), lease.clone());
        }
        Ok(())
    }

    async fn release_lease(&self, key: &ClientKey, addr: Ipv4Addr) -> Result<(), StoreError> {
        let mut map = self.lock_leases();
        if map.get(key).is_some_and(|l| l.addr == addr) {
            map.remove(key);
        }
        Ok(())
    }

    async fn record_decline(&self, decline: &Decline) -> Result<(), StoreError> {
        self.declines
            .lock()
            .map_err(|_| StoreError::Unavailable { reason: "poisoned".into() })?
            .push(decline.clone());
        Ok(())
    }

    async fn record_sighting(&self, sighting: &Sighting) -> Result<(), StoreError> {
        self.sightings
            .lock()
            .map_err(|_| StoreError::Unavailable { reason: "poisoned".into() })?
            .push(sighting.clone());
        Ok(())
    }
}
