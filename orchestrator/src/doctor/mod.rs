//! `bramble doctor`: is this machine ready to serve Pis? A list of checks, each `ok`,
//! `warn`, `fail` or `skip` with a sentence of advice (docs/doctor.md).
//!
//! The verdicts are pure functions of observed facts ([`rules`]); the observing is
//! behind [`host::Host`] ([`host::SystemHost`] reads the machine, the database and the
//! switches), so every rule is tested without the machine. `bramble serve` runs the
//! local subset ([`Scope::Local`]) at start and logs what is not ok ([`log`]).

use serde::Serialize;

use crate::config::Config;

pub mod host;
pub mod rules;
mod sockets;
#[cfg(test)]
mod tests;

pub use host::{Host, Inventory, RegisteredSwitch, SystemHost};

/// A check's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Ok,
    /// Works, but something will bite later (or is only not there yet).
    Warn,
    /// Will not work: `doctor` exits non-zero.
    Fail,
    /// Not checked: the row says why.
    Skip,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Warn => "warn",
            Verdict::Fail => "fail",
            Verdict::Skip => "skip",
        }
    }
}

/// One row of the report. `advice` is empty for `ok` and `skip`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: String,
    pub verdict: Verdict,
    pub detail: String,
    pub advice: String,
}

impl Check {
    fn new(
        name: impl Into<String>,
        verdict: Verdict,
        detail: impl Into<String>,
        advice: impl Into<String>,
    ) -> Check {
        Check { name: name.into(), verdict, detail: detail.into(), advice: advice.into() }
    }
    pub fn ok(name: impl Into<String>, detail: impl Into<String>) -> Check {
        Check::new(name, Verdict::Ok, detail, "")
    }
    pub fn warn(
        name: impl Into<String>,
        detail: impl Into<String>,
        advice: impl Into<String>,
    ) -> Check {
        Check::new(name, Verdict::Warn, detail, advice)
    }
    pub fn fail(
        name: impl Into<String>,
        detail: impl Into<String>,
        advice: impl Into<String>,
    ) -> Check {
        Check::new(name, Verdict::Fail, detail, advice)
    }
    pub fn skip(name: impl Into<String>, why: impl Into<String>) -> Check {
        Check::new(name, Verdict::Skip, why, "")
    }
}

/// Which checks run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Everything (`bramble doctor`).
    All,
    /// What `serve` checks at start: config, database, trunk, image store, disk, clock
    /// (no ports: serve binds them next; no peers: they may start after it).
    Local,
}

/// How doctor runs.
#[derive(Debug, Clone)]
pub struct Options {
    pub scope: Scope,
    /// Skip the checks that need the network or a running peer (switches, NFS server,
    /// PostgreSQL).
    pub offline: bool,
    /// Rows (by name, or `switch` for every switch) reported as skipped.
    pub skip: Vec<String>,
}

/// Runs the checks. `config` is the loaded configuration or why it did not load;
/// `origin` names it (the file, or the built-in defaults).
pub async fn run(
    config: Result<&Config, String>,
    origin: &str,
    host: &dyn Host,
    opts: &Options,
) -> Vec<Check> {
    let mut out = vec![rules::config(origin, config.as_ref().map(|_| ()).map_err(|e| e.clone()))];
    let Ok(config) = config else {
        for name in ["database", "trunk", "image store", "disk", "clock"] {
            out.push(Check::skip(name, "the config does not load"));
        }
        return skipped(out, &opts.skip);
    };
    let (db, inventory) = host.database(&config.database_url, opts.offline).await;
    out.push(rules::database(&db));
    let netboot = config.netboot.enabled;
    let trunk = netboot.then(|| host.trunk(&config.netboot.storage_trunk));
    out.push(rules::trunk(netboot, trunk.as_ref()));
    if opts.scope == Scope::All {
        out.extend(ports(config, host));
        out.push(rules::nfs(&host.nfs(&config.images.nfs, opts.offline)));
    }
    let store = host.store(&config.images.store_dir);
    let slots = inventory.as_ref().map(|i| i.slots);
    out.push(rules::store(&store, slots));
    out.push(rules::disk(&store, slots));
    if opts.scope == Scope::All {
        out.extend(switches(config, host, inventory.as_ref(), opts.offline).await);
    }
    let now_ms = host.now_ms();
    out.push(rules::clock(&rules::ClockFacts {
        now_ms,
        newest_ms: inventory.as_ref().and_then(|i| i.newest_event_ms),
        db_ms: inventory.as_ref().and_then(|i| i.db_offset_ms).map(|o| now_ms + o),
    }));
    if opts.scope == Scope::All {
        let facts = match &config.tls {
            None => rules::TlsFacts::Plain {
                listen: config.listen,
                exposed: crate::tls::server::exposed_without_tls(config.listen, false),
            },
            Some(t) => rules::TlsFacts::Configured {
                cert: t.cert.clone(),
                summary: host.tls(&t.cert, &t.key),
                client_ca: t.client_ca.is_some(),
            },
        };
        out.push(rules::tls(
            &facts,
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(now_ms as u64),
        ));
    }
    skipped(out, &opts.skip)
}

