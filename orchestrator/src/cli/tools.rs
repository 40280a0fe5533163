//! Operator tools that run locally: the virtual PoE switch and image builds.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use bramble_images::{BuildProgress, BuildStage, Catalogue, ImageStore, SystemRunner};
use bramble_switch::Secret;
use bramble_switch::sim::{SimOptions, SimSwitch, SimV3User};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use super::LocalArgs;

/// `bramble switch-sim`: a virtual PoE switch speaking SNMP v2c/v3.
#[derive(Debug, Args)]
pub struct SwitchSimArgs {
    /// UDP address to answer SNMP on.
    #[arg(long, default_value = "127.0.0.1:16100")]
    listen: std::net::SocketAddr,
    /// PoE ports; port N+1 is the trunk.
    #[arg(long, default_value_t = 96)]
    ports: u16,
    /// SNMPv2c community.
    #[arg(long, default_value = "private")]
    community: String,
    /// SNMPv3 user (authPriv, `SHA` (SHA-1) + `AES`: register it with `"auth_protocol": "SHA"`).
    #[arg(long, requires_all = ["auth_pass", "priv_pass"])]
    v3_user: Option<String>,
    #[arg(long)]
    auth_pass: Option<String>,
    #[arg(long)]
    priv_pass: Option<String>,
    /// JSON file the switch keeps its configuration in across restarts.
    #[arg(long)]
    state: Option<PathBuf>,
    /// Answer as a Cisco switch (its sysObjectID and MIBs).
    #[arg(long)]
    cisco: bool,
}

pub async fn switch_sim(a: SwitchSimArgs) -> anyhow::Result<ExitCode> {
    let mut opts = SimOptions::new(a.ports, &a.community);
    opts.listen = a.listen;
    opts.state_file = a.state;
    opts.cisco = a.cisco;
    if let (Some(user), Some(auth), Some(privacy)) = (a.v3_user, a.auth_pass, a.priv_pass) {
        opts.v3 =
            Some(SimV3User { user, auth_pass: Secret::new(auth), priv_pass: Secret::new(privacy) });
    }
    let socket = tokio::net::UdpSocket::bind(a.listen)
        .await
        .with_context(|| format!("cannot bind {}", a.listen))?;
    tracing::info!(addr = %socket.local_addr()?, ports = a.ports, "virtual PoE switch listening");
    let sim = SimSwitch::new(opts)?;
    sim.serve(socket, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(ExitCode::SUCCESS)
}

/// `bramble image build`: debootstrap an image into the store and offer it.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Recipe name, e.g. debian-bookworm-armhf (see `bramble image recipes`). Not `name`:
    /// that id is the controller's `--name` flattened in from `LocalArgs`.
    #[arg(value_name = "RECIPE")]
    recipe: String,
    /// Build again even if a base from this exact recipe exists.
    #[arg(long)]
    force: bool,
    /// Image store directory (default: <state dir>/images).
    #[arg(long)]
    store: Option<PathBuf>,
    /// Fetch the distribution from this mirror (or apt proxy, as a mirror URL such as
    /// http://HOST:3142/deb.debian.org/debian) instead of the recipe's; overrides
    /// `[images] mirror`.
    #[arg(long, value_name = "URL")]
    mirror: Option<String>,
    #[command(flatten)]
    local: LocalArgs,
}

struct Bar(ProgressBar);

impl BuildProgress for Bar {
    fn stage(&self, stage: BuildStage, percent: u8) {
        self.0.set_position(u64::from(percent));
        self.0.set_message(stage.name());
    }
}

pub async fn image_build(a: BuildArgs) -> anyhow::Result<ExitCode> {
    let config = a.local.load()?;
    let mut recipe = Catalogue::builtin()?.get(&a.recipe)?.clone();
    if let Some(url) = a.mirror.as_deref().or(config.images.mirror.as_deref()) {
        recipe = recipe.with_mirror(url)?;
    }
    let dir = a.store.unwrap_or_else(|| config.state_dir.join("images"));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let bar = ProgressBar::new(100);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] [{bar:30}] {pos:>3}% {msg}")?
            .progress_chars("=> "),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    let progress = Bar(bar.clone());
    let base = tokio::task::spawn_blocking(move || {
        let store = ImageStore::open(&dir, &SystemRunner)?;
        if a.force {
            bramble_images::build(&recipe, &store, &progress)
        } else {
            bramble_images::build_cached(&recipe, &store, &progress)
        }
    })
    .await??;
    bar.finish_with_message(format!("built {} {}", base.image, base.version));
    let db = crate::db::Db::connect(&config.database_url).await?;
    crate::catalogue::register_base(&db, &base).await?;
    db.close().await;
    super::output::line(format_args!(
        "{} {} {} bytes",
        base.image, base.version, base.manifest.size_bytes
    ))?;
    Ok(ExitCode::SUCCESS)
}

/// `bramble image recipes`: the built-in recipes.
pub fn recipes() -> anyhow::Result<ExitCode> {
    let c = Catalogue::builtin()?;
    let rows: Vec<Vec<String>> = c
        .iter()
        .map(|r| vec![r.name.clone(), r.suite.clone(), r.arch.clone(), r.mirror.clone()])
        .collect();
    super::output::table(&["name", "suite", "arch", "mirror"], &rows)?;
    Ok(ExitCode::SUCCESS)
}
