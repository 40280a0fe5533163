//! The control panel's requests the benchmark sends, and the closed-loop clients that
//! send them: each client sends one request, waits for the whole answer, and sends the
//! next, for a fixed time; latency is measured per request from send to body read.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::api::{Api, Call};
use crate::fixture::Fixture;
use crate::stats::Samples;

/// One kind of request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scenario {
    /// A customer listing their Pis (`GET /v1/pis`, their token).
    List,
    /// A customer getting one of their Pis.
    Get,
    /// A customer reading one Pi's latest events (`?limit=20`, newest first).
    Events,
    /// An operator reading a shelf's status.
    Status,
    /// An operator listing one shelf's Pis (`?shelf=&limit=100`).
    ShelfPis,
    /// A customer rebooting one of their Pis, with an Idempotency-Key; each Pi at most
    /// once per run (a second reboot of a Pi whose first is still running is a 409), so
    /// the phase ends early when every Pi got one.
    Reboot,
}

impl Scenario {
    pub const ALL: [Scenario; 6] = [
        Scenario::List,
        Scenario::Get,
        Scenario::Events,
        Scenario::Status,
        Scenario::ShelfPis,
        Scenario::Reboot,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::List => "list",
            Scenario::Get => "get",
            Scenario::Events => "events",
            Scenario::Status => "status",
            Scenario::ShelfPis => "shelf-pis",
            Scenario::Reboot => "reboot",
        }
    }

    /// What the row says the request is.
    pub fn describe(self) -> &'static str {
        match self {
            Scenario::List => "a customer listing their Pis",
            Scenario::Get => "getting a Pi",
            Scenario::Events => "a Pi's latest events (limit 20)",
            Scenario::Status => "a shelf's status",
            Scenario::ShelfPis => "an operator listing one shelf's Pis (limit 100)",
            Scenario::Reboot => "submitting a reboot (Idempotency-Key)",
        }
    }

    /// Statuses that count as success.
    pub fn ok(self) -> &'static [u16] {
        match self {
            Scenario::Reboot => &[202],
            _ => &[200],
        }
    }
}

impl FromStr for Scenario {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Scenario::ALL.into_iter().find(|c| c.name() == s).ok_or_else(|| {
            let names: Vec<_> = Scenario::ALL.iter().map(|c| c.name()).collect();
            format!("unknown scenario {s:?}; one of {}", names.join(", "))
        })
    }
}

/// Builds requests from the fixture.
pub struct Requests {
    /// (customer token, their Pi ids) for customers owning at least one Pi.
    owners: Vec<(Arc<str>, Vec<String>)>,
    /// Every Pi with its owner's token, in reboot order (spread over shelves).
    reboot_order: Vec<(String, Arc<str>)>,
    shelves: Vec<String>,
    operator: Arc<str>,
    next_reboot: AtomicUsize,
    /// Makes this run's idempotency keys differ from an earlier run's.
    run_id: u128,
}

impl Requests {
    pub fn new(fixture: &Fixture, operator: &str) -> Requests {
        let owners: Vec<(Arc<str>, Vec<String>)> = fixture
            .customers
            .iter()
            .filter(|c| !c.pis.is_empty())
            .map(|c| (Arc::from(c.token.as_str()), c.pis.clone()))
            .collect();
        // Round-robin over customers: the k-th Pi of every customer before any k+1-th,
        // which (customers owning Pi i mod C) spreads consecutive reboots over shelves.
        let mut reboot_order = Vec::new();
        let most = owners.iter().map(|(_, p)| p.len()).max().unwrap_or(0);
        for k in 0..most {
            for (token, pis) in &owners {
                if let Some(pi) = pis.get(k) {
                    reboot_order.push((pi.clone(), token.clone()));
                }
            }
        }
        let run_id = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        Requests {
            owners,
            reboot_order,
            shelves: fixture.shelves.clone(),
            operator: operator.into(),
            next_reboot: AtomicUsize::new(0),
            run_id,
        }
    }

    /// The next request of `scenario`, chosen with `rng`; `None` once every Pi was
    /// asked to reboot.
    pub fn build(&self, scenario: Scenario, rng: &mut Rng) -> Option<Call> {
        let (token, pis) = &self.owners[rng.below(self.owners.len())];
        let pi = &pis[rng.below(pis.len())];
        let shelf = &self.shelves[rng.below(self.shelves.len())];
        Some(match scenario {
            Scenario::List => Call::get("/v1/pis".into(), token),
            Scenario::Get => Call::get(format!("/v1/pis/{pi}"), token),
            Scenario::Events => Call::get(format!("/v1/pis/{pi}/events?limit=20"), token),
            Scenario::Status => Call::get(format!("/v1/shelves/{shelf}/status"), &self.operator),
            Scenario::ShelfPis => {
                Call::get(format!("/v1/pis?shelf={shelf}&limit=100"), &self.operator)
            }
            Scenario::Reboot => {
                let n = self.next_reboot.fetch_add(1, Ordering::Relaxed);
                let (pi, token) = self.reboot_order.get(n)?;
                let mut call =
                    Call::post(format!("/v1/pis/{pi}/reboot"), token, serde_json::json!({}));
                call.idempotency_key = Some(format!("scale-{}-{n}", self.run_id));
                call
            }
        })
    }
}

