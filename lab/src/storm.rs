//! Measuring a boot storm on any set of simulated Pis: power them on (all at once or in
//! staggered groups) through a [`PowerControl`], wait until each reports booted, failed
//! or the timeout, and summarise time-to-all-booted, per-Pi boot time percentiles and
//! failures. The same measurement runs against the anchor shelf ([`SimPower`]) and
//! against Bramble (where power goes through the virtual switch).

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::LabError;
use crate::pisim::{Event, PiSim, PiState, PiStatus, TimelineEntry};

/// Turns Pis (by index into the storm's list) on or off.
pub trait PowerControl: Send + Sync {
    fn power(&self, pis: &[usize], on: bool) -> impl Future<Output = Result<(), LabError>> + Send;
}

/// Power straight through [`PiSim::set_power`], all given Pis concurrently.
pub struct SimPower {
    sims: Vec<Arc<PiSim>>,
}

impl SimPower {
    pub fn new(sims: Vec<Arc<PiSim>>) -> Self {
        SimPower { sims }
    }

    pub fn sims(&self) -> &[Arc<PiSim>] {
        &self.sims
    }

    /// Status receivers for [`run_storm`], in index order.
    pub fn watches(&self) -> Vec<watch::Receiver<PiStatus>> {
        self.sims.iter().map(|s| s.subscribe()).collect()
    }
}

impl PowerControl for SimPower {
    async fn power(&self, pis: &[usize], on: bool) -> Result<(), LabError> {
        let mut tasks = JoinSet::new();
        for &pi in pis {
            let Some(sim) = self.sims.get(pi).cloned() else {
                let reason = format!("Pi {pi} is not on this shelf of {}", self.sims.len());
                return Err(LabError::Invalid { what: "pi index", reason });
            };
            tasks.spawn(async move {
                sim.set_power(on).await.map_err(|source| LabError::Power { pi, source })
            });
        }
        while let Some(done) = tasks.join_next().await {
            let result =
                done.map_err(|e| LabError::Storm { reason: format!("power task: {e}") })?;
            result?;
        }
        Ok(())
    }
}

/// How the Pis are switched on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StormMode {
    AllAtOnce,
    /// `group` Pis at a time, `pause` between groups.
    Staggered {
        group: usize,
        pause: Duration,
    },
    /// Under a PoE budget of `watts`: a Pi counts `boot_mw` from power-on until it is
    /// booted (or gave up or failed), then `idle_mw`; Pis are powered on, in order, as
    /// soon as their `boot_mw` fits what is left (as Bramble's racking waves do).
    Budget {
        watts: u32,
        boot_mw: u32,
        idle_mw: u32,
    },
}

impl StormMode {
    /// Reads one of the budget-storm flags both boot-storm examples take
    /// (`--budget-watts W`, then optionally `--boot-mw B` and `--idle-mw I`; defaults
    /// 9200 mW, a Pi 4B's worst case, and 3000 mW, an estimate) into `budget`.
    /// `None` when `flag` is not one of them.
    pub fn budget_flag(
        budget: &mut Option<StormMode>,
        flag: &str,
        value: &str,
    ) -> Option<Result<(), String>> {
        let num = || value.parse::<u32>().map_err(|_| format!("{flag}: {value:?} is not a u32"));
        let result = match (flag, budget.as_mut()) {
            ("--budget-watts", _) => num().map(|watts| {
                *budget = Some(StormMode::Budget { watts, boot_mw: 9_200, idle_mw: 3_000 });
            }),
            ("--boot-mw", Some(StormMode::Budget { boot_mw, .. })) => num().map(|n| *boot_mw = n),
            ("--idle-mw", Some(StormMode::Budget { idle_mw, .. })) => num().map(|n| *idle_mw = n),
            ("--boot-mw" | "--idle-mw", _) => Err(format!("{flag} comes after --budget-watts")),
            _ => return None,
        };
        Some(result)
    }
}

impl fmt::Display for StormMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StormMode::AllAtOnce => write!(f, "all at once"),
            StormMode::Staggered { group, pause } => write!(f, "staggered {group} per {pause:?}"),
            StormMode::Budget { watts, boot_mw, idle_mw } => write!(
                f,
                "PoE budget {watts} W ({:.1} W booting, {:.1} W booted)",
                f64::from(*boot_mw) / 1000.0,
                f64::from(*idle_mw) / 1000.0
            ),
        }
    }
}

/// How one Pi's boot ended: its boot time (power-on to booted) or why it did not boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PiOutcome {
    pub pi: usize,
    pub result: Result<Booted, String>,
    /// DISCOVERs the Pi sent in this boot (retries show a DHCP server falling behind).
    pub discovers: u64,
}

