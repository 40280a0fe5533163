//! A TFTP read client (RFC 1350, with the RFC 2347/2348/2349 options the Pi 4 asks for)
//! that behaves like the Pi firmware: octet mode, optional `tsize`/`blksize`, and
//! "early terminate" (error 0 after the OACK told it the size) for size probes.
//!
//! The packet codec here is deliberately its own and does not reuse `bramble-netboot`'s
//! TFTP code: the simulator is the server's opposite end in every lab test, and a codec
//! shared by both ends could carry one bug that each side then agrees with.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::time::timeout;

const RRQ: u16 = 1;
const DATA: u16 = 3;
const ACK: u16 = 4;
const ERROR: u16 = 5;
const OACK: u16 = 6;
const NOT_FOUND: u16 = 1;
/// Largest file the simulator accepts; real firmware files are well below.
const MAX_FILE: usize = 64 << 20;

/// Which options an RRQ carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TftpOptions {
    pub tsize: bool,
    pub blksize: Option<u16>,
}

impl TftpOptions {
    pub const NONE: TftpOptions = TftpOptions { tsize: false, blksize: None };
}

/// Retransmission policy.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub timeout: Duration,
    pub retries: u32,
}

/// How a read ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The whole file, and the block size the transfer used.
    Fetched {
        data: Vec<u8>,
        blksize: u16,
    },
    /// Ended with error 0 after the OACK; `size` is the `tsize` the server sent, if any.
    Probed {
        size: Option<u64>,
    },
    NotFound,
}

/// Why a read failed.
#[derive(Debug, thiserror::Error)]
pub enum TftpError {
    #[error("no answer after {retries} retransmissions")]
    Timeout { retries: u32 },
    #[error("server error {code}: {message}")]
    Server { code: u16, message: String },
    #[error("protocol violation: {0}")]
    Protocol(String),
    #[error("file larger than {MAX_FILE} bytes")]
    TooLarge,
    #[error("socket error")]
    Io(#[from] std::io::Error),
}

/// A parsed server packet.
#[derive(Debug, PartialEq, Eq)]
enum Packet<'a> {
    Data { block: u16, data: &'a [u8] },
    Error { code: u16, message: String },
    Oack(Vec<(String, String)>),
}

fn parse(buf: &[u8]) -> Result<Packet<'_>, TftpError> {
    let short = || TftpError::Protocol(format!("{}-byte packet", buf.len()));
    let opcode =
        u16::from_be_bytes([*buf.first().ok_or_else(short)?, *buf.get(1).ok_or_else(short)?]);
    let rest = &buf[2..];
    match opcode {
        DATA if rest.len() >= 2 => {
            Ok(Packet::Data { block: u16::from_be_bytes([rest[0], rest[1]]), data: &rest[2..] })
        }
        ERROR if rest.len() >= 2 => Ok(Packet::Error {
            code: u16::from_be_bytes([rest[0], rest[1]]),
            message: String::from_utf8_lossy(&rest[2..]).trim_end_matches('\0').to_string(),
        }),
        OACK => {
            let fields: Vec<String> = rest
                .split(|b| *b == 0)
                .filter(|f| !f.is_empty())
                .map(|f| String::from_utf8_lossy(f).to_ascii_lowercase())
                .collect();
            Ok(Packet::Oack(
                fields.chunks(2).filter_map(|c| Some((c[0].clone(), c.get(1)?.clone()))).collect(),
            ))
        }
        other => Err(TftpError::Protocol(format!("unexpected opcode {other}"))),
    }
}

/// The RRQ bytes for `file` with `opts`.
fn rrq(file: &str, opts: TftpOptions) -> Vec<u8> {
    let mut p = RRQ.to_be_bytes().to_vec();
    for field in [file, "octet"] {
        p.extend(field.as_bytes());
        p.push(0);
    }
    let blksize = opts.blksize.map(|b| b.to_string());
    let pairs = [("tsize", opts.tsize.then_some("0")), ("blksize", blksize.as_deref())];
    for (name, value) in pairs.into_iter().filter_map(|(n, v)| Some((n, v?))) {
        p.extend(name.as_bytes());
        p.push(0);
        p.extend(value.as_bytes());
        p.push(0);
    }
    p
}

