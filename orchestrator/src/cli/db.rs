//! `bramble db backup|restore`: local commands on the configured SQLite inventory
//! (`crate::db::backup`); a PostgreSQL inventory gets directions to its own tools.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use super::LocalArgs;
use crate::db::backup;

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Copy the SQLite inventory to FILE, consistently, while a controller may serve it.
    Backup {
        file: PathBuf,
        /// Overwrite FILE if it exists.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        local: LocalArgs,
    },
    /// Replace the SQLite inventory with a backup (no controller may be serving it); the
    /// current one is kept as `<db>.before-restore-<UTC time>`.
    Restore {
        file: PathBuf,
        #[command(flatten)]
        local: LocalArgs,
    },
}

pub async fn run(command: DbCommand) -> anyhow::Result<ExitCode> {
    match command {
        DbCommand::Backup { file, force, local } => {
            let config = local.load()?;
            let db = backup::sqlite_file(&config.database_url)?;
            let saved = backup::backup(&db, &file, force).await?;
            println!("saved {saved}");
        }
        DbCommand::Restore { file, local } => {
            let config = local.load()?;
            let db = backup::sqlite_file(&config.database_url)?;
            let done = backup::restore(&db, &file, config.cluster.lease).await?;
            if let Some(kept) = &done.kept {
                println!("kept the previous inventory as {}", kept.display());
            }
            for stale in &done.removed {
                println!("removed {}", stale.display());
            }
            println!("restored {} from {}", done.database, file.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
