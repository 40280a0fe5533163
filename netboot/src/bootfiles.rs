//! Per-slot boot files the TFTP server generates instead of reading from disk:
//! `cmdline.txt` (NFS root on the slot's storage /30) and `config.txt` (the on-disk file
//! plus a marked per-slot section). Pure rendering; the caller supplies on-disk content.

use std::net::{Ipv4Addr, SocketAddrV4};

/// Console settings used when neither the slot nor the image names any.
pub const DEFAULT_CONSOLE: [&str; 2] = ["console=serial0,115200", "console=tty1"];

/// First line of the generated section of `config.txt`.
pub const CONFIG_BEGIN: &str =
    "# --- bramble: per-slot settings (generated; edits here are overwritten) ---";
/// Last line of the generated section of `config.txt`.
pub const CONFIG_END: &str = "# --- end bramble ---";

/// Kernel arguments Bramble owns; extra arguments with these keys are dropped.
const RESERVED_KEYS: [&str; 9] =
    ["root", "nfsroot", "ip", "rw", "ro", "rootwait", "rootfstype", "console", "netconsole"];

/// The UDP port a Pi's netconsole sends from.
pub const NETCONSOLE_SOURCE_PORT: u16 = 6665;

/// Inputs to the generated files for one slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootParams {
    /// The controller's address on the Pi's storage network (the `.1`).
    pub controller: Ipv4Addr,
    /// The Pi's address (the `.2`).
    pub pi: Ipv4Addr,
    pub netmask: Ipv4Addr,
    /// The path the Pi mounts its root from (what the NFS server exports to it), e.g.
    /// ganesha's pseudo path `/export/10.46.189.2` or the kernel server's root directory.
    pub nfs_export: String,
    /// `console=` arguments; empty means "take them from the image's own cmdline.txt".
    pub console: Vec<String>,
    /// Further kernel arguments, appended in this order after Bramble's own.
    pub extra_args: Vec<String>,
    /// Lines appended to `config.txt` in the generated section.
    pub config_additions: Vec<String>,
    /// Where the kernel's netconsole sends (the controller's `.1` and its console port);
    /// `None` leaves netconsole off.
    pub netconsole: Option<SocketAddrV4>,
}

impl BootParams {
    /// A storage /30 like the original deployment's, for examples and tests.
    pub fn example() -> Self {
        BootParams {
            controller: Ipv4Addr::new(10, 46, 189, 1),
            pi: Ipv4Addr::new(10, 46, 189, 2),
            netmask: Ipv4Addr::new(255, 255, 255, 252),
            nfs_export: "/export/10.46.189.2".into(),
            console: Vec::new(),
            extra_args: Vec::new(),
            config_additions: Vec::new(),
            netconsole: None,
        }
    }
}

/// A value that would corrupt the generated file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BootfileError {
    #[error("kernel argument {arg:?} is empty or contains whitespace or control characters")]
    InvalidArg { arg: String },
    #[error("NFS export {export:?} must be an absolute path without whitespace, ',' or ':'")]
    InvalidExport { export: String },
    #[error("config.txt line {line:?} contains a line break or control character")]
    InvalidConfigLine { line: String },
}

/// Renders `cmdline.txt` (one line, newline-terminated). `image_cmdline` is the image's
/// own `cmdline.txt`, consulted only for its `console=` arguments.
pub fn render_cmdline(
    params: &BootParams,
    image_cmdline: Option<&str>,
) -> Result<String, BootfileError> {
    let export = &params.nfs_export;
    if !export.starts_with('/')
        || export.chars().any(|c| c.is_whitespace() || c.is_control() || c == ',' || c == ':')
    {
        return Err(BootfileError::InvalidExport { export: export.clone() });
    }
    let mut args: Vec<String> = console_args(params, image_cmdline)?;
    let (c, pi, mask) = (params.controller, params.pi, params.netmask);
    args.extend([
        "root=/dev/nfs".to_string(),
        format!("nfsroot={c}:{export},vers=3,tcp"),
        "rw".to_string(),
        format!("ip={pi}::{c}:{mask}::eth0:off"),
        // The NIC keeps the kernel's name, eth0, which `ip=` above and the image's network
        // configuration name (systemd would rename a Pi 4's to end0).
        "net.ifnames=0".to_string(),
        "elevator=deadline".to_string(),
        "fsck.repair=yes".to_string(),
        "rootwait".to_string(),
    ]);
    // From the Pi's own address on eth0 to the controller; no MAC, so broadcast frames
    // (the /30 has nobody else). A kernel with netconsole as a module gets the value
    // from its initramfs, which loads the module once eth0 exists.
    if let Some(to) = params.netconsole {
        args.push(format!(
            "netconsole={NETCONSOLE_SOURCE_PORT}@{pi}/eth0,{}@{}/",
            to.port(),
            to.ip()
        ));
    }
    for arg in &params.extra_args {
        check_arg(arg)?;
        let key = arg.split('=').next().unwrap_or_default();
        if RESERVED_KEYS.contains(&key) || args.contains(arg) {
            tracing::warn!(arg = %arg, "extra kernel argument overrides one Bramble owns; dropped");
            continue;
        }
        args.push(arg.clone());
    }
    Ok(args.join(" ") + "\n")
}

