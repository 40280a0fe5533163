//! A base's boot directory: everything a Pi with no SD card loads over TFTP before its
//! root is mounted. The initramfs configuration is written before the kernel package
//! installs (its postinst builds the initramfs under emulation); after it, the kernel,
//! the initramfs, the Pi firmware and the device trees are gathered into the recipe's
//! boot dir and a `config.txt` naming them is written there.
//!
//! The file names and `config.txt` are pure functions of the recipe and the kernel
//! version found, tested as text; [`assemble`] does the copying.

use std::path::{Path, PathBuf};

use crate::error::{ImagesError, Result};
use crate::fsutil::write_file;
use crate::recipe::{BootSpec, NetconsoleKind, Recipe};

/// initramfs-tools drop-in: boot from NFS, and carry only the modules the hook names.
pub const INITRAMFS_CONF: &str = "etc/initramfs-tools/conf.d/bramble-netboot.conf";
/// initramfs-tools hook that adds (and loads at boot) the recipe's modules.
pub const INITRAMFS_HOOK: &str = "etc/initramfs-tools/hooks/bramble-netboot";
/// init-premount script that loads netconsole once the NIC exists.
pub const NETCONSOLE_PREMOUNT: &str =
    "etc/initramfs-tools/scripts/init-premount/bramble-netconsole";
/// nfs-bottom script that logs the NFS root mount to the kernel log.
pub const NFSROOT_BOTTOM: &str = "etc/initramfs-tools/scripts/nfs-bottom/bramble-nfsroot";

/// initramfs-tools script header (`prereqs` protocol).
const SCRIPT_HEAD: &str = "PREREQ=\"\"\n\
                           prereqs() { echo \"$PREREQ\"; }\n\
                           case \"$1\" in prereqs) prereqs; exit 0;; esac\n";

/// Loads netconsole with the command line's `netconsole=` value once its NIC exists.
/// `init` itself tries before the NIC driver is loaded, and on a Pi whose NIC sits
/// behind USB that fails. A target given as a module parameter makes netconsole dump the
/// kernel log so far when it registers (`CON_PRINTBUFFER`), so the version banner is
/// sent then; seen under QEMU with Debian's 6.1 kernel. `printk_devkmsg` is set to `on`,
/// so the `/dev/kmsg` lines of the scripts (and journald's) are not rate limited.
fn netconsole_premount() -> String {
    format!(
        "#!/bin/sh\n\
         # Written by Bramble: netconsole for a netbooting Pi whose kernel has it as a module.\n\
         {SCRIPT_HEAD}\
         nc=\"\"\n\
         for x in $(cat /proc/cmdline); do\n\
         \tcase \"$x\" in netconsole=*) nc=\"${{x#netconsole=}}\";; esac\n\
         done\n\
         [ -n \"$nc\" ] || exit 0\n\
         echo on > /proc/sys/kernel/printk_devkmsg 2>/dev/null\n\
         [ -d /sys/module/netconsole ] && exit 0\n\
         dev=\"${{nc#*/}}\"; dev=\"${{dev%%,*}}\"; [ -n \"$dev\" ] || dev=eth0\n\
         i=0\n\
         while [ ! -e \"/sys/class/net/$dev\" ] && [ \"$i\" -lt 100 ]; do sleep 0.1; i=$((i + 1)); done\n\
         modprobe netconsole netconsole=\"$nc\"\n\
         exit 0\n"
    )
}

/// Logs where the NFS root came from (`server:/path` as `/proc/mounts` shows it) to the
/// kernel log, so the console shows the mount (klibc's `nfsmount` prints nothing there).
fn nfsroot_bottom() -> String {
    format!(
        "#!/bin/sh\n\
         # Written by Bramble: the NFS root mount, in the kernel log (and so on netconsole).\n\
         {SCRIPT_HEAD}\
         while read -r src mnt fstype opts rest; do\n\
         \tif [ \"$mnt\" = \"${{rootmnt:-/root}}\" ]; then\n\
         \t\techo \"<5>bramble: NFS root $src mounted on $mnt ($fstype $opts)\" > /dev/kmsg\n\
         \tfi\n\
         done < /proc/mounts\n\
         exit 0\n"
    )
}

/// What a built base boots: file names relative to its boot dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootFiles {
    pub kernel: String,
    pub initramfs: Option<String>,
}

