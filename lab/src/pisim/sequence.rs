//! The files each model's firmware reads over TFTP after choosing its boot directory, in
//! order, as data (raspberrypi/documentation boot-net; dnsmasq logs of real boots).

use super::PiModel;

/// How the firmware treats one entry of its file sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchKind {
    /// Must exist, read completely.
    Required,
    /// Read completely if it exists.
    Optional,
    /// Size read from the OACK, then error 0 ("early terminate"); may be missing.
    Probe,
}

/// What a file is to the firmware: the settings in `config.txt` (see
/// [`super::BootConfig`]) rename the device tree and the kernel, and add an initramfs
/// after the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileRole {
    /// Firmware of its own (loaders, `fixup`, overlays): fixed names.
    Firmware,
    Config,
    DeviceTree,
    /// The boot line; kept for the root check (or the kernel's arguments).
    Cmdline,
    Kernel,
    Initramfs,
}

/// One entry: a path relative to the boot directory (`<serial>/` or the root), or
/// several alternatives (kernels): each is probed in turn, the first that exists is
/// read, and only if none exists does a `Required` step fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchStep {
    pub files: &'static [&'static str],
    pub kind: FetchKind,
    pub role: FileRole,
}

const fn step(file: &'static [&'static str], kind: FetchKind) -> FetchStep {
    FetchStep { files: file, kind, role: FileRole::Firmware }
}

const fn named(file: &'static [&'static str], kind: FetchKind, role: FileRole) -> FetchStep {
    FetchStep { files: file, kind, role }
}

/// What the firmware reads after it has decided where its files are (by probing
/// `start.elf`/`start4.elf`), in order, before `config.txt` renames any of them.
pub fn firmware_sequence(model: PiModel) -> Vec<FetchStep> {
    use FetchKind::*;
    use FileRole::{Cmdline, Config, DeviceTree, Kernel};
    let dtb: &'static [&'static str] = match model {
        PiModel::Pi3B => &["bcm2710-rpi-3-b.dtb"],
        PiModel::Pi3BPlus => &["bcm2710-rpi-3-b-plus.dtb"],
        PiModel::Pi4 => &["bcm2711-rpi-4-b.dtb"],
        PiModel::Pi5 => &["bcm2712-rpi-5-b.dtb"],
    };
    match model {
        PiModel::Pi3B | PiModel::Pi3BPlus => vec![
            step(&["autoboot.txt"], Optional),
            step(&["config.txt"], Probe),
            named(&["config.txt"], Optional, Config),
            step(&["recovery.elf"], Optional),
            step(&["start.elf"], Probe),
            step(&["start.elf"], Required),
            step(&["fixup.dat"], Required),
            step(&["dt-blob.bin"], Optional),
            step(&["bootcfg.txt"], Optional),
            named(dtb, Required, DeviceTree),
            step(&["overlays/overlay_map.dtb"], Optional),
            named(&["cmdline.txt"], Required, Cmdline),
            named(&["kernel8.img", "kernel7.img"], Required, Kernel),
        ],
        PiModel::Pi4 => vec![
            named(&["config.txt"], Optional, Config),
            step(&["pieeprom.sig"], Optional),
            step(&["recover4.elf"], Optional),
            step(&["start4.elf"], Probe),
            step(&["start4.elf"], Required),
            step(&["fixup4.dat"], Required),
            named(dtb, Required, DeviceTree),
            step(&["overlays/overlay_map.dtb"], Optional),
            named(&["cmdline.txt"], Required, Cmdline),
            named(&["kernel8.img"], Required, Kernel),
        ],
        // The Pi 5 bootloader has start.elf built in (raspberrypi/documentation
        // bootflow-eeprom.adoc, "Differences on Raspberry Pi 5") and loads the kernel
        // itself; its default kernel is kernel_2712.img, else kernel8.img (config_txt
        // boot.adoc, `kernel`). Which name it probes to choose `<serial>/` is not
        // documented for the Pi 5 (the TFTP_PREFIX text names start4.elf/start.elf,
        // which it never loads): this simulator probes config.txt (see `boot`).
        PiModel::Pi5 => vec![
            named(&["config.txt"], Optional, Config),
            step(&["pieeprom.sig"], Optional),
            named(dtb, Required, DeviceTree),
            step(&["overlays/overlay_map.dtb"], Optional),
            named(&["cmdline.txt"], Required, Cmdline),
            named(&["kernel_2712.img", "kernel8.img"], Required, Kernel),
        ],
    }
}
