//! `bramble doctor`: the preflight checks ([`crate::doctor`]) as a table or JSON; exit
//! status 1 when any check fails.

use std::process::ExitCode;

use clap::Args;

use super::LocalArgs;
use super::output::{json, table};
use crate::doctor::{self, Options, Scope, SystemHost, Verdict};

#[derive(Debug, Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    local: LocalArgs,
    /// Skip what needs the network or a running peer (switches, the NFS server,
    /// PostgreSQL): for a machine not yet cabled or started.
    #[arg(long)]
    offline: bool,
    /// Print JSON (`[{name, verdict, detail, advice}]`) instead of a table.
    #[arg(long)]
    json: bool,
    /// Report a check as skipped (by name: `trunk`, `dhcp`, `switch`, ...; repeatable).
    #[arg(long, value_name = "CHECK")]
    skip: Vec<String>,
}

pub async fn run(args: DoctorArgs) -> anyhow::Result<ExitCode> {
    let origin = args.local.config.as_ref().map_or_else(
        || "built-in defaults (no config file)".to_string(),
        |p| p.display().to_string(),
    );
    let config = args.local.load().map_err(|e| format!("{e:#}"));
    let opts = Options { scope: Scope::All, offline: args.offline, skip: args.skip };
    let checks =
        doctor::run(config.as_ref().map_err(|e| e.clone()), &origin, &SystemHost::new(), &opts)
            .await;
    if args.json {
        json(&checks)?;
    } else {
        let rows: Vec<Vec<String>> = checks
            .iter()
            .map(|c| {
                let text = match c.verdict {
                    Verdict::Warn | Verdict::Fail => format!("{} → {}", c.detail, c.advice),
                    Verdict::Ok | Verdict::Skip => c.detail.clone(),
                };
                vec![c.name.clone(), c.verdict.as_str().to_string(), text]
            })
            .collect();
        table(&["check", "verdict", "detail"], &rows)?;
    }
    Ok(if doctor::failed(&checks) { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}
