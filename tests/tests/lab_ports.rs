//! A virtual shelf beside other servers on the lab's ports: the lab's DHCP, TFTP, NFS and
//! rpcbind live in the controller's namespace of its own, so a process already holding
//! UDP 67 and 69 and TCP 2049 and 111 on this machine changes nothing.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};

use bramble_lab::pisim::PiState;
use bramble_tests::shelf;

/// Sockets on every port the lab serves, held by this test process (a stand-in for a
/// machine's own tftpd-hpa, dnsmasq, rpcbind and NFS server).
struct Squatter {
    _udp: Vec<UdpSocket>,
    _tcp: Vec<TcpListener>,
}

fn squat() -> Squatter {
    let any = |port| SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
    Squatter {
        _udp: [67, 69, 111]
            .into_iter()
            .map(|p| UdpSocket::bind(any(p)).unwrap_or_else(|e| panic!("udp {p}: {e}")))
            .collect(),
        _tcp: [2049, 111]
            .into_iter()
            .map(|p| TcpListener::bind(any(p)).unwrap_or_else(|e| panic!("tcp {p}: {e}")))
            .collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lab_racks_and_boots_a_pi_while_its_ports_are_held_on_the_machine() {
    let _one = shelf::serial().await;
    let _held = squat();
    let opts = shelf::options(1, 9, 'n');
    let lab = shelf::racked(opts).await;
    shelf::deploy_all(&lab, bramble::lab::LAB_IMAGES[0].0).await;
    let sim = lab.cabling.sim(1).expect("the Pi in port 1");
    assert_eq!(sim.state(), PiState::Booted);
    lab.down().await;
}
