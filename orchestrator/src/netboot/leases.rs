//! [`DbLeaseStore`]: the DHCP server's leases, declines and sightings kept in the
//! inventory database (table `dhcp_leases`, migration 0002).
//!
//! `commit_leases` writes a whole batch in one transaction and returns only after the
//! commit, so the server never ACKs an address that a crash would forget.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use async_trait::async_trait;
use bramble_netboot::dhcp::{
    ClientKey, Decline, Lease, LeaseStore, MacAddr, Sighting, SlotKey, StoreError,
};

use super::directory::Directory;
use super::identity::Sightings;
use crate::db::{Db, DbError, get_i64, get_opt_serial, get_opt_str, get_str};
use crate::time::{now_millis, to_millis};

/// The inventory as the DHCP server's lease store.
pub struct DbLeaseStore {
    db: Db,
    /// Sightings are applied one at a time, off the reply path, so the wait costs no
    /// reply time.
    sightings: Arc<Sightings>,
}

impl DbLeaseStore {
    pub fn new(db: Db, directory: Arc<Directory>) -> DbLeaseStore {
        let sightings = Sightings::new(db.clone(), directory);
        DbLeaseStore::with_sightings(db, sightings)
    }

    /// A store applying DHCP sightings through `sightings` (shared with TFTP's).
    pub fn with_sightings(db: Db, sightings: Arc<Sightings>) -> DbLeaseStore {
        DbLeaseStore { db, sightings }
    }
}

fn backend(operation: &'static str) -> impl Fn(DbError) -> StoreError {
    move |e| StoreError::Backend { operation, source: Box::new(e) }
}

#[async_trait]
impl LeaseStore for DbLeaseStore {
    async fn load_leases(&self) -> Result<Vec<Lease>, StoreError> {
        let rows = self
            .db
            .q("SELECT interface, mac, addr, expires_at, serial, slot_id FROM dhcp_leases ORDER BY interface, mac")
            .fetch_all(self.db.pool())
            .await
            .map_err(|e| backend("load_leases")(e.into()))?;
        let mut leases = Vec::with_capacity(rows.len());
        for row in &rows {
            match lease_from_row(row) {
                Ok(lease) => leases.push(lease),
                // One bad row must not keep every other client from its address.
                Err(error) => tracing::warn!(error = %error, "skipping unreadable stored lease"),
            }
        }
        Ok(leases)
    }

    async fn commit_leases(&self, leases: &[Lease]) -> Result<(), StoreError> {
        let fail = backend("commit_leases");
        let mut tx = self.db.begin_write().await.map_err(|e| fail(e.into()))?;
        let now = now_millis();
        for lease in leases {
            self.db
                .q("INSERT INTO dhcp_leases (interface, mac, addr, expires_at, serial, slot_id, updated_at) \
                    VALUES ($1, $2, $3, $4, $5, $6, $7) \
                    ON CONFLICT (interface, mac) DO UPDATE SET addr = excluded.addr, expires_at = excluded.expires_at, \
                    serial = excluded.serial, slot_id = excluded.slot_id, updated_at = excluded.updated_at")
                .bind(lease.key.interface.clone())
                .bind(lease.key.mac.to_string())
                .bind(lease.addr.to_string())
                .bind(to_millis(lease.expires_at))
                .bind(lease.serial.map(|s| s.to_string()))
                .bind(lease.slot.as_ref().map(|s| s.0.clone()))
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(|e| fail(e.into()))?;
        }
        tx.commit().await.map_err(|e| fail(e.into()))
    }

    async fn release_lease(&self, key: &ClientKey, addr: Ipv4Addr) -> Result<(), StoreError> {
        self.db
            .q("DELETE FROM dhcp_leases WHERE interface = $1 AND mac = $2 AND addr = $3")
            .bind(key.interface.clone())
            .bind(key.mac.to_string())
            .bind(addr.to_string())
            .execute(self.db.pool())
            .await
            .map_err(|e| backend("release_lease")(e.into()))?;
        Ok(())
    }

    async fn record_decline(&self, decline: &Decline) -> Result<(), StoreError> {
        self.db
            .q("INSERT INTO dhcp_declines (interface, mac, addr, at) VALUES ($1, $2, $3, $4)")
            .bind(decline.key.interface.clone())
            .bind(decline.key.mac.to_string())
            .bind(decline.addr.to_string())
            .bind(to_millis(decline.at))
            .execute(self.db.pool())
            .await
            .map_err(|e| backend("record_decline")(e.into()))?;
        Ok(())
    }

    async fn record_sighting(&self, sighting: &Sighting) -> Result<(), StoreError> {
        self.sightings.dhcp(sighting).await.map_err(backend("record_sighting"))?;
        Ok(())
    }
}

fn lease_from_row(row: &sqlx::any::AnyRow) -> Result<Lease, DbError> {
    let corrupt = |column: &'static str, value: String| DbError::Corrupt { column, value };
    let mac_text = get_str(row, "mac")?;
    let mac: MacAddr =
        mac_text.parse().map_err(|_| corrupt("dhcp_leases.mac", mac_text.clone()))?;
    let addr_text = get_str(row, "addr")?;
    let addr: Ipv4Addr =
        addr_text.parse().map_err(|_| corrupt("dhcp_leases.addr", addr_text.clone()))?;
    let expires = get_i64(row, "expires_at")?;
    let expires_at = UNIX_EPOCH + Duration::from_millis(u64::try_from(expires).unwrap_or(0));
    let serial = get_opt_serial(row, "serial", "dhcp_leases.serial")?;
    Ok(Lease {
        key: ClientKey { interface: get_str(row, "interface")?, mac },
        addr,
        expires_at,
        serial,
        slot: get_opt_str(row, "slot_id")?.map(SlotKey),
    })
}