fn console_args(
    params: &BootParams,
    image_cmdline: Option<&str>,
) -> Result<Vec<String>, BootfileError> {
    if !params.console.is_empty() {
        for arg in &params.console {
            check_arg(arg)?;
        }
        return Ok(params.console.clone());
    }
    let from_image: Vec<String> = image_cmdline
        .unwrap_or_default()
        .split_whitespace()
        .filter(|a| a.starts_with("console="))
        .map(str::to_string)
        .collect();
    if from_image.is_empty() {
        return Ok(DEFAULT_CONSOLE.iter().map(|s| s.to_string()).collect());
    }
    Ok(from_image)
}

fn check_arg(arg: &str) -> Result<(), BootfileError> {
    if arg.is_empty() || arg.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(BootfileError::InvalidArg { arg: arg.to_string() });
    }
    Ok(())
}

/// Renders `config.txt`: the on-disk file (minus any earlier generated section) followed,
/// when there are additions, by a marked section that starts with `[all]` so that a
/// conditional filter left open by the image does not swallow it.
pub fn render_config(on_disk: Option<&str>, params: &BootParams) -> Result<String, BootfileError> {
    for line in &params.config_additions {
        if line.chars().any(char::is_control) {
            return Err(BootfileError::InvalidConfigLine { line: line.clone() });
        }
    }
    let mut out = strip_generated(on_disk.unwrap_or_default());
    if params.config_additions.is_empty() {
        return Ok(out);
    }
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(CONFIG_BEGIN);
    out.push_str("\n[all]\n");
    for line in &params.config_additions {
        out.push_str(line);
        out.push('\n');
    }
    out.push_str(CONFIG_END);
    out.push('\n');
    Ok(out)
}

/// The files a `config.txt` tells the firmware to load besides its own, in any model
/// section: `kernel=` values and `initramfs <file> ...` names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamedBootFiles {
    pub kernels: Vec<String>,
    pub initramfs: Vec<String>,
}

impl NamedBootFiles {
    /// Every named file, kernels first.
    pub fn files(&self) -> impl Iterator<Item = &str> {
        self.kernels.iter().chain(&self.initramfs).map(String::as_str)
    }
}

/// Reads the `kernel=` and `initramfs` lines of a `config.txt` (comments and blank lines
/// skipped; a value is its first word).
pub fn named_boot_files(config: &str) -> NamedBootFiles {
    let mut named = NamedBootFiles::default();
    for line in config.lines().map(str::trim).filter(|l| !l.starts_with('#')) {
        if let Some(v) = line.strip_prefix("kernel=") {
            named.kernels.extend(v.split_whitespace().next().map(str::to_string));
        } else if let Some(v) = line.strip_prefix("initramfs ") {
            named.initramfs.extend(v.split_whitespace().next().map(str::to_string));
        }
    }
    named
}

