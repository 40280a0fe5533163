//! Sockets and links inside a Pi's network namespace.
//!
//! Sockets stay in the namespace they were created in, so a fresh thread `setns()`s into
//! `/var/run/netns/<name>`, creates the socket and hands it back; the thread (and its
//! namespace switch) then ends. Never a pooled thread: a pool would keep the switch.
//! DHCP replies to an address the Pi does not have yet are read from an `AF_PACKET`
//! socket, because the boot ROM has no IP stack that would drop them.

use std::ffi::CString;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::net::UdpSocket;

/// Runs `f` on a new thread that has joined network namespace `netns`.
pub(crate) async fn in_netns<T, F>(netns: &str, f: F) -> io::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> io::Result<T> + Send + 'static,
{
    let netns = netns.to_string();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new().name("pisim-setns".into()).spawn(move || {
        let result = crate::netns::enter(&netns).and_then(|()| f());
        let _ = tx.send(result);
    })?;
    rx.await.map_err(|_| io::Error::other("netns helper thread ended without an answer"))?
}

/// A UDP socket bound to `port` on all addresses, tied to `iface`, broadcast allowed.
fn udp_on(iface: &str, port: u16) -> io::Result<std::net::UdpSocket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    s.set_broadcast(true)?;
    s.bind_device(Some(iface.as_bytes()))?;
    s.bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port).into())?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

/// A UDP socket on an ephemeral port of `iface` in `netns` (TFTP).
pub(crate) async fn udp_socket(netns: &str, iface: &str) -> io::Result<UdpSocket> {
    let iface = iface.to_string();
    let std_sock = in_netns(netns, move || udp_on(&iface, 0)).await?;
    UdpSocket::from_std(std_sock)
}

/// Broadcasts one DHCP payload from port 68 of `iface` in `netns`, as anything plugged
/// into that slot could: for tests that send crafted packets.
pub async fn broadcast_dhcp(netns: &str, iface: &str, payload: Vec<u8>) -> io::Result<()> {
    let iface = iface.to_string();
    let sock = in_netns(netns, move || udp_on(&iface, 68)).await?;
    let sock = UdpSocket::from_std(sock)?;
    sock.send_to(&payload, SocketAddrV4::new(Ipv4Addr::BROADCAST, 67)).await.map(drop)
}

/// Port 68 for sending (from 0.0.0.0 to broadcast) and a raw socket for the replies.
pub(crate) struct DhcpSockets {
    udp: UdpSocket,
    raw: AsyncFd<OwnedFd>,
}

impl DhcpSockets {
    pub(crate) async fn open(netns: &str, iface: &str) -> io::Result<Self> {
        let iface = iface.to_string();
        let (udp, raw) =
            in_netns(netns, move || Ok((udp_on(&iface, 68)?, packet_socket(&iface)?))).await?;
        // SAFETY: the OwnedFd is moved into the AsyncFd, which keeps it open and
        // unchanged until it is dropped.
        let raw = unsafe { AsyncFd::register(raw) }.map_err(io::Error::from)?;
        Ok(DhcpSockets { udp: UdpSocket::from_std(udp)?, raw })
    }

    /// Broadcasts `payload` to port 67.
    pub(crate) async fn broadcast(&self, payload: &[u8]) -> io::Result<()> {
        self.udp.send_to(payload, SocketAddrV4::new(Ipv4Addr::BROADCAST, 67)).await.map(drop)
    }

    /// The next UDP payload addressed to port 68, whatever its IP destination.
    pub(crate) async fn recv(&self) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; 2048];
        loop {
            let mut guard = self.raw.readable().await?;
            let read = guard.try_io(|fd| {
                // SAFETY: buf is valid for buf.len() bytes for the duration of the call.
                let n =
                    unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
                if n < 0 { Err(io::Error::last_os_error()) } else { Ok(n as usize) }
            });
            match read {
                Ok(Ok(n)) => {
                    if let Some(payload) = udp_payload(&buf[..n], 68) {
                        return Ok(payload.to_vec());
                    }
                }
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }
}

