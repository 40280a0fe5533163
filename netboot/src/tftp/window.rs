//! The sender's bookkeeping as pure functions: which blocks an ACK covers (RFC 7440
//! windows, 16-bit block numbers that roll over to 0) and how a transfer ended.

/// The wire number of an internal (64-bit, never wrapping) block index.
pub fn wire_block(index: u64) -> u16 {
    (index & 0xffff) as u16
}

/// How many of the `in_flight` blocks starting at index `base` the client's `ack`
/// acknowledges: 0 for a duplicate or stray ACK (which must not trigger a resend, or
/// the transfer degenerates into the Sorcerer's Apprentice syndrome of RFC 1123 4.2.3.1).
pub fn acked_blocks(base: u64, in_flight: usize, ack: u16) -> usize {
    let offset = usize::from(ack.wrapping_sub(wire_block(base)));
    if offset < in_flight { offset + 1 } else { 0 }
}

/// How a transfer ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The last block was acknowledged.
    Complete { bytes: u64 },
    /// The client sent error 0 after the OACK or some blocks: it read what it wanted
    /// (usually the size) and stopped. Normal for Pi firmware.
    EarlyTerminate { code: u16, message: String },
    /// The client sent an error other than 0.
    ClientError { code: u16, message: String },
    /// No acknowledgement of `block` after every retransmission.
    TimedOut { block: u16 },
    /// Reading the file or using the socket failed.
    Io { detail: String },
}

/// Classifies an ERROR packet from the client during a transfer.
pub fn client_error(code: u16, message: String) -> Outcome {
    if code == 0 {
        Outcome::EarlyTerminate { code, message }
    } else {
        Outcome::ClientError { code, message }
    }
}

impl Outcome {
    /// A short reason for boot events and logs (`None` for a completed transfer).
    pub fn reason(&self) -> Option<String> {
        match self {
            Outcome::Complete { .. } => None,
            Outcome::EarlyTerminate { message, .. } => Some(format!("client stopped: {message}")),
            Outcome::ClientError { code, message } => {
                Some(format!("client error {code}: {message}"))
            }
            Outcome::TimedOut { block } => Some(format!("no acknowledgement of block {block}")),
            Outcome::Io { detail } => Some(detail.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_table() {
        // (base, in_flight, ack, acked)
        let cases: &[(u64, usize, u16, usize)] = &[
            (0, 1, 0, 1),         // ACK 0 for the OACK
            (1, 1, 1, 1),         // lock-step
            (1, 1, 0, 0),         // duplicate of the previous ACK
            (1, 8, 4, 4),         // partial window
            (1, 8, 8, 8),         // whole window
            (1, 8, 9, 0),         // beyond the window
            (65534, 4, 65535, 2), // before roll-over
            (65534, 4, 0, 3),     // rolled over to 0
            (65534, 4, 1, 4),
            (65536, 1, 0, 1),     // index 65536 is wire block 0
            (65536, 1, 65535, 0), // stale ACK from before the roll-over
            (5, 0, 5, 0),         // nothing in flight
        ];
        for &(base, in_flight, ack, want) in cases {
            assert_eq!(
                acked_blocks(base, in_flight, ack),
                want,
                "base {base} in_flight {in_flight} ack {ack}"
            );
        }
    }

    #[test]
    fn error_zero_is_early_terminate() {
        assert!(matches!(client_error(0, "x".into()), Outcome::EarlyTerminate { .. }));
        assert!(matches!(client_error(8, "x".into()), Outcome::ClientError { code: 8, .. }));
        assert_eq!(Outcome::Complete { bytes: 1 }.reason(), None);
    }
}
