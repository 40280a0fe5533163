//! The lab's controller as an OS process of its own (`bramble lab controller`), so a
//! test can stop it, `kill -9` it and start it again while the lab's switch, NFS server
//! and Pis keep running, and run several controllers on one PostgreSQL inventory.
//!
//! Both halves live here: [`ControllerProcess`] starts and stops the child from the
//! lab, and [`serve_in_netns`] is what the child runs. The child binds its API in the
//! machine's namespace, as the in-process controller's listener is, and runs everything
//! else on a runtime whose threads are in the lab's controller namespace, with
//! [`LastingLinks`] as its storage links so that the Pis' links outlive it. Services of
//! the machine's loopback it needs (PostgreSQL, a webhook receiver) are relayed into
//! the namespace at the same address ([`super::forward`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use super::LabError;
use super::forward;
use super::links::LastingLinks;
use crate::config::{Config, Overrides};
use crate::links::StorageLinks;
use crate::server::Controller;

/// Lines of the child's log quoted when it stops unexpectedly.
const LOG_TAIL: usize = 20;

/// A running `bramble lab controller` child.
pub struct ControllerProcess {
    child: Child,
    log: PathBuf,
}

/// How to start one.
pub struct Launch<'a> {
    /// The `bramble` binary.
    pub exe: &'a Path,
    pub config: &'a Path,
    pub prefix: &'a str,
    /// Loopback services to relay into the lab's namespace.
    pub forward: &'a [SocketAddr],
    /// Appended to, across restarts.
    pub log: &'a Path,
}

impl ControllerProcess {
    /// Starts the child and waits until its API at `api` answers `/healthz`.
    pub async fn start(launch: Launch<'_>, api: &str, limit: Duration) -> Result<Self, LabError> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(launch.log)
            .map_err(|e| LabError::Setup(format!("{}: {e}", launch.log.display())))?;
        let err_log =
            log.try_clone().map_err(|e| LabError::Setup(format!("controller log: {e}")))?;
        let mut cmd = Command::new(launch.exe);
        cmd.args(["lab", "controller", "--config"])
            .arg(launch.config)
            .args(["--prefix", launch.prefix]);
        for addr in launch.forward {
            cmd.args(["--forward", &addr.to_string()]);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err_log)
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| LabError::Spawn { exe: launch.exe.to_path_buf(), source })?;
        let mut process = ControllerProcess { child, log: launch.log.to_path_buf() };
        tracing::info!(
            pid = process.pid(),
            prefix = launch.prefix,
            api,
            "lab controller process started"
        );
        process.wait_ready(api, limit).await?;
        Ok(process)
    }

    /// The child's process id (`None` once it has been reaped).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    async fn wait_ready(&mut self, api: &str, limit: Duration) -> Result<(), LabError> {
        let http = crate::tls::ClientTls::default()
            .reqwest_builder()
            .map_err(|e| LabError::Setup(e.to_string()))?
            .timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| LabError::Setup(e.to_string()))?;
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) =
                self.child.try_wait().map_err(|e| LabError::Setup(e.to_string()))?
            {
                return Err(self.exited(status));
            }
            let answered = http.get(format!("{api}/healthz")).send().await;
            if answered.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(LabError::Timeout(format!(
                    "the lab controller at {api} did not answer within {limit:?}; see {}",
                    self.log.display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn exited(&self, status: std::process::ExitStatus) -> LabError {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(LOG_TAIL)..].join("\n");
        LabError::Exited { status: status.to_string(), log: self.log.clone(), tail }
    }

    /// Stops the child gracefully (SIGTERM: jobs in flight finish first); SIGKILL if it
    /// is still running after `limit`.
    pub async fn stop(mut self, limit: Duration) -> Result<(), LabError> {
        if let Some(pid) = self.pid() {
            let sent =
                std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
            if !sent.is_ok_and(|s| s.success()) {
                tracing::warn!(pid, "could not send SIGTERM to the lab controller");
            }
        }
        match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(Ok(status)) if status.success() => Ok(()),
            Ok(Ok(status)) => Err(self.exited(status)),
            Ok(Err(e)) => Err(LabError::Setup(format!("waiting for the lab controller: {e}"))),
            Err(_) => {
                tracing::warn!(
                    pid = self.pid(),
                    ?limit,
                    "lab controller ignored SIGTERM; killing it"
                );
                self.kill().await
            }
        }
    }

    /// `kill -9`: SIGKILL to the child, then reaps it.
    pub async fn kill(mut self) -> Result<(), LabError> {
        let pid = self.pid();
        self.child.kill().await.map_err(|e| LabError::Setup(format!("SIGKILL to {pid:?}: {e}")))?;
        tracing::info!(pid, "lab controller process killed");
        Ok(())
    }
}

/// What `bramble lab controller` runs: the controller configured in `config`, its API
/// bound here (in the machine's namespace), everything else inside the lab's controller
/// namespace (`<prefix>ctl`), until SIGTERM or Ctrl-C.
pub async fn serve_in_netns(
    config: &Path,
    prefix: &str,
    relayed: &[SocketAddr],
) -> Result<(), LabError> {
    let config = Config::load(Some(config), &Overrides::default())
        .map_err(|e| LabError::Setup(bramble_report::chain(&e)))?;
    let listener = super::api_listener(config.listen)?;
    let netns = super::controller_netns(prefix);
    let rt = bramble_lab::runtime_in(&netns, &format!("{netns}-rt"))
        .map_err(|e| LabError::Setup(bramble_report::chain(&e)))?;
    let outside = tokio::runtime::Handle::current();
    for addr in relayed.iter().copied() {
        let bound =
            rt.spawn(forward::bind(addr)).await.map_err(|e| LabError::Setup(e.to_string()))?;
        rt.spawn(forward::relay(bound?, outside.clone()));
        tracing::info!(%addr, netns, "relaying a loopback service into the lab's namespace");
    }
    let links = Arc::new(LastingLinks::new(prefix, &netns)) as Arc<dyn StorageLinks>;
    let served = rt
        .spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener)
                .map_err(crate::server::ServeError::Http)?;
            let controller = Controller::open(config).await?.with_storage_links(links);
            controller.run(listener, terminated()).await
        })
        .await;
    // Dropping a runtime may not block inside another one.
    rt.shutdown_background();
    served.map_err(|e| LabError::Setup(format!("the controller task failed: {e}")))??;
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C.
async fn terminated() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "no SIGTERM handler; stopping on Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    tracing::info!("lab controller shutting down");
}
