//! Building bases: debootstrap's first stage, the second stage under qemu-user-static
//! (or natively), kernel/firmware packages, NFS-root preparation, a manifest, and an
//! atomic registration in the store. A failed build leaves nothing registered.

pub mod boot;
pub mod debootstrap;
pub mod nfsroot;

use std::path::Path;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::cmd::{CommandLine, CommandRunner, SystemRunner};
use crate::error::{ImagesError, Result};
use crate::fsutil::{self, write_file};
use crate::manifest::{self, Manifest};
use crate::recipe::Recipe;
use crate::store::{self, Base, ImageStore};

/// The steps of a build, in order, for progress display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildStage {
    CheckHost,
    FirstStage,
    Emulation,
    SecondStage,
    KernelPackages,
    BootFiles,
    NfsRoot,
    Manifest,
    Register,
}

impl BuildStage {
    pub fn name(self) -> &'static str {
        match self {
            BuildStage::CheckHost => "checking host",
            BuildStage::FirstStage => "debootstrap first stage",
            BuildStage::Emulation => "setting up qemu-user-static",
            BuildStage::SecondStage => "debootstrap second stage",
            BuildStage::KernelPackages => "installing kernel and firmware",
            BuildStage::BootFiles => "gathering boot files",
            BuildStage::NfsRoot => "preparing NFS root",
            BuildStage::Manifest => "writing manifest",
            BuildStage::Register => "registering base",
        }
    }

    /// Overall completion when this stage starts, weighted by measured durations
    /// (the second stage under emulation dominates).
    pub fn percent(self) -> u8 {
        match self {
            BuildStage::CheckHost => 0,
            BuildStage::FirstStage => 2,
            BuildStage::Emulation => 20,
            BuildStage::SecondStage => 21,
            BuildStage::KernelPackages => 70,
            BuildStage::BootFiles => 91,
            BuildStage::NfsRoot => 92,
            BuildStage::Manifest => 93,
            BuildStage::Register => 99,
        }
    }
}

/// Receives build progress; the CLI drives a progress bar from it.
pub trait BuildProgress: Send + Sync {
    /// A stage starts; `percent` is the overall completion so far.
    fn stage(&self, stage: BuildStage, percent: u8);
    /// The build finished and registered `base`.
    fn finished(&self, _base: &Base) {}
}

/// Ignores progress.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl BuildProgress for NoProgress {
    fn stage(&self, _stage: BuildStage, _percent: u8) {}
}

/// Builds `recipe` into a new base in `store` with real processes.
pub fn build(recipe: &Recipe, store: &ImageStore, progress: &dyn BuildProgress) -> Result<Base> {
    build_with(&SystemRunner, recipe, store, progress)
}

/// Returns the newest base built from exactly this recipe, building it if there is none.
pub fn build_cached(
    recipe: &Recipe,
    store: &ImageStore,
    progress: &dyn BuildProgress,
) -> Result<Base> {
    if let Some(base) = store.find_by_recipe(&recipe.name, &recipe.hash())? {
        tracing::info!(image = %recipe.name, version = %base.version, "using cached base");
        progress.finished(&base);
        return Ok(base);
    }
    build(recipe, store, progress)
}

/// [`build`] with an explicit command runner.
pub fn build_with(
    runner: &dyn CommandRunner,
    recipe: &Recipe,
    store: &ImageStore,
    progress: &dyn BuildProgress,
) -> Result<Base> {
    let started = Instant::now();
    let started_at = SystemTime::now();
    progress.stage(BuildStage::CheckHost, BuildStage::CheckHost.percent());
    let native = debootstrap::is_native(recipe, std::env::consts::ARCH);
    check_host(recipe, native)?;
    let staging = store.stage(&recipe.name, runner)?;
    let root = staging.root();
    tracing::info!(image = %recipe.name, root = %root.display(), native, "building base");

    let step = |s: BuildStage| progress.stage(s, s.percent());
    step(BuildStage::FirstStage);
    runner.run(&debootstrap::first_stage(recipe, &root, native))?;
    if !native {
        step(BuildStage::Emulation);
        setup_emulation(runner, recipe, &root)?;
        step(BuildStage::SecondStage);
        let second = runner.run(&debootstrap::second_stage(&root));
        // debootstrap mounts proc and sys in the root; never leave them behind.
        fsutil::unmount_below(runner, &root)?;
        second?;
    }
    step(BuildStage::KernelPackages);
    boot::write_initramfs_config(&root, recipe)?;
    let kernel = install_kernel(runner, recipe, &root);
    fsutil::unmount_below(runner, &root)?;
    kernel?;
    step(BuildStage::BootFiles);
    let boot_files = boot::assemble(&root, recipe)?;
    step(BuildStage::NfsRoot);
    nfsroot::prepare(&root, recipe)?;
    cleanup(&root, recipe)?;

    step(BuildStage::Manifest);
    let digest = manifest::tree_digest(&root)?;
    let manifest = Manifest {
        image: recipe.name.clone(),
        version: store::version_string(started_at, &recipe.hash()),
        recipe_hash: recipe.hash(),
        suite: recipe.suite.clone(),
        arch: recipe.arch.clone(),
        boot_dir: recipe.boot_dir.clone(),
        kernel: boot_files.as_ref().map(|f| f.kernel.clone()),
        initramfs: boot_files.and_then(|f| f.initramfs),
        network: recipe.network,
        models: recipe.models.clone(),
        console_args: recipe.cmdline_console_args(),
        packages: manifest::installed_packages(&root)?,
        size_bytes: digest.size_bytes,
        file_count: digest.file_count,
        tree_sha256: digest.sha256,
        built_at_unix: started_at.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        build_seconds: started.elapsed().as_secs_f64(),
    };
    step(BuildStage::Register);
    let base = store.commit(staging, &manifest, runner)?;
    progress.finished(&base);
    tracing::info!(image = %base.image, version = %base.version, size = base.manifest.size_bytes,
        seconds = base.manifest.build_seconds, "built base");
    Ok(base)
}

