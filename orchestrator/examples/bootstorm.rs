//! Boot-storm benchmark, Bramble side: a virtual shelf of N simulated Pis (the same
//! PiSims as the anchor's, real ROM timings) racked and deployed through Bramble's API,
//! then powered on all at once and staggered by switching PoE over SNMP on the virtual
//! switch, exactly as the controller does; prints one Markdown row per storm.
//!
//! `cargo run --release -p bramble --example bootstorm -- --pis 96`
//! Options: `--pis N` (96), `--group G` (16), `--pause-secs S` (2), `--files
//! firmware|small|lab` (firmware: each deployed root's boot files are given the anchor's
//! firmware sizes; small: the anchor's small sizes; lab: the synthetic image as it is),
//! `--timeout-secs T` (300), `--supernet CIDR` (10.109.0.0/16). Needs root and no other
//! bootstorm running (its lab's namespaces and links are all named `bzlab*`); the lab
//! binds no port in the machine's namespace. Logs: `BRAMBLE_LOG=info`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

mod common;

use bramble::lab::{Lab, LabOptions};
use bramble_lab::LabError;
use bramble_lab::anchor::BootFileSizes;
use bramble_lab::pisim::{Event, PiStatus};
use bramble_lab::storm::{PowerControl, StormMode, StormOptions, StormReport, run_storm};
use bramble_switch::{Credentials, PortNo, SessionConfig, SwitchDriver};
use tokio::sync::watch;

/// The lab's SNMP community (see `bramble::lab`).
const COMMUNITY: &str = "bramble-lab";

use common::BoxError;

