//! `bramble shelf show <name>`: one shelf's ports, Pis, boot stages and jobs as a table,
//! redrawn every second until Ctrl-C, or printed once with `--once` for scripts.
//!
//! It reads `GET /v1/shelves/{name}/status`. Drawing is [`render`], a pure function of a
//! snapshot and the time, so tests check the table without a terminal.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::ApiArgs;
use super::client::{ApiClient, enc};
use crate::db::status::{ShelfStatus, SlotStatus};

const REDRAW: Duration = Duration::from_secs(1);

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Shelf name or id.
    name: String,
    /// Print one snapshot and exit instead of redrawing every second.
    #[arg(long)]
    once: bool,
}

/// Runs `shelf show`.
pub async fn run(args: ShowArgs, api: &ApiArgs) -> anyhow::Result<ExitCode> {
    if api.token.as_deref().is_none_or(|t| t.trim().is_empty()) {
        bail!(
            "no API token: pass --token or set BRAMBLE_TOKEN to an operator token (`bramble token create --role operator` mints one)"
        );
    }
    let client = ApiClient::new(api)?;
    let path = format!("/v1/shelves/{}/status", enc(&args.name));
    // The first read must work: a wrong name or token is an error, not a screen to watch.
    let first = fetch(&client, &path, &args.name).await?;
    if args.once {
        super::output::print(frame(&first, api.json, true))?;
        return Ok(ExitCode::SUCCESS);
    }
    watch(&client, &path, &args.name, first, api.json).await?;
    Ok(ExitCode::SUCCESS)
}

async fn fetch(client: &ApiClient, path: &str, name: &str) -> anyhow::Result<ShelfStatus> {
    let value = client.get(path).await.with_context(|| format!("cannot show shelf {name:?}"))?;
    serde_json::from_value(value)
        .context("the controller's answer is not a shelf status (a different Bramble version?)")
}

fn frame(status: &ShelfStatus, json: bool, pretty: bool) -> String {
    match (json, pretty) {
        (true, true) => format!("{}\n", serde_json::to_string_pretty(status).unwrap_or_default()),
        (true, false) => format!("{}\n", serde_json::to_string(status).unwrap_or_default()),
        (false, _) => render(status, status.read_at),
    }
}

/// Redraws until Ctrl-C. Later read errors are shown under the last good table and
/// retried: a controller restart should not end the watch.
async fn watch(
    client: &ApiClient,
    path: &str,
    name: &str,
    first: ShelfStatus,
    json: bool,
) -> anyhow::Result<()> {
    let screen = Screen::new(json);
    let mut last = frame(&first, json, false);
    screen.draw(&last)?;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let next = async {
            tokio::time::sleep(REDRAW).await;
            fetch(client, path, name).await
        };
        tokio::select! {
            _ = &mut ctrl_c => break,
            read = next => match read {
                Ok(status) => {
                    last = frame(&status, json, false);
                    screen.draw(&last)?;
                }
                Err(e) if json => eprintln!("error: {e:#} (retrying)"),
                Err(e) => screen.draw(&format!("{last}\nerror: {e:#} (retrying)\n"))?,
            },
        }
    }
    screen.finish();
    Ok(())
}

/// Where frames go: redrawn in place on a terminal (indicatif clears the previous frame
/// and cuts what does not fit the window), appended to a pipe or file.
enum Screen {
    Live(ProgressBar),
    Log,
}

impl Screen {
    fn new(json: bool) -> Screen {
        if json || !std::io::stdout().is_terminal() {
            return Screen::Log;
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stdout());
        bar.set_style(
            ProgressStyle::with_template("{msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        Screen::Live(bar)
    }

    fn draw(&self, text: &str) -> anyhow::Result<()> {
        match self {
            Screen::Live(bar) => bar.set_message(text.trim_end().to_string()),
            Screen::Log => super::output::line(text.trim_end())?,
        }
        Ok(())
    }

    /// Leaves the last frame on screen.
    fn finish(self) {
        if let Screen::Live(bar) = self {
            bar.abandon();
        }
    }
}

/// The table for one snapshot, with ages relative to `now` (Unix ms).
pub fn render(status: &ShelfStatus, now: i64) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "shelf {} · switch {} · controller {} · ports {}-{} · read {}",
        status.name,
        status.switch_name,
        status.controller.as_deref().unwrap_or("-"),
        status.first_port,
        status.last_port,
        clock(status.read_at)
    );
    let mut counts: Vec<String> =
        status.counts().iter().map(|(state, n)| format!("{n} {state}")).collect();
    let failed = status.slots.iter().filter(|s| last_boot_failed(s)).count();
    if failed > 0 {
        counts.push(format!("{failed} last boot failed ({FAILED_MARK})"));
    }
    let _ = writeln!(out, "{} slots: {}", status.slots.len(), counts.join(", "));
    out.push('\n');
    let headers =
        ["port", "serial", "model", "state", "power", "boot stage", "last boot", "job", "flag"];
    let rows: Vec<[String; 9]> = status.slots.iter().map(|s| row(s, now)).collect();
    out.push_str(&columns(&headers, &rows));
    out
}

