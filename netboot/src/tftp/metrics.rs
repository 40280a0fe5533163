//! Lock-free counters of what the TFTP server did, for the orchestrator to export
//! (Prometheus names are `bramble_tftp_<name>_total`, refusals labelled by reason).

use std::sync::atomic::{AtomicU64, Ordering};

/// Why a request was refused. Each reason has its own counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// The source address belongs to no slot.
    UnknownClient,
    /// A write request: the server is read-only.
    WriteRequest,
    /// The datagram was not a decodable request.
    Malformed,
    /// The file name contains a NUL byte.
    NulByte,
    /// The file name is longer than 255 bytes.
    Overlong,
    /// The file name is not UTF-8.
    NonUtf8,
    /// The file name contains a control character or a backslash.
    InvalidChar,
    /// The file name starts with `/`.
    Absolute,
    /// The file name has a `..` component.
    Traversal,
    /// The file name names another Pi's serial or MAC directory.
    ForeignSlot,
    /// The file resolves (through a symlink) outside the directory it was looked up in.
    SymlinkEscape,
    /// The name is empty or a directory.
    NotAFile,
    /// No such file (normal for `bootsig.bin`).
    NotFound,
}

impl Refusal {
    pub const ALL: [Refusal; 13] = [
        Refusal::UnknownClient,
        Refusal::WriteRequest,
        Refusal::Malformed,
        Refusal::NulByte,
        Refusal::Overlong,
        Refusal::NonUtf8,
        Refusal::InvalidChar,
        Refusal::Absolute,
        Refusal::Traversal,
        Refusal::ForeignSlot,
        Refusal::SymlinkEscape,
        Refusal::NotAFile,
        Refusal::NotFound,
    ];

    /// A stable label value (`traversal`, `foreign_slot`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Refusal::UnknownClient => "unknown_client",
            Refusal::WriteRequest => "write_request",
            Refusal::Malformed => "malformed",
            Refusal::NulByte => "nul_byte",
            Refusal::Overlong => "overlong",
            Refusal::NonUtf8 => "non_utf8",
            Refusal::InvalidChar => "invalid_char",
            Refusal::Absolute => "absolute",
            Refusal::Traversal => "traversal",
            Refusal::ForeignSlot => "foreign_slot",
            Refusal::SymlinkEscape => "symlink_escape",
            Refusal::NotAFile => "not_a_file",
            Refusal::NotFound => "not_found",
        }
    }

    fn index(self) -> usize {
        Refusal::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
}

/// Counters shared by every transfer; all updates are relaxed atomic adds.
#[derive(Debug, Default)]
pub struct TftpMetrics {
    refused: [AtomicU64; Refusal::ALL.len()],
    transfers_started: AtomicU64,
    transfers_completed: AtomicU64,
    early_terminations: AtomicU64,
    transfers_failed: AtomicU64,
    bytes_sent: AtomicU64,
    retransmits: AtomicU64,
}

/// A point-in-time copy of [`TftpMetrics`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    pub refused: Vec<(Refusal, u64)>,
    pub transfers_started: u64,
    pub transfers_completed: u64,
    pub early_terminations: u64,
    pub transfers_failed: u64,
    pub bytes_sent: u64,
    pub retransmits: u64,
}

impl MetricsSnapshot {
    /// The refusal count for one reason.
    pub fn refused(&self, reason: Refusal) -> u64 {
        self.refused.iter().find(|(r, _)| *r == reason).map_or(0, |(_, n)| *n)
    }
}

impl TftpMetrics {
    pub(crate) fn refused(&self, reason: Refusal) {
        if let Some(counter) = self.refused.get(reason.index()) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn started(&self) {
        self.transfers_started.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn completed(&self, bytes: u64) {
        self.transfers_completed.fetch_add(1, Ordering::Relaxed);
        self.bytes_sent.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(crate) fn early_terminated(&self) {
        self.early_terminations.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn failed(&self) {
        self.transfers_failed.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn retransmitted(&self) {
        self.retransmits.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> MetricsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        MetricsSnapshot {
            refused: Refusal::ALL.iter().map(|r| (*r, get(&self.refused[r.index()]))).collect(),
            transfers_started: get(&self.transfers_started),
            transfers_completed: get(&self.transfers_completed),
            early_terminations: get(&self.early_terminations),
            transfers_failed: get(&self.transfers_failed),
            bytes_sent: get(&self.bytes_sent),
            retransmits: get(&self.retransmits),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_reason() {
        let m = TftpMetrics::default();
        m.refused(Refusal::Traversal);
        m.refused(Refusal::Traversal);
        m.refused(Refusal::NotFound);
        let s = m.snapshot();
        assert_eq!(s.refused(Refusal::Traversal), 2);
        assert_eq!(s.refused(Refusal::NotFound), 1);
        assert_eq!(s.refused(Refusal::Absolute), 0);
        let names: std::collections::HashSet<_> = Refusal::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(names.len(), Refusal::ALL.len());
    }
}
