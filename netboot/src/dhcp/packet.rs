//! Wire format: checking and decoding a request, encoding a reply. No state, no I/O.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use dhcproto::v4::{DhcpOption, HType, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable};

use super::counters::DropReason;
use super::pi;
use super::types::MacAddr;

/// Fixed BOOTP header (236 bytes) plus the magic cookie.
pub const MIN_PACKET: usize = 240;
/// The largest DHCP message that fits a 1500-byte Ethernet frame (minus IP and UDP).
pub const MAX_PACKET: usize = 1472;
/// BOOTP's minimum message size; some ROMs ignore shorter replies.
const MIN_REPLY: usize = 300;
const MAGIC: [u8; 4] = [99, 130, 83, 99];

/// A request that passed every check, with the fields the server uses pulled out.
#[derive(Debug, Clone)]
pub struct Request {
    pub msg: Message,
    pub kind: MessageType,
    pub mac: MacAddr,
    pub ciaddr: Ipv4Addr,
    /// The relay's address, when the request came through a relay on the same link
    /// (perfdhcp works this way); the engine decides whether to serve it.
    pub giaddr: Ipv4Addr,
    pub requested: Option<Ipv4Addr>,
    pub server_id: Option<Ipv4Addr>,
    pub broadcast: bool,
    /// Option 60 began with "PXEClient" (every Pi ROM sends it).
    pub pxe: bool,
    pub option97: Option<Vec<u8>>,
    pub client_id: Option<Vec<u8>>,
}

/// Checks and decodes one datagram. Never panics, whatever the bytes.
pub fn parse(bytes: &[u8]) -> Result<Request, DropReason> {
    if bytes.len() < MIN_PACKET {
        return Err(DropReason::Truncated);
    }
    if bytes.len() > MAX_PACKET {
        return Err(DropReason::Oversized);
    }
    if bytes[0] != 1 {
        return Err(DropReason::NotRequest);
    }
    if bytes[236..240] != MAGIC {
        return Err(DropReason::BadMagic);
    }
    let clean = keep_used_options(bytes)?;
    let msg = Message::decode(&mut Decoder::new(&clean)).map_err(|_| DropReason::Malformed)?;
    if msg.opcode() != Opcode::BootRequest || msg.htype() != HType::Eth || msg.hlen() != 6 {
        return Err(DropReason::BadHardware);
    }
    let mac_bytes: [u8; 6] =
        msg.chaddr().get(..6).and_then(|b| b.try_into().ok()).ok_or(DropReason::BadHardware)?;
    let mac = MacAddr(mac_bytes);
    if !mac.is_valid_client() {
        return Err(DropReason::BadHardware);
    }
    let kind = match msg.opts().msg_type() {
        Some(
            k @ (MessageType::Discover
            | MessageType::Request
            | MessageType::Inform
            | MessageType::Release
            | MessageType::Decline),
        ) => k,
        _ => return Err(DropReason::UnsupportedType),
    };
    let opts = msg.opts();
    let bytes_of = |code| match opts.get(code) {
        Some(
            DhcpOption::ClassIdentifier(b)
            | DhcpOption::ClientMachineIdentifier(b)
            | DhcpOption::ClientIdentifier(b),
        ) => Some(b.clone()),
        _ => None,
    };
    let requested = match opts.get(OptionCode::RequestedIpAddress) {
        Some(DhcpOption::RequestedIpAddress(a)) => Some(*a),
        _ => None,
    };
    let server_id = match opts.get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(a)) => Some(*a),
        _ => None,
    };
    let pxe = bytes_of(OptionCode::ClassIdentifier).is_some_and(|c| pi::is_pxe_client(&c));
    Ok(Request {
        kind,
        mac,
        ciaddr: msg.ciaddr(),
        giaddr: msg.giaddr(),
        requested,
        server_id,
        broadcast: msg.flags().broadcast(),
        pxe,
        option97: bytes_of(OptionCode::ClientMachineIdentifier),
        client_id: bytes_of(OptionCode::ClientIdentifier),
        msg,
    })
}

/// Options the server reads; all others are dropped before decoding.
const USED_OPTIONS: [u8; 6] = [50, 53, 54, 60, 61, 97];

/// Copies the fixed header and only the options in [`USED_OPTIONS`] (repeats kept in
/// order, for RFC 3396 concatenation), checking every option length on the way.
///
/// Why: dhcproto 0.15 decodes every option it knows and some decoders assert on the
/// length (option 94 of length other than 3 panics in debug builds; found by the fuzz
/// target). Decoding only what we use keeps hostile options away from that code.
fn keep_used_options(bytes: &[u8]) -> Result<Vec<u8>, DropReason> {
    let mut out = Vec::with_capacity(bytes.len());
    out.extend_from_slice(bytes.get(..MIN_PACKET).ok_or(DropReason::Truncated)?);
    for option in options(bytes) {
        let option = option?;
        if USED_OPTIONS.contains(&option[0]) {
            out.extend_from_slice(option);
        }
    }
    out.push(255);
    Ok(out)
}

