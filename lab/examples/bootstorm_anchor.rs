//! Boot-storm benchmark, anchor side: N simulated Pis (mixed 3B/3B+/4, real ROM
//! timings) netboot from hand-configured dnsmasq (DHCP) + tftpd-hpa + nfs-ganesha,
//! powered on all at once and then staggered; prints one Markdown row per storm.
//!
//! `cargo run --release -p bramble-lab --example bootstorm_anchor -- --pis 96`
//! Options: `--pis N` (96), `--group G` (16), `--pause-secs S` (2), `--reply-delay S`
//! (1, dnsmasq's dhcp-reply-delay), `--files small|firmware` (firmware),
//! `--timeout-secs T` (300), `--log-dir DIR` (keep the daemons' logs), `--mix
//! pi3-pi4|with-pi5` (pi3-pi4: 3B, 3B+, 4 in turn; with-pi5: 3B, 3B+, 4, 5, the mix of
//! Bramble's lab). Needs root.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bramble_lab::anchor::{AnchorConfig, AnchorShelf, BootFileSizes};
use bramble_lab::pisim::PiSim;
use bramble_lab::storm::{PowerControl, SimPower, StormMode, StormOptions, StormReport, run_storm};

struct Args {
    pis: usize,
    group: usize,
    pause: Duration,
    reply_delay: u32,
    files: BootFileSizes,
    timeout: Duration,
    /// `--budget-watts W --boot-mw B --idle-mw I`: a third storm under a PoE budget.
    budget: Option<StormMode>,
    log_dir: Option<std::path::PathBuf>,
    /// `--mix with-pi5`: the four boot ROMs in turn, as Bramble's lab mixes them.
    with_pi5: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        pis: 96,
        group: 16,
        pause: Duration::from_secs(2),
        reply_delay: 1,
        files: BootFileSizes::FIRMWARE,
        timeout: Duration::from_secs(300),
        budget: None,
        log_dir: None,
        with_pi5: false,
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
            "--pis" => a.pis = num()? as usize,
            "--group" => a.group = num()? as usize,
            "--pause-secs" => a.pause = Duration::from_secs(num()?),
            "--reply-delay" => a.reply_delay = num()? as u32,
            "--timeout-secs" => a.timeout = Duration::from_secs(num()?),
            "--log-dir" => a.log_dir = Some(value.into()),
            "--mix" => {
                a.with_pi5 = match value.as_str() {
                    "with-pi5" => true,
                    "pi3-pi4" => false,
                    other => return Err(format!("--mix: {other:?} is not with-pi5 or pi3-pi4")),
                }
            }
            "--files" => {
                a.files = match value.as_str() {
                    "small" => BootFileSizes::SMALL,
                    "firmware" => BootFileSizes::FIRMWARE,
                    other => return Err(format!("--files: {other:?} is not small or firmware")),
                }
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(a)
}

fn print_failures(report: &StormReport) {
    for (reason, n) in report.failure_summary() {
        println!("    {n} x {reason}");
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let cleaned = AnchorShelf::cleanup_stale("bs");
    if cleaned > 0 {
        eprintln!("removed {cleaned} crashed anchor shelves");
    }
    let mut cfg = AnchorConfig::mixed("bs", args.pis);
    cfg.dhcp_reply_delay_secs = args.reply_delay;
    cfg.file_sizes = args.files;
    if args.with_pi5 {
        cfg.pis = bramble_lab::anchor::shelf_of(args.pis, &bramble_lab::anchor::WITH_PI5);
    }
    let setup = Instant::now();
    let shelf = tokio::task::spawn_blocking(move || AnchorShelf::start(cfg)).await??;
    eprintln!(
        "anchor shelf of {} Pis up in {:.1} s ({})",
        shelf.len(),
        setup.elapsed().as_secs_f64(),
        shelf.state_dir().display()
    );
    let sims: Vec<Arc<PiSim>> =
        shelf.sim_configs().into_iter().map(|c| Arc::new(PiSim::new(c))).collect();
    let power = SimPower::new(sims);
    let mut modes =
        vec![StormMode::AllAtOnce, StormMode::Staggered { group: args.group, pause: args.pause }];
    modes.extend(args.budget);
    println!("{}", StormReport::header());
    let mut reports = Vec::new();
    for mode in modes {
        let opts = StormOptions { mode, timeout: args.timeout };
        let report = run_storm("anchor", &power, power.watches(), opts).await?;
        println!("{report}");
        reports.push(report);
    }
    for report in &reports {
        if !report.failed.is_empty() {
            println!("failures ({}):", report.mode);
            print_failures(report);
        }
    }
    if let Some(dir) = &args.log_dir {
        keep_logs(&shelf, dir)?;
    }
    let all: Vec<usize> = (0..power.sims().len()).collect();
    power.power(&all, false).await?;
    drop(power);
    tokio::task::spawn_blocking(move || drop(shelf)).await?;
    Ok(())
}

/// Copies the daemons' logs out of the shelf's state directory before it is removed.
fn keep_logs(shelf: &AnchorShelf, dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for log in ["dnsmasq.log", "tftpd.log", "ganesha/ganesha.log"] {
        let from = shelf.state_dir().join(log);
        if from.exists() {
            std::fs::copy(&from, dir.join(log.replace('/', "-")))?;
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bootstorm_anchor: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bootstorm_anchor: tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bootstorm_anchor: {e}");
            ExitCode::FAILURE
        }
    }
}
