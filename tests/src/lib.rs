//! Shared harness for Bramble's end-to-end tests: a controller started in-process on a
//! bound port, with a fresh database, and stopped through its shutdown future.

pub mod rescue;
pub mod shelf;
pub mod webhooks;

use std::net::SocketAddr;

use bramble::server::Controller;
use bramble::testing::TestDb;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A controller serving on `127.0.0.1:<random port>`.
pub struct RunningController {
    pub addr: SocketAddr,
    pub token: String,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl RunningController {
    /// Opens `db`, mints an operator token and serves until [`stop`](Self::stop).
    pub async fn start(db: &TestDb) -> anyhow::Result<Self> {
        let (controller, token) = bramble::testing::controller(db).await;
        Self::serve(controller, token).await
    }

    pub async fn serve(controller: Controller, token: String) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = rx.await;
            };
            if let Err(e) = controller.run(listener, shutdown).await {
                panic!("controller failed: {e:#}");
            }
        });
        Ok(RunningController { addr, token, stop: Some(tx), task })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Stops gracefully and waits until the database is closed.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
    }
}

/// A finished command's status, stdout and stderr, for assertion messages.
pub fn output_text(out: &std::process::Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