/// The initramfs-tools files for `spec`, as (path in the root, contents, mode); none when
/// the kernel mounts its NFS root itself. With `netconsole` a module, the hook also adds
/// it (not force-loaded: it needs the NIC) and the netconsole and NFS-root scripts.
pub fn initramfs_files(
    spec: &BootSpec,
    netconsole: Option<NetconsoleKind>,
) -> Vec<(&'static str, String, u32)> {
    if spec.initramfs_modules.is_empty() {
        return Vec::new();
    }
    let conf = "# Written by Bramble: this root is mounted over NFS by the initramfs, which\n\
                # brings up the NIC (ip= or DHCP) and mounts nfsroot=.\n\
                BOOT=nfs\n\
                MODULES=list\n"
        .to_string();
    let mut hook = String::from(
        "#!/bin/sh\n\
         # Written by Bramble: the NIC and NFS modules a netbooting Pi needs before its\n\
         # root is mounted, loaded in this order at boot (force_load).\n\
         PREREQ=\"\"\n\
         prereqs() { echo \"$PREREQ\"; }\n\
         case \"$1\" in prereqs) prereqs; exit 0;; esac\n\
         . /usr/share/initramfs-tools/hook-functions\n",
    );
    for m in &spec.initramfs_modules {
        hook.push_str(&format!("force_load {m}\n"));
    }
    let mut files = Vec::new();
    if netconsole == Some(NetconsoleKind::Module) {
        hook.push_str("manual_add_modules netconsole\n");
        files.push((NETCONSOLE_PREMOUNT, netconsole_premount(), 0o755));
        files.push((NFSROOT_BOTTOM, nfsroot_bottom(), 0o755));
    }
    files.insert(0, (INITRAMFS_HOOK, hook, 0o755));
    files.insert(0, (INITRAMFS_CONF, conf, 0o644));
    files
}

/// Writes [`initramfs_files`] into `root`.
pub fn write_initramfs_config(root: &Path, recipe: &Recipe) -> Result<()> {
    for (path, contents, mode) in initramfs_files(&recipe.boot, recipe.console.netconsole) {
        write_file(&root.join(path), &contents, mode)?;
    }
    Ok(())
}

/// The boot file names for kernel version `kver` (`None` when the recipe names a kernel
/// a package installed into the boot dir).
pub fn boot_files(spec: &BootSpec, kver: Option<&str>) -> Option<BootFiles> {
    match (&spec.kernel, kver) {
        (Some(kernel), _) => Some(BootFiles { kernel: kernel.clone(), initramfs: None }),
        (None, Some(v)) => Some(BootFiles {
            kernel: format!("vmlinuz-{v}"),
            initramfs: (!spec.initramfs_modules.is_empty()).then(|| format!("initrd.img-{v}")),
        }),
        (None, None) => None,
    }
}

/// `config.txt` for the base: the kernel and initramfs by name, 64-bit mode, the serial
/// console's UART, and one `device_tree=` per model filter. It ends in `[all]`, so lines
/// appended later (the controller's per-slot section) apply to every model.
pub fn render_config_txt(spec: &BootSpec, files: &BootFiles) -> String {
    let mut out = String::from(
        "# Written by Bramble when this image was built. The controller serves this file\n\
         # with a per-slot section appended; cmdline.txt is generated per slot.\n",
    );
    if spec.arm_64bit {
        out.push_str("arm_64bit=1\n");
    }
    out.push_str(&format!("kernel={}\n", files.kernel));
    if let Some(initrd) = &files.initramfs {
        out.push_str(&format!("initramfs {initrd} followkernel\n"));
    }
    out.push_str("enable_uart=1\n");
    for dt in &spec.device_trees {
        out.push_str(&format!("[{}]\ndevice_tree={}\n", dt.filter, dt.file));
    }
    out.push_str("[all]\n");
    out
}

/// The newest `vmlinuz-<version>` in the root's `/boot`, as its version.
pub fn installed_kernel_version(root: &Path) -> Option<String> {
    let entries = std::fs::read_dir(root.join("boot")).ok()?;
    let mut versions: Vec<String> = entries
        .filter_map(std::result::Result::ok)
        .filter_map(|e| e.file_name().to_str()?.strip_prefix("vmlinuz-").map(str::to_string))
        .collect();
    versions.sort_by(|a, b| natural_cmp(a, b));
    versions.pop()
}

/// Orders version strings by their numeric runs (`6.1.0-9` < `6.1.0-28`).
fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let key = |s: &str| -> Vec<u64> {
        s.split(|c: char| !c.is_ascii_digit()).filter_map(|n| n.parse().ok()).collect()
    };
    key(a).cmp(&key(b)).then_with(|| a.cmp(b))
}

