//! The DHCP packets the boot ROMs send, and the checks they apply to replies.

use std::net::Ipv4Addr;

use dhcproto::v4::{DhcpOption, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Encodable};

use super::{Mac, PiModel, Serial};

/// The xid every Pi 3 boot ROM uses (firmware#801).
pub const PI3_XID: u32 = 0x26f3_0339;
const VENDOR_CLASS: &[u8] = b"PXEClient:Arch:00000:UNDI:002001";
const PI_BOOT_MARKER: &[u8] = b"Raspberry Pi Boot";

/// What a usable OFFER or ACK gave the Pi.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub addr: Ipv4Addr,
    pub prefix_len: u8,
    pub server_id: Option<Ipv4Addr>,
    pub tftp_server: Ipv4Addr,
}

/// Option 97 payload: type 0 then a 16-byte machine identifier.
///
/// The 3B sends sixteen 0x44 bytes; the 3B+ its serial, little-endian, four times (as
/// seen in a dnsmasq log of a real one, raspberrypi/firmware#1605, and a tcpdump in
/// raspberrypi/firmware#941). The Pi 4 and 5 EEPROM bootloaders send four 32-bit words:
/// the FourCC 0x34695052 / 0x35695052 (`RPi4` / `RPi5` on the wire), the board revision,
/// the low four bytes of the MAC, the serial (raspberrypi/documentation
/// eeprom-bootloader.adoc `DHCP_OPTION97`); words little-endian, MAC bytes in wire order,
/// as a Pi 4's dnsmasq log shows (`00:52:50:69:34:11:31:a0:00:32:2e:f8:ed:10..`).
pub fn client_guid(model: PiModel, serial: Serial, mac: Mac) -> Vec<u8> {
    let mut guid = vec![0u8];
    let fourcc: u32 = match model {
        PiModel::Pi3B => {
            guid.extend([0x44; 16]);
            return guid;
        }
        PiModel::Pi3BPlus => {
            (0..4).for_each(|_| guid.extend(serial.0.to_le_bytes()));
            return guid;
        }
        PiModel::Pi4 => 0x3469_5052,
        PiModel::Pi5 => 0x3569_5052,
    };
    guid.extend(fourcc.to_le_bytes());
    guid.extend(model.board_revision().unwrap_or_default().to_le_bytes());
    guid.extend(&mac.0[2..6]);
    guid.extend(serial.0.to_le_bytes());
    guid
}

fn base(model: PiModel, serial: Serial, mac: Mac, xid: u32, kind: MessageType) -> Message {
    let zero = Ipv4Addr::UNSPECIFIED;
    let mut msg = Message::new_with_id(xid, zero, zero, zero, zero, &mac.0);
    let opts = msg.opts_mut();
    opts.insert(DhcpOption::MessageType(kind));
    // Fourteen options, as captures of the 3B+ (raspberrypi/firmware#941), the Pi 4
    // (rpi-eeprom#58) and a Pi 5 show: 1, 3, 43, 60, 66, 67 and the PXE range 128-135.
    let mut wanted = vec![
        OptionCode::SubnetMask,
        OptionCode::Router,
        OptionCode::VendorExtensions,
        OptionCode::ClassIdentifier,
        OptionCode::TFTPServerName,
        OptionCode::BootfileName,
    ];
    wanted.extend((128..=135).map(OptionCode::from));
    opts.insert(DhcpOption::ParameterRequestList(wanted));
    opts.insert(DhcpOption::ClassIdentifier(VENDOR_CLASS.to_vec()));
    opts.insert(DhcpOption::ClientSystemArchitecture(0u16.into()));
    opts.insert(DhcpOption::ClientNetworkInterface(1, 2, 1));
    opts.insert(DhcpOption::ClientMachineIdentifier(client_guid(model, serial, mac)));
    msg
}

/// An encoded DISCOVER.
pub fn discover(model: PiModel, serial: Serial, mac: Mac, xid: u32) -> Vec<u8> {
    encode(&base(model, serial, mac, xid, MessageType::Discover))
}

/// An encoded REQUEST for the address of `lease`.
pub fn request(model: PiModel, serial: Serial, mac: Mac, xid: u32, lease: &Lease) -> Vec<u8> {
    let mut msg = base(model, serial, mac, xid, MessageType::Request);
    msg.opts_mut().insert(DhcpOption::RequestedIpAddress(lease.addr));
    if let Some(id) = lease.server_id {
        msg.opts_mut().insert(DhcpOption::ServerIdentifier(id));
    }
    encode(&msg)
}

fn encode(msg: &Message) -> Vec<u8> {
    // Encoding a message built from fixed-size fields only fails on a dhcproto bug.
    msg.to_vec().unwrap_or_default()
}

/// Checks a reply the way the ROM does and extracts the lease, or says why it is ignored.
pub fn parse_reply(
    bytes: &[u8],
    model: PiModel,
    mac: Mac,
    xid: u32,
    want: MessageType,
) -> Result<Lease, String> {
    let msg = Message::from_bytes(bytes).map_err(|e| format!("undecodable: {e}"))?;
    if msg.opcode() != Opcode::BootReply || msg.xid() != xid {
        return Err(format!("not our reply (xid {:#x})", msg.xid()));
    }
    if msg.chaddr().get(..6) != Some(&mac.0[..]) {
        return Err("chaddr is another client".into());
    }
    let kind = msg.opts().msg_type();
    if kind != Some(want) {
        return Err(format!("message type {kind:?}, wanted {want:?}"));
    }
    match msg.opts().get(OptionCode::VendorExtensions) {
        Some(DhcpOption::VendorExtensions(v)) if contains(v, PI_BOOT_MARKER) => {}
        _ => return Err("option 43 lacks \"Raspberry Pi Boot\"".into()),
    }
    let tftp_server = tftp_server(&msg, model)?;
    let prefix_len = match msg.opts().get(OptionCode::SubnetMask) {
        Some(DhcpOption::SubnetMask(m)) => u32::from(*m).leading_ones() as u8,
        _ => 24,
    };
    let server_id = match msg.opts().get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(id)) => Some(*id),
        _ => None,
    };
    Ok(Lease { addr: msg.yiaddr(), prefix_len, server_id, tftp_server })
}

/// Option 66 as dotted decimal; the Pi 4 and 5 fall back to siaddr, the Pi 3 ignores siaddr.
fn tftp_server(msg: &Message, model: PiModel) -> Result<Ipv4Addr, String> {
    let opt66 = match msg.opts().get(OptionCode::TFTPServerName) {
        Some(DhcpOption::TFTPServerName(name)) => Some(name.clone()),
        _ => None,
    };
    let parsed = opt66.as_ref().map(|name| {
        let text = String::from_utf8_lossy(name);
        text.trim_end_matches(['\0', ' ']).parse::<Ipv4Addr>()
    });
    match (parsed, model) {
        (Some(Ok(ip)), _) => Ok(ip),
        (_, m) if m.has_eeprom() && !msg.siaddr().is_unspecified() => Ok(msg.siaddr()),
        (Some(Err(_)), _) => Err("option 66 is not a dotted-decimal address".into()),
        (None, _) => Err("no option 66".into()),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
#[path = "dhcp_tests.rs"]
mod tests;