/// A successful boot: how long it took and when it finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Booted {
    pub boot_time: Duration,
    pub at: SystemTime,
    /// Power-on to the first DHCP lease (the ROM's).
    pub first_lease: Option<Duration>,
    /// Power-on to the start of the NFS root check (all TFTP done).
    pub firmware_loaded: Option<Duration>,
}

/// The outcome of one storm.
#[derive(Debug, Clone, PartialEq)]
pub struct StormReport {
    /// What was measured, e.g. "anchor" or "bramble".
    pub label: String,
    pub mode: StormMode,
    pub pis: usize,
    pub booted: usize,
    /// Pis that did not boot, with the reason (state and failure, or timeout).
    pub failed: Vec<(usize, String)>,
    /// From the first power-on to the last Pi booted; `None` unless all booted.
    pub time_to_all_booted: Option<Duration>,
    /// Per-Pi boot times (power-on to booted) over the Pis that booted.
    pub p50: Option<Duration>,
    pub p90: Option<Duration>,
    pub max: Option<Duration>,
    /// Median time from power-on to the first DHCP lease, over the Pis that booted.
    pub p50_first_lease: Option<Duration>,
    /// Median time from power-on to firmware and kernel loaded (NFS check starts).
    pub p50_firmware_loaded: Option<Duration>,
    /// DISCOVERs sent by all Pis in this storm.
    pub dhcp_discovers: u64,
}

/// How long to wait and how to power on.
#[derive(Debug, Clone, Copy)]
pub struct StormOptions {
    pub mode: StormMode,
    /// From the first power-on; Pis not terminal by then are reported failed.
    pub timeout: Duration,
}

