//! Prometheus metrics in the text exposition format.
//!
//! Counters are plain atomics registered by name; [`Collector`]s add samples computed
//! at scrape time (inventory gauges, the netboot servers' counters). No global state:
//! the registry lives in the application state.

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A sample to expose: a metric name, its labels, and a value.
#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    pub fn new(name: &str, value: f64) -> Self {
        Sample { name: name.to_string(), labels: Vec::new(), value }
    }

    pub fn label(mut self, k: &str, v: &str) -> Self {
        self.labels.push((k.to_string(), v.to_string()));
        self
    }
}

/// Something that produces samples at scrape time.
pub trait Collector: Send + Sync {
    /// (metric name, type, help) for each family it produces.
    fn describe(&self) -> Vec<(&'static str, &'static str, &'static str)>;
    fn collect(&self) -> Vec<Sample>;
}

#[derive(Default)]
pub struct Metrics {
    counters: std::sync::RwLock<Vec<(&'static str, &'static str, Arc<AtomicU64>)>>,
    collectors: std::sync::RwLock<Vec<Arc<dyn Collector>>>,
}

impl Metrics {
    /// Registers (or returns the existing) counter `name`.
    pub fn counter(&self, name: &'static str, help: &'static str) -> Arc<AtomicU64> {
        let mut cs = self.counters.write().unwrap_or_else(|e| e.into_inner());
        if let Some((_, _, c)) = cs.iter().find(|(n, _, _)| *n == name) {
            return c.clone();
        }
        let c = Arc::new(AtomicU64::new(0));
        cs.push((name, help, c.clone()));
        c
    }

    pub fn add_collector(&self, c: Arc<dyn Collector>) {
        self.collectors.write().unwrap_or_else(|e| e.into_inner()).push(c);
    }

    /// Renders everything, with `extra` samples (computed by the caller, e.g. from the
    /// database) appended as gauges.
    pub fn render(&self, extra: &[(&'static str, &'static str, Vec<Sample>)]) -> String {
        let mut out = String::new();
        for (name, help, c) in self.counters.read().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                c.load(Ordering::Relaxed)
            );
        }
        for c in self.collectors.read().unwrap_or_else(|e| e.into_inner()).iter() {
            let samples = c.collect();
            for (name, kind, help) in c.describe() {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
                for s in samples.iter().filter(|s| in_family(&s.name, name, kind)) {
                    write_sample(&mut out, s);
                }
            }
        }
        for (name, help, samples) in extra {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            for s in samples {
                write_sample(&mut out, s);
            }
        }
        out
    }
}

/// Whether a sample belongs to family `name`: its own name, or for a histogram its
/// `_bucket`, `_sum` and `_count` series.
fn in_family(sample: &str, name: &str, kind: &str) -> bool {
    sample == name
        || (kind == "histogram"
            && sample
                .strip_prefix(name)
                .is_some_and(|rest| matches!(rest, "_bucket" | "_sum" | "_count")))
}

fn write_sample(out: &mut String, s: &Sample) {
    if s.labels.is_empty() {
        let _ = writeln!(out, "{} {}", s.name, s.value);
    } else {
        let labels: Vec<String> =
            s.labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
        let _ = writeln!(out, "{}{{{}}} {}", s.name, labels.join(","), s.value);
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_labelled_gauges() {
        let m = Metrics::default();
        m.counter("bramble_x_total", "X things").fetch_add(3, Ordering::Relaxed);
        let text = m.render(&[(
            "bramble_pis",
            "Pis by state",
            vec![Sample::new("bramble_pis", 2.0).label("state", "re\"ady")],
        )]);
        assert!(text.contains("# TYPE bramble_x_total counter\nbramble_x_total 3\n"), "{text}");
        assert!(text.contains("bramble_pis{state=\"re\\\"ady\"} 2\n"), "{text}");
    }
}
