//! Per-interface UDP sockets: `0.0.0.0:67` bound to one device with SO_BINDTODEVICE.
//!
//! Why per-interface sockets rather than one socket with IP_PKTINFO: the set of storage
//! interfaces changes at runtime, and a socket per interface makes "add" and "remove"
//! exactly "open" and "close"; the ingress interface is known from the socket, and a
//! device-bound socket's sends (the 255.255.255.255 broadcasts included, which the
//! routing table cannot place) always leave by that device. With IP_PKTINFO every reply
//! would need `sendmsg` with a control message, which tokio's socket does not offer.
//! SO_REUSEADDR lets many device-bound sockets share port 67.

use std::net::{Ipv4Addr, SocketAddrV4};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

/// Opens a non-blocking UDP socket on `0.0.0.0:port` that only sees and sends through
/// `ifname`. Must be called inside a tokio runtime.
pub fn bind_to_device(ifname: &str, port: u16) -> std::io::Result<UdpSocket> {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    socket.set_broadcast(true)?;
    socket.bind_device(Some(ifname.as_bytes()))?;
    socket.set_nonblocking(true)?;
    // Bursts from perfdhcp or a shelf of 96 Pis powering up at once.
    socket.set_recv_buffer_size(4 << 20)?;
    socket.bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port).into())?;
    UdpSocket::from_std(socket.into())
}