/// Powers every Pi off, then on per `opts.mode`, and waits for each to finish booting.
/// `watches[i]` must observe the Pi that `power` calls `i`.
pub async fn run_storm<P: PowerControl>(
    label: &str,
    power: &P,
    watches: Vec<watch::Receiver<PiStatus>>,
    opts: StormOptions,
) -> Result<StormReport, LabError> {
    let all: Vec<usize> = (0..watches.len()).collect();
    power.power(&all, false).await?;
    wait_all_off(&watches).await?;
    let start = SystemTime::now();
    let deadline = tokio::time::Instant::now() + opts.timeout;
    let mut watchers = JoinSet::new();
    let states: Vec<watch::Receiver<PiStatus>> = watches.to_vec();
    for (pi, rx) in watches.into_iter().enumerate() {
        watchers.spawn(watch_one(pi, rx, deadline));
    }
    tracing::info!(label, mode = %opts.mode, pis = all.len(), "boot storm: powering on");
    match opts.mode {
        StormMode::AllAtOnce => power.power(&all, true).await?,
        StormMode::Staggered { group, pause } => {
            let groups: Vec<&[usize]> = all.chunks(group.max(1)).collect();
            for (n, pis) in groups.iter().enumerate() {
                if n > 0 {
                    tokio::time::sleep(pause).await;
                }
                power.power(pis, true).await?;
            }
        }
        StormMode::Budget { watts, boot_mw, idle_mw } => {
            let mut next = 0;
            while next < all.len() {
                let drawn: u64 = states[..next]
                    .iter()
                    .map(|rx| if rx.borrow().state.is_terminal() { idle_mw } else { boot_mw })
                    .map(u64::from)
                    .sum();
                let left = (u64::from(watts) * 1000).saturating_sub(drawn);
                let fit = usize::try_from(left / u64::from(boot_mw.max(1))).unwrap_or(usize::MAX);
                let wave: Vec<usize> = all[next..].iter().copied().take(fit).collect();
                if wave.is_empty() {
                    if tokio::time::Instant::now() >= deadline {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                next += wave.len();
                power.power(&wave, true).await?;
            }
        }
    }
    let mut outcomes = Vec::with_capacity(all.len());
    while let Some(done) = watchers.join_next().await {
        outcomes.push(done.map_err(|e| LabError::Storm { reason: format!("watcher: {e}") })?);
    }
    let report = summarize(label, opts.mode, start, outcomes);
    tracing::info!(label, mode = %opts.mode, booted = report.booted, failed = report.failed.len(), "boot storm done");
    Ok(report)
}

async fn wait_all_off(watches: &[watch::Receiver<PiStatus>]) -> Result<(), LabError> {
    for (pi, rx) in watches.iter().enumerate() {
        let mut rx = rx.clone();
        let off =
            tokio::time::timeout(Duration::from_secs(30), rx.wait_for(|s| s.state == PiState::Off))
                .await;
        if !matches!(off, Ok(Ok(_))) {
            return Err(LabError::Storm {
                reason: format!("Pi {pi} did not report off after power off"),
            });
        }
    }
    Ok(())
}

async fn watch_one(
    pi: usize,
    mut rx: watch::Receiver<PiStatus>,
    deadline: tokio::time::Instant,
) -> PiOutcome {
    let waited = tokio::time::timeout_at(deadline, rx.wait_for(|s| s.state.is_terminal()))
        .await
        .map(|r| r.map(drop));
    let status = rx.borrow().clone();
    let result = match waited {
        Ok(Ok(())) => outcome_of(&status),
        Ok(Err(_)) => Err("simulator dropped".to_string()),
        Err(_) => Err(format!("timed out in state {}", status.state)),
    };
    let discovers =
        this_boot(&status).filter(|e| matches!(e.event, Event::DhcpDiscover { .. })).count() as u64;
    PiOutcome { pi, result, discovers }
}

/// The timeline since the last power-on.
fn this_boot(status: &PiStatus) -> impl Iterator<Item = &TimelineEntry> {
    let from = status.timeline.iter().rposition(|e| e.event == Event::PowerOn).unwrap_or(0);
    status.timeline[from..].iter()
}

/// The boot time of a Pi whose status is terminal: from its last power-on to booted.
pub fn outcome_of(status: &PiStatus) -> Result<Booted, String> {
    match &status.state {
        PiState::Booted => {}
        PiState::GaveUp => return Err("gave up: no usable DHCP reply in the ROM's budget".into()),
        PiState::Failed(reason) => return Err(reason.to_string()),
        other => return Err(format!("not finished: {other}")),
    }
    let on = this_boot(status).find(|e| e.event == Event::PowerOn);
    let booted = this_boot(status).find(|e| e.event == Event::Booted);
    match (on, booted) {
        (Some(on), Some(booted)) => {
            let since_on = |e: &TimelineEntry| e.at.duration_since(on.at).unwrap_or_default();
            Ok(Booted {
                boot_time: since_on(booted),
                at: booted.at,
                first_lease: this_boot(status)
                    .find(|e| matches!(e.event, Event::DhcpBound { .. }))
                    .map(since_on),
                firmware_loaded: this_boot(status)
                    .find(|e| matches!(e.event, Event::NfsCheck { .. }))
                    .map(since_on),
            })
        }
        _ => Err("booted without power-on and booted events in the timeline".into()),
    }
}

/// Pure summary of the outcomes of a storm that started at `start`.
pub fn summarize(
    label: &str,
    mode: StormMode,
    start: SystemTime,
    mut outcomes: Vec<PiOutcome>,
) -> StormReport {
    outcomes.sort_by_key(|o| o.pi);
    let mut times = Vec::new();
    let (mut leases, mut loaded) = (Vec::new(), Vec::new());
    let mut failed = Vec::new();
    let mut last = None::<Duration>;
    for o in &outcomes {
        match &o.result {
            Ok(b) => {
                times.push(b.boot_time);
                leases.extend(b.first_lease);
                loaded.extend(b.firmware_loaded);
                let since_start = b.at.duration_since(start).unwrap_or_default();
                last = Some(last.map_or(since_start, |l| l.max(since_start)));
            }
            Err(reason) => failed.push((o.pi, reason.clone())),
        }
    }
    times.sort();
    leases.sort();
    loaded.sort();
    StormReport {
        label: label.to_string(),
        mode,
        pis: outcomes.len(),
        booted: times.len(),
        time_to_all_booted: if failed.is_empty() { last } else { None },
        p50: percentile(&times, 50),
        p90: percentile(&times, 90),
        max: times.last().copied(),
        p50_first_lease: percentile(&leases, 50),
        p50_firmware_loaded: percentile(&loaded, 50),
        dhcp_discovers: outcomes.iter().map(|o| o.discovers).sum(),
        failed,
    }
}

/// Nearest-rank percentile of sorted durations; `None` when empty.
pub fn percentile(sorted: &[Duration], p: u32) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p.min(100) as usize * sorted.len()).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

impl StormReport {
    /// The Markdown table header matching [`StormReport`]'s `Display` row.
    pub fn header() -> &'static str {
        "| run | mode | Pis | booted | failed | all booted after | p50 boot | p90 boot | max boot | p50 first lease | p50 firmware loaded | DISCOVERs |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|"
    }

    /// Failure reasons with how many Pis had each, most common first.
    pub fn failure_summary(&self) -> Vec<(String, usize)> {
        let mut counts: Vec<(String, usize)> = Vec::new();
        for (_, reason) in &self.failed {
            match counts.iter_mut().find(|(r, _)| r == reason) {
                Some((_, n)) => *n += 1,
                None => counts.push((reason.clone(), 1)),
            }
        }
        counts.sort_by_key(|c| std::cmp::Reverse(c.1));
        counts
    }
}