/// splitmix64: enough randomness to pick customers and Pis, no dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) % n.max(1) as u64) as usize
    }
}

/// How long to send for, and with how many clients.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    pub clients: usize,
    pub warmup: Duration,
    pub duration: Duration,
}

/// Runs `load.clients` closed-loop clients sending `mix` in turn (each client starts at
/// a different place in it) for the warm-up, which is not recorded, and then the
/// duration, or until a scenario runs out of requests. Returns the samples per scenario
/// and the recorded span (from the end of the warm-up to the last answer).
pub async fn drive(
    api: &Api,
    requests: Arc<Requests>,
    mix: &[Scenario],
    load: Load,
) -> (BTreeMap<Scenario, Samples>, Duration) {
    let start = Instant::now();
    let record_from = start + load.warmup;
    let end = record_from + load.duration;
    let mut tasks = Vec::new();
    for c in 0..load.clients {
        let (api, requests, mix) = (api.clone(), requests.clone(), mix.to_vec());
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng::new(0x5ca1e ^ (c as u64).wrapping_mul(0x9e37_79b9));
            let mut seen: BTreeMap<Scenario, Samples> = BTreeMap::new();
            let mut last = record_from;
            for i in c.. {
                let now = Instant::now();
                if now >= end {
                    break;
                }
                let scenario = mix[i % mix.len()];
                let Some(call) = requests.build(scenario, &mut rng) else { break };
                let answer = api.send(&call).await;
                if now < record_from {
                    continue;
                }
                last = Instant::now();
                let s = seen.entry(scenario).or_default();
                match answer {
                    Ok(a) => s.record(a.status, a.elapsed),
                    Err(_) => s.record_io_error(),
                }
            }
            (seen, last)
        }));
    }
    let mut all: BTreeMap<Scenario, Samples> = BTreeMap::new();
    let mut last = record_from;
    for t in tasks {
        let (seen, client_last) = t.await.expect("a client task panicked");
        last = last.max(client_last);
        for (k, s) in seen {
            all.entry(k).or_default().merge(s);
        }
    }
    (all, last.saturating_duration_since(record_from))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::Customer;

    fn fixture() -> Fixture {
        let c = |name: &str, pis: &[&str]| Customer {
            name: name.into(),
            token: format!("tok-{name}"),
            pis: pis.iter().map(|p| p.to_string()).collect(),
        };
        Fixture {
            customers: vec![c("a", &["p1", "p3"]), c("b", &["p2"]), c("idle", &[])],
            shelves: vec!["s0".into()],
        }
    }

    #[test]
    fn reboots_go_round_the_customers_once_with_fresh_keys() {
        let r = Requests::new(&fixture(), "op");
        let mut rng = Rng::new(1);
        let calls: Vec<Call> = (0..3).filter_map(|_| r.build(Scenario::Reboot, &mut rng)).collect();
        let paths: Vec<&str> = calls.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(paths, ["/v1/pis/p1/reboot", "/v1/pis/p2/reboot", "/v1/pis/p3/reboot"]);
        assert_eq!(&*calls[1].token, "tok-b");
        let keys: std::collections::BTreeSet<_> =
            calls.iter().map(|c| c.idempotency_key.clone().unwrap()).collect();
        assert_eq!(keys.len(), 3);
        assert!(r.build(Scenario::Reboot, &mut rng).is_none(), "every Pi was asked once");
    }

    #[test]
    fn customers_read_only_their_own_pis() {
        let r = Requests::new(&fixture(), "op");
        let mut rng = Rng::new(7);
        for _ in 0..50 {
            let call = r.build(Scenario::Get, &mut rng).unwrap();
            let pi = call.path.rsplit('/').next().unwrap();
            let want = if pi == "p2" { "tok-b" } else { "tok-a" };
            assert_eq!(&*call.token, want, "{}", call.path);
        }
        assert_eq!(&*r.build(Scenario::Status, &mut rng).unwrap().token, "op");
    }

    #[test]
    fn scenario_names_parse_back() {
        for s in Scenario::ALL {
            assert_eq!(s.name().parse::<Scenario>(), Ok(s));
        }
        assert!("nope".parse::<Scenario>().is_err());
    }
}
