//! What the Pi firmware takes from `config.txt` to choose its boot files: `kernel=`,
//! `device_tree=` and `initramfs NAME followkernel`, under the conditional sections that
//! apply to the board (`[pi3]`, `[pi3+]`, `[pi4]`, `[pi5]`, `[0x<serial>]`, `[all]`, `[none]`).
//! Pure; the simulated firmware and the QEMU Pi's firmware stage both read it here.
//!
//! Facts (raspberrypi/documentation, config_txt/conditional.adoc and boot.adoc): a line
//! is `name=value` (or `initramfs FILE ADDRESS`), `#` starts a comment line, the last
//! value of a setting wins. Filters of one kind replace each other (`[pi3+]` after
//! `[pi3]`), filters of different kinds combine, `[all]` clears every filter. A Pi 3B+
//! matches `[pi3]` and `[pi3+]`; a Pi 3B only `[pi3]`; a Pi 4B only `[pi4]`; a Pi 5 only `[pi5]`. Filters this
//! parser does not model (`[gpio4=1]`, `[HDMI:0]`, `[tryboot]`, `[EDID=..]`, ...) are
//! taken as not applying, so their settings never redirect a boot.
//!
//! Deliberately not netboot's `named_boot_files` (which lists what any section names,
//! for the reimage check): the simulator is the test rig for the controller and shares
//! no parsing with it, so a misreading cannot hide on both sides of the wire.

use super::sequence::{FetchStep, FileRole};
use super::{PiModel, Serial};

/// The boot files `config.txt` names for one board; `None` keeps the firmware's default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BootConfig {
    /// `kernel=`: the kernel image, relative to the boot directory.
    pub kernel: Option<String>,
    /// `device_tree=`: the device tree blob.
    pub device_tree: Option<String>,
    /// `initramfs FILE followkernel`: an initramfs loaded after the kernel.
    pub initramfs: Option<String>,
}

impl BootConfig {
    /// The names to try for `step`, in order: the one `config.txt` gives for the kernel
    /// or the device tree, else the firmware's own.
    pub fn names(&self, step: &FetchStep) -> Vec<String> {
        let named = match step.role {
            FileRole::Kernel => self.kernel.as_ref(),
            FileRole::DeviceTree => self.device_tree.as_ref(),
            _ => None,
        };
        match named {
            Some(name) => vec![name.clone()],
            None => step.files.iter().map(|f| f.to_string()).collect(),
        }
    }
}

/// Which conditional filters are in force; a line applies when every one set matches.
#[derive(Debug, Clone, Copy, Default)]
struct Filters {
    model: Option<bool>,
    serial: Option<bool>,
    /// `[none]` and the filters this parser does not model.
    other: Option<bool>,
}

impl Filters {
    fn apply(&self) -> bool {
        [self.model, self.serial, self.other].iter().all(|f| f.unwrap_or(true))
    }
}

/// Reads `config.txt` (bytes as served; invalid UTF-8 is replaced) as `model` with
/// `serial` would. Unknown settings are ignored, as the firmware ignores them.
pub fn parse_config_txt(bytes: &[u8], model: PiModel, serial: Serial) -> BootConfig {
    let text = String::from_utf8_lossy(bytes);
    let mut filters = Filters::default();
    let mut out = BootConfig::default();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(filter) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section(&mut filters, filter.trim(), model, serial);
            continue;
        }
        if filters.apply() {
            setting(&mut out, line);
        }
    }
    out
}

/// Updates the filters for a `[filter]` line.
fn section(filters: &mut Filters, filter: &str, model: PiModel, serial: Serial) {
    let lower = filter.to_ascii_lowercase();
    if lower == "all" {
        *filters = Filters::default();
    } else if lower == "none" {
        filters.other = Some(false);
    } else if let Some(matches) = model_filter(&lower, model) {
        filters.model = Some(matches);
    } else if let Some(hex) = lower.strip_prefix("0x") {
        filters.serial = Some(u32::from_str_radix(hex, 16).is_ok_and(|s| s == serial.0));
    } else {
        tracing::debug!(filter, "config.txt filter not modelled; its section does not apply");
        filters.other = Some(false);
    }
}

/// Whether a model filter (`pi3`, `pi3+`, `pi4`, ...) matches `model`; `None` when the
/// filter is not a model filter.
fn model_filter(filter: &str, model: PiModel) -> Option<bool> {
    let matches = match filter {
        "pi3" => matches!(model, PiModel::Pi3B | PiModel::Pi3BPlus),
        "pi3+" => model == PiModel::Pi3BPlus,
        "pi4" => model == PiModel::Pi4,
        "pi5" => model == PiModel::Pi5,
        "pi0" | "pi0w" | "pi02" | "pi1" | "pi2" | "pi400" | "pi500" | "cm4" | "cm4s" | "cm5" => {
            false
        }
        _ => return None,
    };
    Some(matches)
}

