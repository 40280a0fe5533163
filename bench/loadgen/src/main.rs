//! `bramble-loadgen`: the HTTP load generator of `bench/scale.sh`.
//!
//! - `load` fills an empty inventory through the API (customer tokens, switches,
//!   shelves, Pis owned by customers and commissioned), timing each phase, and writes
//!   what it made to a fixture file;
//! - `run` sends the control panel's requests from that fixture with N closed-loop
//!   clients to one or several controllers (round-robin), and prints p50/p99/max
//!   latency, throughput and non-success answers per request kind as Markdown rows.
//!
//! `bramble-loadgen load --api http://127.0.0.1:8080 --token OP --pis 10000 --customers
//! 1000 --out fixture.json`, then `bramble-loadgen run --api URL[,URL...] --token OP
//! --fixture fixture.json --clients 64 --duration 20`.

mod api;
mod fixture;
mod load;
mod scenario;
mod stats;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::api::Api;
use crate::fixture::Fixture;
use crate::scenario::{Load, Requests, Scenario, drive};

#[derive(Debug, Parser)]
#[command(name = "bramble-loadgen", about = "Load Bramble's API and measure it")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct Target {
    /// Controller base URLs, comma-separated; requests go round-robin.
    #[arg(long, value_delimiter = ',', required = true)]
    api: Vec<String>,
    /// An operator token.
    #[arg(long, env = "BRAMBLE_TOKEN", hide_env_values = true)]
    token: String,
    /// First column of every printed row (e.g. "3 controllers, PostgreSQL").
    #[arg(long, default_value = "")]
    label: String,
    /// Print the table's header line first.
    #[arg(long)]
    header: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Fill an empty inventory through the API and write the fixture file.
    Load {
        #[command(flatten)]
        target: Target,
        #[arg(long, default_value_t = 10_000)]
        pis: usize,
        #[arg(long, default_value_t = 1_000)]
        customers: usize,
        #[arg(long, default_value_t = 96)]
        slots_per_shelf: u16,
        /// Requests in flight at once.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Shelves enrolled at once.
        #[arg(long, default_value_t = 4)]
        enroll_concurrency: usize,
        /// Controller names switches are assigned to, round-robin (needs the cluster API).
        #[arg(long, value_delimiter = ',')]
        controllers: Vec<String>,
        /// A layer-2 domain per switch, so VLAN ids repeat across switches (cluster API).
        #[arg(long)]
        l2_domain_per_switch: bool,
        #[arg(long)]
        out: PathBuf,
    },
    /// Send the control panel's requests and print latency per request kind.
    Run {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        fixture: PathBuf,
        #[arg(long, default_value_t = 64)]
        clients: usize,
        /// Seconds recorded per phase.
        #[arg(long, default_value_t = 20)]
        duration: u64,
        /// Seconds sent before recording starts, per phase.
        #[arg(long, default_value_t = 2)]
        warmup: u64,
        /// Request kinds, comma-separated: list, get, events, status, shelf-pis, reboot.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "list,get,events,status,shelf-pis,reboot"
        )]
        scenarios: Vec<Scenario>,
        /// All kinds interleaved in one phase, instead of one phase per kind.
        #[arg(long)]
        mix: bool,
    },
}

/// The 1-minute load average, as `/proc/loadavg` gives it.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Load {
            target,
            pis,
            customers,
            slots_per_shelf,
            concurrency,
            enroll_concurrency,
            controllers,
            l2_domain_per_switch,
            out,
        } => {
            anyhow::ensure!(
                pis > 0 && customers > 0 && slots_per_shelf > 0,
                "sizes must be positive"
            );
            let api = Api::new(target.api.clone(), concurrency)?;
            let plan = load::Plan {
                pis,
                customers,
                slots_per_shelf,
                concurrency,
                controllers,
                enroll_concurrency,
                l2_domain_per_switch,
            };
            eprintln!(
                "loading {pis} Pis on {} shelves of {slots_per_shelf}, {customers} customers, through {}",
                plan.shelves(),
                target.api.join(", ")
            );
            let loaded = load::load(&api, &target.token, &plan).await?;
            loaded.fixture.save(&out)?;
            if target.header {
                println!("| setup | phase | items | requests | time | items/s | load (1 min) |");
                println!("|---|---|---|---|---|---|---|");
            }
            let total: Duration = loaded.phases.iter().map(|p| p.took).sum();
            for p in &loaded.phases {
                println!(
                    "| {} | {} | {} | {} | {:.1} s | {:.0} | {} |",
                    target.label,
                    p.name,
                    p.items,
                    p.requests,
                    p.took.as_secs_f64(),
                    p.items as f64 / p.took.as_secs_f64(),
                    load_average()
                );
            }
            let requests: usize = loaded.phases.iter().map(|p| p.requests).sum();
            println!(
                "| {} | **all** | {pis} Pis | {requests} | {:.1} s | {:.0} req/s | {} |",
                target.label,
                total.as_secs_f64(),
                requests as f64 / total.as_secs_f64(),
                load_average()
            );
        }
        Command::Run { target, fixture, clients, duration, warmup, scenarios, mix } => {
            anyhow::ensure!(!scenarios.is_empty() && clients > 0, "nothing to send");
            let fixture = Fixture::load(&fixture)?;
            let api = Api::new(target.api.clone(), clients)?;
            let requests = Arc::new(Requests::new(&fixture, &target.token));
            let load = Load {
                clients,
                warmup: Duration::from_secs(warmup),
                duration: Duration::from_secs(duration),
            };
            if target.header {
                println!(
                    "| setup | request | p50 | p99 | max | requests | req/s | errors | load (1 min) |"
                );
                println!("|---|---|---|---|---|---|---|---|---|");
            }
            let phases: Vec<Vec<Scenario>> = if mix {
                vec![scenarios]
            } else {
                scenarios.into_iter().map(|s| vec![s]).collect()
            };
            for phase in phases {
                let names: Vec<_> = phase.iter().map(|s| s.name()).collect();
                eprintln!("  {}: {clients} clients, {duration} s", names.join("+"));
                let (mut seen, span) = drive(&api, requests.clone(), &phase, load).await;
                let la = load_average();
                // A row for every kind, even one that ran out of requests in the warm-up.
                for scenario in phase {
                    let samples = seen.remove(&scenario).unwrap_or_default();
                    let row = samples.summary(scenario.ok(), span).cells();
                    println!("| {} | {} | {row} {la} |", target.label, scenario.describe());
                }
            }
        }
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new().context("tokio runtime") {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bramble-loadgen: {e:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bramble-loadgen: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