fn ack(block: u16) -> [u8; 4] {
    let b = block.to_be_bytes();
    [0, ACK as u8, b[0], b[1]]
}

fn early_terminate() -> Vec<u8> {
    let mut p = vec![0, ERROR as u8, 0, 0];
    p.extend(b"early terminate\0");
    p
}

/// What to do after a server packet.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// Send this to the server and keep reading.
    Reply(Vec<u8>),
    /// Send the packet, if any, and stop with the outcome.
    Finish(Option<Vec<u8>>, Outcome),
}

/// The client side of one read, as a pure state machine fed with server packets.
struct Transfer {
    probe: bool,
    blksize: usize,
    expected: u16,
    content: Vec<u8>,
    last_sent: Vec<u8>,
}

impl Transfer {
    fn new(request: Vec<u8>, probe: bool) -> Self {
        Transfer { probe, blksize: 512, expected: 1, content: Vec::new(), last_sent: request }
    }

    fn on_packet(&mut self, packet: Packet<'_>) -> Result<Step, TftpError> {
        match packet {
            Packet::Error { code: NOT_FOUND, .. } => Ok(Step::Finish(None, Outcome::NotFound)),
            Packet::Error { code, message } => Err(TftpError::Server { code, message }),
            Packet::Oack(fields) => {
                let value =
                    |key: &str| fields.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
                if self.probe {
                    let size = value("tsize").and_then(|v| v.parse().ok());
                    return Ok(Step::Finish(Some(early_terminate()), Outcome::Probed { size }));
                }
                if let Some(v) = value("blksize") {
                    self.blksize = v
                        .parse::<u16>()
                        .ok()
                        .filter(|b| (8..=65464).contains(b))
                        .map(usize::from)
                        .ok_or_else(|| TftpError::Protocol(format!("blksize {v}")))?;
                }
                self.last_sent = ack(0).to_vec();
                Ok(Step::Reply(self.last_sent.clone()))
            }
            Packet::Data { block, data } if block == self.expected => {
                self.content.extend_from_slice(data);
                if self.content.len() > MAX_FILE {
                    return Err(TftpError::TooLarge);
                }
                self.last_sent = ack(block).to_vec();
                if data.len() < self.blksize {
                    let blksize = u16::try_from(self.blksize).unwrap_or(u16::MAX);
                    let data = std::mem::take(&mut self.content);
                    return Ok(Step::Finish(
                        Some(self.last_sent.clone()),
                        Outcome::Fetched { data, blksize },
                    ));
                }
                self.expected = self.expected.wrapping_add(1);
                Ok(Step::Reply(self.last_sent.clone()))
            }
            // A duplicate of the previous block: our ACK was lost, send it again.
            Packet::Data { .. } => Ok(Step::Reply(self.last_sent.clone())),
        }
    }
}