/// The options after the fixed header and magic cookie, each as its code, length and
/// data bytes (pad skipped, up to the end option); a length running past the datagram
/// is an error, after which nothing more is read.
fn options(bytes: &[u8]) -> impl Iterator<Item = Result<&[u8], DropReason>> {
    let mut i = MIN_PACKET;
    std::iter::from_fn(move || {
        loop {
            match *bytes.get(i)? {
                0 => i += 1,
                255 => return None,
                _ => {
                    let option =
                        bytes.get(i + 1).and_then(|len| bytes.get(i..i + 2 + usize::from(*len)));
                    i = match option {
                        Some(o) => i + o.len(),
                        None => bytes.len(),
                    };
                    return Some(option.ok_or(DropReason::Malformed));
                }
            }
        }
    })
}

/// What goes into a reply besides the message type and address.
#[derive(Debug, Clone)]
pub struct ReplyParams {
    pub server_id: Ipv4Addr,
    pub netmask: Option<Ipv4Addr>,
    pub router: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    /// None for INFORM and NAK.
    pub lease_time: Option<Duration>,
    pub tftp_server: Option<Ipv4Addr>,
    /// Text for a NAK (option 56).
    pub message: Option<String>,
}

/// Encodes the reply of type `kind` to `req`, giving `yiaddr`.
pub fn encode_reply(
    req: &Request,
    kind: MessageType,
    yiaddr: Ipv4Addr,
    p: &ReplyParams,
) -> Vec<u8> {
    let mut msg = Message::new_with_id(
        req.msg.xid(),
        Ipv4Addr::UNSPECIFIED,
        yiaddr,
        Ipv4Addr::UNSPECIFIED,
        req.giaddr,
        &req.mac.0,
    );
    msg.set_opcode(Opcode::BootReply).set_flags(req.msg.flags());
    if kind == MessageType::Inform {
        msg.set_ciaddr(req.ciaddr);
    }
    let opts = msg.opts_mut();
    opts.insert(DhcpOption::MessageType(kind));
    opts.insert(DhcpOption::ServerIdentifier(p.server_id));
    if let Some(text) = &p.message {
        opts.insert(DhcpOption::Message(text.clone()));
    }
    if kind != MessageType::Nak {
        add_config_options(&mut msg, req, p);
    }
    if let Some(id) = &req.client_id {
        msg.opts_mut().insert(DhcpOption::ClientIdentifier(id.clone()));
    }
    // Encoding a message we built ourselves cannot fail; an empty vector is dropped by
    // the caller as a send failure rather than panicking.
    let mut bytes = msg.to_vec().unwrap_or_default();
    if !bytes.is_empty() && bytes.len() < MIN_REPLY {
        bytes.resize(MIN_REPLY, 0);
    }
    bytes
}

fn add_config_options(msg: &mut Message, req: &Request, p: &ReplyParams) {
    if let Some(tftp) = p.tftp_server {
        msg.set_siaddr(tftp);
    }
    let opts = msg.opts_mut();
    if let Some(lease) = p.lease_time {
        let secs = u32::try_from(lease.as_secs()).unwrap_or(u32::MAX);
        opts.insert(DhcpOption::AddressLeaseTime(secs));
        opts.insert(DhcpOption::Renewal(secs / 2));
        opts.insert(DhcpOption::Rebinding(secs / 8 * 7));
    }
    if let Some(mask) = p.netmask {
        opts.insert(DhcpOption::SubnetMask(mask));
    }
    if let Some(router) = p.router {
        opts.insert(DhcpOption::Router(vec![router]));
    }
    if !p.dns.is_empty() {
        opts.insert(DhcpOption::DomainNameServer(p.dns.clone()));
    }
    if let Some(tftp) = p.tftp_server {
        opts.insert(DhcpOption::TFTPServerName(tftp.to_string().into_bytes()));
    }
    if req.pxe {
        opts.insert(DhcpOption::ClassIdentifier(b"PXEClient".to_vec()));
        opts.insert(DhcpOption::VendorExtensions(pi::vendor_options(pi::PI_BOOT_STRING)));
    }
    if let Some(guid) = &req.option97 {
        opts.insert(DhcpOption::ClientMachineIdentifier(guid.clone()));
    }
}

/// The option codes of an encoded message, in order (pad and end left out); stops at
/// the first malformed option.
pub fn option_codes(bytes: &[u8]) -> Vec<u8> {
    options(bytes).map_while(Result::ok).map(|o| o[0]).collect()
}

/// Where a reply goes (RFC 2131 4.1): to the relay's server port when relayed; to
/// `ciaddr` when the client has an address and this is not a NAK; else broadcast (the
/// client cannot receive unicast before it has an address and we write no ARP entries).
pub fn destination(
    req: &Request,
    kind: MessageType,
    server_port: u16,
    client_port: u16,
) -> SocketAddrV4 {
    if req.giaddr != Ipv4Addr::UNSPECIFIED {
        SocketAddrV4::new(req.giaddr, server_port)
    } else if req.ciaddr != Ipv4Addr::UNSPECIFIED && kind != MessageType::Nak {
        SocketAddrV4::new(req.ciaddr, client_port)
    } else {
        SocketAddrV4::new(Ipv4Addr::BROADCAST, client_port)
    }
}
