//! Protocol behaviour driven by a hand-written client over loopback: early terminate,
//! RFC 7440 windows with partial ACKs, retransmission and its bound, duplicate ACKs,
//! refused writes, unknown clients, NUL and non-UTF-8 names, and garbage datagrams.

mod tftp_support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use bramble_netboot::events::BootStage;
use bramble_netboot::tftp::Refusal;
use tftp_support::{BootTree, KERNEL_SIZE, Running, SERIAL_A, start};
use tokio::net::UdpSocket;
use tokio::time::timeout;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

async fn server(tree: &BootTree) -> Running {
    let slot = tree.slot("slot-a", SERIAL_A, Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST);
    start(&[LOCALHOST], tree.firmware_dir(), vec![(LOCALHOST, slot)]).await
}

fn rrq(name: &[u8], options: &[(&str, &str)]) -> Vec<u8> {
    let mut out = vec![0, 1];
    out.extend_from_slice(name);
    out.extend_from_slice(b"\0octet\0");
    for (n, v) in options {
        out.extend_from_slice(format!("{n}\0{v}\0").as_bytes());
    }
    out
}

fn ack(block: u16) -> Vec<u8> {
    let mut out = vec![0, 4];
    out.extend_from_slice(&block.to_be_bytes());
    out
}

async fn client(bind: Ipv4Addr) -> UdpSocket {
    UdpSocket::bind((bind, 0)).await.expect("bind client")
}

async fn recv(sock: &UdpSocket, wait: Duration) -> Option<(Vec<u8>, SocketAddr)> {
    let mut buf = vec![0u8; 2048];
    let (n, from) = timeout(wait, sock.recv_from(&mut buf)).await.ok()?.expect("recv");
    buf.truncate(n);
    Some((buf, from))
}

async fn expect_packet(sock: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    recv(sock, Duration::from_secs(3)).await.expect("a reply from the server")
}

