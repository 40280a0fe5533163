//! Image recipes: TOML data parsed strictly into a raw struct, then validated into a
//! [`Recipe`]. A recipe's hash identifies a build so caches and manifests can refer to it.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{ImagesError, Result};

/// How the released OS configures networking; decides which files customisation writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NetworkStyle {
    /// `/etc/network/interfaces` (Jessie, Stretch, Xenial).
    Ifupdown,
    /// `/etc/systemd/network/*.netdev|*.network` (bookworm and newer).
    SystemdNetworkd,
}

/// An additional APT source installed after debootstrap (e.g. archive.raspberrypi.org
/// for the Pi kernel and bootloader on Raspbian).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AptSource {
    pub name: String,
    pub uri: String,
    pub suite: String,
    pub components: Vec<String>,
    /// ASCII-armoured signing key fetched on the build host and added with `apt-key`.
    #[serde(default)]
    pub key_url: Option<String>,
}

/// Serial and local consoles for the kernel command line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Console {
    pub serial: String,
    pub baud: u32,
    #[serde(default)]
    pub local: Option<String>,
    /// How the kernel gets netconsole (the controller's `netconsole=` argument is on every
    /// generated command line). Unset: the kernel's own (built in, or nothing).
    /// `module`: the initramfs loads it as soon as the NIC exists (netconsole then sends
    /// the kernel log so far). Skipped in the hash when unset, so recipes without it keep
    /// their cached bases; when set, the generated scripts are hashed too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netconsole: Option<NetconsoleKind>,
    /// The running system's journald forwards messages of this syslog level and above
    /// to the kernel log (and so to netconsole): a drop-in in the base. Unset: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub journal_to_kmsg: Option<String>,
}

/// Where a recipe's kernel has netconsole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetconsoleKind {
    /// `CONFIG_NETCONSOLE=y`: the `netconsole=` argument works directly.
    Builtin,
    /// `CONFIG_NETCONSOLE=m`: loaded by the initramfs (needs `[boot] initramfs_modules`).
    Module,
}

/// The syslog levels journald accepts for `MaxLevelKMsg=`.
pub const SYSLOG_LEVELS: &[&str] =
    &["emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"];

/// How a built base boots over the network: what goes into its boot directory besides
/// what the packages put there, and what the build writes into `config.txt`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootSpec {
    /// Kernel modules an initramfs must load before it can mount the NFS root. Non-empty
    /// means the kernel cannot mount its root itself (Debian's: no `CONFIG_IP_PNP`), so the
    /// build configures initramfs-tools for `BOOT=nfs` with exactly these modules (and
    /// their dependencies) before the kernel package runs `update-initramfs`. Empty means
    /// the kernel has NFS root and `ip=` built in (the Raspberry Pi kernels).
    #[serde(default)]
    pub initramfs_modules: Vec<String>,
    /// A directory in the root whose files are the Pi firmware (`bootcode.bin`,
    /// `start*.elf`, `fixup*.dat`), copied into the boot dir. Unset when the firmware
    /// package installs into the boot dir itself (Raspbian's `raspberrypi-bootloader`).
    #[serde(default)]
    pub firmware_dir: Option<String>,
    /// Device trees by `config.txt` model filter (`pi3`, `pi3+`, `pi4`), copied from the
    /// kernel package's `usr/lib/linux-image-<version>/broadcom/` and named with
    /// `device_tree=`. Empty when the kernel package installs the DTBs the firmware
    /// looks for by default.
    #[serde(default)]
    pub device_trees: Vec<DeviceTree>,
    /// The kernel file in the boot dir when a package installs it there under the name
    /// the firmware loads (`kernel7.img`). Unset: the build copies `boot/vmlinuz-<version>`
    /// (and its initramfs) in and names them in `config.txt`.
    #[serde(default)]
    pub kernel: Option<String>,
    /// `arm_64bit=1`: the firmware starts the kernel in AArch64 state.
    #[serde(default)]
    pub arm_64bit: bool,
}

/// One model's device tree: `[<filter>]` then `device_tree=<file>` in `config.txt`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceTree {
    pub filter: String,
    pub file: String,
}

/// The `config.txt` model filters a device tree may be given for.
pub const MODEL_FILTERS: &[&str] = &["pi3", "pi3+", "pi4", "pi5"];

/// The Pi models a recipe may say it boots, as the inventory names them.
pub const PI_MODELS: &[&str] = &["3b", "3b+", "4b", "5"];