/// Gathers the boot dir of `root` as `recipe` describes and writes its `config.txt`.
/// Returns `None` for a recipe without kernel packages (a base nothing boots).
pub fn assemble(root: &Path, recipe: &Recipe) -> Result<Option<BootFiles>> {
    if recipe.kernel_packages.is_empty() {
        return Ok(None);
    }
    let spec = &recipe.boot;
    let boot = root.join(&recipe.boot_dir);
    std::fs::create_dir_all(&boot)
        .map_err(|e| ImagesError::io("creating boot directory", &boot, e))?;
    let kver = installed_kernel_version(root);
    let files = boot_files(spec, kver.as_deref()).ok_or_else(|| ImagesError::BootFiles {
        reason: format!("no kernel: nothing matches {}/boot/vmlinuz-*", root.display()),
    })?;
    if let Some(v) = kver.as_deref().filter(|_| spec.kernel.is_none()) {
        copy_in(&root.join("boot").join(format!("vmlinuz-{v}")), &boot.join(&files.kernel))?;
        if let Some(initrd) = &files.initramfs {
            copy_in(&root.join("boot").join(initrd), &boot.join(initrd))?;
        }
        for dt in &spec.device_trees {
            copy_in(&find_dtb(root, v, &dt.file)?, &boot.join(&dt.file))?;
        }
    }
    if let Some(dir) = &spec.firmware_dir {
        copy_dir_files(&root.join(dir), &boot)?;
    }
    if !boot.join(&files.kernel).is_file() {
        return Err(ImagesError::BootFiles {
            reason: format!("kernel {} is not in {}", files.kernel, boot.display()),
        });
    }
    write_file(&boot.join("config.txt"), &render_config_txt(spec, &files), 0o644)?;
    Ok(Some(files))
}

/// The kernel package's DTB `file`: arm64 keeps them in `broadcom/`, armhf at the top.
fn find_dtb(root: &Path, kver: &str, file: &str) -> Result<PathBuf> {
    let dir = root.join("usr/lib").join(format!("linux-image-{kver}"));
    [dir.join("broadcom").join(file), dir.join(file)].into_iter().find(|p| p.is_file()).ok_or_else(
        || ImagesError::BootFiles {
            reason: format!("device tree {file} is not in {}", dir.display()),
        },
    )
}

/// Puts `from` at `to` as a hard link (the boot dir then costs no space for the kernel,
/// initramfs and firmware it shares with `/boot` and `/usr/lib`), or as a copy where a
/// link cannot be made.
fn copy_in(from: &Path, to: &Path) -> Result<()> {
    crate::fsutil::remove_tree(to)?;
    if std::fs::hard_link(from, to).is_ok() {
        return Ok(());
    }
    std::fs::copy(from, to).map_err(|e| ImagesError::io("copying a boot file", from, e))?;
    Ok(())
}

