//! What the lab benchmarks (`bootstorm`, `jobstorm`) share: bringing a virtual shelf to
//! the state they measure from, racked and with every Pi deployed and booted.

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bramble::jobs::model::JobState;
use bramble::lab::{LAB_IMAGES, Lab, LabOptions};
use bramble_lab::pisim::PiState;

pub type BoxError = Box<dyn std::error::Error>;

/// Waits until the controller's netboot serves a storage link (and so a Pi namespace)
/// for every slot, and no new one appeared for a few seconds. Racking before that makes
/// the rack job's interface sync run beside netboot's own refresh pass, and the two race
/// in `VethLinks::ensure` on the same VLAN (one deletes the other's namespace: a Pi stays
/// dark). The storms measure booting, not racking, so the example sidesteps it.
async fn wait_storage_links(prefix: &str, pis: u16) -> Result<(), BoxError> {
    let count = || -> usize {
        let out = std::process::Command::new("ip").args(["netns", "list"]).output();
        let text = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
        text.lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|ns| {
                ns.strip_prefix(prefix)
                    .and_then(|r| r.strip_suffix("pi"))
                    .is_some_and(|vid| !vid.is_empty() && vid.chars().all(|c| c.is_ascii_digit()))
            })
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut stable_since: Option<(usize, Instant)> = None;
    loop {
        let n = count();
        stable_since = match stable_since {
            Some((m, since)) if m == n => Some((m, since)),
            _ => Some((n, Instant::now())),
        };
        if let Some((m, since)) = stable_since
            && m >= usize::from(pis)
            && since.elapsed() >= Duration::from_secs(6)
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("only {n} of {pis} storage links after 300 s").into());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Racks the shelf, deploys the first lab image to every Pi and waits until all booted.
pub async fn rack_and_deploy(lab: &Lab, pis: u16) -> Result<(), BoxError> {
    let t = Instant::now();
    wait_storage_links(&lab.opts.prefix, pis).await?;
    eprintln!("{pis} storage links served in {:.1} s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let job = lab.rack(Duration::from_secs(900)).await?;
    if job.state != JobState::Succeeded {
        return Err(format!("rack job did not succeed: {job:?}").into());
    }
    eprintln!("racked {pis} Pis in {:.1} s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let jobs = lab.deploy_all(LAB_IMAGES[0].0).await?;
    if jobs.len() != usize::from(pis) {
        return Err(format!("{} of {pis} Pis were ready to deploy", jobs.len()).into());
    }
    for job in &jobs {
        let done = lab.wait_job(job.id.as_str(), Duration::from_secs(900)).await?;
        if done.state != JobState::Succeeded {
            return Err(format!("deploy job did not succeed: {done:?}").into());
        }
    }
    for port in 1..=pis {
        let sim = lab.cabling.sim(port).ok_or_else(|| format!("no simulated Pi in port {port}"))?;
        let state = sim.wait_for(Duration::from_secs(60), |s| *s == PiState::Booted).await;
        if state != PiState::Booted {
            return Err(format!("Pi in port {port} is {state} after its deploy").into());
        }
    }
    eprintln!("deployed {} to {pis} Pis in {:.1} s", LAB_IMAGES[0].0, t.elapsed().as_secs_f64());
    Ok(())
}

/// Brings the lab up, saying how long it took; the error names its cause.
pub async fn lab_up(opts: LabOptions) -> Result<Lab, BoxError> {
    let t = Instant::now();
    let dir = opts.state_dir.clone();
    let lab = Lab::up(opts).await.map_err(|e| {
        format!("lab up: {e}: {:?}", std::error::Error::source(&e).map(|s| s.to_string()))
    })?;
    eprintln!("lab up in {:.1} s ({})", t.elapsed().as_secs_f64(), dir.display());
    Ok(lab)
}

/// The examples' `main`: parsed arguments (or exit 2), logs on stderr filtered by
/// `BRAMBLE_LOG` (default `warn`), a tokio runtime, and `run` given a fixed state
/// directory `<tmp>/<dir>` (so the next run's `Lab::up` cleans up after a crashed one),
/// removed afterwards. Errors are printed after `name: `.
pub fn main_with<A, F, Fut>(name: &str, dir: &str, args: Result<A, String>, run: F) -> ExitCode
where
    F: FnOnce(A, PathBuf) -> Fut,
    Fut: Future<Output = Result<(), BoxError>>,
{
    let args = match args {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{name}: {e}");
            return ExitCode::from(2);
        }
    };
    let filter = std::env::var("BRAMBLE_LOG").unwrap_or_else(|_| "warn".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .try_init();
    let state_dir = std::env::temp_dir().join(dir);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{name}: tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(run(args, state_dir.clone()));
    let _ = std::fs::remove_dir_all(&state_dir);
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e}");
            ExitCode::FAILURE
        }
    }
}
