//! Job-throughput benchmark (`bench/scale.sh`): reboots through the API against a
//! virtual shelf (`bramble::lab::Lab`: the controller with its DHCP and TFTP, the
//! virtual PoE switch, nfs-ganesha and simulated Pis), in waves: every Pi of the shelf
//! rebooted at once, wave after wave, until `--jobs` reboots ran. Prints one Markdown
//! row with the wall time and the bookkeeping the controller adds beyond the hardware's
//! own time.
//!
//! Per wave, the hardware's own time is the slowest Pi's: the settle delay the reboot
//! must keep the port off, plus, from the simulated Pi's own timeline, its power-on to
//! its TFTP request for the kernel (the boot evidence the job waits for). The wave's
//! wall time runs from the first reboot submitted to the last job's `finished_at`.
//! Bookkeeping per job = Σ (wall − hardware) over the waves / jobs. Each job's own
//! excess (its `finished_at` − its submit − its Pi's hardware time) is shown too.
//!
//! `cargo run --release -p bramble --example jobstorm -- --pis 96 --jobs 1000`
//! Options: `--pis N` (96, at most 96), `--jobs J` (1000), `--settle-ms S` (200),
//! `--database URL` (an empty PostgreSQL database; default SQLite), `--label TEXT`,
//! `--header`. Needs root; its namespaces and links are named `bjlab*`.

mod common;

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bramble::jobs::model::JobState;
use bramble::lab::{Lab, LabOptions};
use bramble::model::{Event as ApiEvent, Job, Pi};
use bramble_lab::pisim::{Event, PiState, PiStatus};
use common::BoxError;

struct Args {
    pis: u16,
    jobs: usize,
    settle_ms: u64,
    database: Option<String>,
    label: String,
    header: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        pis: 96,
        jobs: 1000,
        settle_ms: 200,
        database: None,
        label: "1 x SQLite".into(),
        header: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--header" {
            a.header = true;
            continue;
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let num = || value.parse::<u64>().map_err(|_| format!("{flag}: {value:?} is not a number"));
        match flag.as_str() {
            "--pis" => a.pis = u16::try_from(num()?).map_err(|_| "--pis: too many".to_string())?,
            "--jobs" => a.jobs = num()? as usize,
            "--settle-ms" => a.settle_ms = num()?,
            "--database" => a.database = Some(value),
            "--label" => a.label = value,
            other => return Err(format!("unknown option {other}")),
        }
    }
    if a.pis == 0 || a.pis > 96 {
        return Err(format!("--pis: {} is not 1 to 96", a.pis));
    }
    Ok(a)
}

fn millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// The Pi's last power cycle from its own clock: when it was powered and when it asked
/// for its kernel over TFTP (the boot evidence the job waits for). `None` if the
/// timeline shows no such boot.
fn own_boot(status: &PiStatus) -> Option<(SystemTime, SystemTime)> {
    let on = status.timeline.iter().rposition(|e| e.event == Event::PowerOn)?;
    let kernel = status.timeline[on..].iter().find(|e| match &e.event {
        Event::TftpRequest { file } => {
            let name = file.rsplit('/').next().unwrap_or(file);
            (name.starts_with("kernel") && name.ends_with(".img")) || name == "Image"
        }
        _ => false,
    })?;
    Some((status.timeline[on].at, kernel.at))
}

/// Whether the Pi's last boot sent more than one DISCOVER in a DHCP stage (an answer
/// came late or not at all): its own time then includes the ROM's retry interval.
fn retried_dhcp(status: &PiStatus) -> bool {
    let on = status.timeline.iter().rposition(|e| e.event == Event::PowerOn).unwrap_or(0);
    status.timeline[on..]
        .iter()
        .any(|e| matches!(e.event, Event::DhcpDiscover { attempt } if attempt > 1))
}

/// A reboot's milestones, from its own events (controller clock).
const MILESTONES: [&str; 5] =
    ["job.started", "power.off", "power.on", "pi.booted", "job.succeeded"];

/// Each milestone of `job` on `pi`, in ms after `submitted` (not timed: read after the
/// wave).
async fn milestones(
    lab: &Lab,
    pi: &str,
    job: &str,
    submitted: i64,
) -> Result<Vec<Option<i64>>, BoxError> {
    let page = lab
        .call(reqwest::Method::GET, &format!("/v1/events?pi={pi}&limit=200"), None, &[200])
        .await?;
    let events: Vec<ApiEvent> = serde_json::from_value(page["items"].clone())?;
    let ours = |kind: &str| {
        events
            .iter()
            .filter(|e| e.kind == kind && e.job.as_ref().is_some_and(|j| j.to_string() == job))
            .map(|e| e.at - submitted)
            .min()
    };
    Ok(MILESTONES.iter().map(|k| ours(k)).collect())
}

/// One reboot: what was asked and when, and how long the POST took.
struct Submitted {
    pi: String,
    port: u16,
    job: String,
    at: SystemTime,
    latency: Duration,
}