/// Records one applying setting line.
fn setting(out: &mut BootConfig, line: &str) {
    if let Some((name, value)) = line.split_once('=') {
        let value = value.trim();
        let slot = match name.trim() {
            "kernel" => &mut out.kernel,
            "device_tree" => &mut out.device_tree,
            _ => return,
        };
        *slot = (!value.is_empty()).then(|| value.to_string());
        return;
    }
    let mut words = line.split_whitespace();
    if words.next() == Some("initramfs")
        && let Some(file) = words.next()
    {
        out.initramfs = Some(file.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of the config.txt the debian-bookworm-arm64 base ships.
    const BASE: &str = "# Bramble\narm_64bit=1\nkernel=vmlinuz-6.1.0-57-arm64\n\
        initramfs initrd.img-6.1.0-57-arm64 followkernel\n\n[pi3]\ndevice_tree=bcm2710-rpi-3-b.dtb\n\
        [pi3+]\ndevice_tree=bcm2710-rpi-3-b-plus.dtb\n[pi4]\ndevice_tree=bcm2711-rpi-4-b.dtb\n[all]\n";

    fn want(kernel: Option<&str>, dtb: Option<&str>, initramfs: Option<&str>) -> BootConfig {
        BootConfig {
            kernel: kernel.map(str::to_string),
            device_tree: dtb.map(str::to_string),
            initramfs: initramfs.map(str::to_string),
        }
    }

    #[test]
    fn each_model_reads_its_own_sections() {
        let (k, i) = (Some("vmlinuz-6.1.0-57-arm64"), Some("initrd.img-6.1.0-57-arm64"));
        let cases = [
            (PiModel::Pi3B, want(k, Some("bcm2710-rpi-3-b.dtb"), i)),
            (PiModel::Pi3BPlus, want(k, Some("bcm2710-rpi-3-b-plus.dtb"), i)),
            (PiModel::Pi4, want(k, Some("bcm2711-rpi-4-b.dtb"), i)),
        ];
        for (model, expected) in cases {
            assert_eq!(parse_config_txt(BASE.as_bytes(), model, Serial(1)), expected, "{model:?}");
        }
    }

    #[test]
    fn filters_settings_and_defaults() {
        let s = Serial(0x5eed_0001);
        let cases: &[(&str, PiModel, BootConfig)] = &[
            // Nothing named: every default stays.
            ("arm_64bit=1\nenable_uart=1\n", PiModel::Pi4, want(None, None, None)),
            ("", PiModel::Pi3B, want(None, None, None)),
            // The last value wins; `[all]` ends a section.
            ("kernel=a\nkernel=b\n", PiModel::Pi4, want(Some("b"), None, None)),
            ("[pi4]\nkernel=k4\n[all]\nkernel=k\n", PiModel::Pi4, want(Some("k"), None, None)),
            ("[pi3]\nkernel=k3\n[all]\n", PiModel::Pi4, want(None, None, None)),
            // `[pi3+]` replaces `[pi3]`: a 3B stops reading there, a 3B+ goes on.
            ("[pi3]\n[pi3+]\nkernel=plus\n", PiModel::Pi3B, want(None, None, None)),
            ("[pi3]\n[pi3+]\nkernel=plus\n", PiModel::Pi3BPlus, want(Some("plus"), None, None)),
            ("[pi5]\nkernel=k5\n", PiModel::Pi4, want(None, None, None)),
            ("[pi5]\nkernel=k5\n[pi4]\nkernel=k4\n", PiModel::Pi5, want(Some("k5"), None, None)),
            // Serial filters combine with model filters.
            ("[pi4]\n[0x5eed0001]\nkernel=mine\n", PiModel::Pi4, want(Some("mine"), None, None)),
            ("[pi4]\n[0x5eed0002]\nkernel=other\n", PiModel::Pi4, want(None, None, None)),
            ("[pi3]\n[0x5eed0001]\nkernel=other\n", PiModel::Pi4, want(None, None, None)),
            // `[none]` and filters not modelled switch lines off until `[all]`.
            ("[none]\nkernel=x\n[all]\ndevice_tree=d\n", PiModel::Pi4, want(None, Some("d"), None)),
            ("[gpio4=1]\nkernel=x\n", PiModel::Pi4, want(None, None, None)),
            ("[tryboot]\nkernel=x\n[all]\n", PiModel::Pi4, want(None, None, None)),
            // Spacing, comments, case of filters, and the initramfs forms.
            ("  kernel = spaced \n#kernel=no\n", PiModel::Pi4, want(Some("spaced"), None, None)),
            ("[PI4]\ninitramfs i.img 0x2000000\n", PiModel::Pi4, want(None, None, Some("i.img"))),
            ("initramfs\ninitramfsx a b\n", PiModel::Pi4, want(None, None, None)),
            ("kernel=\n", PiModel::Pi4, want(None, None, None)),
        ];
        for (text, model, expected) in cases {
            assert_eq!(&parse_config_txt(text.as_bytes(), *model, s), expected, "{text:?}");
        }
    }

    #[test]
    fn names_replace_only_the_kernel_and_the_device_tree() {
        let config = want(Some("vmlinuz"), Some("my.dtb"), Some("initrd"));
        let seq = crate::pisim::firmware_sequence(PiModel::Pi3B);
        let names: Vec<Vec<String>> = seq.iter().map(|s| config.names(s)).collect();
        let defaults: Vec<Vec<String>> =
            seq.iter().map(|s| BootConfig::default().names(s)).collect();
        for (i, step) in seq.iter().enumerate() {
            let expected = match step.role {
                FileRole::Kernel => vec!["vmlinuz".to_string()],
                FileRole::DeviceTree => vec!["my.dtb".to_string()],
                _ => defaults[i].clone(),
            };
            assert_eq!(names[i], expected, "{step:?}");
        }
        let kernel = seq.iter().find(|s| s.role == FileRole::Kernel).expect("kernel step");
        assert_eq!(BootConfig::default().names(kernel), ["kernel8.img", "kernel7.img"]);
    }

    #[test]
    fn invalid_utf8_is_read_around() {
        let got = parse_config_txt(b"\xff\xfe\nkernel=k\n", PiModel::Pi4, Serial(1));
        assert_eq!(got, want(Some("k"), None, None));
    }
}