fn secs(d: Option<Duration>) -> String {
    d.map_or_else(|| "-".to_string(), |d| format!("{:.1} s", d.as_secs_f64()))
}

/// One Markdown table row.
impl fmt::Display for StormReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            self.label,
            self.mode,
            self.pis,
            self.booted,
            self.failed.len(),
            secs(self.time_to_all_booted),
            secs(self.p50),
            secs(self.p90),
            secs(self.max),
            secs(self.p50_first_lease),
            secs(self.p50_firmware_loaded),
            self.dhcp_discovers
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_flags_are_read_in_order_and_bad_values_named() {
        let mut b = None;
        assert_eq!(StormMode::budget_flag(&mut b, "--pis", "3"), None);
        let err = StormMode::budget_flag(&mut b, "--boot-mw", "1").expect("a budget flag");
        assert_eq!(err, Err("--boot-mw comes after --budget-watts".to_string()));
        assert_eq!(StormMode::budget_flag(&mut b, "--budget-watts", "452"), Some(Ok(())));
        assert_eq!(StormMode::budget_flag(&mut b, "--idle-mw", "2500"), Some(Ok(())));
        assert_eq!(b, Some(StormMode::Budget { watts: 452, boot_mw: 9_200, idle_mw: 2_500 }));
        let err = StormMode::budget_flag(&mut b, "--budget-watts", "5000000000");
        assert!(matches!(err, Some(Err(e)) if e.contains("not a u32")));
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let times: Vec<Duration> = (1..=10).map(|s| ms(s * 1000)).collect();
        assert_eq!(percentile(&times, 50), Some(ms(5000)));
        assert_eq!(percentile(&times, 90), Some(ms(9000)));
        assert_eq!(percentile(&times, 100), Some(ms(10_000)));
        assert_eq!(percentile(&times[..1], 90), Some(ms(1000)));
        assert_eq!(percentile(&[], 50), None);
    }

    #[test]
    fn a_failure_leaves_time_to_all_booted_empty_and_is_listed() {
        let start = SystemTime::UNIX_EPOCH;
        let ok = |pi, boot, at| PiOutcome {
            pi,
            result: Ok(Booted {
                boot_time: ms(boot),
                at: start + ms(at),
                first_lease: Some(ms(500)),
                firmware_loaded: None,
            }),
            discovers: 1,
        };
        let outcomes = vec![ok(1, 3000, 9000), ok(0, 2000, 2000)];
        let r = summarize("anchor", StormMode::AllAtOnce, start, outcomes.clone());
        assert_eq!((r.pis, r.booted, r.time_to_all_booted), (2, 2, Some(ms(9000))));
        assert_eq!((r.p50, r.max), (Some(ms(2000)), Some(ms(3000))));

        let mut with_failure = outcomes;
        with_failure.push(PiOutcome { pi: 2, result: Err("gave up".into()), discovers: 5 });
        let r = summarize("anchor", StormMode::AllAtOnce, start, with_failure);
        assert_eq!(r.time_to_all_booted, None);
        assert_eq!(r.failed, vec![(2, "gave up".to_string())]);
        assert_eq!(
            (r.dhcp_discovers, r.p50_first_lease, r.p50_firmware_loaded),
            (7, Some(ms(500)), None)
        );
        assert_eq!(r.failure_summary(), vec![("gave up".to_string(), 1)]);
        let row = r.to_string();
        assert!(row.starts_with("| anchor | all at once | 3 | 2 | 1 | - | 2.0 s |"), "{row}");
    }

    #[test]
    fn boot_time_runs_from_the_last_power_on() {
        use crate::pisim::Counters;
        let at = |s: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        let entry = |s, event| TimelineEntry { at: at(s), elapsed: Duration::from_secs(s), event };
        let status = PiStatus {
            state: PiState::Booted,
            timeline: vec![
                entry(1, Event::PowerOn),
                entry(5, Event::PowerOff),
                entry(10, Event::PowerOn),
                entry(17, Event::Booted),
            ],
            counters: Counters::default(),
        };
        let booted = outcome_of(&status).expect("booted");
        assert_eq!(
            (booted.boot_time, booted.at, booted.first_lease),
            (Duration::from_secs(7), at(17), None)
        );
        let gave_up = PiStatus { state: PiState::GaveUp, ..status };
        assert!(outcome_of(&gave_up).is_err_and(|r| r.contains("gave up")));
    }
}
