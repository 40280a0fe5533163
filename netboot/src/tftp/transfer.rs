//! One read transfer on its own ephemeral socket (a new TID, RFC 1350 section 4):
//! optional OACK, then windows of DATA blocks read from the source as they are sent,
//! retransmitted on timeout a bounded number of times.
//!
//! A transfer is a lock-step conversation whose speed is the latency of each wake-up, so
//! it runs on a thread of its own (tokio's blocking pool) with a blocking socket, as
//! tftpd-hpa runs a process per transfer: the kernel wakes the thread straight from the
//! socket. Measured on a loaded 2-core machine, a task on tokio's multi-threaded runtime
//! paid one or two extra thread wake-ups per block and was up to 3x slower at 512-byte
//! blocks (see docs/benchmarks.md, TFTP).

use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::Instant;

use super::TftpMetrics;
use super::options::Negotiated;
use super::packet::{self, ClientPacket, DATA_HEADER};
use super::source::Source;
use super::window::{Outcome, acked_blocks, client_error, wire_block};

/// Large enough for any ACK or ERROR a client sends.
const RECV_BUFFER: usize = 1024;

/// Default number of retransmissions before a transfer is abandoned.
pub const DEFAULT_RETRIES: u32 = 5;

/// What a transfer needs besides its source.
pub struct Transfer<'a> {
    /// Bound to the server's address, connected to `peer`, read timeout set to the
    /// negotiated timeout.
    pub socket: UdpSocket,
    pub peer: SocketAddr,
    pub params: &'a Negotiated,
    pub max_retries: u32,
    pub metrics: &'a TftpMetrics,
}

/// A packet (or window of packets) waiting for acknowledgement.
struct InFlight {
    /// Internal index of the first packet; the OACK is index 0, DATA 1 is index 1.
    base: u64,
    packets: VecDeque<Vec<u8>>,
}

impl Transfer<'_> {
    /// Runs the transfer to its end. Blocking: call it from a blocking thread.
    pub fn run(&self, source: &mut Source) -> Outcome {
        if !self.params.oack.is_empty() {
            let oack = packet::encode_oack(&self.params.oack);
            let mut first = InFlight { base: 0, packets: VecDeque::from([oack]) };
            if let Err(outcome) = self.exchange(&mut first) {
                return outcome;
            }
        }
        let mut window = InFlight { base: 1, packets: VecDeque::new() };
        let mut spare: Vec<Vec<u8>> = Vec::new();
        let mut next = 1u64;
        let mut eof = false;
        loop {
            while !eof && window.packets.len() < usize::from(self.params.windowsize) {
                let mut pkt = spare.pop().unwrap_or_default();
                match self.fill(&mut pkt, next, source) {
                    Ok(full) => eof = !full,
                    Err(e) => {
                        return Outcome::Io { detail: format!("reading block {next}: {e}") };
                    }
                }
                window.packets.push_back(pkt);
                next += 1;
            }
            if window.packets.is_empty() {
                return Outcome::Complete { bytes: source.size };
            }
            match self.exchange(&mut window) {
                Ok(done) => spare.extend(done),
                Err(outcome) => return outcome,
            }
        }
    }

    /// Reads the next block into `pkt`; `Ok(false)` when it is the last (short) block.
    fn fill(&self, pkt: &mut Vec<u8>, index: u64, source: &mut Source) -> io::Result<bool> {
        let blksize = self.params.blksize;
        pkt.resize(DATA_HEADER + blksize, 0);
        packet::write_data_header(pkt, wire_block(index));
        let n = source.read_block(&mut pkt[DATA_HEADER..])?;
        pkt.truncate(DATA_HEADER + n);
        Ok(n == blksize)
    }

    /// Sends the window and waits until the client acknowledges at least its first
    /// packet; acknowledged packets are removed and returned for reuse.
    fn exchange(&self, window: &mut InFlight) -> Result<Vec<Vec<u8>>, Outcome> {
        let mut buf = [0u8; RECV_BUFFER];
        for attempt in 0..=self.max_retries {
            if attempt > 0 {
                self.metrics.retransmitted();
                tracing::trace!(peer = %self.peer, block = wire_block(window.base), attempt, "retransmitting");
            }
            for pkt in &window.packets {
                self.socket.send(pkt).map_err(|e| io_outcome("send", e))?;
            }
            let deadline = Instant::now() + self.params.timeout;
            while let Some(len) = self.recv_until(&mut buf, deadline)? {
                match packet::decode(&buf[..len]) {
                    Ok(ClientPacket::Ack(ack)) => {
                        let n = acked_blocks(window.base, window.packets.len(), ack);
                        if n > 0 {
                            window.base += n as u64;
                            return Ok(window.packets.drain(..n).collect());
                        }
                    }
                    Ok(ClientPacket::Error { code, message }) => {
                        return Err(client_error(code, message));
                    }
                    _ => tracing::trace!(peer = %self.peer, len, "ignoring unexpected datagram"),
                }
            }
        }
        Err(Outcome::TimedOut { block: wire_block(window.base) })
    }

    /// Receives one datagram, or `None` once `deadline` has passed. The socket's read
    /// timeout is the negotiated timeout (set once per transfer); it is shortened only
    /// when stray datagrams used up part of the wait.
    fn recv_until(&self, buf: &mut [u8], deadline: Instant) -> Result<Option<usize>, Outcome> {
        let mut shortened = false;
        let result = loop {
            match self.socket.recv(buf) {
                Ok(len) => break Ok(Some(len)),
                Err(e)
                    if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // A connected UDP socket reports an ICMP port unreachable here.
                Err(e) => break Err(io_outcome("receive", e)),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break Ok(None);
            }
            self.socket.set_read_timeout(Some(left)).map_err(|e| io_outcome("set timeout", e))?;
            shortened = true;
        };
        if shortened {
            self.socket
                .set_read_timeout(Some(self.params.timeout))
                .map_err(|e| io_outcome("set timeout", e))?;
        }
        result
    }
}

fn io_outcome(what: &str, e: io::Error) -> Outcome {
    Outcome::Io { detail: format!("{what}: {e}") }
}
