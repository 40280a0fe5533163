//! The verdicts that involve another machine: the switches' SNMP answers, the clock
//! against the inventory and PostgreSQL, and the place of the TLS check.

use bramble_switch::detect::DriverKind;

use super::{DB_SKEW_FAIL_MS, DB_SKEW_WARN_MS, INVENTORY_SLACK_MS};
use crate::doctor::Check;

/// How a switch answered the GET of its identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnmpAnswer {
    Identified {
        sys_object_id: String,
        sys_descr: String,
        kind: DriverKind,
    },
    /// No answer within the timeout, after every retry.
    Silent,
    /// SNMPv3: the agent sent an authentication report.
    Refused(String),
    Error(String),
}

/// A registered switch and its answer. Credentials are not part of the facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchFacts {
    pub name: String,
    pub address: String,
    /// The stored driver: `auto`, `standard` or `cisco`.
    pub driver: String,
    /// `v2c` or `v3`.
    pub version: &'static str,
    pub answer: SnmpAnswer,
}

pub fn switch(s: &SwitchFacts) -> Check {
    let name = format!("switch {}", s.name);
    let at = format!("{} ({})", s.name, s.address);
    match &s.answer {
        SnmpAnswer::Identified { sys_object_id, sys_descr, kind } => {
            let picked = match kind {
                DriverKind::Standard => "standard",
                DriverKind::Cisco => "cisco",
            };
            let descr = sys_descr.lines().next().unwrap_or("").trim();
            if s.driver != "auto" && s.driver != picked {
                Check::fail(
                    name,
                    format!(
                        "{at} answers as {descr:?} ({sys_object_id}), which takes the {picked} driver, but it is registered with driver {}",
                        s.driver
                    ),
                    "check the switch's address (is it the switch you registered?), or register it with driver auto",
                )
            } else {
                Check::ok(
                    name,
                    format!("{at} answers as {descr:?} ({sys_object_id}), {picked} driver"),
                )
            }
        }
        SnmpAnswer::Silent if s.version == "v2c" => Check::fail(
            name,
            format!(
                "no answer from {at} with its stored v2c community: the switch is unreachable, or the community is wrong (a v2c agent does not answer a wrong community)"
            ),
            "check the management network and the switch's SNMP settings; re-register the switch with the right community",
        ),
        SnmpAnswer::Silent => Check::fail(
            name,
            format!(
                "no answer from {at} that its stored SNMPv3 credentials verify: the switch is unreachable, or the user or passwords are wrong (a refusal is not authenticated, so it is not taken as an answer)"
            ),
            "check the management network and the switch's SNMP settings; re-register the switch with the user and passwords configured on it",
        ),
        SnmpAnswer::Refused(report) => Check::fail(
            name,
            format!(
                "{at} refused the stored SNMPv3 credentials: the user or passwords are wrong ({report})"
            ),
            "re-register the switch with the user and passwords configured on it",
        ),
        SnmpAnswer::Error(e) => {
            Check::fail(name, format!("{at}: {e}"), "check the switch's SNMP agent")
        }
    }
}

/// The clocks doctor compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockFacts {
    pub now_ms: i64,
    /// The newest timestamp in the inventory's events.
    pub newest_ms: Option<i64>,
    /// PostgreSQL's `now()`, read in the middle of a round trip.
    pub db_ms: Option<i64>,
}

pub fn clock(c: &ClockFacts) -> Check {
    const NAME: &str = "clock";
    const ADVICE: &str = "run a time service (systemd-timesyncd or chrony) and check `timedatectl`";
    if let Some(newest) = c.newest_ms
        && c.now_ms + INVENTORY_SLACK_MS < newest
    {
        return Check::fail(
            NAME,
            format!(
                "the clock is {} s behind the newest inventory record: it went backwards",
                (newest - c.now_ms) / 1000
            ),
            ADVICE,
        );
    }
    if let Some(db) = c.db_ms {
        let skew = (c.now_ms - db).abs();
        let detail = format!("{:.1} s from the PostgreSQL server's clock", skew as f64 / 1000.0);
        if skew > DB_SKEW_FAIL_MS {
            return Check::fail(NAME, detail, ADVICE);
        }
        if skew > DB_SKEW_WARN_MS {
            return Check::warn(NAME, detail, ADVICE);
        }
        return Check::ok(NAME, format!("within {detail}"));
    }
    match c.newest_ms {
        Some(_) => Check::ok(NAME, "not behind the newest inventory record"),
        None => Check::ok(NAME, "nothing to compare with yet (empty inventory)"),
    }
}

/// TLS material.
// TLS: the lead plugs `tls::inspect` in here (valid certificate and key, days to
// expiry). Until then the row only says whether TLS is configured.
pub fn tls() -> Check {
    Check::skip("tls", "not configured (no [tls] section): the API is plain HTTP")
}