/// What one wave measured.
#[derive(Default)]
struct Wave {
    jobs: usize,
    failed: usize,
    /// Pis whose boot needed a second DISCOVER.
    retried: usize,
    wall: Duration,
    hardware: Duration,
    /// Per job: finished − submitted − its Pi's hardware time, in ms.
    excess_ms: Vec<i64>,
    submit_ms: Vec<f64>,
    /// Per job: [`MILESTONES`], then the Pi's power-on and kernel request by its own
    /// clock, in ms after its submit.
    milestones: Vec<Vec<Option<i64>>>,
    /// Per job: its Pi's own boot (power-on to kernel request), in ms.
    own_boot_ms: Vec<i64>,
}

async fn submit(lab: &Lab, pis: &[Pi], n: usize, tag: usize) -> Result<Vec<Submitted>, BoxError> {
    let http = bramble::tls::client::http();
    let mut set = tokio::task::JoinSet::new();
    for (i, pi) in pis.iter().take(n).enumerate() {
        let req = http
            .post(format!("{}/v1/pis/{}/reboot", lab.api, pi.id))
            .bearer_auth(&lab.token)
            .header("Idempotency-Key", format!("jobstorm-{tag}-{i}"));
        let port = pi.port.ok_or("a racked Pi without a port")?;
        set.spawn(async move {
            let at = SystemTime::now();
            let start = Instant::now();
            let resp = req.send().await.map_err(|e| e.to_string())?;
            let latency = start.elapsed();
            let status = resp.status().as_u16();
            let job: Job = resp.json().await.map_err(|e| format!("reboot answer: {e}"))?;
            if status != 202 {
                return Err(format!("reboot: HTTP {status}"));
            }
            Ok(Submitted {
                pi: job.pi.map(|p| p.to_string()).unwrap_or_default(),
                port,
                job: job.id.to_string(),
                at,
                latency,
            })
        });
    }
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        out.push(r??);
    }
    Ok(out)
}

