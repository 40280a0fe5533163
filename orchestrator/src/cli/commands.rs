//! What each CLI subcommand does.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use serde_json::json;

use super::client::{ApiClient, enc};
use super::output::{cell, json as print_json, line, size_cell, table};
use super::{
    ActionArgs, ApiArgs, Command, ControllerCommand, ImageCommand, JobCommand, PiCommand,
    ShelfCommand, SwitchCommand, TokenCommand,
};
use crate::db::{Db, Page};
use crate::ids::CustomerId;
use crate::jobs::model::JobState;
use crate::model::{Event, Image, Job, Pi, Shelf, Switch};
use crate::server::Controller;
use crate::snapshots::Snapshot;

pub async fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Serve(local) => serve(local).await,
        Command::Doctor(args) => super::doctor::run(args).await,
        Command::Token { command: TokenCommand::Create { role, customer, label, local } } => {
            let config = local.load()?;
            let db = Db::connect(&config.database_url).await?;
            let customer = customer.map(CustomerId);
            match (role, &customer) {
                (crate::auth::Role::Customer, None) => {
                    bail!("--customer is required for customer tokens")
                }
                (crate::auth::Role::Operator, Some(_)) => {
                    bail!("operator tokens are not bound to a customer")
                }
                _ => {}
            }
            let secret = crate::auth::generate_token();
            let info = db.create_token(&secret, role, customer.as_ref(), &label).await?;
            db.close().await;
            eprintln!("created {} token {}", role.as_str(), info.id);
            line(&secret)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Db { command } => super::db::run(command).await,
        Command::Pi { command, api } => pi(command, &api).await,
        Command::Job { command, api } => job(command, &api).await,
        Command::Shelf { command: ShelfCommand::List, api } => {
            let shelves: Vec<Shelf> = ApiClient::new(&api)?.get("/v1/shelves").await?;
            if api.json {
                print_json(&shelves)?;
            } else {
                let rows = shelves
                    .iter()
                    .map(|s| {
                        vec![
                            s.name.clone(),
                            s.switch.to_string(),
                            format!("{}-{}", s.first_port, s.last_port),
                            s.slots.len().to_string(),
                        ]
                    })
                    .collect::<Vec<_>>();
                table(&["name", "switch", "ports", "slots"], &rows)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Shelf { command: ShelfCommand::Show(args), api } => {
            super::shelf_view::run(args, &api).await
        }
        Command::Shelf { command: ShelfCommand::Rack { name, wait, timeout }, api } => {
            let c = ApiClient::new(&api)?;
            let job: Job =
                c.post(&format!("/v1/shelves/{}/rack", enc(&name)), &json!({}), None).await?;
            let id = job.id.to_string();
            if api.json && !wait {
                print_json(&job)?;
            } else {
                eprintln!("racking shelf {name}: job {id}");
            }
            if wait {
                self::wait(&c, &id, Duration::from_secs(timeout), api.json).await
            } else {
                Ok(ExitCode::SUCCESS)
            }
        }
        Command::Lab { command } => super::lab::run(command).await,
        Command::SwitchSim(a) => super::tools::switch_sim(a).await,
        Command::Image { command: ImageCommand::Recipes, .. } => super::tools::recipes(),
        Command::Image { command: ImageCommand::Build(a), .. } => {
            super::tools::image_build(a).await
        }
        Command::Image { command: ImageCommand::List, api } => {
            let images: Vec<Image> = ApiClient::new(&api)?.get("/v1/images").await?;
            if api.json {
                print_json(&images)?;
            } else {
                let rows = images
                    .iter()
                    .map(|i| {
                        vec![
                            i.name.clone(),
                            i.release.clone(),
                            i.arch.clone(),
                            i.status.clone(),
                            size_cell(i.size_bytes),
                        ]
                    })
                    .collect::<Vec<_>>();
                table(&["name", "release", "arch", "status", "size"], &rows)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Controller { command: ControllerCommand::List, api } => {
            let list: serde_json::Value = ApiClient::new(&api)?.get("/v1/controllers").await?;
            if api.json {
                print_json(&list)?;
                return Ok(ExitCode::SUCCESS);
            }
            let now = crate::time::now_millis();
            let rows = list["items"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|c| {
                    let names = |key: &str| {
                        c[key]
                            .as_array()
                            .map(|a| {
                                a.iter().filter_map(|v| v.as_str()).collect::<Vec<_>>().join(",")
                            })
                            .unwrap_or_default()
                    };
                    let beat = c["heartbeat_at"].as_i64().unwrap_or(0);
                    vec![
                        cell(c["name"].as_str()),
                        if c["alive"].as_bool() == Some(true) { "alive" } else { "down" }.into(),
                        format!("{:.1}s ago", (now - beat) as f64 / 1000.0),
                        cell(c["version"].as_str()),
                        cell(c["address"].as_str()),
                        names("switches"),
                        names("leases"),
                    ]
                })
                .collect::<Vec<_>>();
            table(
                &["name", "state", "heartbeat", "version", "address", "switches", "leases"],
                &rows,
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Switch { command, api } => {
            let client = ApiClient::new(&api)?;
            let switches: Vec<Switch> = match command {
                SwitchCommand::List => client.get("/v1/switches").await?,
                SwitchCommand::Move { switch, to } => {
                    let path = format!("/v1/switches/{}", enc(&switch));
                    vec![client.patch(&path, &json!({ "controller": to })).await?]
                }
            };
            if api.json {
                print_json(&switches)?;
            } else {
                let rows = switches
                    .iter()
                    .map(|s| {
                        vec![
                            s.name.clone(),
                            s.address.clone(),
                            cell(s.controller.as_deref()),
                            s.l2_domain.clone(),
                            s.trunk_port.to_string(),
                        ]
                    })
                    .collect::<Vec<_>>();
                table(&["name", "address", "controller", "l2 domain", "trunk"], &rows)?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn serve(local: super::LocalArgs) -> anyhow::Result<ExitCode> {
    let config = local.load()?;
    crate::logging::start(&config.log)?;
    // The local preflight checks, logged; none stops the start.
    crate::doctor::at_start(&config).await;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let controller = Controller::open(config).await?;
    // SIGHUP: the same file and overrides again; live keys apply (crate::reload).
    let reloader = crate::reload::Reloader::new(
        controller.state.config.clone(),
        controller.state.reload.clone(),
        Box::new(move || local.load_config()),
    );
    let reloads = tokio::spawn(reloader.on_hangup().context("cannot catch SIGHUP")?);
    let served = controller.run(listener, shutdown_signal()).await;
    reloads.abort();
    served?;
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
}

/// `bramble pi show --json`: the Pi and its timeline (fields in the order printed).
#[derive(Serialize)]
struct PiShow {
    events: Vec<Event>,
    pi: Pi,
}

/// The table columns of a Pi, as `pi list` and `pi show` print them.
fn pi_cells(p: &Pi) -> [(&'static str, String); 13] {
    [
        ("id", p.id.to_string()),
        ("serial", cell(p.serial.as_ref())),
        ("mac", cell(p.mac.as_ref())),
        ("model", p.model.clone()),
        ("shelf", cell(p.shelf.as_ref())),
        ("port", cell(p.port)),
        ("state", p.state.to_string()),
        ("failed_step", cell(p.failed_step.as_ref())),
        ("power", p.power.as_str().to_string()),
        ("owner", cell(p.owner.as_ref())),
        ("image", cell(p.image.as_ref())),
        ("storage_ip", cell(p.storage_ip.as_ref())),
        ("public_ipv6", cell(p.public_ipv6.as_ref())),
    ]
}

/// One line per SSH host key of a Pi (`<type> <fingerprint>`), or `-` without any.
fn host_key_lines(p: &Pi) -> Vec<String> {
    if p.ssh_host_keys.is_empty() {
        return vec!["-".into()];
    }
    p.ssh_host_keys.iter().map(|k| format!("{} {}", k.key_type, k.fingerprint)).collect()
}

/// The named cells of a Pi, in the order of `keys`.
fn pi_row(p: &Pi, keys: &[&str]) -> Vec<String> {
    let cells = pi_cells(p);
    keys.iter()
        .map(|k| cells.iter().find(|(name, _)| name == k).map_or("-".into(), |(_, v)| v.clone()))
        .collect()
}

async fn pi(cmd: PiCommand, api: &ApiArgs) -> anyhow::Result<ExitCode> {
    let c = ApiClient::new(api)?;
    let (action, path, body) = match cmd {
        PiCommand::List { shelf, state, owner } => {
            let mut q = vec![];
            for (k, v) in [("shelf", shelf), ("state", state), ("owner", owner)] {
                if let Some(v) = v {
                    q.push(format!("{k}={}", enc(&v)));
                }
            }
            let page: Page<Pi> = c.get(&format!("/v1/pis?{}", q.join("&"))).await?;
            if api.json {
                print_json(&page)?;
            } else {
                let keys =
                    ["id", "shelf", "port", "serial", "model", "state", "power", "owner", "image"];
                let rows = page.items.iter().map(|p| pi_row(p, &keys)).collect::<Vec<_>>();
                table(
                    &["id", "shelf", "port", "serial", "model", "state", "power", "owner", "image"],
                    &rows,
                )?;
            }
            return Ok(ExitCode::SUCCESS);
        }
        PiCommand::Console { id, follow, boot } => {
            return super::console::run(api, &id, follow, boot).await;
        }
        PiCommand::Show { id } => {
            let p: Pi = c.get(&format!("/v1/pis/{}", enc(&id))).await?;
            let ev: Page<Event> =
                c.get(&format!("/v1/pis/{}/events?limit=500&order=asc", enc(&id))).await?;
            if api.json {
                print_json(&PiShow { events: ev.items, pi: p })?;
            } else {
                let keys = [
                    "id",
                    "serial",
                    "mac",
                    "model",
                    "shelf",
                    "port",
                    "state",
                    "failed_step",
                    "power",
                    "owner",
                    "image",
                    "storage_ip",
                    "public_ipv6",
                ];
                for (k, v) in keys.iter().zip(pi_row(&p, &keys)) {
                    line(format_args!("{k:<12} {v}"))?;
                }
                for v in host_key_lines(&p) {
                    line(format_args!("{:<12} {v}", "host_key"))?;
                }
                for l in super::hardware::lines(&p) {
                    line(l)?;
                }
                line("")?;
                let rows = ev
                    .items
                    .iter()
                    .map(|e| vec![e.at.to_string(), e.kind.clone(), e.message.clone()])
                    .collect::<Vec<_>>();
                table(&["at (ms)", "event", "message"], &rows)?;
            }
            return Ok(ExitCode::SUCCESS);
        }
        PiCommand::Snapshots { id } => {
            let page: Page<Snapshot> = c.get(&format!("/v1/pis/{}/snapshots", enc(&id))).await?;
            if api.json {
                print_json(&page)?;
            } else {
                let rows = page
                    .items
                    .iter()
                    .map(|s| {
                        vec![
                            s.id.clone(),
                            crate::time::rfc3339(s.created_at),
                            s.reason.as_str().to_string(),
                            cell(s.image.as_ref()),
                            cell(s.version.as_ref()),
                            size_cell(s.size_bytes),
                        ]
                    })
                    .collect::<Vec<_>>();
                table(&["id", "taken", "reason", "image", "version", "size"], &rows)?;
            }
            return Ok(ExitCode::SUCCESS);
        }
        PiCommand::Snapshot(a) => (a, "snapshots", json!({})),
        PiCommand::Restore { action, snapshot } => {
            (action, "restore", json!({ "snapshot": snapshot }))
        }
        PiCommand::PowerOn(a) => (a, "power-on", json!({})),
        PiCommand::PowerOff(a) => (a, "power-off", json!({})),
        PiCommand::Reboot(a) => (a, "reboot", json!({})),
        PiCommand::Reimage { action, image, mut ssh_keys, ssh_key_files } => {
            ssh_keys.extend(read_key_files(&ssh_key_files)?);
            (action, "reimage", json!({ "image": image, "ssh_keys": ssh_keys }))
        }
        PiCommand::Rescue { action, ssh_key_files } if ssh_key_files.is_empty() => {
            (action, "rescue", json!({}))
        }
        PiCommand::Rescue { action, ssh_key_files } => {
            (action, "rescue", json!({ "ssh_keys": read_key_files(&ssh_key_files)? }))
        }
        PiCommand::Unrescue(a) => (a, "unrescue", json!({})),
        PiCommand::Maintenance { id, state } => {
            return super::hardware::maintenance(api, &id, state == "on").await;
        }
        PiCommand::AcceptHardware { id, sighting } => {
            return super::hardware::decide(api, &id, sighting, true).await;
        }
        PiCommand::DismissHardware { id, sighting } => {
            return super::hardware::decide(api, &id, sighting, false).await;
        }
    };
    start(&c, api, action, path, body).await
}

/// The SSH public key lines of `files` (blank lines and `#` comments skipped).
fn read_key_files(files: &[std::path::PathBuf]) -> anyhow::Result<Vec<String>> {
    let mut keys = Vec::new();
    for f in files {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?;
        keys.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(String::from),
        );
    }
    Ok(keys)
}

async fn start(
    c: &ApiClient,
    api: &ApiArgs,
    a: ActionArgs,
    path: &str,
    body: serde_json::Value,
) -> anyhow::Result<ExitCode> {
    let job: Job = c
        .post(&format!("/v1/pis/{}/{path}", enc(&a.id)), &body, a.idempotency_key.as_deref())
        .await?;
    if api.json && !a.wait {
        print_json(&job)?;
        return Ok(ExitCode::SUCCESS);
    }
    let id = job.id.to_string();
    if !a.wait {
        line(&id)?;
        if !job.executable {
            eprintln!("note: this controller cannot run {path} jobs yet; the job stays queued");
        }
        return Ok(ExitCode::SUCCESS);
    }
    wait(c, &id, Duration::from_secs(3600), api.json).await
}

async fn job(cmd: JobCommand, api: &ApiArgs) -> anyhow::Result<ExitCode> {
    let c = ApiClient::new(api)?;
    match cmd {
        JobCommand::Show { id } => {
            let j: Job = c.get(&format!("/v1/jobs/{}", enc(&id))).await?;
            if api.json {
                print_json(&j)?;
            } else {
                for (k, v) in job_cells(&j) {
                    line(format_args!("{k:<17} {v}"))?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        JobCommand::Wait { id, timeout } => {
            wait(&c, &id, Duration::from_secs(timeout), api.json).await
        }
    }
}

/// What `job show` prints, in order.
fn job_cells(j: &Job) -> [(&'static str, String); 10] {
    [
        ("id", j.id.to_string()),
        ("kind", j.kind.to_string()),
        ("pi", cell(j.pi.as_ref())),
        ("state", j.state.to_string()),
        ("current_step", cell(j.current_step.as_ref())),
        ("progress_percent", j.progress_percent.to_string()),
        ("attempts", j.attempts.to_string()),
        ("executable", j.executable.to_string()),
        ("last_error", cell(j.last_error.as_ref())),
        ("customer_message", cell(j.customer_message.as_ref())),
    ]
}

/// Polls a job until it ends, drawing its progress.
async fn wait(
    c: &ApiClient,
    id: &str,
    timeout: Duration,
    json_out: bool,
) -> anyhow::Result<ExitCode> {
    let bar = ProgressBar::new(100);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{bar:30}] {pos:>3}% {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let deadline = Instant::now() + timeout;
    loop {
        let j: Job = c.get(&format!("/v1/jobs/{}", enc(id))).await?;
        bar.set_position(u64::from(j.progress_percent));
        bar.set_message(format!("{} {}", j.state, cell(j.current_step.as_ref())));
        match j.state {
            JobState::Succeeded => {
                bar.finish_with_message("succeeded");
                if json_out {
                    print_json(&j)?;
                }
                return Ok(ExitCode::SUCCESS);
            }
            s @ (JobState::Failed | JobState::Cancelled) => {
                bar.abandon_with_message(format!("{s}: {}", cell(j.last_error.as_ref())));
                if json_out {
                    print_json(&j)?;
                }
                return Ok(ExitCode::FAILURE);
            }
            _ => {}
        }
        if Instant::now() > deadline {
            bar.abandon();
            bail!("job {id} did not finish within {}s", timeout.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
