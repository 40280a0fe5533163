//! The verdicts that involve another machine: the switches' SNMP answers, the clock
//! against the inventory and PostgreSQL, and the API's TLS material.

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
    /// SNMPv3: the agent refused the credentials with a USM Report (unknown user, wrong
    /// digest); the text names the report.
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
    /// SNMPv3: the stored `AUTH/PRIV` protocol names (not secret).
    pub protocols: Option<String>,
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
                "no answer from {at} with its stored SNMPv3 credentials{}: the switch is unreachable, or the privacy password or protocol is wrong (an agent drops a request it cannot decrypt; a wrong user or authentication password would have been refused)",
                stored(s)
            ),
            "check the management network and the switch's SNMP settings; re-register the switch with the priv_pass and priv_protocol configured on it",
        ),
        SnmpAnswer::Refused(report) => Check::fail(
            name,
            format!("{at} refused the stored SNMPv3 credentials{}: {report}", stored(s)),
            "re-register the switch with the user, passwords and protocols (auth_protocol, priv_protocol) configured on it",
        ),
        SnmpAnswer::Error(e) => {
            Check::fail(name, format!("{at}: {e}"), "check the switch's SNMP agent")
        }
    }
}

/// ` (protocols SHA/AES)` when the facts name them.
fn stored(s: &SwitchFacts) -> String {
    s.protocols.as_deref().map(|p| format!(" (protocols {p})")).unwrap_or_default()
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

/// Renew a certificate this close to its end.
pub const TLS_RENEW_WITHIN: std::time::Duration = std::time::Duration::from_secs(14 * 86_400);

/// What `[tls]` holds: nothing, the certificate file read (or why not), and where the
/// API listens.
#[derive(Debug, Clone)]
pub enum TlsFacts {
    /// No `[tls]`: `exposed` when the API listens beyond loopback.
    Plain { listen: std::net::SocketAddr, exposed: bool },
    Configured {
        cert: std::path::PathBuf,
        summary: Result<crate::tls::CertSummary, String>,
        client_ca: bool,
    },
}

/// The API's TLS material: valid, its key matching, not about to expire.
pub fn tls(facts: &TlsFacts, now: std::time::SystemTime) -> Check {
    const NAME: &str = "tls";
    let (cert, summary, client_ca) = match facts {
        TlsFacts::Plain { listen, exposed: true } => {
            return Check::warn(
                NAME,
                format!(
                    "the API listens on {listen} in plain HTTP: tokens cross the network in clear"
                ),
                "set [tls] cert and key (docs/tls.md), or listen on 127.0.0.1 behind a TLS proxy",
            );
        }
        TlsFacts::Plain { listen, exposed: false } => {
            return Check::skip(
                NAME,
                format!("not configured: the API is plain HTTP on loopback ({listen})"),
            );
        }
        TlsFacts::Configured { cert, summary, client_ca } => (cert, summary, *client_ca),
    };
    let s = match summary {
        Ok(s) => s,
        Err(e) => {
            return Check::fail(
                NAME,
                format!("cannot use {}: {e}", cert.display()),
                "fix [tls] cert and key: PEM files the service can read, the key matching the certificate",
            );
        }
    };
    if s.key_matches == Some(false) {
        return Check::fail(
            NAME,
            format!("the key is not {}'s ({})", cert.display(), s.subject),
            "point [tls] key at the private key this certificate was issued for",
        );
    }
    let days = |d: std::time::Duration| d.as_secs() / 86_400;
    if s.not_before > now {
        return Check::fail(
            NAME,
            format!("{} ({}) is not valid yet", cert.display(), s.subject),
            "check the clock, or install a certificate valid now",
        );
    }
    let Some(left) = s.expires_in(now) else {
        return Check::fail(
            NAME,
            format!("{} ({}) has expired", cert.display(), s.subject),
            "renew the certificate, then `systemctl reload bramble`",
        );
    };
    let mtls = if client_ca { ", client certificates required" } else { "" };
    if left < TLS_RENEW_WITHIN {
        return Check::warn(
            NAME,
            format!("{} ({}) expires in {} days{mtls}", cert.display(), s.subject, days(left)),
            "renew the certificate now, then `systemctl reload bramble` (no connection is dropped)",
        );
    }
    Check::ok(NAME, format!("{} ({}), {} days left{mtls}", cert.display(), s.subject, days(left)))
}
