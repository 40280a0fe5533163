//! A network namespace owned by this process: created on `new`, deleted on drop.

use std::fs::File;
use std::io;
use std::process::Command;

use nix::sched::{CloneFlags, setns};

use crate::cmd::{CmdError, run_ip};

/// A named network namespace (`ip netns add NAME`), deleted with everything in it when
/// dropped unless [`Netns::leak`] was called.
#[derive(Debug)]
pub struct Netns {
    name: String,
    owned: bool,
}

impl Netns {
    /// Creates the namespace, replacing a stale one of the same name left by a crash,
    /// and brings its loopback up.
    pub fn new(name: &str) -> Result<Self, CmdError> {
        let _ = run_ip(&["netns", "del", name]);
        run_ip(&["netns", "add", name])?;
        let ns = Netns { name: name.to_string(), owned: true };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Refers to an existing namespace without taking ownership of it.
    pub fn existing(name: &str) -> Self {
        Netns { name: name.to_string(), owned: false }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip ARGS...` inside the namespace.
    pub fn ip<S: AsRef<str>>(&self, args: &[S]) -> Result<String, CmdError> {
        let mut full = vec!["-n".to_string(), self.name.clone()];
        full.extend(args.iter().map(|a| a.as_ref().to_string()));
        run_ip(&full)
    }

    /// A `Command` that runs `program` inside the namespace (`ip netns exec`).
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// Moves the calling thread into the namespace: sockets it creates from then on, and
    /// threads it spawns, are in there.
    pub fn enter(&self) -> io::Result<()> {
        enter(&self.name)
    }

    /// Keeps the namespace after this value is dropped.
    pub fn leak(mut self) -> String {
        self.owned = false;
        self.name.clone()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if self.owned
            && let Err(e) = run_ip(&["netns", "del", &self.name])
        {
            tracing::warn!(netns = %self.name, error = %e, "could not delete namespace");
        }
    }
}

/// Moves the calling thread into the named namespace (`/var/run/netns/<name>`).
pub fn enter(name: &str) -> io::Result<()> {
    let ns = File::open(format!("/var/run/netns/{name}"))?;
    setns(&ns, CloneFlags::CLONE_NEWNET).map_err(io::Error::from)
}