fn strip_generated(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut inside = false;
    for line in text.split_inclusive('\n') {
        match line.trim_end() {
            l if l == CONFIG_BEGIN => inside = true,
            l if l == CONFIG_END && inside => inside = false,
            _ if inside => {}
            _ => out.push_str(line),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use expect_test::expect;

    use super::*;

    #[test]
    fn named_boot_files_reads_kernel_and_initramfs_lines_in_any_section() {
        let config = "# kernel=commented.img\narm_64bit=1\nkernel=vmlinuz-6.1\n\
                      initramfs initrd.img-6.1 followkernel\n[pi4]\nkernel=k4.img\n";
        let named = named_boot_files(config);
        assert_eq!(named.kernels, ["vmlinuz-6.1", "k4.img"]);
        assert_eq!(named.initramfs, ["initrd.img-6.1"]);
        assert_eq!(named_boot_files("arm_64bit=1\n"), NamedBootFiles::default());
    }

    #[test]
    fn cmdline_snapshot_default_console() {
        let got = render_cmdline(&BootParams::example(), None).expect("renders");
        expect![[r#"
            console=serial0,115200 console=tty1 root=/dev/nfs nfsroot=10.46.189.1:/export/10.46.189.2,vers=3,tcp rw ip=10.46.189.2::10.46.189.1:255.255.255.252::eth0:off net.ifnames=0 elevator=deadline fsck.repair=yes rootwait
        "#]]
        .assert_eq(&got);
    }

    #[test]
    fn cmdline_snapshot_console_from_image_and_extra_args() {
        let mut params = BootParams::example();
        params.extra_args =
            vec!["quiet".into(), "root=/dev/mmcblk0p2".into(), "cgroup_enable=memory".into()];
        let image =
            "console=ttyAMA0,115200 console=tty1 root=PARTUUID=1234-02 rootfstype=ext4 init=/x\n";
        let got = render_cmdline(&params, Some(image)).expect("renders");
        expect![[r#"
            console=ttyAMA0,115200 console=tty1 root=/dev/nfs nfsroot=10.46.189.1:/export/10.46.189.2,vers=3,tcp rw ip=10.46.189.2::10.46.189.1:255.255.255.252::eth0:off net.ifnames=0 elevator=deadline fsck.repair=yes rootwait quiet cgroup_enable=memory
        "#]]
        .assert_eq(&got);
    }

    #[test]
    fn cmdline_snapshot_with_netconsole() {
        let mut params = BootParams::example();
        params.netconsole = Some(SocketAddrV4::new(params.controller, 6666));
        params.extra_args = vec!["netconsole=1@1.2.3.4/eth0,2@5.6.7.8/".into()];
        let got = render_cmdline(&params, None).expect("renders");
        expect![[r#"
            console=serial0,115200 console=tty1 root=/dev/nfs nfsroot=10.46.189.1:/export/10.46.189.2,vers=3,tcp rw ip=10.46.189.2::10.46.189.1:255.255.255.252::eth0:off net.ifnames=0 elevator=deadline fsck.repair=yes rootwait netconsole=6665@10.46.189.2/eth0,6666@10.46.189.1/
        "#]]
        .assert_eq(&got);
    }

    #[test]
    fn cmdline_refuses_values_that_break_the_line() {
        let mut params = BootParams::example();
        params.extra_args = vec!["a b".into()];
        assert!(matches!(render_cmdline(&params, None), Err(BootfileError::InvalidArg { .. })));
        let mut params = BootParams::example();
        params.nfs_export = "export,x".into();
        assert!(matches!(render_cmdline(&params, None), Err(BootfileError::InvalidExport { .. })));
    }

    #[test]
    fn config_snapshot_with_additions_replaces_old_section() {
        let mut params = BootParams::example();
        params.config_additions = vec!["enable_uart=1".into(), "arm_64bit=1".into()];
        let on_disk =
            format!("[pi4]\narm_boost=1\n{CONFIG_BEGIN}\n[all]\nstale=1\n{CONFIG_END}\ngpu_mem=16");
        let got = render_config(Some(&on_disk), &params).expect("renders");
        expect![[r#"
            [pi4]
            arm_boost=1
            gpu_mem=16
            # --- bramble: per-slot settings (generated; edits here are overwritten) ---
            [all]
            enable_uart=1
            arm_64bit=1
            # --- end bramble ---
        "#]]
        .assert_eq(&got);
    }

    #[test]
    fn config_without_additions_is_the_file_on_disk() {
        let params = BootParams::example();
        assert_eq!(render_config(Some("a=1\n"), &params), Ok("a=1\n".to_string()));
        assert_eq!(render_config(None, &params), Ok(String::new()));
        let mut bad = BootParams::example();
        bad.config_additions = vec!["a=1\nb=2".into()];
        assert!(render_config(None, &bad).is_err());
    }
}