/// Polls the job list (one request per 250 ms, so the waiting adds little load) until
/// every job of the wave ended; returns them.
async fn wait_jobs(lab: &Lab, ids: &[String]) -> Result<Vec<Job>, BoxError> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let page = lab.call(reqwest::Method::GET, "/v1/jobs?limit=500", None, &[200]).await?;
        let jobs: Vec<Job> = serde_json::from_value(page["items"].clone())?;
        let ours: Vec<Job> = jobs.into_iter().filter(|j| ids.contains(&j.id.to_string())).collect();
        if ours.len() == ids.len() && ours.iter().all(|j| !j.state.is_active()) {
            return Ok(ours);
        }
        if Instant::now() > deadline {
            return Err("the wave's jobs did not end within 600 s".into());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn wave(
    lab: &Lab,
    pis: &[Pi],
    n: usize,
    tag: usize,
    settle: Duration,
) -> Result<Wave, BoxError> {
    let started = SystemTime::now();
    let submitted = submit(lab, pis, n, tag).await?;
    let ids: Vec<String> = submitted.iter().map(|s| s.job.clone()).collect();
    let jobs = wait_jobs(lab, &ids).await?;
    let mut w = Wave { jobs: n, ..Wave::default() };
    let mut last_finish = millis(started);
    for s in &submitted {
        w.submit_ms.push(s.latency.as_secs_f64() * 1000.0);
        let job = jobs.iter().find(|j| j.id.to_string() == s.job).ok_or("a job went missing")?;
        if job.state != JobState::Succeeded {
            w.failed += 1;
            eprintln!("job {} on port {}: {} {:?}", job.id, s.port, job.state, job.last_error);
            continue;
        }
        let finished = job.finished_at.ok_or("an ended job without finished_at")?;
        last_finish = last_finish.max(finished);
        let sim = lab.cabling.sim(s.port).ok_or("no simulated Pi in a port")?;
        let status = sim.status();
        let (powered, kernel) =
            own_boot(&status).ok_or("a rebooted Pi without a kernel request")?;
        let boot = kernel.duration_since(powered).unwrap_or_default();
        w.retried += usize::from(retried_dhcp(&status));
        let hardware = settle + boot;
        w.hardware = w.hardware.max(hardware);
        w.excess_ms.push(finished - millis(s.at) - hardware.as_millis() as i64);
        w.own_boot_ms.push(boot.as_millis() as i64);
        let mut m = milestones(lab, &s.pi, &s.job, millis(s.at)).await?;
        m.push(Some(millis(powered) - millis(s.at)));
        m.push(Some(millis(kernel) - millis(s.at)));
        w.milestones.push(m);
    }
    w.wall = Duration::from_millis((last_finish - millis(started)).max(0) as u64);
    // Not timed: every Pi finishes booting (its NFS root check) before the next wave.
    for s in &submitted {
        if let Some(sim) = lab.cabling.sim(s.port) {
            sim.wait_for(Duration::from_secs(60), |st| *st == PiState::Booted).await;
        }
    }
    Ok(w)
}

fn percentile<T: Copy + PartialOrd>(v: &mut [T], p: f64) -> Option<T> {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v.get(rank.clamp(1, v.len().max(1)) - 1).copied()
}

async fn measure(lab: &Lab, args: &Args) -> Result<(), BoxError> {
    common::rack_and_deploy(lab, args.pis).await?;
    let mut pis = lab.pis().await?;
    pis.sort_by_key(|p| p.port);
    let settle = Duration::from_millis(args.settle_ms);
    let (mut done, mut waves) = (0, Vec::new());
    while done < args.jobs {
        let n = (args.jobs - done).min(pis.len());
        let w = wave(lab, &pis, n, waves.len(), settle).await?;
        eprintln!(
            "wave {}: {n} reboots, wall {:.2} s, hardware {:.2} s, {} Pis retried DHCP, load {}",
            waves.len() + 1,
            w.wall.as_secs_f64(),
            w.hardware.as_secs_f64(),
            w.retried,
            std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim()
        );
        done += n;
        waves.push(w);
    }
    let jobs: usize = waves.iter().map(|w| w.jobs).sum();
    let failed: usize = waves.iter().map(|w| w.failed).sum();
    let retried: usize = waves.iter().map(|w| w.retried).sum();
    let wall: Duration = waves.iter().map(|w| w.wall).sum();
    let hardware: Duration = waves.iter().map(|w| w.hardware).sum();
    let mut excess: Vec<i64> = waves.iter().flat_map(|w| w.excess_ms.clone()).collect();
    let mut submits: Vec<f64> = waves.iter().flat_map(|w| w.submit_ms.clone()).collect();
    let per_job = (wall.as_secs_f64() - hardware.as_secs_f64()) * 1000.0 / jobs as f64;
    if args.header {
        println!(
            "| setup | reboots | waves | failed | DHCP retried | wall | hardware (Σ slowest Pi per wave) | bookkeeping per job | job's own excess p50 / p99 | submit p50 / p99 | jobs/s | load (1 min) |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    }
    let opt = |v: Option<f64>| v.map_or("-".into(), |x| format!("{x:.0}"));
    println!(
        "| {} | {jobs} | {} | {failed} | {retried} | {:.1} s | {:.1} s | {per_job:.2} ms | {} / {} ms | {} / {} ms | {:.1} | {} |",
        args.label,
        waves.len(),
        wall.as_secs_f64(),
        hardware.as_secs_f64(),
        opt(percentile(&mut excess, 50.0).map(|x| x as f64)),
        opt(percentile(&mut excess, 99.0).map(|x| x as f64)),
        opt(percentile(&mut submits, 50.0)),
        opt(percentile(&mut submits, 99.0)),
        jobs as f64 / wall.as_secs_f64(),
        std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|s| s.split_whitespace().next().map(str::to_string))
            .unwrap_or_default(),
    );
    let names =
        MILESTONES.iter().chain(&["Pi powered (its clock)", "kernel requested (its clock)"]);
    let mut parts: Vec<String> = names
        .enumerate()
        .map(|(i, name)| {
            let mut v: Vec<i64> =
                waves.iter().flat_map(|w| w.milestones.iter().filter_map(|m| m[i])).collect();
            format!("{name} {} ms", opt(percentile(&mut v, 50.0).map(|x| x as f64)))
        })
        .collect();
    let mut own: Vec<i64> = waves.iter().flat_map(|w| w.own_boot_ms.clone()).collect();
    parts.push(format!(
        "the Pi's own boot {} ms",
        opt(percentile(&mut own, 50.0).map(|x| x as f64))
    ));
    println!("\n{}: p50 after submit: {}", args.label, parts.join(", "));
    Ok(())
}

async fn run(args: Args, state_dir: &Path) -> Result<(), BoxError> {
    let mut opts = LabOptions::new(args.pis, state_dir);
    opts.prefix = "bjlab".into();
    opts.shelf = "jobs".into();
    opts.listen = "127.0.0.1:0".parse()?;
    opts.storage_supernet = "10.110.0.0/16".into();
    opts.database = args.database.clone();
    opts.jobs_toml = format!(
        "lease_seconds = 5\npoll_interval_ms = 100\nrack_group_size = 8\nrack_group_pause_ms = 2000\n\
         rack_await_seconds = 300\nsettle_ms = {}\nboot_timeout_seconds = 120\nmax_parallel = {}\n",
        args.settle_ms, args.pis
    );
    opts.deploy = None;
    let lab = common::lab_up(opts).await?;
    let result = measure(&lab, &args).await;
    lab.down().await;
    result
}

fn main() -> ExitCode {
    common::main_with("jobstorm", "bramble-jobstorm-bjlab", parse_args(), |args, dir| async move {
        run(args, &dir).await
    })
}