/// Reads `file` from `server`. With `probe`, stops with error 0 at the OACK.
/// Retransmits the last packet after each `timing.timeout` of silence.
pub async fn read(
    sock: &UdpSocket,
    server: Ipv4Addr,
    file: &str,
    opts: TftpOptions,
    probe: bool,
    timing: Timing,
) -> Result<Outcome, TftpError> {
    let listen = SocketAddr::V4(SocketAddrV4::new(server, 69));
    let mut transfer = Transfer::new(rrq(file, opts), probe);
    let mut peer: Option<SocketAddr> = None;
    let mut buf = vec![0u8; 65536];
    let mut misses = 0;
    sock.send_to(&transfer.last_sent, listen).await?;
    loop {
        let Ok(received) = timeout(timing.timeout, sock.recv_from(&mut buf)).await else {
            misses += 1;
            if misses > timing.retries {
                return Err(TftpError::Timeout { retries: timing.retries });
            }
            sock.send_to(&transfer.last_sent, peer.unwrap_or(listen)).await?;
            continue;
        };
        let (n, from) = received?;
        if from.ip() != listen.ip() || peer.is_some_and(|p| p != from) {
            continue; // Another host or a stale transfer: not ours.
        }
        misses = 0;
        peer = Some(from);
        match transfer.on_packet(parse(&buf[..n])?)? {
            Step::Reply(packet) => {
                sock.send_to(&packet, from).await?;
            }
            Step::Finish(last, outcome) => {
                if let Some(packet) = last {
                    sock.send_to(&packet, from).await?;
                }
                return Ok(outcome);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rrq_without_options_is_file_and_octet_only() {
        assert_eq!(rrq("bootcode.bin", TftpOptions::NONE), b"\0\x01bootcode.bin\0octet\0".to_vec());
    }

    #[test]
    fn pi4_rrq_carries_tsize_then_blksize() {
        let opts = TftpOptions { tsize: true, blksize: Some(1024) };
        assert_eq!(
            rrq("a/start4.elf", opts),
            b"\0\x01a/start4.elf\0octet\0tsize\x000\0blksize\x001024\0".to_vec()
        );
    }

    #[test]
    fn parses_oack_and_errors() {
        let oack = parse(b"\0\x06tsize\x0042\0blksize\x001024\0").expect("oack");
        assert_eq!(
            oack,
            Packet::Oack(vec![("tsize".into(), "42".into()), ("blksize".into(), "1024".into())])
        );
        let err = parse(b"\0\x05\0\x01File not found\0").expect("error");
        assert_eq!(err, Packet::Error { code: 1, message: "File not found".into() });
    }

    #[test]
    fn a_pi4_read_acks_the_oack_then_each_block() {
        let mut t =
            Transfer::new(rrq("f", TftpOptions { tsize: true, blksize: Some(1024) }), false);
        let oack =
            Packet::Oack(vec![("tsize".into(), "1500".into()), ("blksize".into(), "1024".into())]);
        assert_eq!(t.on_packet(oack).expect("oack"), Step::Reply(ack(0).to_vec()));
        let full = vec![7u8; 1024];
        assert_eq!(
            t.on_packet(Packet::Data { block: 1, data: &full }).expect("b1"),
            Step::Reply(ack(1).to_vec())
        );
        // A repeated block 1 (our ACK was lost) is acknowledged again, not appended.
        assert_eq!(
            t.on_packet(Packet::Data { block: 1, data: &full }).expect("dup"),
            Step::Reply(ack(1).to_vec())
        );
        let tail = vec![8u8; 476];
        match t.on_packet(Packet::Data { block: 2, data: &tail }).expect("b2") {
            Step::Finish(Some(last), Outcome::Fetched { data, blksize }) => {
                assert_eq!(last, ack(2).to_vec());
                assert_eq!((data.len(), blksize), (1500, 1024));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_probe_ends_with_error_zero_at_the_oack() {
        let mut t = Transfer::new(rrq("f", TftpOptions { tsize: true, blksize: None }), true);
        let step = t.on_packet(Packet::Oack(vec![("tsize".into(), "42".into())])).expect("oack");
        assert_eq!(step, Step::Finish(Some(early_terminate()), Outcome::Probed { size: Some(42) }));
    }

    #[test]
    fn an_absurd_blksize_is_a_protocol_error() {
        let mut t = Transfer::new(rrq("f", TftpOptions::NONE), false);
        assert!(t.on_packet(Packet::Oack(vec![("blksize".into(), "3".into())])).is_err());
    }

    #[test]
    fn malformed_packets_are_errors_not_panics() {
        for p in [&b""[..], b"\0", b"\0\x03", b"\0\x05\0", b"\0\x09xx", b"\0\x06tsize"] {
            let _ = parse(p);
        }
        assert!(parse(b"\0\x02x").is_err());
    }
}