/// Copies the regular files directly in `from` (not subdirectories) into `to`.
fn copy_dir_files(from: &Path, to: &Path) -> Result<()> {
    let entries =
        std::fs::read_dir(from).map_err(|e| ImagesError::io("reading firmware dir", from, e))?;
    let mut copied = 0;
    for e in entries.filter_map(std::result::Result::ok) {
        if e.file_type().map(|t| t.is_file()).unwrap_or(false) {
            copy_in(&e.path(), &to.join(e.file_name()))?;
            copied += 1;
        }
    }
    if copied == 0 {
        return Err(ImagesError::BootFiles {
            reason: format!("firmware dir {} holds no files", from.display()),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use expect_test::expect;

    use super::*;
    use crate::catalogue::Catalogue;

    fn recipe(name: &str) -> Recipe {
        Catalogue::builtin().expect("builtin").get(name).expect("recipe").clone()
    }

    #[test]
    fn bookworm_arm64_config_names_kernel_initramfs_and_each_models_device_tree() {
        let r = recipe("debian-bookworm-arm64");
        let files = boot_files(&r.boot, Some("6.1.0-28-arm64")).expect("files");
        expect![[r#"
            # Written by Bramble when this image was built. The controller serves this file
            # with a per-slot section appended; cmdline.txt is generated per slot.
            arm_64bit=1
            kernel=vmlinuz-6.1.0-28-arm64
            initramfs initrd.img-6.1.0-28-arm64 followkernel
            enable_uart=1
            [pi3]
            device_tree=bcm2837-rpi-3-b.dtb
            [pi3+]
            device_tree=bcm2837-rpi-3-b-plus.dtb
            [pi4]
            device_tree=bcm2711-rpi-4-b.dtb
            [all]
        "#]]
        .assert_eq(&render_config_txt(&r.boot, &files));
    }

    #[test]
    fn raspbian_boots_the_kernel_its_package_installs_without_an_initramfs() {
        let r = recipe("raspbian-stretch");
        assert!(initramfs_files(&r.boot, r.console.netconsole).is_empty());
        let files = boot_files(&r.boot, None).expect("files");
        assert_eq!(files, BootFiles { kernel: "kernel7.img".into(), initramfs: None });
        let config = render_config_txt(&r.boot, &files);
        assert!(config.contains("kernel=kernel7.img\n") && !config.contains("arm_64bit"));
    }

    #[test]
    fn initramfs_hook_loads_every_pi_nic_driver_and_virtio_and_nfs() {
        let r = recipe("debian-bookworm-arm64");
        let files = initramfs_files(&r.boot, r.console.netconsole);
        let hook = &files.iter().find(|(p, ..)| *p == INITRAMFS_HOOK).expect("hook").1;
        for m in ["smsc95xx", "lan78xx", "genet", "virtio_mmio", "virtio_net", "nfsv3"] {
            assert!(hook.contains(&format!("force_load {m}\n")), "{m} missing from\n{hook}");
        }
        let conf = &files.iter().find(|(p, ..)| *p == INITRAMFS_CONF).expect("conf").1;
        assert!(conf.contains("BOOT=nfs\n") && conf.contains("MODULES=list\n"));
    }

    #[test]
    fn netconsole_scripts_are_carried_and_parse_as_shell() {
        let r = recipe("debian-bookworm-arm64");
        let files = initramfs_files(&r.boot, r.console.netconsole);
        let hook = &files.iter().find(|(p, ..)| *p == INITRAMFS_HOOK).expect("hook").1;
        assert!(hook.contains("manual_add_modules netconsole\n"), "{hook}");
        assert!(!hook.contains("force_load netconsole"), "netconsole needs the NIC first");
        let dir = tempfile::tempdir().expect("tempdir");
        for path in [NETCONSOLE_PREMOUNT, NFSROOT_BOTTOM, INITRAMFS_HOOK] {
            let text = &files.iter().find(|(p, ..)| *p == path).expect("script").1;
            let file = dir.path().join("script");
            std::fs::write(&file, text).expect("write");
            let out = std::process::Command::new("sh").arg("-n").arg(&file).output().expect("sh");
            assert!(
                out.status.success(),
                "{path}: {}\n{text}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // Without netconsole as a module (Raspbian: built in, or none), no scripts.
        let plain = initramfs_files(&r.boot, None);
        assert!(plain.iter().all(|(p, ..)| *p != NETCONSOLE_PREMOUNT && *p != NFSROOT_BOTTOM));
    }

    #[test]
    fn newest_kernel_wins_by_version_number_not_by_text() {
        let root = tempfile::tempdir().expect("tempdir");
        for v in ["6.1.0-9-arm64", "6.1.0-28-arm64", "6.1.0-10-arm64"] {
            write_file(&root.path().join(format!("boot/vmlinuz-{v}")), "k", 0o644).expect("seed");
        }
        assert_eq!(installed_kernel_version(root.path()).as_deref(), Some("6.1.0-28-arm64"));
    }

    #[test]
    fn assemble_gathers_kernel_initramfs_firmware_and_dtbs_into_the_boot_dir() {
        let r = recipe("debian-bookworm-arm64");
        let root = tempfile::tempdir().expect("tempdir");
        let p = root.path();
        let v = "6.1.0-28-arm64";
        let mut seed = vec![
            format!("boot/vmlinuz-{v}"),
            format!("boot/initrd.img-{v}"),
            "usr/lib/raspi-firmware/bootcode.bin".into(),
            "usr/lib/raspi-firmware/start4.elf".into(),
        ];
        seed.extend(
            r.boot
                .device_trees
                .iter()
                .map(|d| format!("usr/lib/linux-image-{v}/broadcom/{}", d.file)),
        );
        for f in &seed {
            write_file(&p.join(f), f, 0o644).expect("seed");
        }
        let files = assemble(p, &r).expect("assemble").expect("bootable");
        let boot = p.join("boot/firmware");
        for f in [&files.kernel, files.initramfs.as_ref().expect("initrd")] {
            assert!(boot.join(f).is_file(), "{f}");
        }
        assert!(boot.join("bootcode.bin").is_file() && boot.join("start4.elf").is_file());
        assert!(boot.join("bcm2711-rpi-4-b.dtb").is_file());
        use std::os::unix::fs::MetadataExt;
        let ino = |f: &Path| std::fs::metadata(f).expect("stat").ino();
        assert_eq!(ino(&boot.join(&files.kernel)), ino(&p.join(format!("boot/vmlinuz-{v}"))));
        let config = std::fs::read_to_string(boot.join("config.txt")).expect("config");
        assert!(config.contains(&format!("kernel=vmlinuz-{v}")));
    }

    #[test]
    fn assemble_fails_naming_a_missing_device_tree() {
        let r = recipe("debian-bookworm-arm64");
        let root = tempfile::tempdir().expect("tempdir");
        write_file(&root.path().join("boot/vmlinuz-6.1.0-28-arm64"), "k", 0o644).expect("seed");
        write_file(&root.path().join("boot/initrd.img-6.1.0-28-arm64"), "i", 0o644).expect("i");
        let err = assemble(root.path(), &r).expect_err("no dtbs");
        assert!(err.to_string().contains("bcm2837-rpi-3-b.dtb"), "{err}");
    }
}
