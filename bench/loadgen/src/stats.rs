//! Latency and status bookkeeping: every sample kept (microseconds), sorted once at the
//! end for exact percentiles, and answers counted by status.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// What one scenario saw.
#[derive(Debug, Default, Clone)]
pub struct Samples {
    /// Latency of every answered request, in microseconds (errors included: a slow 500
    /// is still slow).
    micros: Vec<u64>,
    /// Answers by status; `io` for requests that got no answer.
    statuses: BTreeMap<String, u64>,
}

impl Samples {
    pub fn record(&mut self, status: u16, elapsed: Duration) {
        self.micros.push(elapsed.as_micros() as u64);
        *self.statuses.entry(status.to_string()).or_default() += 1;
    }

    pub fn record_io_error(&mut self) {
        *self.statuses.entry("io".into()).or_default() += 1;
    }

    pub fn merge(&mut self, other: Samples) {
        self.micros.extend(other.micros);
        for (k, n) in other.statuses {
            *self.statuses.entry(k).or_default() += n;
        }
    }

    /// The summary, given the statuses that count as success and the measured span.
    pub fn summary(mut self, ok: &[u16], span: Duration) -> Summary {
        self.micros.sort_unstable();
        let requests: u64 = self.statuses.values().sum();
        let ok_names: Vec<String> = ok.iter().map(u16::to_string).collect();
        let errors: BTreeMap<String, u64> =
            self.statuses.into_iter().filter(|(k, _)| !ok_names.contains(k)).collect();
        Summary {
            requests,
            per_second: requests as f64 / span.as_secs_f64().max(1e-9),
            p50: percentile(&self.micros, 50.0),
            p99: percentile(&self.micros, 99.0),
            max: self.micros.last().copied(),
            errors,
        }
    }
}

/// The nearest-rank percentile `p` (0-100) of sorted `v`, in microseconds.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// One scenario's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub requests: u64,
    pub per_second: f64,
    pub p50: Option<u64>,
    pub p99: Option<u64>,
    pub max: Option<u64>,
    /// Non-success answers by status (`io`: no answer).
    pub errors: BTreeMap<String, u64>,
}

/// Microseconds as milliseconds with a precision that suits the size.
pub struct Ms(pub Option<u64>);

impl fmt::Display for Ms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("-"),
            Some(us) if us < 10_000 => write!(f, "{:.2} ms", us as f64 / 1000.0),
            Some(us) => write!(f, "{:.1} ms", us as f64 / 1000.0),
        }
    }
}

impl Summary {
    /// `| p50 | p99 | max | requests | req/s | errors |`, the end of a Markdown row.
    pub fn cells(&self) -> String {
        let errors = if self.errors.is_empty() {
            "0".to_string()
        } else {
            self.errors.iter().map(|(k, n)| format!("{n} x {k}")).collect::<Vec<_>>().join(", ")
        };
        format!(
            "{} | {} | {} | {} | {:.0} | {errors} |",
            Ms(self.p50),
            Ms(self.p99),
            Ms(self.max),
            self.requests,
            self.per_second
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=100).collect();
        let cases = [(50.0, 50), (99.0, 99), (100.0, 100), (0.0, 1), (99.5, 100)];
        for (p, want) in cases {
            assert_eq!(percentile(&v, p), Some(want), "p{p}");
        }
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[7], 99.0), Some(7));
    }

    #[test]
    fn summary_counts_errors_by_status_and_keeps_their_latency() {
        let mut s = Samples::default();
        s.record(200, Duration::from_millis(2));
        s.record(200, Duration::from_millis(4));
        s.record(409, Duration::from_millis(30));
        s.record_io_error();
        let sum = s.summary(&[200], Duration::from_secs(2));
        assert_eq!(sum.requests, 4);
        assert_eq!(sum.per_second, 2.0);
        assert_eq!(sum.max, Some(30_000));
        assert_eq!(sum.p50, Some(4_000));
        let errors: Vec<_> = sum.errors.iter().map(|(k, n)| (k.as_str(), *n)).collect();
        assert_eq!(errors, [("409", 1), ("io", 1)]);
        assert!(sum.cells().contains("1 x 409, 1 x io"), "{}", sum.cells());
    }

    #[test]
    fn milliseconds_print_with_a_sensible_precision() {
        assert_eq!(Ms(Some(1_234)).to_string(), "1.23 ms");
        assert_eq!(Ms(Some(25_460)).to_string(), "25.5 ms");
        assert_eq!(Ms(None).to_string(), "-");
    }
}
