//! `bramble serve`: the controller process. It opens the inventory, serves the API on an
//! already-bound listener and runs the job runner until the shutdown future resolves.

use std::collections::HashSet;
use std::future::Future;

use tokio::net::TcpListener;

use crate::api::{AppState, app};
use crate::config::Config;
use crate::db::{Db, DbError};
use crate::jobs::Runner;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("HTTP server failed")]
    Http(#[source] std::io::Error),
    #[error("netboot (DHCP/TFTP) failed to start")]
    Netboot(#[from] crate::netboot::NetbootError),
}

/// Everything a running controller is made of, before it runs.
pub struct Controller {
    pub state: AppState,
    pub runner: Runner,
}

impl Controller {
    /// Opens the database (migrating it) and assembles the API state and job runner.
    pub async fn open(config: Config) -> Result<Controller, DbError> {
        let db = Db::connect(&config.database_url).await?;
        crate::catalogue::seed(&db).await?;
        let runner_id = format!("{}-{}", hostname(), std::process::id());
        let runner = Runner::new(db.clone(), runner_id, config.job_lease, config.job_poll);
        let executable: HashSet<_> = runner.kinds().into_iter().collect();
        Ok(Controller { state: AppState::new(db, config, executable), runner })
    }

    /// Serves until `shutdown` resolves, then drains in-flight requests.
    pub async fn run(self, listener: TcpListener, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), ServeError> {
        let (tx, rx) = tokio::sync::watch::channel(false);
        let runner = tokio::spawn(self.runner.run(wait_true(rx.clone())));
        // DHCP and TFTP when `[netboot] enabled`; they stop on the same shutdown.
        let netboot = crate::netboot::start_configured(&self.state).await?.map(|n| tokio::spawn(n.run(wait_true(rx.clone()))));
        let addr = listener.local_addr().ok();
        tracing::info!(addr = ?addr, "controller listening");
        let served = axum::serve(listener, app(self.state.clone()))
            .with_graceful_shutdown(async move {
                shutdown.await;
                let _ = tx.send(true);
            })
            .await;
        let _ = runner.await;
        if let Some(netboot) = netboot {
            let _ = netboot.await;
        }
        self.state.db.close().await;
        served.map_err(ServeError::Http)
    }
}

async fn wait_true(mut rx: tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "controller".into())
}