/// A recipe exactly as written in TOML; unknown fields are rejected.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecipe {
    name: String,
    description: String,
    distribution: String,
    version: String,
    suite: String,
    arch: String,
    mirror: String,
    components: Vec<String>,
    keyring: String,
    #[serde(default = "default_variant")]
    variant: String,
    #[serde(default)]
    packages: Vec<String>,
    #[serde(default)]
    kernel_packages: Vec<String>,
    #[serde(default)]
    apt_sources: Vec<AptSource>,
    #[serde(default)]
    mask_services: Vec<String>,
    network: NetworkStyle,
    boot_dir: String,
    models: Vec<String>,
    #[serde(default)]
    boot: BootSpec,
    console: Console,
}

fn default_variant() -> String {
    "minbase".to_string()
}

/// A validated recipe. Field order is the hash order: do not reorder casually.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Recipe {
    pub name: String,
    pub description: String,
    pub distribution: String,
    pub version: String,
    pub suite: String,
    pub arch: String,
    pub mirror: String,
    pub components: Vec<String>,
    pub keyring: String,
    pub variant: String,
    /// Installed by debootstrap itself (`--include`), from the main mirror.
    pub packages: Vec<String>,
    /// Installed with apt after the second stage, possibly from `apt_sources`.
    pub kernel_packages: Vec<String>,
    pub apt_sources: Vec<AptSource>,
    /// Units/init scripts masked in the base: resize-on-first-boot, swap files.
    pub mask_services: Vec<String>,
    pub network: NetworkStyle,
    /// Directory inside the root holding the Pi firmware/kernel, served over TFTP.
    pub boot_dir: String,
    pub boot: BootSpec,
    pub console: Console,
    /// The Pi models (`PI_MODELS`) the base boots; a reinstall onto another model is
    /// refused. Not part of the hash: it says what a base boots, it builds nothing.
    #[serde(skip_serializing)]
    pub models: Vec<String>,
}

const ARCHES: &[(&str, &str)] = &[("armhf", "arm"), ("armel", "arm"), ("arm64", "aarch64")];
const VARIANTS: &[&str] = &["minbase", "buildd", "fakechroot", "-"];

impl Recipe {
    /// Parses and validates TOML text; `origin` (a file name) is named in every error.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self> {
        let raw: RawRecipe = toml::from_str(text).map_err(|e| ImagesError::RecipeParse {
            origin: origin.to_string(),
            source: Box::new(e),
        })?;
        Recipe::try_from(raw)
            .map_err(|reason| ImagesError::RecipeInvalid { origin: origin.to_string(), reason })
    }

    /// Hex SHA-256 of the canonical (JSON) form: equal recipes hash equal whatever the
    /// TOML layout, and any change to what is built changes the hash.
    pub fn hash(&self) -> String {
        let canonical = serde_json::to_vec(self).unwrap_or_default();
        let mut h = Sha256::new();
        h.update(&canonical);
        // The netconsole scripts are generated by the build, not written in the recipe:
        // they are part of the hash of the recipes that carry them, so a change to them
        // rebuilds those bases (and only those).
        if self.console.netconsole.is_some() {
            for (path, text, mode) in
                crate::build::boot::initramfs_files(&self.boot, self.console.netconsole)
            {
                h.update(path.as_bytes());
                h.update(text.as_bytes());
                h.update(mode.to_le_bytes());
            }
        }
        hex::encode(h.finalize())
    }

    /// This recipe fetching its main archive from `url` instead: a local mirror, or an
    /// apt proxy given as a mirror URL (apt-cacher-ng's `http://HOST:3142/deb.debian.org/debian`).
    /// Extra `apt_sources` keep their own URLs. The mirror is part of the hash, so a
    /// base built from a mirror is cached apart from one built from the recipe's own.
    pub fn with_mirror(&self, url: &str) -> Result<Self> {
        check_mirror(url).map_err(|reason| ImagesError::RecipeInvalid {
            origin: format!("--mirror for {}", self.name),
            reason,
        })?;
        Ok(Recipe { mirror: url.trim_end_matches('/').to_string(), ..self.clone() })
    }

    /// The qemu user-mode emulator name for this architecture (`arm`, `aarch64`).
    pub fn qemu_arch(&self) -> &'static str {
        ARCHES.iter().find(|(a, _)| *a == self.arch).map(|(_, q)| *q).unwrap_or("arm")
    }

    /// `console=` arguments for the kernel command line, serial first.
    pub fn cmdline_console_args(&self) -> Vec<String> {
        let mut v = vec![format!("console={},{}", self.console.serial, self.console.baud)];
        if let Some(local) = &self.console.local {
            v.push(format!("console={local}"));
        }
        v
    }
}

impl TryFrom<RawRecipe> for Recipe {
    type Error = String;

