//! The console without a BMC: the controller's receiving end of each Pi's netconsole.
//!
//! Every Pi's kernel sends its log as UDP datagrams to its slot's `.1`. The
//! [`ConsoleReceiver`] listens on each storage interface (one `SO_BINDTODEVICE` socket
//! per interface, added and removed at runtime like DHCP's); the interface a datagram
//! came in on picks the slot, never its content. Datagrams are cut into lines
//! ([`lines::LineAssembler`]), charged to the slot's byte budget ([`budget::Budget`]) and
//! queued per slot (bounded); one flusher task hands batches to a [`ConsoleSink`], the
//! orchestrator's storage. A noisy Pi overruns only its own budget and queue: its excess
//! is dropped and counted ([`ConsoleCounters`]), and no receive task ever waits on the
//! sink, so other Pis' lines and DHCP answers are not delayed.

pub mod budget;
pub mod lines;
pub mod receiver;

pub use receiver::{ConsoleError, ConsoleOptions, ConsoleReceiver};

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use crate::dhcp::SlotKey;

/// One console line as received (without its newline), from the Pi in `slot`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleLine {
    pub slot: SlotKey,
    /// When the controller received it (or its last piece).
    pub at: SystemTime,
    /// The bytes as sent: not decoded, not filtered.
    pub bytes: Vec<u8>,
}

/// Error a sink reports; the batch is dropped and counted.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SinkError(pub String);

/// Where received console lines go (the orchestrator's database).
#[async_trait::async_trait]
pub trait ConsoleSink: Send + Sync {
    /// Stores a batch (lines of several slots, each slot's in order); returns after
    /// they are stored.
    async fn store(&self, lines: Vec<ConsoleLine>) -> Result<(), SinkError>;
}

/// What the receiver did, for `/metrics`.
#[derive(Debug, Default)]
pub struct ConsoleCounters {
    pub datagrams: AtomicU64,
    pub bytes: AtomicU64,
    pub lines_queued: AtomicU64,
    pub lines_stored: AtomicU64,
    /// Datagrams over the slot's byte budget.
    pub dropped_rate: AtomicU64,
    /// Lines that found the slot's queue full.
    pub dropped_queue: AtomicU64,
    /// Datagrams from an address other than the slot's Pi.
    pub dropped_source: AtomicU64,
    /// Lines in batches the sink failed to store.
    pub dropped_sink: AtomicU64,
}

impl ConsoleCounters {
    pub(crate) fn bump(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    /// Dropped counts by reason, for metrics.
    pub fn dropped(&self) -> [(&'static str, u64); 4] {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [
            ("rate", l(&self.dropped_rate)),
            ("queue", l(&self.dropped_queue)),
            ("source", l(&self.dropped_source)),
            ("sink", l(&self.dropped_sink)),
        ]
    }
}
