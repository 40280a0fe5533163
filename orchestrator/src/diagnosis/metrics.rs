//! `/metrics` for boot attempts: `bramble_boot_phase_seconds` (a histogram per model and
//! phase: power-on to DISCOVER, to the kernel read, to booted) and
//! `bramble_boot_diagnoses_total` (by kind). Kept in this controller's memory, counted
//! from the boot attempts its jobs diagnosed since it started.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::{Diagnosis, DiagnosisKind};
use crate::metrics::{Collector, Sample};

/// Bucket upper bounds, seconds: a Pi 3B boots in seconds, a real kernel with SSH in
/// about a minute, and waits end at the configured timeouts.
pub const BUCKETS: [f64; 12] =
    [0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 120.0, 300.0];

const PHASE_SECONDS: &str = "bramble_boot_phase_seconds";
const DIAGNOSES: &str = "bramble_boot_diagnoses_total";

/// The phases timed, by label.
const PHASES: [&str; 3] = ["discover", "kernel", "booted"];

#[derive(Debug, Default, Clone)]
struct Histogram {
    /// Per bucket (not cumulative); the last slot is +Inf.
    counts: [u64; BUCKETS.len() + 1],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, secs: f64) {
        let i = BUCKETS.iter().position(|b| secs <= *b).unwrap_or(BUCKETS.len());
        self.counts[i] += 1;
        self.sum += secs;
        self.count += 1;
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// (model, phase) → histogram.
    phases: BTreeMap<(String, &'static str), Histogram>,
    diagnoses: BTreeMap<&'static str, u64>,
}

/// The registry's view of boot attempts.
#[derive(Debug, Default)]
pub struct BootMetrics {
    inner: Mutex<Inner>,
}

impl BootMetrics {
    /// Counts one diagnosed attempt of a Pi of `model`.
    pub fn record(&self, model: &str, d: &Diagnosis) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        *inner.diagnoses.entry(d.kind.as_str()).or_insert(0) += 1;
        let p = d.phases;
        for (phase, ms) in PHASES.iter().zip([p.discover_ms, p.kernel_ms, p.booted_ms]) {
            if let Some(ms) = ms {
                inner
                    .phases
                    .entry((model.to_string(), *phase))
                    .or_default()
                    .observe(ms as f64 / 1000.0);
            }
        }
    }
}

impl Collector for BootMetrics {
    fn describe(&self) -> Vec<(&'static str, &'static str, &'static str)> {
        vec![
            (
                PHASE_SECONDS,
                "histogram",
                "Seconds from a job's power-on to the Pi's first DHCP DISCOVER (phase=discover), its kernel read (kernel) and booted (booted), by model",
            ),
            (DIAGNOSES, "counter", "Boot attempts diagnosed by jobs, by diagnosis"),
        ]
    }

    fn collect(&self) -> Vec<Sample> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        for kind in DiagnosisKind::ALL {
            let n = inner.diagnoses.get(kind.as_str()).copied().unwrap_or(0);
            out.push(Sample::new(DIAGNOSES, n as f64).label("kind", kind.as_str()));
        }
        for ((model, phase), h) in &inner.phases {
            let mut cumulative = 0;
            for (i, count) in h.counts.iter().enumerate() {
                cumulative += count;
                let le = BUCKETS.get(i).map_or_else(|| "+Inf".to_string(), |b| b.to_string());
                out.push(
                    Sample::new(&format!("{PHASE_SECONDS}_bucket"), cumulative as f64)
                        .label("model", model)
                        .label("phase", phase)
                        .label("le", &le),
                );
            }
            out.push(
                Sample::new(&format!("{PHASE_SECONDS}_sum"), h.sum)
                    .label("model", model)
                    .label("phase", phase),
            );
            out.push(
                Sample::new(&format!("{PHASE_SECONDS}_count"), h.count as f64)
                    .label("model", model)
                    .label("phase", phase),
            );
        }
        out
    }
}