fn check_host(recipe: &Recipe, native: bool) -> Result<()> {
    let missing =
        |what: String, hint: &str| Err(ImagesError::HostMissing { what, hint: hint.to_string() });
    if !Path::new("/usr/sbin/debootstrap").exists() {
        return missing("debootstrap".into(), "apt-get install debootstrap");
    }
    if !Path::new(&recipe.keyring).exists() {
        return missing(
            format!("keyring {}", recipe.keyring),
            "install the distribution's archive keyring package",
        );
    }
    if !native && !qemu_binary(recipe).exists() {
        return missing(
            qemu_binary(recipe).display().to_string(),
            "apt-get install qemu-user-static binfmt-support",
        );
    }
    Ok(())
}

fn qemu_binary(recipe: &Recipe) -> std::path::PathBuf {
    Path::new("/usr/bin").join(format!("qemu-{}-static", recipe.qemu_arch()))
}

/// Mounts binfmt_misc if needed, enables the qemu handler and copies the emulator in.
fn setup_emulation(runner: &dyn CommandRunner, recipe: &Recipe, root: &Path) -> Result<()> {
    if !Path::new("/proc/sys/fs/binfmt_misc/status").exists() {
        runner.run(&debootstrap::mount_binfmt())?;
    }
    runner.run(&debootstrap::enable_binfmt(recipe.qemu_arch()))?;
    let qemu = qemu_binary(recipe);
    let dest = root.join("usr/bin").join(qemu.file_name().unwrap_or_default());
    std::fs::copy(&qemu, &dest)
        .map_err(|e| ImagesError::io("copying qemu into the root", &dest, e))?;
    Ok(())
}

/// The commands (after files are written) that install the kernel/firmware packages.
pub fn kernel_commands(recipe: &Recipe, root: &Path) -> Vec<CommandLine> {
    let mut cmds = Vec::new();
    for src in &recipe.apt_sources {
        if src.key_url.is_some() {
            let key = format!("/tmp/{}.key", src.name);
            cmds.push(debootstrap::in_chroot(root, &["apt-key", "add", &key]));
        }
    }
    cmds.extend(debootstrap::apt_install(root, &recipe.kernel_packages));
    cmds
}

fn install_kernel(runner: &dyn CommandRunner, recipe: &Recipe, root: &Path) -> Result<()> {
    if recipe.kernel_packages.is_empty() {
        return Ok(());
    }
    // No daemons may start inside the chroot.
    write_file(&root.join("usr/sbin/policy-rc.d"), "#!/bin/sh\nexit 101\n", 0o755)?;
    let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    write_file(&root.join("etc/resolv.conf"), &resolv, 0o644)?;
    for src in &recipe.apt_sources {
        let line = format!("deb {} {} {}\n", src.uri, src.suite, src.components.join(" "));
        write_file(
            &root.join("etc/apt/sources.list.d").join(format!("{}.list", src.name)),
            &line,
            0o644,
        )?;
        if let Some(url) = &src.key_url {
            let dest = root.join("tmp").join(format!("{}.key", src.name));
            runner.run(&CommandLine::new("curl").args(["-fsSL", "-o"]).path_arg(&dest).arg(url))?;
        }
    }
    runner.run(&debootstrap::mount_proc(root))?;
    for cmd in kernel_commands(recipe, root) {
        runner.run(&cmd)?;
    }
    Ok(())
}

fn cleanup(root: &Path, recipe: &Recipe) -> Result<()> {
    fsutil::remove_tree(
        &qemu_binary(recipe).file_name().map(|f| root.join("usr/bin").join(f)).unwrap_or_default(),
    )?;
    fsutil::remove_tree(&root.join("usr/sbin/policy-rc.d"))?;
    for dir in ["var/cache/apt/archives", "var/lib/apt/lists"] {
        let d = root.join(dir);
        if let Ok(entries) = std::fs::read_dir(&d) {
            for e in entries.filter_map(std::result::Result::ok) {
                if e.path().is_file() {
                    fsutil::remove_tree(&e.path())?;
                }
            }
        }
    }
    for src in &recipe.apt_sources {
        fsutil::remove_tree(&root.join("tmp").join(format!("{}.key", src.name)))?;
    }
    nfsroot::strip_identity(root)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::Catalogue;

    #[test]
    fn raspbian_kernel_comes_from_archive_raspberrypi_org_after_adding_its_key() {
        let c = Catalogue::builtin().expect("builtin");
        let r = c.get("raspbian-jessie").expect("jessie");
        let lines: Vec<String> =
            kernel_commands(r, Path::new("/r")).iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "chroot /r apt-key add /tmp/raspi.key",
                "chroot /r apt-get update",
                "chroot /r apt-get install -y --no-install-recommends raspberrypi-kernel raspberrypi-bootloader",
                "chroot /r apt-get clean",
            ]
        );
    }

    #[test]
    fn stage_percentages_increase() {
        use BuildStage::*;
        let s = [
            CheckHost,
            FirstStage,
            Emulation,
            SecondStage,
            KernelPackages,
            BootFiles,
            NfsRoot,
            Manifest,
            Register,
        ];
        assert!(s.windows(2).all(|w| w[0].percent() < w[1].percent()));
    }
}
