//! Counters of what the DHCP server received, answered and dropped, for Prometheus.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// Why a packet got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// Shorter than the fixed BOOTP header plus the magic cookie.
    Truncated,
    /// Larger than any DHCP packet on a 1500-byte link.
    Oversized,
    /// Not a BOOTREQUEST.
    NotRequest,
    /// Not Ethernet with a 6-byte unicast hardware address.
    BadHardware,
    BadMagic,
    /// The options do not parse.
    Malformed,
    /// Plain BOOTP or an unknown DHCP message type.
    UnsupportedType,
    /// Came through a relay that is not on a served flat network.
    Relayed,
    /// Arrived on an interface that is not (or no longer) served.
    UnknownInterface,
    /// A REQUEST/RELEASE for another server, or an INIT-REBOOT we know nothing about.
    NotForUs,
    /// No address to give: pool exhausted or no reservation.
    NoAddress,
    /// The lease store failed; nothing was acknowledged.
    StoreFailed,
    /// The reply could not be sent.
    SendFailed,
}

impl DropReason {
    pub const ALL: [DropReason; 13] = [
        DropReason::Truncated,
        DropReason::Oversized,
        DropReason::NotRequest,
        DropReason::BadHardware,
        DropReason::BadMagic,
        DropReason::Malformed,
        DropReason::UnsupportedType,
        DropReason::Relayed,
        DropReason::UnknownInterface,
        DropReason::NotForUs,
        DropReason::NoAddress,
        DropReason::StoreFailed,
        DropReason::SendFailed,
    ];

    /// A stable label value for metrics.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Truncated => "truncated",
            DropReason::Oversized => "oversized",
            DropReason::NotRequest => "not_request",
            DropReason::BadHardware => "bad_hardware",
            DropReason::BadMagic => "bad_magic",
            DropReason::Malformed => "malformed",
            DropReason::UnsupportedType => "unsupported_type",
            DropReason::Relayed => "relayed",
            DropReason::UnknownInterface => "unknown_interface",
            DropReason::NotForUs => "not_for_us",
            DropReason::NoAddress => "no_address",
            DropReason::StoreFailed => "store_failed",
            DropReason::SendFailed => "send_failed",
        }
    }
}

/// Monotonic counters; cheap to bump from every task.
#[derive(Debug, Default)]
pub struct Counters {
    pub received: AtomicU64,
    pub discovers: AtomicU64,
    pub requests: AtomicU64,
    pub informs: AtomicU64,
    pub releases: AtomicU64,
    pub declines: AtomicU64,
    pub offers: AtomicU64,
    pub acks: AtomicU64,
    pub naks: AtomicU64,
    /// Batches committed to the lease store, and leases in them.
    pub store_batches: AtomicU64,
    pub store_leases: AtomicU64,
    dropped: [AtomicU64; 13],
}

/// A plain copy of the counters at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CountersSnapshot {
    pub received: u64,
    pub discovers: u64,
    pub requests: u64,
    pub informs: u64,
    pub releases: u64,
    pub declines: u64,
    pub offers: u64,
    pub acks: u64,
    pub naks: u64,
    pub store_batches: u64,
    pub store_leases: u64,
    /// (reason, count) for every reason, zeros included.
    pub dropped: Vec<(DropReason, u64)>,
}

impl CountersSnapshot {
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped.iter().find(|(r, _)| *r == reason).map_or(0, |(_, n)| *n)
    }

    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().map(|(_, n)| n).sum()
    }
}

impl Counters {
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn drop_packet(&self, reason: DropReason) {
        let index = DropReason::ALL.iter().position(|r| *r == reason).unwrap_or(0);
        self.dropped[index].fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> CountersSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CountersSnapshot {
            received: get(&self.received),
            discovers: get(&self.discovers),
            requests: get(&self.requests),
            informs: get(&self.informs),
            releases: get(&self.releases),
            declines: get(&self.declines),
            offers: get(&self.offers),
            acks: get(&self.acks),
            naks: get(&self.naks),
            store_batches: get(&self.store_batches),
            store_leases: get(&self.store_leases),
            dropped: DropReason::ALL.iter().zip(&self.dropped).map(|(r, c)| (*r, get(c))).collect(),
        }
    }
}