    fn try_from(r: RawRecipe) -> std::result::Result<Self, String> {
        check_word("name", &r.name, "-._")?;
        check_word("suite", &r.suite, "-")?;
        check_word("version", &r.version, ".-")?;
        if !ARCHES.iter().any(|(a, _)| *a == r.arch) {
            return Err(format!("arch {:?} is not one of armhf, armel, arm64", r.arch));
        }
        if !VARIANTS.contains(&r.variant.as_str()) {
            return Err(format!("variant {:?} is not a debootstrap variant", r.variant));
        }
        check_mirror(&r.mirror)?;
        if r.components.is_empty() {
            return Err("components must not be empty".into());
        }
        if !r.keyring.starts_with('/') {
            return Err(format!(
                "keyring {:?} must be an absolute path on the build host",
                r.keyring
            ));
        }
        for p in r.packages.iter().chain(&r.kernel_packages).chain(&r.components) {
            check_word("package/component", p, "-+.")?;
        }
        for s in &r.mask_services {
            check_word("service", s, "-_.@")?;
        }
        for s in &r.apt_sources {
            check_word("apt source name", &s.name, "-_")?;
            if !s.uri.starts_with("http") {
                return Err(format!("apt source {:?} uri must be an http(s) URL", s.name));
            }
        }
        check_relative("boot_dir", &r.boot_dir)?;
        check_models(&r.models)?;
        check_boot(&r.boot)?;
        check_word("console.serial", &r.console.serial, "")?;
        if let Some(level) = &r.console.journal_to_kmsg
            && !SYSLOG_LEVELS.contains(&level.as_str())
        {
            return Err(format!(
                "console.journal_to_kmsg {level:?} is not one of {}",
                SYSLOG_LEVELS.join(", ")
            ));
        }
        if r.console.netconsole == Some(NetconsoleKind::Module)
            && r.boot.initramfs_modules.is_empty()
        {
            return Err("console.netconsole = \"module\" needs an initramfs \
                        (boot.initramfs_modules)"
                .to_string());
        }
        Ok(Recipe {
            name: r.name,
            description: r.description,
            distribution: r.distribution,
            version: r.version,
            suite: r.suite,
            arch: r.arch,
            mirror: r.mirror.trim_end_matches('/').to_string(),
            components: r.components,
            keyring: r.keyring,
            variant: r.variant,
            packages: r.packages,
            kernel_packages: r.kernel_packages,
            apt_sources: r.apt_sources,
            mask_services: r.mask_services,
            network: r.network,
            boot_dir: r.boot_dir,
            boot: r.boot,
            console: r.console,
            models: r.models,
        })
    }
}

/// Checks an archive URL given for a recipe (`mirror`, `--mirror`, `[images] mirror`).
pub fn check_mirror(url: &str) -> std::result::Result<(), String> {
    let ok = (url.starts_with("http://") || url.starts_with("https://"))
        && !url.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok { Ok(()) } else { Err(format!("mirror {url:?} must be an http(s) URL")) }
}

fn check_boot(b: &BootSpec) -> std::result::Result<(), String> {
    for m in &b.initramfs_modules {
        check_word("boot.initramfs_modules entry", m, "-_")?;
    }
    if let Some(dir) = &b.firmware_dir {
        check_relative("boot.firmware_dir", dir)?;
    }
    for dt in &b.device_trees {
        if !MODEL_FILTERS.contains(&dt.filter.as_str()) {
            return Err(format!(
                "boot.device_trees filter {:?} is not one of {}",
                dt.filter,
                MODEL_FILTERS.join(", ")
            ));
        }
        check_word("boot.device_trees file", &dt.file, "-_.+")?;
    }
    if let Some(k) = &b.kernel {
        check_word("boot.kernel", k, "-_.+")?;
    }
    Ok(())
}

/// At least one model, each in [`PI_MODELS`], none twice.
fn check_models(models: &[String]) -> std::result::Result<(), String> {
    if models.is_empty() {
        return Err(format!("models must name the Pi models it boots ({})", PI_MODELS.join(", ")));
    }
    for (i, m) in models.iter().enumerate() {
        if !PI_MODELS.contains(&m.as_str()) {
            return Err(format!("models entry {m:?} is not one of {}", PI_MODELS.join(", ")));
        }
        if models[..i].contains(m) {
            return Err(format!("models names {m:?} twice"));
        }
    }
    Ok(())
}

fn check_relative(what: &str, path: &str) -> std::result::Result<(), String> {
    if path.starts_with('/') || path.split('/').any(|c| c == ".." || c.is_empty()) {
        return Err(format!("{what} {path:?} must be a relative path inside the root"));
    }
    Ok(())
}

/// Accepts non-empty ASCII alphanumerics plus the given punctuation (no spaces, no
/// shell metacharacters: these end up in command lines and paths).
fn check_word(what: &str, value: &str, extra: &str) -> std::result::Result<(), String> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value.chars().all(|c| c.is_ascii_alphanumeric() || extra.contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!("{what} {value:?} has characters outside [A-Za-z0-9{extra}]"))
    }
}

impl fmt::Display for Recipe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({} {} {})", self.name, self.distribution, self.suite, self.arch)
    }
}
