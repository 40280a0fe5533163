//! Running `ip` and other external commands with errors that say what was run.

use std::process::Command;

/// An external command that could not be started or exited unsuccessfully.
#[derive(Debug, thiserror::Error)]
pub enum CmdError {
    #[error("could not start `{command}`")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` exited with {status}: {stderr}")]
    Failed { command: String, status: std::process::ExitStatus, stderr: String },
}

/// Runs `ip ARGS...` and returns its standard output.
pub fn run_ip<S: AsRef<str>>(args: &[S]) -> Result<String, CmdError> {
    run("ip", args)
}

/// Runs `program ARGS...` and returns its standard output.
pub fn run<S: AsRef<str>>(program: &str, args: &[S]) -> Result<String, CmdError> {
    let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
    let command = format!("{program} {}", args.join(" "));
    tracing::debug!(%command, "running");
    let out = Command::new(program)
        .args(&args)
        .output()
        .map_err(|source| CmdError::Spawn { command: command.clone(), source })?;
    if !out.status.success() {
        return Err(CmdError::Failed {
            command,
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
