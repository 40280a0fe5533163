//! The lab's error type for the daemons and shelves it runs (`ganesha`, `anchor`,
//! `storm`): every variant says what was being done and to which file or program.

use std::path::PathBuf;
use std::time::Duration;

use crate::CmdError;
use crate::pisim::PiSimError;

/// What went wrong while building, running or measuring a lab.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("{what}")]
    Cmd {
        what: String,
        #[source]
        source: CmdError,
    },
    #[error("{what} {}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("could not start {program}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{program} exited early ({status}); see {}", log.display())]
    Exited { program: String, status: std::process::ExitStatus, log: PathBuf },
    #[error("{what} was not ready within {waited:?}; see {}", log.display())]
    NotReady { what: String, waited: Duration, log: PathBuf },
    #[error("{tool} is not installed (Debian package {package})")]
    MissingTool { tool: &'static str, package: &'static str },
    #[error("the lab needs root (network namespaces, veth pairs)")]
    NotRoot,
    #[error("invalid lab setting {what}: {reason}")]
    Invalid { what: &'static str, reason: String },
    #[error("boot storm: {reason}")]
    Storm { reason: String },
    #[error("powering Pi {pi}")]
    Power {
        pi: usize,
        #[source]
        source: PiSimError,
    },
}

impl LabError {
    pub(crate) fn cmd(what: impl Into<String>) -> impl FnOnce(CmdError) -> LabError {
        let what = what.into();
        move |source| LabError::Cmd { what, source }
    }

    pub(crate) fn io(
        what: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> LabError {
        let path = path.into();
        move |source| LabError::Io { what, path, source }
    }
}

/// Fails with [`LabError::MissingTool`] unless every `(tool, package)` is on PATH, and
/// with [`LabError::NotRoot`] unless running as root.
pub fn require_tools(tools: &[(&'static str, &'static str)]) -> Result<(), LabError> {
    for &(tool, package) in tools {
        let found = std::env::var_os("PATH")
            .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()));
        if !found {
            return Err(LabError::MissingTool { tool, package });
        }
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err(LabError::NotRoot);
    }
    Ok(())
}
