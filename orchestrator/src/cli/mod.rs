//! The `bramble` command line: `serve`, `token create` and `db backup|restore` work on
//! the local configuration and database; everything else is a client of the HTTP API.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::auth::Role;
use crate::config::{Config, Overrides};

mod client;
mod commands;
mod console;
mod db;
mod doctor;
mod hardware;
mod lab;
mod output;
mod shelf_view;
mod tools;

#[derive(Debug, Parser)]
#[command(name = "bramble", version, about = "Bare-metal Raspberry Pi cloud controller")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the local controller's configuration comes from.
#[derive(Debug, Args, Clone)]
pub struct LocalArgs {
    /// TOML configuration file (defaults apply without one).
    #[arg(long, env = "BRAMBLE_CONFIG")]
    config: Option<PathBuf>,
    /// Address for the HTTP API, e.g. 127.0.0.1:8080.
    #[arg(long)]
    listen: Option<String>,
    /// Database URL: sqlite://PATH or postgres://...
    #[arg(long, env = "BRAMBLE_DATABASE")]
    database: Option<String>,
    /// Directory for the SQLite database and other state.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// This controller's name in the cluster (default: `[cluster] name`, else the host
    /// name).
    #[arg(long, env = "BRAMBLE_NAME")]
    name: Option<String>,
}

impl LocalArgs {
    fn load(&self) -> anyhow::Result<Config> {
        Ok(self.load_config()?)
    }

    /// The file (if any) with the command line's overrides; `serve` calls it again on
    /// every SIGHUP.
    fn load_config(&self) -> Result<Config, crate::config::ConfigError> {
        let o = Overrides {
            listen: self.listen.clone(),
            database: self.database.clone(),
            state_dir: self.state_dir.clone(),
            name: self.name.clone(),
        };
        Config::load(self.config.as_deref(), &o)
    }
}

