//! `load`: fills an empty inventory through the API as an operator would: customer
//! tokens, switches (at addresses nothing answers on: the read benchmark never reaches
//! them), shelves enrolled on them, and Pis registered into every slot, given an owner
//! and commissioned (`ready`, so they take power actions). Every phase runs with many
//! requests in flight, spread over the controllers, and is timed.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::api::{Api, ApiError, Call};
use crate::fixture::{Customer, Fixture};

/// What to load.
#[derive(Debug, Clone)]
pub struct Plan {
    pub pis: usize,
    pub customers: usize,
    pub slots_per_shelf: u16,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Controller names to assign switches to, round-robin (`controller` of
    /// `POST /v1/switches`); empty: each switch goes to the controller that registers it.
    pub controllers: Vec<String>,
    /// Shelves enrolled at once (enrolment allocates addresses in one transaction; two at
    /// once may collide and are retried).
    pub enroll_concurrency: usize,
    /// Give every switch a layer-2 domain of its own (`l2_domain` of `POST /v1/switches`,
    /// the cluster API), so storage VLAN ids repeat across switches; otherwise they come
    /// from one range per controller (the default domain).
    pub l2_domain_per_switch: bool,
}

impl Plan {
    pub fn shelves(&self) -> usize {
        self.pis.div_ceil(usize::from(self.slots_per_shelf))
    }
}

/// How long one phase took.
#[derive(Debug, Clone)]
pub struct Phase {
    pub name: &'static str,
    pub items: usize,
    pub requests: usize,
    pub took: Duration,
}

/// The loaded inventory and the time each phase took.
pub struct Loaded {
    pub fixture: Fixture,
    pub phases: Vec<Phase>,
}

/// Runs `f` on every item with `workers` in flight, printing progress to stderr every
/// few seconds; the results come back in the items' order. The first error stops it.
pub async fn par_map<T, R, F, Fut>(
    label: &'static str,
    items: Vec<T>,
    workers: usize,
    f: F,
) -> Result<Vec<R>, ApiError>
where
    T: Clone + Send + Sync + 'static,
    R: Send + 'static,
    F: Fn(T) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<R, ApiError>> + Send + 'static,
{
    let total = items.len();
    let items = Arc::new(items);
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let progress = tokio::spawn({
        let done = done.clone();
        async move {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                let n = done.load(Ordering::Relaxed);
                let rate = n as f64 / start.elapsed().as_secs_f64();
                eprintln!("  {label}: {n}/{total} ({rate:.0}/s)");
            }
        }
    });
    let mut tasks = Vec::new();
    for _ in 0..workers.clamp(1, total.max(1)) {
        let (items, next, done, f) = (items.clone(), next.clone(), done.clone(), f.clone());
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(item) = items.get(i) else { return Ok::<_, ApiError>(out) };
                out.push((i, f(item.clone()).await?));
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let mut results: Vec<Option<R>> = (0..total).map(|_| None).collect();
    let mut first_err = None;
    for t in tasks {
        match t.await.expect("a loader task panicked") {
            Ok(part) => part.into_iter().for_each(|(i, r)| results[i] = Some(r)),
            Err(e) => {
                // Stop the others from taking more work; they finish what they hold.
                next.store(usize::MAX / 2, Ordering::Relaxed);
                first_err.get_or_insert(e);
            }
        }
    }
    progress.abort();
    match first_err {
        Some(e) => Err(e),
        None => Ok(results.into_iter().map(|r| r.expect("every item ran")).collect()),
    }
}

/// Customer names: `cust0001`, ...
fn customer_name(i: usize) -> String {
    format!("cust{i:04}")
}

/// Loads the inventory described by `plan`; `operator` is an operator token.
pub async fn load(api: &Api, operator: &str, plan: &Plan) -> Result<Loaded, ApiError> {
    let op: Arc<str> = operator.into();
    let mut phases = Vec::new();

    let t = Instant::now();
    let names: Vec<String> = (0..plan.customers).map(customer_name).collect();
    let tokens = par_map("customer tokens", names.clone(), plan.concurrency, {
        let (api, op) = (api.clone(), op.clone());
        move |name: String| {
            let (api, op) = (api.clone(), op.clone());
            async move {
                let body = json!({ "role": "customer", "customer": name, "label": "scale" });
                let v = api.json(&Call::post("/v1/tokens".into(), &op, body), &[201]).await?;
                Ok(v["token"].as_str().unwrap_or_default().to_string())
            }
        }
    })
    .await?;
    phases.push(Phase {
        name: "customer tokens",
        items: names.len(),
        requests: names.len(),
        took: t.elapsed(),
    });

    let t = Instant::now();
    let shelves: Vec<usize> = (0..plan.shelves()).collect();
    let slot_ids = par_map("switches + shelves", shelves.clone(), plan.enroll_concurrency, {
        let (api, op, plan) = (api.clone(), op.clone(), plan.clone());
        move |s: usize| enroll(api.clone(), op.clone(), plan.clone(), s)
    })
    .await?;
    let shelf_names: Vec<String> = shelves.iter().map(|s| shelf_name(*s)).collect();
    phases.push(Phase {
        name: "switches + shelves",
        items: shelves.len(),
        requests: 2 * shelves.len(),
        took: t.elapsed(),
    });

    let t = Instant::now();
    let slots: Vec<(usize, String)> =
        slot_ids.into_iter().flatten().take(plan.pis).enumerate().collect();
    let customers = plan.customers;
    let pis = par_map("Pis", slots, plan.concurrency, {
        let (api, op) = (api.clone(), op.clone());
        move |(i, slot): (usize, String)| register_pi(api.clone(), op.clone(), i, slot, customers)
    })
    .await?;
    phases.push(Phase {
        name: "Pis (create + commission)",
        items: pis.len(),
        requests: 2 * pis.len(),
        took: t.elapsed(),
    });

    let mut owned: Vec<Vec<String>> = vec![Vec::new(); plan.customers];
    for (i, id) in pis.into_iter().enumerate() {
        owned[i % plan.customers].push(id);
    }
    let customers = names
        .into_iter()
        .zip(tokens)
        .zip(owned)
        .map(|((name, token), pis)| Customer { name, token, pis })
        .collect();
    Ok(Loaded { fixture: Fixture { customers, shelves: shelf_names }, phases })
}

fn shelf_name(s: usize) -> String {
    format!("shelf{s:03}")
}

/// Registers switch `s` and enrolls its shelf; returns the shelf's slot ids in port
/// order. An enrolment that collided with another is retried.
async fn enroll(api: Api, op: Arc<str>, plan: Plan, s: usize) -> Result<Vec<String>, ApiError> {
    let switch = format!("sw{s:03}");
    let mut body = json!({
        "name": switch,
        // TEST-NET-1: nothing answers, and nothing should ask (no reconciler, no netboot).
        "address": format!("192.0.2.1:{}", 10_000 + s),
        "trunk_port": plan.slots_per_shelf + 1,
        "credentials": { "version": "v2c", "community": "public" },
    });
    if !plan.controllers.is_empty() {
        body["controller"] = Value::from(plan.controllers[s % plan.controllers.len()].clone());
    }
    if plan.l2_domain_per_switch {
        body["l2_domain"] = Value::from(format!("l2-{switch}"));
    }
    api.json(&Call::post("/v1/switches".into(), &op, body), &[201]).await?;
    let shelf = json!({ "name": shelf_name(s), "switch": switch, "first_port": 1, "last_port": plan.slots_per_shelf });
    let call = Call::post("/v1/shelves".into(), &op, shelf);
    let mut attempt = 0;
    let v = loop {
        match api.json(&call, &[201]).await {
            Err(e) if e.status() == Some(409) && attempt < 20 && is_enroll_race(&e) => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(20 * attempt)).await;
            }
            other => break other?,
        }
    };
    let mut slots: Vec<(u64, String)> = v["slots"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| (s["port"].as_u64().unwrap_or(0), s["id"].as_str().unwrap_or("").into()))
                .collect()
        })
        .unwrap_or_default();
    slots.sort();
    Ok(slots.into_iter().map(|(_, id)| id).collect())
}

fn is_enroll_race(e: &ApiError) -> bool {
    matches!(e, ApiError::Status { body, .. } if body.contains("enroll_conflict"))
}

/// Registers Pi `i` into `slot`, owned by customer `i % customers`, and commissions it.
async fn register_pi(
    api: Api,
    op: Arc<str>,
    i: usize,
    slot: String,
    customers: usize,
) -> Result<String, ApiError> {
    let n = i as u32;
    let body = json!({
        "serial": format!("{:08x}", 0x5ca1_0000u32.wrapping_add(n)),
        "mac": format!("02:5c:{:02x}:{:02x}:{:02x}:{:02x}", n >> 24, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff),
        "model": "4b",
        "slot": slot,
        "owner": customer_name(i % customers),
    });
    let pi = api.json(&Call::post("/v1/pis".into(), &op, body), &[201]).await?;
    let id = pi["id"].as_str().unwrap_or_default().to_string();
    let ready = Call::patch(format!("/v1/pis/{id}"), &op, json!({ "state": "ready" }));
    api.json(&ready, &[200]).await?;
    Ok(id)
}
