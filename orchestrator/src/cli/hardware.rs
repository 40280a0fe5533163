//! `bramble pi maintenance`, `bramble pi accept-hardware` and `bramble pi
//! dismiss-hardware` (docs/replacing-a-pi.md), and the hardware lines of `bramble pi
//! show`.

use std::process::ExitCode;

use anyhow::bail;
use serde_json::json;

use super::ApiArgs;
use super::client::{ApiClient, enc};
use super::output::{json as print_json, line};
use crate::model::Pi;

/// Turns maintenance on or off and prints the Pi's mark.
pub async fn maintenance(api: &ApiArgs, id: &str, on: bool) -> anyhow::Result<ExitCode> {
    let c = ApiClient::new(api)?;
    let pi: Pi =
        c.post(&format!("/v1/pis/{}/maintenance", enc(id)), &json!({ "on": on }), None).await?;
    show(api, &pi)
}

/// Accepts (or dismisses) the pending sighting, the one named or the one pending now.
pub async fn decide(
    api: &ApiArgs,
    id: &str,
    sighting: Option<String>,
    accept: bool,
) -> anyhow::Result<ExitCode> {
    let c = ApiClient::new(api)?;
    let sighting = match sighting {
        Some(s) => s,
        None => {
            let pi: Pi = c.get(&format!("/v1/pis/{}", enc(id))).await?;
            let Some(s) = pi.hardware_sighting else { bail!("Pi {id} has no sighting waiting") };
            eprintln!(
                "{} sighting {}: {} {} {}",
                if accept { "accepting" } else { "dismissing" },
                s.id,
                s.mac.as_deref().unwrap_or("-"),
                s.serial.map(|s| s.to_string()).unwrap_or_else(|| "-".into()),
                s.model.as_deref().unwrap_or("-")
            );
            s.id
        }
    };
    let verb = if accept { "accept" } else { "dismiss" };
    let path = format!("/v1/pis/{}/hardware/{verb}", enc(id));
    let pi: Pi = c.post(&path, &json!({ "sighting": sighting }), None).await?;
    show(api, &pi)
}

fn show(api: &ApiArgs, pi: &Pi) -> anyhow::Result<ExitCode> {
    if api.json {
        print_json(pi)?;
    } else {
        for l in lines(pi) {
            line(l)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `key value` lines for a Pi's maintenance mark, pending sighting and history.
pub fn lines(pi: &Pi) -> Vec<String> {
    let mut out = Vec::new();
    let serial = |s: Option<bramble_netboot::hw::PiSerial>| s.map_or("-".into(), |s| s.to_string());
    let text = |s: Option<&str>| s.unwrap_or("-").to_string();
    match &pi.maintenance {
        Some(m) => out.push(format!(
            "{:<12} on since {} by {}",
            "maintenance",
            crate::time::rfc3339(m.since),
            m.by
        )),
        None => out.push(format!("{:<12} off", "maintenance")),
    }
    if let Some(s) = &pi.hardware_sighting {
        let other = s.other_pi.as_ref().map_or(String::new(), |o| format!(" (held by {o})"));
        out.push(format!(
            "{:<12} FLAGGED {} {}: mac {} serial {} model {} via {}{other}, seen {} times, last {}",
            "sighting",
            s.id,
            s.reason,
            text(s.mac.as_deref()),
            serial(s.serial),
            text(s.model.as_deref()),
            s.source,
            s.count,
            crate::time::rfc3339(s.last_at)
        ));
    }
    for h in pi.hardware_history.iter().flatten() {
        out.push(format!(
            "{:<12} {} {} {} {} -> {} {} {} ({} by {})",
            "replaced",
            crate::time::rfc3339(h.at),
            text(h.old_mac.as_deref()),
            serial(h.old_serial),
            h.old_model,
            text(h.new_mac.as_deref()),
            serial(h.new_serial),
            h.new_model,
            h.how,
            h.accepted_by
        ));
    }
    out
}
