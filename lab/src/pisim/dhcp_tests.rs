//! Unit tests of the boot ROM DHCP packets: the bytes the ROMs send and which replies
//! they accept.

use dhcproto::Encodable;
use dhcproto::v4::{Message, Opcode};

use super::*;

const SERIAL: Serial = Serial(0x1234_abcd);

fn mac(model: PiModel) -> Mac {
    Mac::for_board(model, SERIAL)
}

/// A reply as dnsmasq builds it for a Pi: option 43 with the PXE menu, option 66.
fn reply(model: PiModel, kind: MessageType, opt43: Option<&[u8]>, opt66: Option<&str>) -> Message {
    let zero = Ipv4Addr::UNSPECIFIED;
    let mut m =
        Message::new_with_id(PI3_XID, zero, [10, 105, 1, 2].into(), zero, zero, &mac(model).0);
    m.set_opcode(Opcode::BootReply);
    m.opts_mut().insert(DhcpOption::MessageType(kind));
    m.opts_mut().insert(DhcpOption::SubnetMask([255, 255, 255, 252].into()));
    m.opts_mut().insert(DhcpOption::ServerIdentifier([10, 105, 1, 1].into()));
    if let Some(v) = opt43 {
        m.opts_mut().insert(DhcpOption::VendorExtensions(v.to_vec()));
    }
    if let Some(name) = opt66 {
        m.opts_mut().insert(DhcpOption::TFTPServerName(name.as_bytes().to_vec()));
    }
    m
}

const DNSMASQ_43: &[u8] = b"\x06\x01\x03\x0a\x04\x00PXE\x09\x14\x00\x00\x11Raspberry Pi Boot\xff";

fn bytes(m: &Message) -> Vec<u8> {
    m.to_vec().expect("encodable")
}

#[test]
fn pi3b_discover_matches_the_rom() {
    let m = Message::from_bytes(&discover(PiModel::Pi3B, SERIAL, mac(PiModel::Pi3B), PI3_XID))
        .expect("decodes");
    assert_eq!(m.xid(), 0x26f3_0339);
    assert_eq!(m.ciaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(&m.chaddr()[..6], &[0xb8, 0x27, 0xeb, 0x34, 0xab, 0xcd]);
    assert_eq!(m.opts().msg_type(), Some(MessageType::Discover));
    let raw = |code| m.opts().get(code).cloned();
    assert_eq!(
        raw(OptionCode::ClassIdentifier),
        Some(DhcpOption::ClassIdentifier(VENDOR_CLASS.to_vec()))
    );
    assert_eq!(
        raw(OptionCode::ClientNetworkInterface),
        Some(DhcpOption::ClientNetworkInterface(1, 2, 1))
    );
    let mut guid = vec![0u8];
    guid.extend([0x44; 16]);
    assert_eq!(
        raw(OptionCode::ClientMachineIdentifier),
        Some(DhcpOption::ClientMachineIdentifier(guid))
    );
}

#[test]
fn guids_differ_by_model() {
    let plus = client_guid(PiModel::Pi3BPlus, SERIAL, mac(PiModel::Pi3BPlus));
    assert_eq!(plus.len(), 17);
    assert_eq!(&plus[1..5], &[0xcd, 0xab, 0x34, 0x12]);
    assert_eq!(&plus[13..17], &[0xcd, 0xab, 0x34, 0x12]);
    let four = client_guid(PiModel::Pi4, SERIAL, mac(PiModel::Pi4));
    assert_eq!(four.len(), 17);
    assert_eq!(&four[1..5], b"RPi4");
    // Revision 0x00c03111 little-endian, MAC bytes 2..6, serial little-endian.
    assert_eq!(&four[5..9], &[0x11, 0x31, 0xc0, 0x00]);
    assert_eq!(&four[9..13], &mac(PiModel::Pi4).0[2..6]);
    assert_eq!(&four[13..17], &[0xcd, 0xab, 0x34, 0x12]);
    let five = client_guid(PiModel::Pi5, SERIAL, mac(PiModel::Pi5));
    assert_eq!(&five[1..9], &[b'R', b'P', b'i', b'5', 0x70, 0x41, 0xd0, 0x00]);
    assert_eq!(&five[13..17], &[0xcd, 0xab, 0x34, 0x12]);
}

#[test]
fn accepts_a_dnsmasq_offer() {
    let offer = reply(PiModel::Pi3B, MessageType::Offer, Some(DNSMASQ_43), Some("10.105.1.1"));
    let lease =
        parse_reply(&bytes(&offer), PiModel::Pi3B, mac(PiModel::Pi3B), PI3_XID, MessageType::Offer)
            .expect("usable");
    assert_eq!(lease.addr, Ipv4Addr::new(10, 105, 1, 2));
    assert_eq!(lease.prefix_len, 30);
    assert_eq!(lease.tftp_server, Ipv4Addr::new(10, 105, 1, 1));
}

#[test]
fn rejects_what_the_rom_rejects() {
    let m3 = PiModel::Pi3B;
    let cases = [
        ("no option 43", reply(m3, MessageType::Offer, None, Some("10.105.1.1"))),
        (
            "43 without marker",
            reply(m3, MessageType::Offer, Some(b"\x06\x01\x03\xff"), Some("10.105.1.1")),
        ),
        ("66 is a name", reply(m3, MessageType::Offer, Some(DNSMASQ_43), Some("boot.example"))),
        ("no 66 (siaddr ignored)", {
            let mut m = reply(m3, MessageType::Offer, Some(DNSMASQ_43), None);
            m.set_siaddr([10, 105, 1, 1]);
            m
        }),
        (
            "an ACK when an OFFER is wanted",
            reply(m3, MessageType::Ack, Some(DNSMASQ_43), Some("10.105.1.1")),
        ),
        ("another xid", {
            let mut m = reply(m3, MessageType::Offer, Some(DNSMASQ_43), Some("10.105.1.1"));
            m.set_xid(7);
            m
        }),
    ];
    for (what, m) in cases {
        assert!(
            parse_reply(&bytes(&m), m3, mac(m3), PI3_XID, MessageType::Offer).is_err(),
            "{what}"
        );
    }
    assert!(parse_reply(b"\x02\x01", m3, mac(m3), PI3_XID, MessageType::Offer).is_err());
}

#[test]
fn pi4_falls_back_to_siaddr() {
    let mut m = reply(PiModel::Pi4, MessageType::Ack, Some(DNSMASQ_43), None);
    m.set_siaddr([10, 105, 1, 9]);
    let lease = parse_reply(&bytes(&m), PiModel::Pi4, mac(PiModel::Pi4), PI3_XID, MessageType::Ack)
        .expect("usable");
    assert_eq!(lease.tftp_server, Ipv4Addr::new(10, 105, 1, 9));
}
