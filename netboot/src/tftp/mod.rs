//! A read-only TFTP server that gives each Pi only its own boot files.
//!
//! The client's source address picks the slot (through [`BootResolver`]); the requested
//! name is then mapped by a fixed policy ([`path`]) to the shared `bootcode.bin`, a file of
//! the slot's boot directory (the `/boot` of the Pi's own root), or a generated
//! `cmdline.txt`/`config.txt` ([`crate::bootfiles`]). Files are streamed block by block
//! through a buffered reader; each request is decided in its own tokio task, and each
//! accepted transfer then runs on its own socket on a thread of tokio's blocking pool.
//!
//! Protocol: RFC 1350 with options (RFC 2347) `blksize` (8..=1468, larger requests are
//! answered with 1468), `tsize`, `timeout` (RFC 2349) and `windowsize` (RFC 7440, capped
//! at 64). `netascii` requests are served byte for byte: boot files are binary and no Pi
//! asks for netascii. Write requests are refused.
//!
//! Our own server rather than async-tftp 0.4.2 (read in its source): that crate keeps the
//! handler behind one `Arc<Mutex<_>>` held across every file open (a global lock on the
//! hot path), runs every transfer on its own single-threaded executor, ignores client
//! ERROR packets mid-transfer (an early-terminated transfer keeps retransmitting until
//! its retries run out) and reports neither completion nor early termination, which the
//! boot timeline needs. It does support windowsize, blksize, tsize and timeout.

mod beneath;
mod metrics;
mod options;
mod packet;
pub mod path;
mod resolve;
mod server;
mod source;
mod transfer;
mod window;

pub use metrics::{MetricsSnapshot, Refusal, TftpMetrics};
pub use options::{DEFAULT_BLKSIZE, Limits, MAX_BLKSIZE};
pub use resolve::{BootResolver, MacAddr, PiSerial, SlotBoot};
pub use server::{ServeError, TftpConfig, TftpServer};
pub use window::Outcome;
