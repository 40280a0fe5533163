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
/// seen in a dnsmasq log of a real one, raspberrypi/firmware#1605); the Pi 4
/// starts with the `RPi4` fourcc, then serial and MAC (the exact Pi 4 layout after the
/// fourcc is this simulator's choice: servers only key on the fourcc).
pub fn client_guid(model: PiModel, serial: Serial, mac: Mac) -> Vec<u8> {
    let mut guid = vec![0u8];
    match model {
        PiModel::Pi3B => guid.extend([0x44; 16]),
        PiModel::Pi3BPlus => (0..4).for_each(|_| guid.extend(serial.0.to_le_bytes())),
        PiModel::Pi4 => {
            guid.extend(b"RPi4");
            guid.extend(serial.0.to_be_bytes());
            guid.extend(mac.0);
            guid.extend([0, 0]);
        }
    }
    guid
}

fn base(model: PiModel, serial: Serial, mac: Mac, xid: u32, kind: MessageType) -> Message {
    let zero = Ipv4Addr::UNSPECIFIED;
    let mut msg = Message::new_with_id(xid, zero, zero, zero, zero, &mac.0);
    let opts = msg.opts_mut();
    opts.insert(DhcpOption::MessageType(kind));
    opts.insert(DhcpOption::ParameterRequestList(vec![
        OptionCode::SubnetMask,
        OptionCode::Router,
        OptionCode::VendorExtensions,
        OptionCode::ClassIdentifier,
        OptionCode::TFTPServerName,
        OptionCode::BootfileName,
    ]));
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

/// Option 66 as dotted decimal; the Pi 4 falls back to siaddr, the Pi 3 ignores siaddr.
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
        (_, PiModel::Pi4) if !msg.siaddr().is_unspecified() => Ok(msg.siaddr()),
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
