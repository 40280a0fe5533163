//! Helpers shared by the DHCP tests: request builders, reply decoding, the documented
//! Pi 3B ROM DISCOVER, and sockets opened inside a network namespace.
#![allow(dead_code)]

use std::net::Ipv4Addr;

use bramble_netboot::dhcp::MacAddr;
use dhcproto::v4::{DhcpOption, Message, MessageType, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable};

pub const PI3_XID: u32 = 0x26f3_0339;

/// The bytes of a Pi 3B boot ROM DISCOVER, as documented (boot-net.adoc, DESIGN.md).
pub fn pi3b_rom_discover(mac: MacAddr) -> Vec<u8> {
    let mut m = Message::new_with_id(
        PI3_XID,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        &mac.0,
    );
    let o = m.opts_mut();
    o.insert(DhcpOption::MessageType(MessageType::Discover));
    let prl = [43u8, 60, 67, 128, 129, 130, 131, 132, 133, 134, 135, 66];
    o.insert(DhcpOption::ParameterRequestList(prl.iter().map(|c| OptionCode::from(*c)).collect()));
    o.insert(DhcpOption::Unknown(dhcproto::v4::UnknownOption::new(
        OptionCode::from(93),
        vec![0, 0],
    )));
    o.insert(DhcpOption::Unknown(dhcproto::v4::UnknownOption::new(
        OptionCode::from(94),
        vec![1, 2, 1],
    )));
    let mut guid = vec![0u8];
    guid.extend([0x44; 16]);
    o.insert(DhcpOption::ClientMachineIdentifier(guid));
    o.insert(DhcpOption::ClassIdentifier(b"PXEClient:Arch:00000:UNDI:002001".to_vec()));
    m.to_vec().expect("encode")
}

/// A request of `kind` from `mac` with optional ciaddr, requested address and server id.
pub fn request(
    kind: MessageType,
    mac: MacAddr,
    ciaddr: Ipv4Addr,
    requested: Option<Ipv4Addr>,
    server: Option<Ipv4Addr>,
) -> Vec<u8> {
    let mut m = Message::new_with_id(
        0x1234_5678,
        ciaddr,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        &mac.0,
    );
    m.opts_mut().insert(DhcpOption::MessageType(kind));
    if let Some(r) = requested {
        m.opts_mut().insert(DhcpOption::RequestedIpAddress(r));
    }
    if let Some(s) = server {
        m.opts_mut().insert(DhcpOption::ServerIdentifier(s));
    }
    m.to_vec().expect("encode")
}

/// Adds option 97 (type 0 + 16-byte GUID) to an encoded request.
pub fn with_guid(bytes: &[u8], guid: [u8; 16]) -> Vec<u8> {
    let mut m = decode(bytes);
    let mut v = vec![0u8];
    v.extend(guid);
    m.opts_mut().insert(DhcpOption::ClientMachineIdentifier(v));
    m.to_vec().expect("encode")
}

pub fn decode(bytes: &[u8]) -> Message {
    Message::decode(&mut Decoder::new(bytes)).expect("decodable reply")
}

pub fn msg_type(m: &Message) -> Option<MessageType> {
    m.opts().msg_type()
}

/// The raw bytes of an option in an encoded message (walks the options by hand, so the
/// test does not depend on how dhcproto represents them).
pub fn raw_option(bytes: &[u8], code: u8) -> Option<Vec<u8>> {
    let mut i = 240;
    while i < bytes.len() {
        match bytes[i] {
            0 => i += 1,
            255 => return None,
            c => {
                let len = *bytes.get(i + 1)? as usize;
                let data = bytes.get(i + 2..i + 2 + len)?;
                if c == code {
                    return Some(data.to_vec());
                }
                i += 2 + len;
            }
        }
    }
    None
}

/// Fails the test with a clear message when not root or a tool is missing.
pub fn require(tools: &[&str]) {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "DHCP network tests need root (netns, veth, port 67)"
    );
    for tool in tools {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
            .unwrap_or(false);
        assert!(found, "`{tool}` is not installed; the test command installs it (see scripts/)");
    }
}

/// A UDP socket on 0.0.0.0:68 created inside namespace `ns`, bound to its `eth0`, for
/// sending raw client packets as a Pi would.
pub fn client_socket_in(ns: &str) -> std::net::UdpSocket {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).expect("open netns");
        use std::os::fd::AsRawFd;
        // SAFETY: setns on a valid namespace fd; it only affects this short-lived thread.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns into {path}");
        let s = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )
        .expect("socket");
        s.set_reuse_address(true).expect("reuse");
        s.set_broadcast(true).expect("broadcast");
        s.bind_device(Some(b"eth0")).expect("bind device");
        s.bind(&std::net::SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68).into()).expect("bind :68");
        s.set_read_timeout(Some(std::time::Duration::from_secs(3))).expect("timeout");
        std::net::UdpSocket::from(s)
    })
    .join()
    .expect("netns thread")
}

/// Holds UDP `port` on `0.0.0.0` in the machine's namespace for the rest of the test
/// process, as another DHCP server on the machine would: the servers under test run in a
/// namespace of their own and must not care. A port someone else already holds serves
/// the same purpose.
pub fn hold_machine_port(port: u16) {
    use std::sync::{Mutex, OnceLock};
    static HELD: OnceLock<Mutex<Vec<std::net::UdpSocket>>> = OnceLock::new();
    let held = HELD.get_or_init(|| Mutex::new(Vec::new()));
    let mut held = held.lock().unwrap_or_else(|e| e.into_inner());
    if held.iter().any(|s| s.local_addr().ok().map(|a| a.port()) == Some(port)) {
        return;
    }
    match std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)) {
        Ok(socket) => held.push(socket),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {}
        Err(e) => panic!("cannot hold UDP port {port} on the machine: {e}"),
    }
}
