//! Datagrams into lines. netconsole sends one message per datagram, usually ending in a
//! newline; a long message arrives in pieces, and a datagram may hold several lines.
//! [`LineAssembler`] keeps the unfinished tail of a slot's stream until its newline
//! comes, the tail grows past `max_line` (cut there), or it is older than a flush
//! interval ([`LineAssembler::take_stale`]). Pure: any bytes in, never a panic.

use std::time::Instant;

#[derive(Debug, Clone)]
pub struct LineAssembler {
    max_line: usize,
    pending: Vec<u8>,
    since: Option<Instant>,
}

impl LineAssembler {
    pub fn new(max_line: usize) -> Self {
        LineAssembler { max_line: max_line.max(1), pending: Vec::new(), since: None }
    }

    /// Appends a datagram; returns the lines it completed (without their `\n`).
    pub fn push(&mut self, data: &[u8], now: Instant) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for &b in data {
            if b == b'\n' {
                out.push(std::mem::take(&mut self.pending));
                self.since = None;
                continue;
            }
            if self.pending.is_empty() {
                self.since = Some(now);
            }
            self.pending.push(b);
            if self.pending.len() >= self.max_line {
                out.push(std::mem::take(&mut self.pending));
                self.since = None;
            }
        }
        out
    }

    /// The unfinished line, if it has waited since before `cutoff`.
    pub fn take_stale(&mut self, cutoff: Instant) -> Option<Vec<u8>> {
        match self.since {
            Some(since) if since <= cutoff && !self.pending.is_empty() => {
                self.since = None;
                Some(std::mem::take(&mut self.pending))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn lines_pieces_and_tails() {
        let t0 = Instant::now();
        let mut a = LineAssembler::new(8);
        assert_eq!(a.push(b"one\ntwo\n", t0), vec![b"one".to_vec(), b"two".to_vec()]);
        assert!(a.push(b"thr", t0).is_empty());
        assert_eq!(a.push(b"ee\n\n", t0), vec![b"three".to_vec(), Vec::new()]);
        // Longer than max_line: cut into pieces of max_line.
        assert_eq!(
            a.push(b"0123456789abcdefXY", t0),
            vec![b"01234567".to_vec(), b"89abcdef".to_vec()]
        );
        assert_eq!(a.take_stale(t0 - Duration::from_millis(1)), None, "not stale yet");
        assert_eq!(a.take_stale(t0), Some(b"XY".to_vec()));
        assert_eq!(a.take_stale(t0 + Duration::from_secs(9)), None, "taken once");
    }

    #[test]
    fn any_bytes_are_kept_as_they_are() {
        let t0 = Instant::now();
        let mut a = LineAssembler::new(4096);
        let raw = b"\x1b[31mred\x1b[0m \xff\xfe\r\x00end\n".to_vec();
        assert_eq!(a.push(&raw, t0), vec![raw[..raw.len() - 1].to_vec()]);
        // Every byte value, every length: no panic.
        let all: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
        let mut tiny = LineAssembler::new(0);
        let n: usize = tiny.push(&all, t0).iter().map(Vec::len).sum();
        assert!(n <= all.len());
    }
}
