//! A network namespace with a tokio runtime whose every thread (workers and blocking
//! pool) joins it at start. A socket stays in the namespace of the thread that made it,
//! so servers run on this runtime (a DHCP socket per new interface, a TFTP socket per
//! transfer, made at any time on any thread) bind their ports in there, never on the
//! machine's.

use std::future::Future;
use std::io;

use tokio::runtime::Runtime;
use tokio::task::JoinHandle;

use crate::cmd::CmdError;
use crate::netns::{Netns, enter};

/// Why a namespace with its runtime could not be made.
#[derive(Debug, thiserror::Error)]
pub enum NetnsRuntimeError {
    #[error("creating network namespace {netns}")]
    Create {
        netns: String,
        #[source]
        source: CmdError,
    },
    #[error("a thread cannot join network namespace {netns}")]
    Join {
        netns: String,
        #[source]
        source: io::Error,
    },
    #[error("building a tokio runtime in network namespace {netns}")]
    Build {
        netns: String,
        #[source]
        source: io::Error,
    },
}

/// Builds a multi-threaded runtime whose threads are named `thread_name` and all join
/// the existing namespace `netns` when they start.
pub fn runtime_in(netns: &str, thread_name: &str) -> Result<Runtime, NetnsRuntimeError> {
    // Fails here, with the reason, rather than in a runtime thread later.
    joinable(netns)?;
    let inside = netns.to_string();
    tokio::runtime::Builder::new_multi_thread()
        .thread_name(thread_name)
        .enable_all()
        .on_thread_start(move || {
            // A thread left in the machine's namespace would bind its ports there.
            if let Err(e) = enter(&inside) {
                panic!("runtime thread cannot join network namespace {inside}: {e}");
            }
        })
        .build()
        .map_err(|source| NetnsRuntimeError::Build { netns: netns.to_string(), source })
}

/// Checks that a thread can join `netns`.
fn joinable(netns: &str) -> Result<(), NetnsRuntimeError> {
    let owned = netns.to_string();
    let joined = std::thread::spawn(move || enter(&owned))
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("the thread checking the namespace panicked")));
    joined.map_err(|source| NetnsRuntimeError::Join { netns: netns.to_string(), source })
}

/// A namespace of this process and a runtime inside it; dropping it stops the runtime's
/// tasks (without waiting), then deletes the namespace.
pub struct NetnsRuntime {
    runtime: Option<Runtime>,
    netns: Netns,
}

impl NetnsRuntime {
    /// Creates namespace `name` (replacing a stale one) and a runtime in it whose
    /// threads are named `<name>-rt`.
    pub fn new(name: &str) -> Result<Self, NetnsRuntimeError> {
        let netns = Netns::new(name)
            .map_err(|source| NetnsRuntimeError::Create { netns: name.to_string(), source })?;
        let runtime = runtime_in(name, &format!("{name}-rt"))?;
        Ok(NetnsRuntime { runtime: Some(runtime), netns })
    }

    pub fn name(&self) -> &str {
        self.netns.name()
    }

    /// Runs `task` on the runtime inside the namespace.
    pub fn spawn<F>(&self, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.runtime.as_ref().expect("runtime lives until drop").spawn(task)
    }

    /// Runs `task` inside the namespace and waits for it, from a thread outside any
    /// runtime (a plain `#[test]`); a panic in `task` is resumed here.
    pub fn run<F>(&self, task: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let rt = self.runtime.as_ref().expect("runtime lives until drop");
        match rt.block_on(rt.spawn(task)) {
            Ok(out) => out,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("task in namespace {} was cancelled: {e}", self.name()),
        }
    }
}

impl Drop for NetnsRuntime {
    fn drop(&mut self) {
        // Without waiting: it may be dropped inside another runtime.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_and_blocking_threads_bind_inside_the_namespace() {
        let ns = NetnsRuntime::new("zzrtnsctl").expect("namespace and runtime");
        // Held on the machine: the same port binds again only in another namespace.
        let held = std::net::UdpSocket::bind("0.0.0.0:0").expect("bind");
        let port = held.local_addr().expect("addr").port();
        let on_worker =
            ns.run(async move { tokio::net::UdpSocket::bind(("0.0.0.0", port)).await.map(drop) });
        on_worker.expect("a worker thread binds the held port");
        let on_blocking = ns.run(async move {
            tokio::task::spawn_blocking(move || {
                std::net::UdpSocket::bind(("0.0.0.0", port)).map(drop)
            })
            .await
        });
        on_blocking.expect("join").expect("a blocking-pool thread binds it");
    }
}
