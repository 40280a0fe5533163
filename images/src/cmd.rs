//! External programs as data: a [`CommandLine`] is built by pure functions (and tested as
//! such) and executed by a [`CommandRunner`], so tests can record instead of run.

use std::fmt;
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

use crate::error::{ImagesError, Result};

/// A program and its arguments, plus extra environment variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandLine {
    pub program: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

impl CommandLine {
    pub fn new(program: &str) -> Self {
        CommandLine { program: program.to_string(), args: Vec::new(), env: Vec::new() }
    }

    pub fn arg(mut self, arg: impl AsRef<str>) -> Self {
        self.args.push(arg.as_ref().to_string());
        self
    }

    pub fn path_arg(self, path: &Path) -> Self {
        let s = path.to_string_lossy().into_owned();
        self.arg(s)
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.args.extend(args.into_iter().map(|a| a.as_ref().to_string()));
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }
}

impl fmt::Display for CommandLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.program)?;
        for a in &self.args {
            write!(f, " {a}")?;
        }
        Ok(())
    }
}

/// Runs command lines. The system implementation spawns processes; tests substitute a
/// recorder.
pub trait CommandRunner: Send + Sync {
    /// Runs the command to completion and returns its standard output, or an error naming
    /// the command with its exit status and standard error.
    fn run(&self, cmd: &CommandLine) -> Result<String>;
}

/// Spawns real processes with `std::process`.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemRunner;

impl CommandRunner for SystemRunner {
    fn run(&self, cmd: &CommandLine) -> Result<String> {
        tracing::debug!(command = %cmd, "running");
        let out = Command::new(&cmd.program)
            .args(&cmd.args)
            .envs(cmd.env.iter().map(|(k, v)| (k, v)))
            .output()
            .map_err(|source| ImagesError::Spawn { command: cmd.to_string(), source })?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let stdout = String::from_utf8_lossy(&out.stdout);
            if stderr.contains("No space left on device") {
                return Err(ImagesError::DiskFull { path: cmd.to_string().into() });
            }
            // Keep the tail: debootstrap and apt put the useful line last.
            let text = if stderr.trim().is_empty() { stdout } else { stderr };
            let tail: String = text
                .lines()
                .rev()
                .take(15)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            return Err(ImagesError::CommandFailed {
                command: cmd.to_string(),
                status: out.status.to_string(),
                stderr: tail,
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// Records every command and returns empty output (or a configured failure): the
/// simulated host used to test command lines without running them.
#[derive(Debug, Default)]
pub struct RecordingRunner {
    log: Mutex<Vec<CommandLine>>,
    fail_program: Mutex<Option<String>>,
}

impl RecordingRunner {
    /// Commands run so far, rendered as shell-like lines.
    pub fn lines(&self) -> Vec<String> {
        self.log.lock().map(|l| l.iter().map(ToString::to_string).collect()).unwrap_or_default()
    }

    /// Makes every later invocation of `program` fail.
    pub fn fail(&self, program: &str) {
        if let Ok(mut f) = self.fail_program.lock() {
            *f = Some(program.to_string());
        }
    }
}

impl CommandRunner for RecordingRunner {
    fn run(&self, cmd: &CommandLine) -> Result<String> {
        if let Ok(mut l) = self.log.lock() {
            l.push(cmd.clone());
        }
        let failing = self.fail_program.lock().ok().and_then(|f| f.clone());
        if failing.as_deref() == Some(cmd.program.as_str()) {
            return Err(ImagesError::CommandFailed {
                command: cmd.to_string(),
                status: "exit status: 1".into(),
                stderr: "simulated failure".into(),
            });
        }
        Ok(String::new())
    }
}
