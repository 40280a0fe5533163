//! What the Raspberry Pi boot ROMs send and need: model and serial from the MAC and
//! option 97, and the option 43 PXE vendor options that make the ROM accept an offer.
//!
//! Option 97 (client machine identifier, RFC 4578) is 17 bytes: type 0, then a 16-byte
//! GUID whose layout depends on the boot ROM. Facts, and where they come from:
//! - Pi 3B ROM: sixteen 0x44 bytes (DESIGN.md; dnsmasq logs in raspberrypi/firmware#1362).
//! - Pi 3B+ ROM, and the EEPROM bootloader with `DHCP_OPTION97=0`: the 32-bit serial,
//!   little-endian, four times (raspberrypi/firmware#941, a tcpdump of a 3B+;
//!   raspberrypi/rpi-eeprom issues #82 and #87 for the early Pi 4 EEPROM).
//! - Pi 4 and Pi 5 EEPROM bootloader, default since pieeprom-2020-03-19: four 4-byte
//!   fields, FourCC, board revision, the low 4 bytes of the MAC, serial
//!   (raspberrypi/documentation, documentation/asciidoc/computers/raspberry-pi/
//!   eeprom-bootloader.adoc, `DHCP_OPTION97`; rpi-eeprom firmware/release-notes.md,
//!   2020-03-11). The FourCC is the little-endian word 0x34695052 (`RPi4`) on a Pi 4 and
//!   0x35695052 (`RPi5`) on a Pi 5, so the bytes on the wire read `RPi4`/`RPi5`
//!   (raspberrypi/documentation#3586 for `RPi5`). A Pi 4's dnsmasq log shows
//!   `00:52:50:69:34:11:31:a0:00:32:2e:f8:ed:10..` with TFTP directory `5b154510`:
//!   revision a03111 and serial are little-endian, the MAC bytes in wire order.
//!   An operator may set another prefix (`DHCP_OPTION97=<hex>`); the revision, MAC and
//!   serial words stay, so the MAC bytes identify the layout and the revision's type
//!   field (raspberrypi/documentation revision-codes.adoc: 0x11 4B, 0x17 5) the model.
//! - Every ROM and EEPROM sends option 93 = 0 and option 60
//!   `PXEClient:Arch:00000:UNDI:002001` (raspberrypi/firmware#1928, rpi-eeprom#182): the
//!   architecture tells nothing, so neither does this module read it.
//!
//! A Pi 3's MAC is b8:27:eb + the low 24 bits of its serial, which lets us check which
//! GUID bytes hold a 3B+ serial rather than trust one guessed layout.

use super::types::{MacAddr, PiModel, PiSerial};

/// The string the Pi ROM looks for in option 43. The 3B ROM miscounts its length, so it
/// needs three trailing spaces (fixed on the 3B+, which accepts both).
pub const PI_BOOT_STRING: &str = "Raspberry Pi Boot   ";

/// OUIs of Raspberry Pi Ltd / Raspberry Pi Trading: b8:27:eb is the Pi 3 and older.
const OUI_PI3_AND_OLDER: [u8; 3] = [0xb8, 0x27, 0xeb];
const OUI_NEWER: [[u8; 3]; 5] = [
    [0xdc, 0xa6, 0x32],
    [0xe4, 0x5f, 0x01],
    [0x28, 0xcd, 0xc1],
    [0xd8, 0x3a, 0xdd],
    [0x2c, 0xcf, 0x67],
];

/// The option 43 bytes for a Pi: PXE discovery control 3 (no broadcast/multicast
/// discovery, boot server list only), menu prompt "PXE" with timeout 0, and one boot
/// menu item of type 0 described by `label`. With the label "Raspberry Pi Boot" this is
/// exactly dnsmasq's encoding; lengths follow the label.
pub fn vendor_options(label: &str) -> Vec<u8> {
    let label = &label.as_bytes()[..label.len().min(250)];
    let mut out = vec![6, 1, 3, 10, 4, 0, b'P', b'X', b'E'];
    // Sub-option 9: boot server type (u16) + description length (u8) + description.
    out.push(9);
    out.push((label.len() + 3) as u8);
    out.extend_from_slice(&[0, 0, label.len() as u8]);
    out.extend_from_slice(label);
    out.push(255);
    out
}

/// True for a vendor class that a PXE ROM (the Pi's included) sends.
pub fn is_pxe_client(class_identifier: &[u8]) -> bool {
    class_identifier.starts_with(b"PXEClient")
}

/// The model as far as the MAC's OUI tells.
pub fn model_from_oui(mac: &MacAddr) -> Option<PiModel> {
    let oui = mac.oui();
    if oui == OUI_PI3_AND_OLDER {
        Some(PiModel::Pi3OrOlder)
    } else if OUI_NEWER.contains(&oui) {
        Some(PiModel::NewerPi)
    } else {
        None
    }
}