/// Waits until the server has recorded an event matching `pred`.
async fn wait_for_event(run: &Running, pred: impl Fn(&BootStage) -> bool) {
    for _ in 0..100 {
        if run.sink.events().iter().any(|e| pred(&e.stage)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("event never recorded: {:?}", run.sink.events());
}

#[tokio::test]
async fn tsize_then_error_zero_is_an_early_terminate() {
    let tree = BootTree::new();
    let run = server(&tree).await;
    let sock = client(Ipv4Addr::LOCALHOST).await;
    sock.send_to(
        &rrq(b"1234abcd/kernel8.img", &[("tsize", "0"), ("blksize", "1024")]),
        run.addrs[0],
    )
    .await
    .expect("send");
    let (oack, tid) = expect_packet(&sock).await;
    assert_ne!(tid, run.addrs[0], "the transfer answers from its own port");
    let want = format!("\0\x06tsize\0{KERNEL_SIZE}\0blksize\x001024\0");
    assert_eq!(oack, want.as_bytes());
    sock.send_to(b"\0\x05\0\0tsize only\0", tid).await.expect("send");
    wait_for_event(
        &run,
        |s| matches!(s, BootStage::TftpEarlyTerminate { file } if file == "1234abcd/kernel8.img"),
    )
    .await;
    let m = run.server.metrics().snapshot();
    assert_eq!((m.early_terminations, m.transfers_failed, m.transfers_completed), (1, 0, 0));
}

#[tokio::test]
async fn windows_resend_after_a_partial_ack_and_ignore_duplicates() {
    let tree = BootTree::new();
    let run = server(&tree).await;
    let sock = client(Ipv4Addr::LOCALHOST).await;
    sock.send_to(&rrq(b"start.elf", &[("windowsize", "4"), ("blksize", "8192")]), run.addrs[0])
        .await
        .expect("send");
    let (oack, tid) = expect_packet(&sock).await;
    assert_eq!(oack, b"\0\x06windowsize\x004\0blksize\x001468\0");
    let mut received: Vec<Vec<u8>> = Vec::new();
    sock.send_to(&ack(0), tid).await.expect("send");
    let mut acked = 0u16;
    loop {
        let mut window = Vec::new();
        for _ in 0..4 {
            let Some((pkt, _)) = recv(&sock, Duration::from_secs(2)).await else {
                break;
            };
            let block = u16::from_be_bytes([pkt[2], pkt[3]]);
            window.push((block, pkt[4..].to_vec()));
            if pkt.len() < 4 + 1468 {
                break;
            }
        }
        assert_eq!(
            window.first().map(|w| w.0),
            Some(acked + 1),
            "a window starts after the last ACK"
        );
        // Acknowledge only half of each full window: the server must resend the rest.
        let keep = if window.len() == 4 { 2 } else { window.len() };
        for (block, data) in window.iter().take(keep) {
            assert_eq!(*block as usize, received.len() + 1);
            received.push(data.clone());
        }
        acked += keep as u16;
        sock.send_to(&ack(acked), tid).await.expect("send");
        if window.len() < 4 {
            break;
        }
        sock.send_to(&ack(acked - 1), tid).await.expect("duplicate ack");
    }
    assert_eq!(
        received.concat(),
        std::fs::read(tree.boot_dir("slot-a").join("start.elf")).expect("fixture")
    );
    wait_for_event(&run, |s| matches!(s, BootStage::TftpComplete { bytes: 100_000, .. })).await;
    assert_eq!(
        run.server.metrics().snapshot().retransmits,
        0,
        "partial ACKs and duplicates cause no timeout"
    );
}

#[tokio::test]
async fn unacknowledged_blocks_are_retransmitted_then_abandoned() {
    let tree = BootTree::new();
    let run = server(&tree).await;
    let sock = client(Ipv4Addr::LOCALHOST).await;
    sock.send_to(&rrq(b"start.elf", &[]), run.addrs[0]).await.expect("send");
    let (first, _) = expect_packet(&sock).await;
    assert_eq!(&first[..4], b"\0\x03\0\x01");
    let (again, _) =
        recv(&sock, Duration::from_secs(3)).await.expect("retransmission after the 1 s timeout");
    assert_eq!(first, again);
    wait_for_event(
        &run,
        |s| matches!(s, BootStage::TftpError { reason, .. } if reason.contains("block 1")),
    )
    .await;
    let m = run.server.metrics().snapshot();
    assert_eq!((m.retransmits, m.transfers_failed), (2, 1), "max_retries is 2 in the fixture");
}

#[tokio::test]
async fn refusals_reply_with_tftp_errors_and_are_counted() {
    let tree = BootTree::new();
    let run = server(&tree).await;
    let sock = client(Ipv4Addr::LOCALHOST).await;
    let cases: Vec<(Vec<u8>, u16, Refusal)> = vec![
        (b"\0\x02upload.bin\0octet\0".to_vec(), 2, Refusal::WriteRequest),
        (b"\0\x01start.elf\0../../secret.txt\0octet\0".to_vec(), 4, Refusal::NulByte),
        (rrq(b"start\xff.elf", &[]), 2, Refusal::NonUtf8),
        (rrq(b"bootsig.bin", &[]), 1, Refusal::NotFound),
        (rrq(b"overlays", &[]), 1, Refusal::NotAFile),
        (b"\0\x01start.elf\0mail\0".to_vec(), 4, Refusal::Malformed),
        (b"\x07".to_vec(), 4, Refusal::Malformed),
        (b"\0\x09garbage".to_vec(), 4, Refusal::Malformed),
    ];
    for (i, (datagram, code, reason)) in cases.iter().enumerate() {
        let want = cases[..=i].iter().filter(|c| c.2 == *reason).count() as u64;
        sock.send_to(datagram, run.addrs[0]).await.expect("send");
        let (reply, _) = expect_packet(&sock).await;
        assert_eq!(&reply[..4], &[0, 5, 0, *code as u8], "{datagram:?} -> {reply:?}");
        assert_eq!(run.server.metrics().snapshot().refused(*reason), want, "{}", reason.name());
    }
    // A client whose address belongs to no slot gets nothing, however valid the name.
    let stranger = client(Ipv4Addr::new(127, 0, 0, 2)).await;
    stranger.send_to(&rrq(b"bootcode.bin", &[]), run.addrs[0]).await.expect("send");
    let (reply, _) = expect_packet(&stranger).await;
    assert_eq!(&reply[..4], b"\0\x05\0\x02");
    assert_eq!(run.server.metrics().snapshot().refused(Refusal::UnknownClient), 1);
    // After all that the server still serves.
    sock.send_to(&rrq(b"bootcode.bin", &[]), run.addrs[0]).await.expect("send");
    let (data, _) = expect_packet(&sock).await;
    assert_eq!(&data[..4], b"\0\x03\0\x01");
}

#[tokio::test]
async fn shutdown_stops_the_server() {
    let tree = BootTree::new();
    let run = server(&tree).await;
    let addr = run.addrs[0];
    let sock = client(Ipv4Addr::LOCALHOST).await;
    sock.send_to(&rrq(b"bootcode.bin", &[("blksize", "1468")]), addr).await.expect("send");
    assert!(expect_packet(&sock).await.0.starts_with(b"\0\x06"), "OACK before shutdown");
    drop(run);
    tokio::time::sleep(Duration::from_millis(200)).await;
    sock.send_to(&rrq(b"bootcode.bin", &[]), addr).await.expect("send");
    assert_eq!(recv(&sock, Duration::from_millis(500)).await, None, "no reply after shutdown");
}

#[tokio::test]
async fn a_repeated_request_does_not_start_a_second_transfer() {
    let tree = BootTree::new();
    let run = server(&tree).await;
    let sock = client(Ipv4Addr::LOCALHOST).await;
    sock.send_to(&rrq(b"start.elf", &[]), run.addrs[0]).await.expect("send");
    let (_, tid) = expect_packet(&sock).await;
    sock.send_to(&rrq(b"start.elf", &[]), run.addrs[0]).await.expect("send again");
    // The first transfer retransmits only after its 1 s timeout; a second one would
    // answer at once from another port.
    assert_eq!(recv(&sock, Duration::from_millis(600)).await, None);
    sock.send_to(b"\0\x05\0\0stop\0", tid).await.expect("send");
    wait_for_event(&run, |s| matches!(s, BootStage::TftpEarlyTerminate { .. })).await;
    assert_eq!(run.server.metrics().snapshot().transfers_started, 1);
}
