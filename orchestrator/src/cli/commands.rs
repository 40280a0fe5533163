//! What each CLI subcommand does.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use super::client::{ApiClient, enc};
use super::output::{cell, json as print_json, line, table};
use super::{
    ActionArgs, ApiArgs, Command, ImageCommand, JobCommand, PiCommand, ShelfCommand, TokenCommand,
};
use crate::db::Db;
use crate::ids::CustomerId;
use crate::server::Controller;

pub async fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Serve(local) => serve(local.load()?).await,
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
        Command::Pi { command, api } => pi(command, &api).await,
        Command::Job { command, api } => job(command, &api).await,
        Command::Shelf { command: ShelfCommand::List, api } => {
            let v = ApiClient::new(&api)?.get("/v1/shelves").await?;
            if api.json {
                print_json(&v)?;
            } else {
                let rows = list(&v)
                    .iter()
                    .map(|s| {
                        vec![
                            cell(s, "name"),
                            cell(s, "switch"),
                            format!("{}-{}", cell(s, "first_port"), cell(s, "last_port")),
                            s["slots"].as_array().map_or(0, Vec::len).to_string(),
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
            let job = c.post(&format!("/v1/shelves/{}/rack", enc(&name)), &json!({}), None).await?;
            let id = job["id"].as_str().unwrap_or_default().to_string();
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
            let v = ApiClient::new(&api)?.get("/v1/images").await?;
            if api.json {
                print_json(&v)?;
            } else {
                let rows = list(&v)
                    .iter()
                    .map(|i| {
                        vec![
                            cell(i, "name"),
                            cell(i, "release"),
                            cell(i, "arch"),
                            cell(i, "status"),
                            cell(i, "size_bytes"),
                        ]
                    })
                    .collect::<Vec<_>>();
                table(&["name", "release", "arch", "status", "size"], &rows)?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn serve(config: crate::config::Config) -> anyhow::Result<ExitCode> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let controller = Controller::open(config).await?;
    controller.run(listener, shutdown_signal()).await?;
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

fn list(v: &Value) -> Vec<Value> {
    v.get("items").unwrap_or(v).as_array().cloned().unwrap_or_default()
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
            let v = c.get(&format!("/v1/pis?{}", q.join("&"))).await?;
            if api.json {
                print_json(&v)?;
            } else {
                let rows = list(&v)
                    .iter()
                    .map(|p| {
                        [
                            "id", "shelf", "port", "serial", "model", "state", "power", "owner",
                            "image",
                        ]
                        .iter()
                        .map(|k| cell(p, k))
                        .collect()
                    })
                    .collect::<Vec<_>>();
                table(
                    &["id", "shelf", "port", "serial", "model", "state", "power", "owner", "image"],
                    &rows,
                )?;
            }
            return Ok(ExitCode::SUCCESS);
        }
        PiCommand::Show { id } => {
            let p = c.get(&format!("/v1/pis/{}", enc(&id))).await?;
            let ev = c.get(&format!("/v1/pis/{}/events?limit=500&order=asc", enc(&id))).await?;
            if api.json {
                print_json(&json!({ "pi": p, "events": ev["items"] }))?;
            } else {
                for k in [
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
                ] {
                    line(format_args!("{k:<12} {}", cell(&p, k)))?;
                }
                line("")?;
                let rows = list(&ev)
                    .iter()
                    .map(|e| vec![cell(e, "at"), cell(e, "kind"), cell(e, "message")])
                    .collect::<Vec<_>>();
                table(&["at (ms)", "event", "message"], &rows)?;
            }
            return Ok(ExitCode::SUCCESS);
        }
        PiCommand::PowerOn(a) => (a, "power-on", json!({})),
        PiCommand::PowerOff(a) => (a, "power-off", json!({})),
        PiCommand::Reboot(a) => (a, "reboot", json!({})),
        PiCommand::Reimage { action, image, mut ssh_keys, ssh_key_files } => {
            for f in ssh_key_files {
                let text = std::fs::read_to_string(&f)
                    .with_context(|| format!("cannot read {}", f.display()))?;
                ssh_keys.extend(
                    text.lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty() && !l.starts_with('#'))
                        .map(String::from),
                );
            }
            (action, "reimage", json!({ "image": image, "ssh_keys": ssh_keys }))
        }
    };
    start(&c, api, action, path, body).await
}

async fn start(
    c: &ApiClient,
    api: &ApiArgs,
    a: ActionArgs,
    path: &str,
    body: Value,
) -> anyhow::Result<ExitCode> {
    let job = c
        .post(&format!("/v1/pis/{}/{path}", enc(&a.id)), &body, a.idempotency_key.as_deref())
        .await?;
    if api.json && !a.wait {
        print_json(&job)?;
        return Ok(ExitCode::SUCCESS);
    }
    let id = cell(&job, "id");
    if !a.wait {
        line(&id)?;
        if job["executable"] == Value::Bool(false) {
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
            let j = c.get(&format!("/v1/jobs/{}", enc(&id))).await?;
            if api.json {
                print_json(&j)?;
            } else {
                for k in [
                    "id",
                    "kind",
                    "pi",
                    "state",
                    "current_step",
                    "progress_percent",
                    "attempts",
                    "executable",
                    "last_error",
                    "customer_message",
                ] {
                    line(format_args!("{k:<17} {}", cell(&j, k)))?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        JobCommand::Wait { id, timeout } => {
            wait(&c, &id, Duration::from_secs(timeout), api.json).await
        }
    }
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
        let j = c.get(&format!("/v1/jobs/{}", enc(id))).await?;
        bar.set_position(j["progress_percent"].as_u64().unwrap_or(0));
        bar.set_message(format!("{} {}", cell(&j, "state"), cell(&j, "current_step")));
        match j["state"].as_str() {
            Some("succeeded") => {
                bar.finish_with_message("succeeded");
                if json_out {
                    print_json(&j)?;
                }
                return Ok(ExitCode::SUCCESS);
            }
            Some(s @ ("failed" | "cancelled")) => {
                bar.abandon_with_message(format!("{s}: {}", cell(&j, "last_error")));
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
