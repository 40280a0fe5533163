//! Option negotiation (RFC 2347 blksize/tsize/timeout per RFC 2348 and 2349, windowsize
//! per RFC 7440) as a pure function from what the client asked to what the server acks.

use std::time::Duration;

/// Default block size of RFC 1350.
pub const DEFAULT_BLKSIZE: usize = 512;
/// Largest block that fits an Ethernet frame with IPv4 and UDP headers (1500 - 20 - 8 - 4).
pub const MAX_BLKSIZE: usize = 1468;
/// Smallest block size RFC 2348 allows.
const MIN_BLKSIZE: usize = 8;

/// Server-side limits and defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Block sizes above this are answered with this value.
    pub max_blksize: usize,
    /// Window sizes above this are answered with this value.
    pub max_windowsize: u16,
    /// Retransmission timeout when the client does not ask for one.
    pub default_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_blksize: MAX_BLKSIZE,
            max_windowsize: 64,
            default_timeout: Duration::from_secs(1),
        }
    }
}

/// The parameters a transfer runs with, and the OACK that announces them (empty when the
/// client asked for nothing we accept, in which case DATA 1 follows the request directly).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    pub blksize: usize,
    pub windowsize: u16,
    pub timeout: Duration,
    pub oack: Vec<(&'static str, String)>,
}

/// Accepts what the limits allow and silently drops the rest, as RFC 2347 permits.
/// `size` is the exact size of the file to send (for `tsize`).
pub fn negotiate(requested: &[(String, String)], size: u64, limits: &Limits) -> Negotiated {
    let mut out = Negotiated {
        blksize: DEFAULT_BLKSIZE,
        windowsize: 1,
        timeout: limits.default_timeout,
        oack: Vec::new(),
    };
    for (name, value) in requested {
        let value = value.trim();
        match name.as_str() {
            "blksize" => {
                let Ok(asked) = value.parse::<usize>() else {
                    continue;
                };
                if asked < MIN_BLKSIZE || out.oack.iter().any(|(n, _)| *n == "blksize") {
                    continue;
                }
                out.blksize = asked.min(limits.max_blksize);
                out.oack.push(("blksize", out.blksize.to_string()));
            }
            "tsize" if value == "0" => out.oack.push(("tsize", size.to_string())),
            "timeout" => {
                let Ok(secs) = value.parse::<u64>() else {
                    continue;
                };
                if (1..=255).contains(&secs) {
                    out.timeout = Duration::from_secs(secs);
                    out.oack.push(("timeout", secs.to_string()));
                }
            }
            "windowsize" => {
                let Ok(asked) = value.parse::<u16>() else {
                    continue;
                };
                if asked >= 1 {
                    out.windowsize = asked.min(limits.max_windowsize.max(1));
                    out.oack.push(("windowsize", out.windowsize.to_string()));
                }
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
    }

    /// (asked, blksize, windowsize, timeout seconds, OACK)
    type Case<'a> = (&'a [(&'a str, &'a str)], usize, u16, u64, &'a [(&'a str, &'a str)]);

    #[test]
    fn table_of_requests() {
        let limits = Limits::default();
        let cases: &[Case] = &[
            (&[], 512, 1, 1, &[]),
            (
                &[("tsize", "0"), ("blksize", "1024")],
                1024,
                1,
                1,
                &[("tsize", "6000"), ("blksize", "1024")],
            ),
            (&[("blksize", "65464")], 1468, 1, 1, &[("blksize", "1468")]),
            (&[("blksize", "7")], 512, 1, 1, &[]),
            (&[("blksize", "x")], 512, 1, 1, &[]),
            (
                &[("windowsize", "8"), ("timeout", "3")],
                512,
                8,
                3,
                &[("windowsize", "8"), ("timeout", "3")],
            ),
            (&[("windowsize", "1000")], 512, 64, 1, &[("windowsize", "64")]),
            (&[("windowsize", "0"), ("timeout", "0"), ("tsize", "5")], 512, 1, 1, &[]),
            (&[("multicast", ""), ("timeout", "256")], 512, 1, 1, &[]),
        ];
        for (asked, blksize, window, timeout, oack) in cases {
            let got = negotiate(&opts(asked), 6000, &limits);
            assert_eq!(got.blksize, *blksize, "{asked:?}");
            assert_eq!(got.windowsize, *window, "{asked:?}");
            assert_eq!(got.timeout, Duration::from_secs(*timeout), "{asked:?}");
            let want: Vec<(&str, String)> = oack.iter().map(|(n, v)| (*n, v.to_string())).collect();
            assert_eq!(got.oack, want, "{asked:?}");
        }
    }
}
