//! DHCPv4 server for Raspberry Pi netboot, serving per-Pi storage /30s and flat
//! networks at once.
//!
//! Layout: [`packet`] checks and encodes the wire format, [`pi`] knows the boot ROMs,
//! [`bindings`] and [`engine`] are the pure state machine, [`server`] does the I/O
//! (per-interface sockets, a batching lease committer), [`store`] is what the inventory
//! implements, [`counters`] what Prometheus exports.
//!
//! Usage: `DhcpServer::start(opts, store, sink)`, then `add_storage` / `add_flat` /
//! `remove_interface` as slots are racked.

pub mod bindings;
pub mod config;
pub mod counters;
pub mod engine;
pub mod packet;
pub mod pi;
pub mod server;
pub mod socket;
pub mod store;
pub mod types;

pub use config::{
    ConfigError, FlatNetwork, Reservation, ReservationKey, ServerOptions, StorageIface,
};
pub use counters::{Counters, CountersSnapshot, DropReason};
pub use engine::{Action, Engine, Outcome, Reply, Role};
pub use server::DhcpServer;
pub use store::{Decline, Lease, LeaseStore, MemoryLeaseStore, Sighting, StoreError};
pub use types::{ClientKey, MacAddr, PiModel, PiSerial, SlotKey};

/// Errors of the running DHCP server.
#[derive(Debug, thiserror::Error)]
pub enum DhcpError {
    #[error("could not open a DHCP socket on interface {ifname}")]
    Bind {
        ifname: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid DHCP interface configuration")]
    Config {
        #[source]
        source: ConfigError,
    },
    #[error("could not load leases at startup")]
    LoadLeases {
        #[source]
        source: StoreError,
    },
}