/// What option 97 and the MAC say about a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PiIdentity {
    pub model: Option<PiModel>,
    pub serial: Option<PiSerial>,
}

/// Identifies a client from its MAC and option 97 (client machine identifier), if any.
/// Never fails: unknown layouts just yield less information.
pub fn identify(mac: &MacAddr, option97: Option<&[u8]>) -> PiIdentity {
    let by_oui = model_from_oui(mac);
    let Some(guid) = option97.and_then(guid_of) else {
        return PiIdentity { model: by_oui, serial: None };
    };
    if guid == [0x44; 16] {
        let model = if by_oui.is_some() { Some(PiModel::Pi3B) } else { None };
        return PiIdentity { model, serial: None };
    }
    if by_oui == Some(PiModel::Pi3OrOlder) {
        return PiIdentity { model: Some(PiModel::Pi3BPlus), serial: pi3_plus_serial(mac, &guid) };
    }
    if let Some(id) = eeprom_identity(mac, &guid) {
        return id;
    }
    PiIdentity { model: by_oui, serial: None }
}

/// Option 97 is type 0 (UUID/GUID) followed by 16 bytes (RFC 4578).
fn guid_of(option97: &[u8]) -> Option<[u8; 16]> {
    match option97 {
        [0, rest @ ..] if rest.len() == 16 => rest.try_into().ok(),
        _ => None,
    }
}

/// The GUID's four 4-byte words.
fn words(guid: &[u8; 16]) -> [[u8; 4]; 4] {
    let w = |i: usize| [guid[i], guid[i + 1], guid[i + 2], guid[i + 3]];
    [w(0), w(4), w(8), w(12)]
}

/// The 3B+ sets the GUID to its 32-bit serial. Try the plausible placements and keep the
/// one whose low 24 bits match the MAC (b8:27:eb + low 24 bits of the serial).
fn pi3_plus_serial(mac: &MacAddr, guid: &[u8; 16]) -> Option<PiSerial> {
    let low24 = u32::from_be_bytes([0, mac.0[3], mac.0[4], mac.0[5]]);
    let [first, _, _, last] = words(guid);
    [
        u32::from_le_bytes(first),
        u32::from_be_bytes(last),
        u32::from_be_bytes(first),
        u32::from_le_bytes(last),
    ]
    .into_iter()
    .find(|candidate| candidate & 0x00ff_ffff == low24)
    .map(PiSerial)
}

/// Pi 4/5 EEPROM bootloader: FourCC, board revision (LE), MAC bytes 2..6, serial (LE);
/// or, with `DHCP_OPTION97=0`, the serial (LE) four times.
fn eeprom_identity(mac: &MacAddr, guid: &[u8; 16]) -> Option<PiIdentity> {
    let w = words(guid);
    let [fourcc, revision, mac_low, serial] = w;
    let serial = Some(PiSerial(u32::from_le_bytes(serial)));
    let model = match &fourcc {
        b"RPi4" => Some(PiModel::Pi4),
        b"RPi5" => Some(PiModel::Pi5),
        // Another prefix: trust the layout only if the MAC word is this client's.
        _ if mac_low == mac.0[2..6] => model_from_revision(u32::from_le_bytes(revision)),
        // `DHCP_OPTION97=0`: the serial four times, nothing about the model.
        _ if w.iter().all(|word| *word == fourcc) => None,
        _ => return None,
    };
    Some(PiIdentity { model: model.or(model_from_oui(mac)), serial })
}