struct Args {
    pis: u16,
    group: usize,
    pause: Duration,
    files: Option<BootFileSizes>,
    timeout: Duration,
    /// `--budget-watts W --boot-mw B --idle-mw I`: a third storm under a PoE budget.
    budget: Option<StormMode>,
    supernet: String,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        pis: 96,
        group: 16,
        pause: Duration::from_secs(2),
        files: Some(BootFileSizes::FIRMWARE),
        timeout: Duration::from_secs(300),
        budget: None,
        supernet: "10.109.0.0/16".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let num = || value.parse::<u64>().map_err(|_| format!("{flag}: {value:?} is not a number"));
        if let Some(read) = StormMode::budget_flag(&mut a.budget, &flag, &value) {
            read?;
            continue;
        }
        match flag.as_str() {
            "--pis" => a.pis = u16::try_from(num()?).map_err(|_| "--pis: too many".to_string())?,
            "--group" => a.group = num()? as usize,
            "--pause-secs" => a.pause = Duration::from_secs(num()?),
            "--timeout-secs" => a.timeout = Duration::from_secs(num()?),
            "--supernet" => a.supernet = value,
            "--files" => {
                a.files = match value.as_str() {
                    "firmware" => Some(BootFileSizes::FIRMWARE),
                    "small" => Some(BootFileSizes::SMALL),
                    "lab" => None,
                    other => {
                        return Err(format!("--files: {other:?} is not firmware, small or lab"));
                    }
                }
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    if a.pis == 0 || a.pis > 96 {
        return Err(format!("--pis: {} is not 1 to 96", a.pis));
    }
    Ok(a)
}

/// PoE through the lab's virtual switch over SNMP, as the controller switches it; the
/// lab's cabling follows the switch and powers the simulated Pis. Storm index `i` is
/// switch port `i + 1`.
struct SwitchPower {
    driver: Box<dyn SwitchDriver>,
}

impl PowerControl for SwitchPower {
    async fn power(&self, pis: &[usize], on: bool) -> Result<(), LabError> {
        let mut ports = Vec::with_capacity(pis.len());
        for &pi in pis {
            let port = u16::try_from(pi + 1).map_err(|_| LabError::Invalid {
                what: "pi index",
                reason: format!("{pi} is no switch port"),
            })?;
            ports.push((PortNo(port), on));
        }
        self.driver.set_ports_power(&ports).await.map(drop).map_err(|e| LabError::Storm {
            reason: format!(
                "SNMP PoE {} on {} ports: {e}",
                if on { "on" } else { "off" },
                ports.len()
            ),
        })
    }
}

/// The boot file sizes of `name` under `sizes`, by the kind of file the firmware reads.
fn size_for(name: &str, sizes: &BootFileSizes) -> Option<usize> {
    match name {
        n if n.starts_with("start") && n.ends_with(".elf") => Some(sizes.start_elf),
        n if n.starts_with("fixup") && n.ends_with(".dat") => Some(sizes.fixup),
        n if n.ends_with(".dtb") => Some(sizes.dtb),
        n if n.starts_with("kernel") && n.ends_with(".img") => Some(sizes.kernel),
        "bootcode.bin" => Some(sizes.bootcode),
        _ => None,
    }
}

/// Replaces every firmware file in `dir` by one of the size `sizes` gives it, as a kernel
/// or firmware upgrade inside the Pi would (a new file, renamed into place). Returns the
/// bytes written.
fn resize_boot_files(dir: &Path, sizes: &BootFileSizes) -> Result<u64, BoxError> {
    let mut written = 0u64;
    for entry in std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(len) = size_for(&name, sizes) else {
            continue;
        };
        let tmp = dir.join(format!(".{name}.bzresize"));
        let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        std::fs::write(&tmp, &bytes).map_err(|e| format!("{}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, entry.path())
            .map_err(|e| format!("{}: {e}", entry.path().display()))?;
        written += len as u64;
    }
    Ok(written)
}

/// Gives every deployed root's `/boot` (and the shared bootcode.bin) the anchor's sizes.
async fn resize_all(lab: &Lab, sizes: BootFileSizes) -> Result<(), BoxError> {
    let roots = lab.opts.state_dir.join("images/roots");
    let mut dirs: Vec<PathBuf> = vec![lab.opts.state_dir.join("firmware")];
    for pi in lab.pis().await? {
        dirs.push(roots.join(pi.id.as_str()).join("boot"));
    }
    let written = tokio::task::spawn_blocking(move || {
        dirs.iter()
            .map(|d| resize_boot_files(d, &sizes))
            .sum::<Result<u64, BoxError>>()
            .map_err(|e| e.to_string())
    })
    .await??;
    eprintln!("boot files resized: {:.0} MB written", written as f64 / 1e6);
    Ok(())
}

/// TFTP bytes a Pi fetched since its last power-on.
fn tftp_bytes(status: &PiStatus) -> u64 {
    let from = status.timeline.iter().rposition(|e| e.event == Event::PowerOn).unwrap_or(0);
    status.timeline[from..]
        .iter()
        .map(|e| if let Event::TftpFetched { bytes, .. } = &e.event { *bytes } else { 0 })
        .sum()
}

async fn run(args: Args, state_dir: &Path) -> Result<(), BoxError> {
    let mut opts = LabOptions::new(args.pis, state_dir);
    opts.prefix = "bzlab".into();
    opts.shelf = "storm".into();
    opts.listen = "127.0.0.1:0".parse()?;
    opts.storage_supernet = args.supernet.clone();
    opts.pi.dhcp_interval = Duration::from_secs(5);
    opts.jobs_toml = "lease_seconds = 5\npoll_interval_ms = 100\nrack_group_size = 8\nrack_group_pause_ms = 2000\n\
                      rack_await_seconds = 300\nsettle_ms = 1000\nboot_timeout_seconds = 240\nmax_parallel = 24\n"
        .into();
    opts.deploy = None;
    let lab = common::lab_up(opts).await?;
    let result = storms(&lab, &args).await;
    lab.down().await;
    result
}

async fn storms(lab: &Lab, args: &Args) -> Result<(), BoxError> {
    common::rack_and_deploy(lab, args.pis).await?;
    if let Some(sizes) = args.files {
        resize_all(lab, sizes).await?;
    }
    let mut session =
        SessionConfig::new(lab.switch_addr(), Credentials::V2c { community: COMMUNITY.into() });
    session.timeout = Duration::from_secs(2);
    // The switch answers inside the lab's controller namespace; the session's socket is
    // made there.
    let driver = lab.in_controller_netns(bramble_switch::connect(session)).await??;
    let power = SwitchPower { driver };
    let sims: Vec<_> = (1..=args.pis)
        .map(|port| lab.cabling.sim(port).ok_or_else(|| format!("no simulated Pi in port {port}")))
        .collect::<Result<_, _>>()?;
    let mut modes =
        vec![StormMode::AllAtOnce, StormMode::Staggered { group: args.group, pause: args.pause }];
    modes.extend(args.budget);
    println!("{}", StormReport::header());
    let mut reports = Vec::new();
    for mode in modes {
        if let StormMode::Budget { watts, .. } = mode {
            // The virtual switch enforces the same budget (and refuses ports past it).
            lab.switch.set_poe_budget(watts)?;
        }
        let watches: Vec<watch::Receiver<PiStatus>> = sims.iter().map(|s| s.subscribe()).collect();
        let report =
            run_storm("bramble", &power, watches, StormOptions { mode, timeout: args.timeout })
                .await?;
        println!("{report}");
        let bytes: u64 = sims.iter().map(|s| tftp_bytes(&s.status())).sum();
        reports.push((report, bytes));
    }
    for (report, bytes) in &reports {
        println!(
            "{}: TFTP {:.0} MB fetched by the Pis ({:.2} MB per Pi)",
            report.mode,
            *bytes as f64 / 1e6,
            *bytes as f64 / 1e6 / f64::from(args.pis)
        );
        for (reason, n) in report.failure_summary() {
            println!("    {n} x {reason}");
        }
    }
    let all: Vec<usize> = (0..sims.len()).collect();
    power.power(&all, false).await?;
    Ok(())
}

fn main() -> ExitCode {
    common::main_with(
        "bootstorm",
        "bramble-bootstorm-bzlab",
        parse_args(),
        |args, dir| async move { run(args, &dir).await },
    )
}
