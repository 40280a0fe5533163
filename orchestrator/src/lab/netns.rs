//! The lab controller's own network namespace, and the tokio runtime whose every thread
//! (workers and blocking pool) lives in it (`bramble_lab::NetnsRuntime`). The controller
//! makes sockets at any time on any of its threads (a DHCP socket per new storage link, a
//! TFTP socket per transfer, SNMP sessions), and a socket stays in the namespace of the
//! thread that made it, so running the controller on this runtime keeps all of them, and
//! the ports they bind, off the machine's namespace.

use std::future::Future;

use bramble_lab::NetnsRuntime;
use tokio::task::JoinHandle;

use super::LabError;

/// A namespace and a runtime inside it; dropping it stops the runtime's tasks, then
/// deletes the namespace.
pub struct ControllerNetns(NetnsRuntime);

impl ControllerNetns {
    /// Creates namespace `name` (replacing a stale one) and a runtime in it.
    pub fn new(name: &str) -> Result<Self, LabError> {
        NetnsRuntime::new(name)
            .map(ControllerNetns)
            .map_err(|e| LabError::Setup(bramble_report::chain(&e)))
    }

    pub fn name(&self) -> &str {
        self.0.name()
    }

    /// Runs `task` on the runtime inside the namespace.
    pub fn spawn<F>(&self, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.0.spawn(task)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bramble_lab::Netns;

    fn listed(name: &str) -> bool {
        let out = std::process::Command::new("ip").args(["netns", "list"]).output().expect("ip");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l.split_whitespace().next() == Some(name))
    }

    #[test]
    fn worker_and_blocking_threads_bind_inside_the_namespace() {
        let ctl = ControllerNetns::new("zzrtnsctl").expect("namespace and runtime");
        // Held on the machine: the same port binds again only in another namespace.
        let held = std::net::UdpSocket::bind("0.0.0.0:0").expect("bind");
        let port = held.local_addr().expect("addr").port();
        let on_worker = ctl
            .spawn(async move { tokio::net::UdpSocket::bind(("0.0.0.0", port)).await.map(drop) });
        let on_blocking = ctl.spawn(async move {
            tokio::task::spawn_blocking(move || {
                std::net::UdpSocket::bind(("0.0.0.0", port)).map(drop)
            })
            .await
        });
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(async {
            on_worker.await.expect("task").expect("worker thread binds the held port");
            on_blocking.await.expect("task").expect("join").expect("blocking thread binds it");
        });
    }

    #[test]
    fn cleanup_removes_a_crashed_labs_controller_namespace() {
        let dir = tempfile::tempdir().expect("tempdir");
        let name = super::super::controller_netns("zzcln");
        Netns::new(&name).expect("namespace").leak();
        assert!(listed(&name));
        super::super::cleanup("zzcln", dir.path());
        assert!(!listed(&name), "{name} left behind");
    }
}