/// The model a new-style board revision code names (bit 23 set; type in bits 4..12).
fn model_from_revision(revision: u32) -> Option<PiModel> {
    if revision & (1 << 23) == 0 {
        return None;
    }
    match (revision >> 4) & 0xff {
        0x11 => Some(PiModel::Pi4),
        0x17 => Some(PiModel::Pi5),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vendor_options_match_dnsmasq_encoding_byte_for_byte() {
        // dnsmasq's documented bytes, with "Raspberry Pi Boot" (no spaces).
        let mut dnsmasq = vec![
            0x06, 0x01, 0x03, 0x0a, 0x04, 0x00, b'P', b'X', b'E', 0x09, 0x14, 0x00, 0x00, 0x11,
        ];
        dnsmasq.extend_from_slice(b"Raspberry Pi Boot");
        dnsmasq.push(0xff);
        assert_eq!(vendor_options("Raspberry Pi Boot"), dnsmasq);
        // With the three spaces the 3B needs: description 0x14, sub-option 0x17.
        let mut spaced = vec![
            0x06, 0x01, 0x03, 0x0a, 0x04, 0x00, b'P', b'X', b'E', 0x09, 0x17, 0x00, 0x00, 0x14,
        ];
        spaced.extend_from_slice(b"Raspberry Pi Boot   ");
        spaced.push(0xff);
        assert_eq!(vendor_options(PI_BOOT_STRING), spaced);
    }

    #[test]
    fn identifies_models_and_serials() {
        let pi3: MacAddr = "b8:27:eb:28:f6:6d".parse().unwrap();
        let mut rom3b = vec![0u8];
        rom3b.extend([0x44; 16]);
        assert_eq!(
            identify(&pi3, Some(&rom3b)),
            PiIdentity { model: Some(PiModel::Pi3B), serial: None }
        );

        // A 3B+ as tcpdump printed it in raspberrypi/firmware#941 (decimal bytes).
        let pi3bp: MacAddr = "b8:27:eb:86:96:f5".parse().unwrap();
        let mut captured = vec![0u8];
        (0..4).for_each(|_| captured.extend([245, 150, 134, 141]));
        assert_eq!(
            identify(&pi3bp, Some(&captured)),
            PiIdentity { model: Some(PiModel::Pi3BPlus), serial: Some(PiSerial(0x8d8696f5)) }
        );

        let mut rom3bp = vec![0u8; 13];
        rom3bp.extend([0x5a, 0x28, 0xf6, 0x6d]);
        assert_eq!(
            identify(&pi3, Some(&rom3bp)),
            PiIdentity { model: Some(PiModel::Pi3BPlus), serial: Some(PiSerial(0x5a28f66d)) }
        );

        // A Pi 4 as dnsmasq logged it (see the module doc): the log cut the GUID after
        // the serial's first byte; the rest follows from its TFTP directory 5b154510.
        let pi4: MacAddr = "dc:a6:32:2e:f8:ed".parse().unwrap();
        let rom4 = [
            0x00, 0x52, 0x50, 0x69, 0x34, 0x11, 0x31, 0xa0, 0x00, 0x32, 0x2e, 0xf8, 0xed, 0x10,
            0x45, 0x15, 0x5b,
        ];
        assert_eq!(
            identify(&pi4, Some(&rom4)),
            PiIdentity { model: Some(PiModel::Pi4), serial: Some(PiSerial(0x5b154510)) }
        );
        assert_eq!(identify(&pi4, None).model, Some(PiModel::NewerPi));
        let other: MacAddr = "02:00:00:00:00:01".parse().unwrap();
        // The same GUID from a MAC it does not describe still names a Pi 4 by its FourCC.
        assert_eq!(identify(&other, Some(&rom4)).model, Some(PiModel::Pi4));
        assert_eq!(identify(&other, Some(&[1, 2, 3])), PiIdentity { model: None, serial: None });
    }

    /// The documented Pi 5 layout: `RPi5`, revision 0x00d04170 (little-endian), MAC bytes
    /// 2..6, serial (little-endian).
    fn pi5_guid(prefix: [u8; 4], mac: &MacAddr, serial: u32) -> Vec<u8> {
        let mut g = vec![0u8];
        g.extend(prefix);
        g.extend(0x00d0_4170u32.to_le_bytes());
        g.extend(&mac.0[2..6]);
        g.extend(serial.to_le_bytes());
        g
    }

    #[test]
    fn identifies_a_pi5_by_fourcc_and_reads_its_little_endian_serial() {
        let mac: MacAddr = "d8:3a:dd:e8:27:1e".parse().unwrap();
        let guid = pi5_guid(*b"RPi5", &mac, 0x8e6c_c3d6);
        assert_eq!(&guid[1..5], &[0x52, 0x50, 0x69, 0x35], "the FourCC word 0x35695052, LE");
        assert_eq!(
            identify(&mac, Some(&guid)),
            PiIdentity { model: Some(PiModel::Pi5), serial: Some(PiSerial(0x8e6cc3d6)) }
        );
    }

    #[test]
    fn a_custom_prefix_is_read_by_its_mac_word_and_revision() {
        let mac: MacAddr = "2c:cf:67:01:02:03".parse().unwrap();
        let guid = pi5_guid([1, 2, 3, 4], &mac, 0x1234_5678);
        assert_eq!(
            identify(&mac, Some(&guid)),
            PiIdentity { model: Some(PiModel::Pi5), serial: Some(PiSerial(0x12345678)) }
        );
        // Another client's MAC word: the layout is not trusted, nothing is read from it.
        let other: MacAddr = "2c:cf:67:09:09:09".parse().unwrap();
        assert_eq!(
            identify(&other, Some(&guid)),
            PiIdentity { model: Some(PiModel::NewerPi), serial: None }
        );
    }

    #[test]
    fn the_legacy_eeprom_guid_repeats_the_serial() {
        let mac: MacAddr = "dc:a6:32:01:36:c2".parse().unwrap();
        let mut guid = vec![0u8];
        (0..4).for_each(|_| guid.extend(0x9ffe_fdefu32.to_le_bytes()));
        assert_eq!(
            identify(&mac, Some(&guid)),
            PiIdentity { model: Some(PiModel::NewerPi), serial: Some(PiSerial(0x9ffefdef)) }
        );
    }
}