/// Marks a Pi whose last boot attempt failed.
const FAILED_MARK: &str = "✗";

fn last_boot_failed(s: &SlotStatus) -> bool {
    s.pi.as_ref().and_then(|p| p.last_boot.as_ref()).is_some_and(|b| b.failed())
}

/// `ok`, or the failure mark with the diagnosis (and the file TFTP stopped at).
fn last_boot(s: &SlotStatus) -> String {
    match s.pi.as_ref().and_then(|p| p.last_boot.as_ref()) {
        None => "-".to_string(),
        Some(b) if !b.failed() => "ok".to_string(),
        Some(b) => {
            let file = b.file.as_deref().map(|f| f.rsplit('/').next().unwrap_or(f));
            match file {
                Some(f) => format!("{FAILED_MARK} {} {f}", b.diagnosis.as_str()),
                None => format!("{FAILED_MARK} {}", b.diagnosis.as_str()),
            }
        }
    }
}

fn row(s: &SlotStatus, now: i64) -> [String; 9] {
    let dash = || "-".to_string();
    let pi = s.pi.as_ref();
    [
        s.port.to_string(),
        pi.and_then(|p| p.serial).map_or_else(dash, |s| s.to_string()),
        pi.map(|p| p.model.clone()).unwrap_or_else(dash),
        match pi {
            Some(p) if p.maintenance => format!("{} (maintenance)", s.shown_state()),
            _ => s.shown_state().to_string(),
        },
        pi.map(|p| p.power.as_str().to_string()).unwrap_or_else(dash),
        s.boot.as_ref().map(|b| format!("{} {}", b.kind, ago(now, b.at))).unwrap_or_else(dash),
        last_boot(s),
        s.job
            .as_ref()
            .map(|j| {
                format!(
                    "{} {} {}%",
                    j.kind,
                    j.step.as_deref().unwrap_or(j.state.as_str()),
                    j.percent
                )
            })
            .unwrap_or_else(dash),
        s.flag.clone().unwrap_or_else(dash),
    ]
}

fn columns<const N: usize>(headers: &[&str; N], rows: &[[String; N]]) -> String {
    let mut widths = headers.map(str::len);
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> =
            cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(headers.iter().map(|h| h.to_uppercase()).collect());
    for r in rows {
        out.push_str(&line(r.to_vec()));
    }
    out
}

/// `HH:MM:SS` UTC of a Unix-ms time.
fn clock(ms: i64) -> String {
    let secs = ms.div_euclid(1000).rem_euclid(86_400);
    format!("{:02}:{:02}:{:02}Z", secs / 3600, secs % 3600 / 60, secs % 60)
}