fn ports(config: &Config, host: &dyn Host) -> Vec<Check> {
    use rules::Proto;
    let netboot = config.netboot.enabled;
    let mut wanted = vec![("dhcp", Proto::Udp, config.netboot.dhcp_port, netboot)];
    let mut tftp: Vec<u16> = config.netboot.tftp_listen.iter().map(|a| a.port()).collect();
    tftp.dedup();
    wanted.extend(tftp.into_iter().map(|p| ("tftp", Proto::Udp, p, netboot)));
    wanted.push(("api", Proto::Tcp, config.listen.port(), true));
    wanted
        .into_iter()
        .map(|(what, proto, port, used)| {
            let facts = if used { host.port(proto, port) } else { rules::PortFacts::Free };
            rules::port(&format!("port {what}"), proto, port, used, &facts)
        })
        .collect()
}

async fn switches(
    config: &Config,
    host: &dyn Host,
    inventory: Option<&Inventory>,
    offline: bool,
) -> Vec<Check> {
    if offline {
        return vec![Check::skip("switches", "not asked (--offline)")];
    }
    let Some(inventory) = inventory else {
        return vec![Check::skip("switches", "the inventory cannot be read yet (see database)")];
    };
    if inventory.switches.is_empty() {
        return vec![Check::ok("switches", "none registered yet")];
    }
    let mut out = Vec::new();
    for sw in &inventory.switches {
        let answer = host.switch(sw, config.switches.snmp).await;
        out.push(switch_row(sw, answer));
    }
    out
}

/// A registered switch's row from its answer (no secret goes into the facts).
fn switch_row(sw: &RegisteredSwitch, answer: rules::SnmpAnswer) -> Check {
    rules::switch(&rules::SwitchFacts {
        name: sw.name.clone(),
        address: sw.address.clone(),
        driver: sw.driver.clone(),
        version: sw.credentials.version(),
        protocols: sw.credentials.protocols(),
        answer,
    })
}

/// Marks the rows named in `skip` (a switch's row also by `switch`) as skipped.
fn skipped(mut checks: Vec<Check>, skip: &[String]) -> Vec<Check> {
    for c in &mut checks {
        let named = skip.iter().any(|s| {
            c.name == *s
                || (s == "switch" && c.name.starts_with("switch"))
                || c.name == format!("port {s}")
        });
        if named {
            *c = Check::skip(
                c.name.clone(),
                format!("skipped (--skip {}); it found: {}", c.name, c.detail),
            );
        }
    }
    checks
}

/// Whether any check failed: `doctor` then exits non-zero.
pub fn failed(checks: &[Check]) -> bool {
    checks.iter().any(|c| c.verdict == Verdict::Fail)
}

/// Logs every check that is not ok: fail as an error, warn as a warning, each with its
/// advice; skips at debug.
pub fn log(checks: &[Check]) {
    for c in checks {
        match c.verdict {
            Verdict::Fail => {
                tracing::error!(check = %c.name, advice = %c.advice, "preflight: {}", c.detail)
            }
            Verdict::Warn => {
                tracing::warn!(check = %c.name, advice = %c.advice, "preflight: {}", c.detail)
            }
            Verdict::Skip => tracing::debug!(check = %c.name, "preflight skipped: {}", c.detail),
            Verdict::Ok => tracing::debug!(check = %c.name, "preflight: {}", c.detail),
        }
    }
}

/// What `bramble serve` checks before it opens anything: the local subset, logged.
/// It never stops the start; a failing check is logged as an error with its advice.
pub async fn at_start(config: &Config) {
    let opts = Options { scope: Scope::Local, offline: false, skip: Vec::new() };
    let checks = run(Ok(config), "the config", &SystemHost::new(), &opts).await;
    log(&checks);
}
