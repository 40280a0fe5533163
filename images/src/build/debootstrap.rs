//! Command lines for building a root with debootstrap, as pure functions of the recipe
//! and paths, so they are tested as text.

use std::path::Path;

use crate::cmd::CommandLine;
use crate::recipe::Recipe;

/// True when the build host can run the recipe's binaries natively (no qemu).
pub fn is_native(recipe: &Recipe, host_arch: &str) -> bool {
    matches!((recipe.arch.as_str(), host_arch), ("arm64", "aarch64") | ("armhf" | "armel", "arm"))
}

/// The debootstrap invocation: first stage only (`--foreign`) unless `native`.
pub fn first_stage(recipe: &Recipe, root: &Path, native: bool) -> CommandLine {
    let mut cmd = CommandLine::new("debootstrap").arg(format!("--arch={}", recipe.arch));
    if !native {
        cmd = cmd.arg("--foreign");
    }
    if recipe.variant != "-" {
        cmd = cmd.arg(format!("--variant={}", recipe.variant));
    }
    cmd = cmd
        .arg(format!("--components={}", recipe.components.join(",")))
        .arg(format!("--keyring={}", recipe.keyring));
    if !recipe.packages.is_empty() {
        cmd = cmd.arg(format!("--include={}", recipe.packages.join(",")));
    }
    cmd.arg(&recipe.suite).path_arg(root).arg(&recipe.mirror)
}

/// The second stage, run inside the root through qemu-user-static via binfmt_misc.
pub fn second_stage(root: &Path) -> CommandLine {
    in_chroot(root, &["/debootstrap/debootstrap", "--second-stage"])
}

/// `chroot ROOT ARGS...` with a non-interactive, C-locale environment.
pub fn in_chroot(root: &Path, args: &[&str]) -> CommandLine {
    CommandLine::new("chroot")
        .path_arg(root)
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .env("LC_ALL", "C")
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
}

/// `update-binfmts --enable qemu-<arch>`.
pub fn enable_binfmt(qemu_arch: &str) -> CommandLine {
    CommandLine::new("update-binfmts").args(["--enable", &format!("qemu-{qemu_arch}")])
}

/// `mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc`.
pub fn mount_binfmt() -> CommandLine {
    CommandLine::new("mount").args(["-t", "binfmt_misc", "binfmt_misc", "/proc/sys/fs/binfmt_misc"])
}

/// `mount -t proc proc ROOT/proc`: package scripts run during the kernel install ask
/// `ischroot` whether they run in a chroot, which needs `/proc`; without it Debian's
/// raspi-firmware hook takes the root for a booted Pi whose `/boot/firmware` is not
/// mounted, and fails the install.
pub fn mount_proc(root: &Path) -> CommandLine {
    CommandLine::new("mount").args(["-t", "proc", "proc"]).path_arg(&root.join("proc"))
}

/// Installs the kernel/firmware packages with apt after the second stage.
pub fn apt_install(root: &Path, packages: &[String]) -> Vec<CommandLine> {
    let mut install = vec!["apt-get", "install", "-y", "--no-install-recommends"];
    install.extend(packages.iter().map(String::as_str));
    vec![
        in_chroot(root, &["apt-get", "update"]),
        in_chroot(root, &install),
        in_chroot(root, &["apt-get", "clean"]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::Catalogue;

    #[test]
    fn bookworm_armhf_first_stage_is_foreign_minbase_with_includes() {
        let c = Catalogue::builtin().expect("builtin");
        let r = c.get("debian-bookworm-armhf").expect("recipe");
        assert!(!is_native(r, "x86_64"));
        assert_eq!(
            first_stage(r, Path::new("/st/root"), false).to_string(),
            "debootstrap --arch=armhf --foreign --variant=minbase --components=main,non-free-firmware \
             --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
             --include=openssh-server,systemd-sysv,iproute2,netbase,ca-certificates \
             bookworm /st/root http://deb.debian.org/debian"
        );
        assert_eq!(
            second_stage(Path::new("/st/root")).to_string(),
            "chroot /st/root /debootstrap/debootstrap --second-stage"
        );
    }

    #[test]
    fn native_builds_skip_foreign() {
        let c = Catalogue::builtin().expect("builtin");
        let r = c.get("debian-bookworm-arm64").expect("recipe");
        assert!(is_native(r, "aarch64"));
        assert!(!first_stage(r, Path::new("/r"), true).args.contains(&"--foreign".to_string()));
        assert_eq!(
            enable_binfmt(r.qemu_arch()).to_string(),
            "update-binfmts --enable qemu-aarch64"
        );
    }
}