/// An `AF_PACKET`/`SOCK_DGRAM` socket receiving the IPv4 packets of `iface`.
fn packet_socket(iface: &str) -> io::Result<OwnedFd> {
    let name = CString::new(iface).map_err(|_| io::Error::other("interface name has a NUL"))?;
    // SAFETY: name is a valid NUL-terminated string.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if ifindex == 0 {
        return Err(io::Error::last_os_error());
    }
    let proto = (libc::ETH_P_IP as u16).to_be();
    let flags = libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
    // SAFETY: plain socket(2) call; the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_PACKET, flags, i32::from(proto)) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor this function owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = proto;
    addr.sll_ifindex = ifindex as i32;
    let len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: addr is a valid sockaddr_ll of the given length.
    let rc = unsafe { libc::bind(fd.as_raw_fd(), (&raw const addr).cast(), len) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// The payload of an IPv4/UDP packet sent to `port`, or `None` for anything else.
pub(crate) fn udp_payload(ip: &[u8], port: u16) -> Option<&[u8]> {
    let first = *ip.first()?;
    let ihl = usize::from(first & 0x0f) * 4;
    if first >> 4 != 4 || ihl < 20 || *ip.get(9)? != 17 {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
    let udp = ip.get(ihl..total.min(ip.len()))?;
    let dst = u16::from_be_bytes([*udp.get(2)?, *udp.get(3)?]);
    let udp_len = usize::from(u16::from_be_bytes([*udp.get(4)?, *udp.get(5)?]));
    if dst != port || udp_len < 8 {
        return None;
    }
    udp.get(8..udp_len.min(udp.len()))
}

/// Power reaches the Pi: its interface takes the board's MAC and comes up.
pub(crate) async fn plug(cfg: &super::PiSimConfig) -> Result<(), crate::CmdError> {
    let mac = cfg.mac().to_string();
    let args = ["link", "set", "dev", &cfg.interface, "address", &mac, "up"];
    ip_in(&cfg.netns, args.iter().map(|s| s.to_string()).collect()).await
}

/// Power is cut: the interface loses its addresses and goes down.
pub(crate) async fn unplug(cfg: &super::PiSimConfig) -> Result<(), crate::CmdError> {
    let _ = flush(&cfg.netns, &cfg.interface).await;
    let down = ["link", "set", "dev", &cfg.interface, "down"];
    ip_in(&cfg.netns, down.iter().map(|s| s.to_string()).collect()).await
}

/// Removes every address of `iface` in `netns`.
pub(crate) async fn flush(netns: &str, iface: &str) -> Result<(), crate::CmdError> {
    ip_in(netns, ["addr", "flush", "dev", iface].iter().map(|s| s.to_string()).collect()).await
}

/// `ip -n NETNS ARGS...` off the async threads.
pub(crate) async fn ip_in(netns: &str, args: Vec<String>) -> Result<(), crate::CmdError> {
    let mut full = vec!["-n".to_string(), netns.to_string()];
    full.extend(args);
    let command = format!("ip {}", full.join(" "));
    match tokio::task::spawn_blocking(move || crate::run_ip(&full)).await {
        Ok(result) => result.map(drop),
        Err(join) => Err(crate::CmdError::Spawn { command, source: std::io::Error::other(join) }),
    }
}

#[cfg(test)]
mod tests {
    use super::udp_payload;

    fn packet(dst_port: u16, payload: &[u8]) -> Vec<u8> {
        let total = (20 + 8 + payload.len()) as u16;
        let mut p = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
        p[2..4].copy_from_slice(&total.to_be_bytes());
        p.extend(67u16.to_be_bytes());
        p.extend(dst_port.to_be_bytes());
        p.extend((8 + payload.len() as u16).to_be_bytes());
        p.extend([0, 0]);
        p.extend(payload);
        p
    }

    #[test]
    fn extracts_payload_for_the_port_only() {
        assert_eq!(udp_payload(&packet(68, b"hello"), 68), Some(&b"hello"[..]));
        assert_eq!(udp_payload(&packet(67, b"hello"), 68), None);
    }

    #[test]
    fn malformed_packets_are_none_not_panics() {
        let good = packet(68, b"hello");
        for cut in 0..good.len() {
            let _ = udp_payload(&good[..cut], 68);
        }
        let mut tcp = good.clone();
        tcp[9] = 6;
        assert_eq!(udp_payload(&tcp, 68), None);
        let mut bad_ihl = good.clone();
        bad_ihl[0] = 0x4f;
        assert_eq!(udp_payload(&bad_ihl, 68), None);
    }
}
