//! What the Raspberry Pi boot ROMs send and need: model and serial from the MAC and
//! option 97, and the option 43 PXE vendor options that make the ROM accept an offer.
//!
//! Facts (DESIGN.md; raspberrypi/documentation boot-net.adoc): the 3B ROM sends option 97
//! as 0x00 + sixteen 0x44 bytes; the 3B+ puts its 32-bit serial in that GUID; the Pi 4/5
//! EEPROM bootloader starts the GUID with the fourcc `RPi4`/`RPi5`. A Pi 3's MAC is
//! b8:27:eb + the low 24 bits of its serial, which lets us check which GUID bytes hold
//! the serial rather than trust one guessed layout.

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
    match &guid[..4] {
        b"RPi4" => PiIdentity { model: Some(PiModel::Pi4), serial: eeprom_serial(&guid) },
        b"RPi5" => PiIdentity { model: Some(PiModel::Pi5), serial: eeprom_serial(&guid) },
        _ if by_oui == Some(PiModel::Pi3OrOlder) => {
            PiIdentity { model: Some(PiModel::Pi3BPlus), serial: pi3_plus_serial(mac, &guid) }
        }
        _ => PiIdentity { model: by_oui, serial: None },
    }
}

/// Option 97 is type 0 (UUID/GUID) followed by 16 bytes (RFC 4578).
fn guid_of(option97: &[u8]) -> Option<[u8; 16]> {
    match option97 {
        [0, rest @ ..] if rest.len() == 16 => rest.try_into().ok(),
        _ => None,
    }
}

/// The 3B+ sets the GUID to its 32-bit serial. Try the plausible placements and keep the
/// one whose low 24 bits match the MAC (b8:27:eb + low 24 bits of the serial).
fn pi3_plus_serial(mac: &MacAddr, guid: &[u8; 16]) -> Option<PiSerial> {
    let low24 = u32::from_be_bytes([0, mac.0[3], mac.0[4], mac.0[5]]);
    let first: [u8; 4] = guid[..4].try_into().ok()?;
    let last: [u8; 4] = guid[12..].try_into().ok()?;
    [
        u32::from_be_bytes(last),
        u32::from_be_bytes(first),
        u32::from_le_bytes(first),
        u32::from_le_bytes(last),
    ]
    .into_iter()
    .find(|candidate| candidate & 0x00ff_ffff == low24)
    .map(PiSerial)
}

/// Pi 4/5 EEPROM bootloader: fourcc, then the 32-bit serial (big-endian), then the MAC.
fn eeprom_serial(guid: &[u8; 16]) -> Option<PiSerial> {
    let bytes: [u8; 4] = guid[4..8].try_into().ok()?;
    Some(PiSerial(u32::from_be_bytes(bytes)))
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

        let mut rom3bp = vec![0u8; 13];
        rom3bp.extend([0x5a, 0x28, 0xf6, 0x6d]);
        assert_eq!(
            identify(&pi3, Some(&rom3bp)),
            PiIdentity { model: Some(PiModel::Pi3BPlus), serial: Some(PiSerial(0x5a28f66d)) }
        );

        let pi4: MacAddr = "dc:a6:32:03:22:20".parse().unwrap();
        let mut rom4 = vec![0u8];
        rom4.extend(b"RPi4");
        rom4.extend([0x47, 0xb4, 0x5d, 0xcb]);
        rom4.extend(pi4.0);
        rom4.extend([0, 0]);
        assert_eq!(
            identify(&pi4, Some(&rom4)),
            PiIdentity { model: Some(PiModel::Pi4), serial: Some(PiSerial(0x47b45dcb)) }
        );

        assert_eq!(identify(&pi4, None).model, Some(PiModel::NewerPi));
        let other: MacAddr = "02:00:00:00:00:01".parse().unwrap();
        assert_eq!(identify(&other, Some(&[1, 2, 3])), PiIdentity { model: None, serial: None });
    }
}
