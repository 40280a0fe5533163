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
    /// The boot line: required, and kept for the root check.
    Cmdline,
}

/// One entry: a path relative to the boot directory (`<serial>/` or the root), or
/// several alternatives (kernels): each is probed in turn, the first that exists is
/// read, and only if none exists does a `Required` step fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchStep {
    pub files: &'static [&'static str],
    pub kind: FetchKind,
}

const fn step(file: &'static [&'static str], kind: FetchKind) -> FetchStep {
    FetchStep { files: file, kind }
}

/// What the firmware reads after it has decided where its files are (by probing
/// `start.elf`/`start4.elf`), in order.
pub fn firmware_sequence(model: PiModel) -> Vec<FetchStep> {
    use FetchKind::*;
    let dtb: &'static [&'static str] = match model {
        PiModel::Pi3B => &["bcm2710-rpi-3-b.dtb"],
        PiModel::Pi3BPlus => &["bcm2710-rpi-3-b-plus.dtb"],
        PiModel::Pi4 => &["bcm2711-rpi-4-b.dtb"],
    };
    match model {
        PiModel::Pi3B | PiModel::Pi3BPlus => vec![
            step(&["autoboot.txt"], Optional),
            step(&["config.txt"], Probe),
            step(&["config.txt"], Optional),
            step(&["recovery.elf"], Optional),
            step(&["start.elf"], Probe),
            step(&["start.elf"], Required),
            step(&["fixup.dat"], Required),
            step(&["dt-blob.bin"], Optional),
            step(&["bootcfg.txt"], Optional),
            step(dtb, Required),
            step(&["overlays/overlay_map.dtb"], Optional),
            step(&["cmdline.txt"], Cmdline),
            step(&["kernel8.img", "kernel7.img"], Required),
        ],
        PiModel::Pi4 => vec![
            step(&["config.txt"], Optional),
            step(&["pieeprom.sig"], Optional),
            step(&["recover4.elf"], Optional),
            step(&["start4.elf"], Probe),
            step(&["start4.elf"], Required),
            step(&["fixup4.dat"], Required),
            step(dtb, Required),
            step(&["overlays/overlay_map.dtb"], Optional),
            step(&["cmdline.txt"], Cmdline),
            step(&["kernel8.img"], Required),
        ],
    }
}
