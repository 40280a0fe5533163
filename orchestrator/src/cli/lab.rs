//! `bramble lab up|down`: the virtual shelf from the command line.
//!
//! `up` starts the lab in the background (`bramble lab serve`, detached, logging to
//! `<state dir>/lab.log`), waits for it, then shows the shelf coming up until every Pi
//! has booted or failed, and says how to use it: with `--real N`, how to log into each
//! QEMU Pi (once its SSH answers) and where its console log is. `down` stops that process and removes
//! every namespace, link and process the lab made; `up` also cleans up after a crashed
//! lab before starting. The hidden `controller` is a lab's controller as a process of
//! its own (see `lab::process`), started by a lab that runs it that way.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::db::Page;
use crate::db::status::ShelfStatus;
use crate::lab::{Lab, LabOptions};
use crate::lifecycle::PiState;
use crate::model::Pi;

/// What a running lab writes to its info file for `up` to find it.
#[derive(Debug, Serialize, Deserialize)]
struct LabInfo {
    api: String,
    token: String,
    pid: u32,
}

/// The lab Pis' own states by port (`pis.json`), written by the lab every second.
type SimStates = std::collections::BTreeMap<String, String>;

fn read_sims(dir: &Path) -> SimStates {
    std::fs::read_to_string(dir.join("pis.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Start a virtual shelf in the background, rack it, deploy it, show it.
    Up(UpArgs),
    /// Stop the virtual shelf and remove everything it made.
    Down(DirArgs),
    /// Run the lab in the foreground (what `up` starts in the background).
    #[command(hide = true)]
    Serve(UpArgs),
    /// Run a lab's controller in the foreground: its API here, the rest inside the lab's
    /// namespace (what a lab with a controller process starts).
    #[command(hide = true)]
    Controller(ControllerArgs),
}

#[derive(Debug, Args, Clone)]
pub struct ControllerArgs {
    /// The controller's configuration, as the lab wrote it.
    #[arg(long)]
    config: PathBuf,
    /// The lab's prefix: its namespace is `<prefix>ctl`.
    #[arg(long)]
    prefix: String,
    /// A TCP service on this machine's loopback to relay into the lab's namespace at the
    /// same address (repeatable).
    #[arg(long)]
    forward: Vec<std::net::SocketAddr>,
}

#[derive(Debug, Args, Clone)]
pub struct DirArgs {
    /// The lab's state directory (database, images, NFS server, logs).
    #[arg(long, default_value = "/var/lib/bramble-lab")]
    state_dir: PathBuf,
}

#[derive(Debug, Args, Clone)]
pub struct UpArgs {
    /// Simulated Pis on the shelf (1-96).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=96))]
    pis: u16,
    /// Address of the lab controller's API.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    /// Image to deploy on every simulated Pi once racked (`none` to leave every Pi ready).
    #[arg(long, default_value = crate::lab::LAB_IMAGES[0].0)]
    deploy: String,
    /// Slots, from port 1, that hold QEMU Pis booting a real kernel (deployed with
    /// debian-bookworm-arm64 from the image build cache, BRAMBLE_IMAGE_CACHE).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u16).range(0..=i64::from(crate::lab::MAX_REAL)))]
    real: u16,
    /// Seconds to wait for the whole shelf.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// Prefix of the lab's namespaces and links (letters, at most 6).
    #[arg(long, default_value = "blab")]
    prefix: String,
    #[command(flatten)]
    dir: DirArgs,
}

impl UpArgs {
    fn options(&self) -> anyhow::Result<LabOptions> {
        let mut o = LabOptions::new(self.pis, &self.dir.state_dir);
        o.listen = self
            .listen
            .parse()
            .with_context(|| format!("--listen {:?} is not ADDRESS:PORT", self.listen))?;
        o.deploy = (self.deploy != "none").then(|| self.deploy.clone());
        o.prefix = self.prefix.clone();
        o.real = self.real;
        Ok(o)
    }
}

/// What the background lab tells `up` once it serves.
fn info_file(dir: &Path) -> PathBuf {
    dir.join("lab.json")
}

fn pid_file(dir: &Path) -> PathBuf {
    dir.join("lab.pid")
}

/// The prefix the lab in `dir` names its namespaces and links with.
fn prefix_file(dir: &Path) -> PathBuf {
    dir.join("lab.prefix")
}

pub async fn run(cmd: LabCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        LabCommand::Up(a) => up(a).await,
        LabCommand::Down(d) => down(&d.state_dir).await,
        LabCommand::Serve(a) => serve(a).await,
        LabCommand::Controller(a) => {
            crate::lab::process::serve_in_netns(&a.config, &a.prefix, &a.forward).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn up(a: UpArgs) -> anyhow::Result<ExitCode> {
    let dir = a.dir.state_dir.clone();
    if running_pid(&dir).is_some() {
        bail!(
            "a lab is already running from {}; run `bramble lab down --state-dir {}` first",
            dir.display(),
            dir.display()
        );
    }
    down(&dir).await?;
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let log = std::fs::File::create(dir.join("lab.log")).context("cannot create lab.log")?;
    let exe = std::env::current_exe().context("cannot find the bramble binary")?;
    let mut child = std::process::Command::new("setsid")
        .arg(exe)
        .args([
            "lab",
            "serve",
            "--pis",
            &a.pis.to_string(),
            "--listen",
            &a.listen,
            "--deploy",
            &a.deploy,
            "--prefix",
            &a.prefix,
            "--real",
            &a.real.to_string(),
            "--state-dir",
        ])
        .arg(&dir)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("cannot start the lab in the background (setsid)")?;
    std::fs::write(pid_file(&dir), child.id().to_string())?;
    std::fs::write(prefix_file(&dir), &a.prefix)?;
    eprintln!(
        "lab starting in the background (pid {}, log {})",
        child.id(),
        dir.join("lab.log").display()
    );
    // Taking the real base from the build cache may mean building it (minutes).
    let starting = if a.real > 0 { 1800 } else { 120 };
    let info = wait_info(&dir, &mut child, Duration::from_secs(starting)).await?;
    let LabInfo { api, token, .. } = info;
    let deadline = Instant::now() + Duration::from_secs(a.timeout);
    let deploying = a.deploy != "none";
    let (code, pis) = watch(&api, &token, &dir, a.pis, deadline, deploying).await?;
    if a.real > 0 && deploying {
        show_real_pis(&a, &pis, deadline).await?;
    }
    super::output::line(format_args!(
        "\nThe lab is running. Try:\n  export BRAMBLE_API={api} BRAMBLE_TOKEN={token}\n  bramble shelf show lab\n  bramble pi list\n  open {api}/ui#token={token}\n  sudo ip netns exec {ns} ss -lnp    (its DHCP, TFTP, NFS and switch live in namespace {ns})\nStop it with: bramble lab down --state-dir {}",
        dir.display(),
        ns = crate::lab::controller_netns(&a.prefix)
    ))?;
    Ok(code)
}

async fn wait_info(
    dir: &Path,
    child: &mut std::process::Child,
    limit: Duration,
) -> anyhow::Result<LabInfo> {
    let spinner =
        ProgressBar::new_spinner().with_message("starting controller, virtual switch, NFS server");
    spinner.enable_steady_tick(Duration::from_millis(120));
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(text) = std::fs::read_to_string(info_file(dir))
            && let Ok(v) = serde_json::from_str::<LabInfo>(&text)
        {
            spinner.finish_with_message("lab controller serving");
            return Ok(v);
        }
        if !matches!(child.try_wait(), Ok(None)) {
            spinner.abandon();
            let log = std::fs::read_to_string(dir.join("lab.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            bail!(
                "the lab stopped while starting; last lines of its log:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        if Instant::now() > deadline {
            bail!("the lab did not start within {limit:?}; see {}", dir.join("lab.log").display());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Shows the shelf until every Pi is deployed (or ready when nothing is deployed) and
/// its simulator reports booted (a QEMU Pi: running), or failed; the table is printed
/// at the end. Returns the exit code and the Pis as last listed.
async fn watch(
    api: &str,
    token: &str,
    dir: &Path,
    pis: u16,
    deadline: Instant,
    deploying: bool,
) -> anyhow::Result<(ExitCode, Vec<Pi>)> {
    let http = crate::tls::client::http();
    let bar = ProgressBar::new(u64::from(pis)).with_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} Pis up  {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let mut last;
    loop {
        let page: Option<Page<Pi>> = http
            .get(format!("{api}/v1/pis?shelf=lab&limit=500"))
            .bearer_auth(token)
            .send()
            .await?
            .json()
            .await
            .ok();
        let sims = read_sims(dir);
        last = page.map(|p| p.items).unwrap_or_default();
        let settled = |p: &Pi| {
            let port = p.port.unwrap_or(0).to_string();
            let sim = sims.get(&port).map_or("", String::as_str);
            let want = if deploying { PiState::Deployed } else { PiState::Ready };
            let up = sim == "booted" || sim == "running";
            (p.state == want && (!deploying || up)) || p.state == PiState::Failed
        };
        let up = last.iter().filter(|p| settled(p)).count();
        bar.set_position(up as u64);
        bar.set_message(format!("{} Pis in the inventory", last.len()));
        if up == usize::from(pis) {
            bar.finish();
            break;
        }
        if Instant::now() > deadline {
            bar.abandon();
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // The shelf as operators see it (port, serial, model, state, power, boot stage,
    // job), then what the simulated Pis themselves report.
    let status: ShelfStatus = http
        .get(format!("{api}/v1/shelves/lab/status"))
        .bearer_auth(token)
        .send()
        .await?
        .json()
        .await
        .context("reading the shelf status")?;
    super::output::print(super::shelf_view::render(&status, status.read_at))?;
    let mut tally: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    for state in read_sims(dir).into_values() {
        *tally.entry(state).or_default() += 1;
    }
    super::output::line(format_args!(
        "lab Pis: {}",
        tally.iter().map(|(s, n)| format!("{n} {s}")).collect::<Vec<_>>().join(", ")
    ))?;
    let failed = last.iter().filter(|p| p.state == PiState::Failed).count();
    let code = if failed == 0 && last.len() == usize::from(pis) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    };
    Ok((code, last))
}

/// For each QEMU Pi: waits (until `deadline`) for its SSH to answer, then prints the
/// line that logs into it and where its console log is.
async fn show_real_pis(a: &UpArgs, pis: &[Pi], deadline: Instant) -> anyhow::Result<()> {
    let dir = &a.dir.state_dir;
    let ctl = crate::lab::controller_netns(&a.prefix);
    let key = crate::lab::ssh::identity(dir);
    super::output::line(format_args!("\nQEMU Pis (a real kernel; SSH with the lab's key):"))?;
    for port in 1..=a.real {
        let console = crate::lab::qemu_state_dir(&a.dir.state_dir.join("qemu"), port);
        let console = console.join("console.log");
        let Some(ip) = pis.iter().find(|p| p.port == Some(port)).and_then(|p| p.storage_ip.clone())
        else {
            super::output::line(format_args!(
                "  port {port}: no Pi; console {}",
                console.display()
            ))?;
            continue;
        };
        let argv = crate::lab::ssh::ssh_argv(&ctl, &key, &ip, &[]);
        let answered = ssh_answers(&argv, deadline).await;
        super::output::line(format_args!(
            "  port {port}: {}{}\n    console: {}",
            argv.join(" "),
            if answered { "" } else { "    (SSH not answering yet)" },
            console.display()
        ))?;
    }
    Ok(())
}

/// Whether `ssh ... true` succeeds before `deadline` (tried every few seconds).
async fn ssh_answers(argv: &[String], deadline: Instant) -> bool {
    loop {
        let status = tokio::process::Command::new(&argv[0])
            .args(&argv[1..])
            .arg("true")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .await;
        if status.is_ok_and(|s| s.success()) {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
}

/// The lab itself, in the foreground until SIGTERM or Ctrl-C.
async fn serve(a: UpArgs) -> anyhow::Result<ExitCode> {
    let opts = a.options()?;
    let dir = opts.state_dir.clone();
    let deploy = opts.deploy.clone();
    let lab = Lab::up(opts).await?;
    let info = LabInfo { api: lab.api.clone(), token: lab.token.clone(), pid: std::process::id() };
    std::fs::write(info_file(&dir), serde_json::to_string(&info)?)?;
    let cabling = lab.cabling.clone();
    let snapshot = tokio::spawn({
        let dir = dir.clone();
        async move {
            loop {
                let states: SimStates = cabling
                    .pis()
                    .into_iter()
                    .map(|(port, pi)| (port.to_string(), pi.state().to_string()))
                    .collect();
                let text = serde_json::to_string(&states).unwrap_or_default();
                let _ = crate::lab::write_atomic(&dir.join("pis.json"), text.as_bytes());
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    });
    let work = async {
        let job = lab.rack(Duration::from_secs(900)).await?;
        tracing::info!(state = %job.state, "shelf racked");
        if let Some(image) = deploy {
            let jobs = lab.deploy_all(&image).await?;
            tracing::info!(jobs = jobs.len(), image, "deploying every ready Pi");
        }
        Ok::<(), crate::lab::LabError>(())
    };
    tokio::select! {
        r = work => {
            if let Err(e) = r {
                tracing::error!(error = %e, "lab setup failed; the lab keeps running for inspection");
            }
            super::commands::shutdown_signal().await;
        }
        _ = super::commands::shutdown_signal() => {}
    }
    snapshot.abort();
    lab.down().await;
    let _ = std::fs::remove_file(info_file(&dir));
    Ok(ExitCode::SUCCESS)
}

/// The pid of a running background lab, if any: a live (not zombie) process that is
/// still `bramble lab serve` (a pid file outliving its process may name another one).
fn running_pid(dir: &Path) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(pid_file(dir)).ok()?.trim().parse().ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let state = stat.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next());
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let serving = String::from_utf8_lossy(&cmdline).split('\0').any(|a| a == "serve");
    (state != Some('Z') && serving).then_some(pid)
}

/// Stops the background lab (SIGTERM, then SIGKILL after 60 s) and removes whatever it
/// or an earlier crashed lab left.
async fn down(dir: &Path) -> anyhow::Result<ExitCode> {
    if let Some(pid) = running_pid(dir) {
        eprintln!("stopping lab (pid {pid})");
        let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(60);
        while running_pid(dir).is_some() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        if running_pid(dir).is_some() {
            let _ = std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status();
        }
    }
    let prefix = std::fs::read_to_string(prefix_file(dir))
        .map(|p| p.trim().to_string())
        .unwrap_or_else(|_| "blab".into());
    let d = dir.to_path_buf();
    tokio::task::spawn_blocking(move || crate::lab::cleanup(&prefix, &d)).await?;
    for f in [pid_file(dir), info_file(dir), dir.join("pis.json")] {
        let _ = std::fs::remove_file(f);
    }
    Ok(ExitCode::SUCCESS)
}
