//! The file-name policy: which names a Pi may ask for and where they map. Pure: this
//! decides on the name alone; [`super::source`] then checks what is on disk (symlinks).
//!
//! Rules, in order: at most 255 bytes; UTF-8; no control characters or backslashes; no
//! leading `/` (no Pi firmware sends one, and unlike tftpd-hpa `--secure` we do not strip
//! it: an absolute name is refused); no `..` component (`.` and empty components are
//! dropped). Then `bootcode.bin` alone is the shared first-stage loader; a first
//! component shaped like a serial (8 hex digits) or a dashed MAC must be this slot's own,
//! else the request is refused; everything else maps into the slot's boot directory.

use std::path::PathBuf;

use super::metrics::Refusal;
use super::resolve::{PiSerial, SlotBoot, looks_like_mac_dir, looks_like_serial};

/// Longest file name accepted, in bytes.
pub const MAX_NAME: usize = 255;

/// The shared first-stage loader every Pi 3 ROM asks for first.
pub const FIRST_STAGE: &str = "bootcode.bin";

/// Where a request maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `bootcode.bin` from the shared firmware directory.
    FirstStage,
    /// A path relative to the slot's boot directory (never empty, no `..`).
    Slot(PathBuf),
    /// A file generated per slot instead of read from disk.
    Generated(Generated),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generated {
    Cmdline,
    Config,
}

/// Maps a requested name to a target for this slot, or says why it is refused.
pub fn map_request(name: &[u8], slot: &SlotBoot) -> Result<Target, Refusal> {
    if name.len() > MAX_NAME {
        return Err(Refusal::Overlong);
    }
    if name.contains(&0) {
        return Err(Refusal::NulByte);
    }
    let name = std::str::from_utf8(name).map_err(|_| Refusal::NonUtf8)?;
    if name.chars().any(|c| c.is_control() || c == '\\') {
        return Err(Refusal::InvalidChar);
    }
    if name.starts_with('/') {
        return Err(Refusal::Absolute);
    }
    let mut parts = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(Refusal::Traversal),
            other => parts.push(other),
        }
    }
    let rest = strip_slot_prefix(&parts, slot)?;
    match rest {
        [] => Err(Refusal::NotAFile),
        [file] if parts.len() == 1 && *file == FIRST_STAGE => Ok(Target::FirstStage),
        ["cmdline.txt"] => Ok(Target::Generated(Generated::Cmdline)),
        ["config.txt"] => Ok(Target::Generated(Generated::Config)),
        _ => Ok(Target::Slot(rest.iter().collect())),
    }
}

/// Drops a leading `<serial>/` or `<mac>/` that names this slot; refuses one that names
/// another Pi. The name grants nothing: the client address already chose the slot.
fn strip_slot_prefix<'a, 'b>(
    parts: &'a [&'b str],
    slot: &SlotBoot,
) -> Result<&'a [&'b str], Refusal> {
    let Some((first, rest)) = parts.split_first() else {
        return Ok(parts);
    };
    if looks_like_serial(first) {
        // Until the inventory learns the serial (the 3B's firmware shows it only here),
        // the slot's Pi is whoever asks from the slot's address.
        let named = first.parse::<PiSerial>().ok();
        return if slot.serial.is_none() || named == slot.serial {
            Ok(rest)
        } else {
            Err(Refusal::ForeignSlot)
        };
    }
    if looks_like_mac_dir(first) {
        return if first.eq_ignore_ascii_case(&slot.mac.dashed()) {
            Ok(rest)
        } else {
            Err(Refusal::ForeignSlot)
        };
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bootfiles::BootParams;

    fn slot() -> SlotBoot {
        SlotBoot {
            serial: Some("1234abcd".parse().expect("serial")),
            mac: "b8:27:eb:34:ab:cd".parse().expect("mac"),
            boot_dir: "/srv/slot1/boot".into(),
            params: BootParams::example(),
        }
    }

    #[test]
    fn policy_table() {
        let slot = slot();
        let ok = |p: &str| Ok(Target::Slot(p.into()));
        let long = "a".repeat(256);
        let cases: Vec<(&[u8], Result<Target, Refusal>)> = vec![
            (b"bootcode.bin", Ok(Target::FirstStage)),
            (b"1234abcd/bootcode.bin", ok("bootcode.bin")),
            (b"bootsig.bin", ok("bootsig.bin")),
            (b"1234abcd/start.elf", ok("start.elf")),
            (b"1234ABCD/start.elf", ok("start.elf")),
            (b"b8-27-eb-34-ab-cd/start4.elf", ok("start4.elf")),
            (b"1234abcd/overlays/./a.dtbo", ok("overlays/a.dtbo")),
            (b"kernel8.img", ok("kernel8.img")),
            (b"1234abcd//cmdline.txt", Ok(Target::Generated(Generated::Cmdline))),
            (b"cmdline.txt", Ok(Target::Generated(Generated::Cmdline))),
            (b"b8-27-eb-34-ab-cd/config.txt", Ok(Target::Generated(Generated::Config))),
            (b"overlays/config.txt", ok("overlays/config.txt")),
            (b"deadbeef/start.elf", Err(Refusal::ForeignSlot)),
            (b"b8-27-eb-00-00-01/start.elf", Err(Refusal::ForeignSlot)),
            (b"../etc/passwd", Err(Refusal::Traversal)),
            (b"1234abcd/../deadbeef/start.elf", Err(Refusal::Traversal)),
            (b"/etc/passwd", Err(Refusal::Absolute)),
            (b"/bootcode.bin", Err(Refusal::Absolute)),
            (b"a\0b", Err(Refusal::NulByte)),
            (b"a\xffb", Err(Refusal::NonUtf8)),
            (b"a\\..\\b", Err(Refusal::InvalidChar)),
            (b"a\nb", Err(Refusal::InvalidChar)),
            (long.as_bytes(), Err(Refusal::Overlong)),
            (b"", Err(Refusal::NotAFile)),
            (b"1234abcd/", Err(Refusal::NotAFile)),
        ];
        for (name, want) in cases {
            assert_eq!(map_request(name, &slot), want, "{:?}", String::from_utf8_lossy(name));
        }
    }

    #[test]
    fn a_slot_whose_serial_is_unknown_takes_any_serial_prefix_but_no_mac_of_another() {
        let slot = SlotBoot { serial: None, ..slot() };
        assert_eq!(map_request(b"5eed0003/start.elf", &slot), Ok(Target::Slot("start.elf".into())));
        assert_eq!(map_request(b"b8-27-eb-00-00-01/start.elf", &slot), Err(Refusal::ForeignSlot));
        assert_eq!(map_request(b"5eed0003/../x", &slot), Err(Refusal::Traversal));
    }
}
