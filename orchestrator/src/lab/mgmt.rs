//! A management network several labs share: a bridge in a namespace of its own, and
//! per lab a veth pair from its controller namespace onto the bridge. Each lab's
//! virtual switch then answers on the lab's management address, so every lab's
//! controller reaches every lab's switch, as the controllers of one machine room reach
//! every switch's management port. A single lab needs none of this.

use std::net::Ipv4Addr;

use bramble_lab::{CmdError, Netns, Veth, VethSpec};

/// The bridge's name inside the management namespace.
const BRIDGE: &str = "br0";

/// The management network: a namespace holding a bridge, deleted on drop.
pub struct ManagementNet {
    netns: Netns,
    prefix_len: u8,
}

/// Where a lab sits on the management network (see [`ManagementNet::seat`]).
#[derive(Debug, Clone)]
pub struct Seat {
    pub netns: String,
    pub address: Ipv4Addr,
    pub prefix_len: u8,
}

impl ManagementNet {
    /// Creates namespace `name` (replacing a stale one) with a bridge, for addresses
    /// `/prefix_len`.
    pub fn new(name: &str, prefix_len: u8) -> Result<Self, CmdError> {
        let netns = Netns::new(name)?;
        netns.ip(&["link", "add", BRIDGE, "type", "bridge"])?;
        netns.ip(&["link", "set", BRIDGE, "up"])?;
        Ok(ManagementNet { netns, prefix_len })
    }

    pub fn name(&self) -> &str {
        self.netns.name()
    }

    /// A lab's place on the network, for [`super::LabOptions::management`].
    pub fn seat(&self, address: Ipv4Addr) -> Seat {
        Seat { netns: self.name().to_string(), address, prefix_len: self.prefix_len }
    }
}

/// Cables the controller namespace `ctl` of the lab with `prefix` onto the network:
/// `<prefix>mg` on both sides, the seat's address on the lab's end. The pair goes when
/// `ctl` is deleted, or when the returned value is dropped.
pub fn attach(seat: &Seat, prefix: &str, ctl: &str) -> Result<Veth, CmdError> {
    let name = format!("{prefix}mg");
    let spec = VethSpec {
        host_if: name.clone(),
        host_addr: seat.address,
        prefix_len: seat.prefix_len,
        peer_if: name.clone(),
        peer_addr: None,
    };
    let bridge = Netns::existing(&seat.netns);
    let veth = Veth::create_between(spec, &Netns::existing(ctl), &bridge)?;
    bridge.ip(&["link", "set", &name, "master", BRIDGE])?;
    Ok(veth)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_labs_on_one_management_network_reach_each_other() {
        let net = ManagementNet::new("zzmgnet", 24).expect("management network");
        let (a, b) = (Netns::new("zzmgactl").expect("a"), Netns::new("zzmgbctl").expect("b"));
        let _pa = attach(&net.seat(Ipv4Addr::new(10, 250, 9, 1)), "zzmga", a.name()).expect("a");
        let _pb = attach(&net.seat(Ipv4Addr::new(10, 250, 9, 2)), "zzmgb", b.name()).expect("b");
        // A datagram from a's namespace to a socket in b's, over the bridge.
        let in_ns = |ns: &'static str, addr: &'static str| {
            std::thread::spawn(move || {
                bramble_lab::enter_netns(ns).expect("enter");
                std::net::UdpSocket::bind(addr).expect("bind")
            })
            .join()
            .expect("thread")
        };
        let rx = in_ns("zzmgbctl", "10.250.9.2:0");
        rx.set_read_timeout(Some(std::time::Duration::from_secs(3))).expect("timeout");
        let tx = in_ns("zzmgactl", "0.0.0.0:0");
        tx.send_to(b"hello", rx.local_addr().expect("addr")).expect("send");
        let mut buf = [0u8; 8];
        let (n, from) = rx.recv_from(&mut buf).expect("b hears a");
        assert_eq!((&buf[..n], from.ip()), (&b"hello"[..], Ipv4Addr::new(10, 250, 9, 1).into()));
    }
}