fn ago(now: i64, at: i64) -> String {
    let s = (now.saturating_sub(at) / 1000).max(0);
    match s {
        0..120 => format!("{s}s ago"),
        120..7200 => format!("{}m ago", s / 60),
        _ => format!("{}h ago", s / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::status::{ActiveJob, LatestBoot, PiSummary};
    use crate::ids::{JobId, PiId, ShelfId, SlotId, SwitchId};
    use crate::jobs::model::{JobKind, JobState};
    use crate::lifecycle::PiState;
    use crate::model::PowerState;
    use bramble_netboot::hw::PiSerial;

    fn slot(port: u16) -> SlotStatus {
        SlotStatus {
            slot: SlotId(format!("slot-{port}")),
            port,
            vlan: 100 + port,
            storage_ip: "10.0.0.2".into(),
            flag: None,
            flagged_at: None,
            pi: None,
            boot: None,
            job: None,
        }
    }

    #[test]
    fn the_table_shows_pis_boot_stages_jobs_and_flags() {
        let mut busy = slot(1);
        busy.pi = Some(PiSummary {
            id: PiId("pi-1".into()),
            serial: Some(PiSerial(0x1234abcd)),
            mac: None,
            model: "3b+".into(),
            state: PiState::Deployed,
            power: PowerState::On,
            owner: None,
            image: None,
            failed_step: None,
            maintenance: false,
            hardware_sighting: None,
            last_boot: None,
        });
        busy.boot =
            Some(LatestBoot { kind: "tftp.complete".into(), at: 1_000, message: String::new() });
        busy.job = Some(ActiveJob {
            id: JobId("job-1".into()),
            kind: JobKind::Reboot,
            state: JobState::Running,
            step: Some("settle".into()),
            percent: 40,
        });
        let mut flagged = slot(2);
        flagged.flag = Some("no Pi answered".into());
        let status = ShelfStatus {
            id: ShelfId("shelf-1".into()),
            name: "rack-a".into(),
            switch: SwitchId("sw-1".into()),
            switch_name: "sw-a".into(),
            controller: Some("c1".into()),
            first_port: 1,
            last_port: 2,
            read_at: 3_661_000,
            slots: vec![busy, flagged],
        };
        let text = render(&status, 13_000);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "shelf rack-a · switch sw-a · controller c1 · ports 1-2 · read 01:01:01Z"
        );
        assert_eq!(lines[1], "2 slots: 1 deployed, 1 empty, 1 flagged");
        assert!(
            lines[3].starts_with("PORT  SERIAL    MODEL  STATE     POWER  BOOT STAGE"),
            "{text}"
        );
        let cells: Vec<&str> =
            lines[4].split("  ").map(str::trim).filter(|c| !c.is_empty()).collect();
        assert_eq!(
            cells,
            [
                "1",
                "1234abcd",
                "3b+",
                "deployed",
                "on",
                "tftp.complete 12s ago",
                "-",
                "reboot settle 40%",
                "-"
            ]
        );
        assert!(
            lines[5].starts_with("2 ")
                && lines[5].contains("empty")
                && lines[5].ends_with("no Pi answered"),
            "{text}"
        );
    }

    #[test]
    fn a_pi_whose_last_boot_failed_is_marked_and_counted() {
        use crate::diagnosis::{BootPhase, DiagnosisKind, LastBoot, Phases};
        let boot = |diagnosis, file: Option<&str>| LastBoot {
            at: 0,
            job: None,
            stage: BootPhase::Tftp,
            diagnosis,
            file: file.map(str::to_string),
            customer_message: String::new(),
            operator_message: None,
            poe: None,
            phases: Phases::default(),
            owner: None,
        };
        let pi = |port: u16, last_boot| {
            let mut s = slot(port);
            s.pi = Some(PiSummary {
                id: PiId(format!("pi-{port}")),
                serial: None,
                mac: None,
                model: "3b".into(),
                state: PiState::Failed,
                power: PowerState::On,
                owner: None,
                image: None,
                failed_step: Some("await-boot".into()),
                maintenance: false,
                hardware_sighting: None,
                last_boot,
            });
            s
        };
        let slots = vec![
            pi(1, Some(boot(DiagnosisKind::TftpFileMissing, Some("abcd/kernel8.img")))),
            pi(2, Some(boot(DiagnosisKind::Booted, None))),
            pi(3, Some(boot(DiagnosisKind::NoDhcp, None))),
        ];
        assert_eq!(last_boot(&slots[0]), "✗ tftp_file_missing kernel8.img");
        assert_eq!(last_boot(&slots[1]), "ok");
        assert_eq!(last_boot(&slots[2]), "✗ no_dhcp");
        let status = ShelfStatus {
            id: ShelfId("shelf-1".into()),
            name: "rack-a".into(),
            switch: SwitchId("sw-1".into()),
            switch_name: "sw-a".into(),
            controller: None,
            first_port: 1,
            last_port: 3,
            read_at: 0,
            slots,
        };
        let text = render(&status, 0);
        assert!(text.lines().nth(1).unwrap().ends_with(", 2 last boot failed (✗)"), "{text}");
        assert!(text.contains("LAST BOOT"), "{text}");
    }

    #[test]
    fn ages_and_clocks_never_panic() {
        assert_eq!(ago(0, 5_000), "0s ago");
        assert_eq!(ago(i64::MAX, i64::MIN), format!("{}h ago", i64::MAX / 1000 / 3600));
        assert_eq!(clock(-1), "23:59:59Z");
        assert_eq!(clock(86_399_999), "23:59:59Z");
    }
}