/// How to reach a controller's API.
#[derive(Debug, Args, Clone)]
pub struct ApiArgs {
    /// Base URL of the controller.
    #[arg(long, env = "BRAMBLE_API", default_value = "http://127.0.0.1:8080", global = true)]
    api: String,
    /// Bearer token.
    #[arg(long, env = "BRAMBLE_TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    /// PEM CA bundle to verify an https:// controller against (default: the system's
    /// roots).
    #[arg(long, env = "BRAMBLE_CA_FILE", global = true)]
    ca_file: Option<PathBuf>,
    /// PEM client certificate, for a controller that requires one (`[tls] client_ca`).
    #[arg(long, env = "BRAMBLE_CLIENT_CERT", global = true, requires = "client_key")]
    client_cert: Option<PathBuf>,
    /// The client certificate's PEM private key.
    #[arg(long, env = "BRAMBLE_CLIENT_KEY", global = true, requires = "client_cert")]
    client_key: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the controller: API, job runner.
    Serve(LocalArgs),
    /// Manage API tokens directly in the configured database.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Back up or restore the configured SQLite inventory (docs/backups.md).
    Db {
        #[command(subcommand)]
        command: db::DbCommand,
    },
    /// Pis: list, show, power, reboot, reimage, snapshots, restore, rescue, unrescue.
    Pi {
        #[command(subcommand)]
        command: PiCommand,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Jobs: show, wait.
    Job {
        #[command(subcommand)]
        command: JobCommand,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Shelves.
    Shelf {
        #[command(subcommand)]
        command: ShelfCommand,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// OS images.
    Image {
        #[command(subcommand)]
        command: ImageCommand,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// The controllers sharing this inventory.
    Controller {
        #[command(subcommand)]
        command: ControllerCommand,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Switches: move one to another controller.
    Switch {
        #[command(subcommand)]
        command: SwitchCommand,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Check that this machine is ready to serve Pis (config, database, trunk, ports,
    /// NFS, image store, disk, switches, clock); exits 1 if a check fails.
    Doctor(doctor::DoctorArgs),
    /// Run a virtual PoE switch (SNMP v2c/v3) for labs and tests.
    SwitchSim(tools::SwitchSimArgs),
    /// A virtual shelf on this machine: controller, switch, NFS server, simulated Pis.
    Lab {
        #[command(subcommand)]
        command: lab::LabCommand,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Mint a token and print it alone on stdout (it cannot be shown again).
    Create {
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// The customer a customer token is bound to.
        #[arg(long)]
        customer: Option<String>,
        #[arg(long, default_value = "")]
        label: String,
        #[command(flatten)]
        local: LocalArgs,
    },
}

fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(s).ok_or_else(|| format!("role must be operator or customer, got {s:?}"))
}

#[derive(Debug, Subcommand)]
enum PiCommand {
    /// List Pis.
    List {
        #[arg(long)]
        shelf: Option<String>,
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        owner: Option<String>,
    },
    /// Show one Pi and its recent timeline.
    Show { id: String },
    /// Show a Pi's console (its kernel's netconsole output), the latest boot by default.
    Console {
        id: String,
        /// Keep printing new lines as they arrive (into newer boots, without --boot).
        #[arg(long)]
        follow: bool,
        /// A boot number (the console keeps the last few boots).
        #[arg(long)]
        boot: Option<i64>,
    },
    /// Power a Pi on.
    PowerOn(ActionArgs),
    /// Power a Pi off.
    PowerOff(ActionArgs),
    /// Power-cycle a Pi and wait for it to boot.
    Reboot(ActionArgs),
    /// Reinstall a Pi with an image and SSH keys. Deletes all its data.
    Reimage {
        #[command(flatten)]
        action: ActionArgs,
        #[arg(long)]
        image: String,
        /// An SSH public key line (repeatable).
        #[arg(long = "ssh-key")]
        ssh_keys: Vec<String>,
        /// A file of SSH public keys, one per line (repeatable).
        #[arg(long = "ssh-key-file")]
        ssh_key_files: Vec<PathBuf>,
    },
    /// List a Pi's snapshots (kept by reinstalls and restores, or taken on demand).
    Snapshots { id: String },
    /// Take a snapshot of a Pi's root now.
    Snapshot(ActionArgs),
    /// Swap a snapshot back in as the Pi's root; the root it replaces becomes a snapshot.
    Restore {
        #[command(flatten)]
        action: ActionArgs,
        /// A snapshot id from `bramble pi snapshots ID`.
        snapshot: String,
    },
    /// Boot a Pi into a rescue system, its own root mounted at /mnt/root.
    Rescue {
        #[command(flatten)]
        action: ActionArgs,
        /// A file of SSH public keys for the rescue system, one per line (repeatable;
        /// default: the keys of the Pi's latest reinstall).
        #[arg(long = "ssh-key", value_name = "FILE")]
        ssh_key_files: Vec<PathBuf>,
    },
    /// Leave rescue: delete the rescue system and boot the Pi's own root.
    Unrescue(ActionArgs),
    /// Mark a Pi for maintenance before swapping its board (`on`; no job runs but an
    /// operator's power, and a new board seen in its slot becomes its hardware), or end
    /// it (`off`).
    Maintenance {
        id: String,
        #[arg(value_parser = ["on", "off"])]
        state: String,
    },
    /// Accept the sighting flagged on a Pi: the board seen becomes its hardware.
    AcceptHardware {
        id: String,
        /// The sighting id `bramble pi show` printed (default: the one pending now).
        #[arg(long)]
        sighting: Option<String>,
    },
    /// Dismiss the sighting flagged on a Pi; nothing changes.
    DismissHardware {
        id: String,
        #[arg(long)]
        sighting: Option<String>,
    },
}

#[derive(Debug, Args)]
struct ActionArgs {
    id: String,
    /// Idempotency-Key for the request (safe retries).
    #[arg(long)]
    idempotency_key: Option<String>,
    /// Wait for the job to finish, showing progress.
    #[arg(long)]
    wait: bool,
}

#[derive(Debug, Subcommand)]
enum JobCommand {
    Show {
        id: String,
    },
    /// Wait for a job to finish, with a progress bar. Exits 1 if it failed.
    Wait {
        id: String,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 3600)]
        timeout: u64,
    },
}

#[derive(Debug, Subcommand)]
enum ShelfCommand {
    List,
    /// Watch one shelf: ports, Pis, boot stages and jobs, redrawn every second.
    Show(shelf_view::ShowArgs),
    /// Rack an enrolled shelf: storage interfaces, switch configuration, staggered
    /// power-on; every slot ends ready or flagged.
    Rack {
        name: String,
        /// Wait for the job, showing progress.
        #[arg(long)]
        wait: bool,
        #[arg(long, default_value_t = 3600)]
        timeout: u64,
    },
}

#[derive(Debug, Subcommand)]
enum ControllerCommand {
    /// Every controller: alive or not, last heartbeat, what it serves (operators).
    List,
}

#[derive(Debug, Subcommand)]
enum SwitchCommand {
    /// Every switch with the controller serving it.
    List,
    /// Hand a switch and its shelves to another controller, which brings their storage
    /// interfaces up and exports their roots; their queued jobs wait for it.
    Move {
        /// Switch id or name.
        switch: String,
        /// The controller that serves it from now on.
        #[arg(long)]
        to: String,
    },
}

#[derive(Debug, Subcommand)]
enum ImageCommand {
    /// Images offered by the controller (API).
    List,
    /// Built-in recipes (local).
    Recipes,
    /// Build an image locally with debootstrap and offer it (local; needs root).
    Build(tools::BuildArgs),
}

/// Runs the command line; the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(commands::run(cli.command)) {
        Ok(code) => code,
        Err(e) if reader_gone(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Whether the command failed only because whoever read its stdout stopped reading
/// (`bramble pi show ID | head`): not an error, as for `ls | head`.
fn reader_gone(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<output::StdoutError>().is_some_and(|o| o.reader_gone()))
}

/// Logs to stderr through a filter a reload can replace (`crate::logging`).
fn init_tracing() {
    crate::logging::init();
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// clap checks a definition only when a subcommand is parsed (and only in debug
    /// builds): two arguments with one id (a positional `name` beside the flattened
    /// `--name`) made `bramble image build` panic. Check every subcommand at once.
    #[test]
    fn every_subcommand_is_a_valid_clap_definition() {
        super::Cli::command().debug_assert();
    }
}
