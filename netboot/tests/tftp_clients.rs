//! Real TFTP clients (tftp-hpa, atftp with blksize 1468 and windowsize 8, curl) inside a
//! Pi namespace fetch from the server over a veth pair: byte-identical files, the
//! generated cmdline.txt, refused hostile names, and two slots isolated from each other.
//! Needs root and the three client programs.

mod tftp_support;

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::Output;

use bramble_netboot::events::BootStage;
use bramble_netboot::tftp::Refusal;
use tftp_support::{BootTree, PiNet, SERIAL_A, SERIAL_B, require, start};

#[derive(Debug, Clone, Copy)]
enum Client {
    Hpa,
    Atftp,
    Curl,
}

const CLIENTS: [Client; 3] = [Client::Hpa, Client::Atftp, Client::Curl];

impl Client {
    fn program(self) -> &'static str {
        match self {
            Client::Hpa => "tftp",
            Client::Atftp => "atftp",
            Client::Curl => "curl",
        }
    }

    /// Fetches `remote` from `server` into `local`, from inside the Pi namespace.
    async fn fetch(self, net: &PiNet, server: SocketAddr, remote: &str, local: &Path) -> Output {
        let (ip, port, local_s) =
            (server.ip().to_string(), server.port().to_string(), local.display().to_string());
        let mut cmd = net.ns.command(self.program());
        match self {
            Client::Hpa => cmd.args(["-m", "binary", &ip, &port, "-c", "get", remote, &local_s]),
            Client::Atftp => cmd
                .args(["--option", "blksize 1468", "--option", "windowsize 8", "-g"])
                .args(["-r", remote, "-l", &local_s, &ip, &port]),
            Client::Curl => cmd
                .args(["-sS", "--path-as-is", "--max-time", "20", "-o", &local_s])
                .arg(format!("tftp://{ip}:{port}/{remote}")),
        };
        let _ = std::fs::remove_file(local);
        tokio::process::Command::from(cmd).output().await.expect("run tftp client")
    }
}

fn fetched(local: &Path) -> Vec<u8> {
    std::fs::read(local).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_client_fetches_byte_identical_files_and_generated_cmdline() {
    CLIENTS.iter().for_each(|c| require(c.program()));
    let tree = BootTree::new();
    let net = PiNet::new();
    let slot = tree.slot("slot-a", SERIAL_A, net.controller, net.pi);
    let run =
        start(&[IpAddr::V4(net.controller)], tree.firmware_dir(), vec![(IpAddr::V4(net.pi), slot)])
            .await;
    let boot = tree.boot_dir("slot-a");
    let files = [
        ("bootcode.bin", tree.firmware_dir().join("bootcode.bin")),
        ("1234abcd/kernel8.img", boot.join("kernel8.img")),
        ("start.elf", boot.join("start.elf")),
        ("b8-27-eb-34-ab-cd/overlays/a.dtbo", boot.join("overlays/a.dtbo")),
        ("1234abcd/inner", boot.join("start.elf")),
    ];
    let want_cmdline = format!(
        "console=ttyAMA0,115200 console=tty1 root=/dev/nfs nfsroot={c}:/export/{p},vers=3,tcp rw \
         ip={p}::{c}:255.255.255.252::eth0:off net.ifnames=0 elevator=deadline fsck.repair=yes rootwait\n",
        c = net.controller,
        p = net.pi
    );
    let local = tree.dir.path().join("download");
    for client in CLIENTS {
        for (remote, source) in &files {
            let out = client.fetch(&net, run.addrs[0], remote, &local).await;
            let want = std::fs::read(source).expect("fixture");
            assert!(
                fetched(&local) == want,
                "{client:?} {remote}: {} bytes, want {}; {out:?}",
                fetched(&local).len(),
                want.len()
            );
        }
        client.fetch(&net, run.addrs[0], "1234abcd/cmdline.txt", &local).await;
        assert_eq!(
            String::from_utf8_lossy(&fetched(&local)),
            want_cmdline,
            "{client:?} cmdline.txt"
        );
        client.fetch(&net, run.addrs[0], "config.txt", &local).await;
        let config = String::from_utf8_lossy(&fetched(&local)).into_owned();
        assert!(
            config.starts_with("# slot-a\narm_64bit=1\n# --- bramble")
                && config.contains("\nenable_uart=1\n"),
            "{config}"
        );
    }
    let events = run.sink.events();
    let kernel_done = events.iter().filter(|e| {
        e.client.serial.map(|s| s.to_string()).as_deref() == Some(SERIAL_A)
            && matches!(&e.stage, BootStage::TftpComplete { file, bytes } if file == "1234abcd/kernel8.img" && *bytes == tftp_support::KERNEL_SIZE as u64)
    });
    assert_eq!(kernel_done.count(), 3, "one kernel TftpComplete per client: {events:?}");
    let reads = events.iter().filter(|e| matches!(e.stage, BootStage::TftpRead { .. })).count();
    assert_eq!(reads, 3 * (files.len() + 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_names_are_refused_for_each_client_and_counted() {
    CLIENTS.iter().for_each(|c| require(c.program()));
    let tree = BootTree::new();
    let net = PiNet::new();
    let slot = tree.slot("slot-a", SERIAL_A, net.controller, net.pi);
    let run =
        start(&[IpAddr::V4(net.controller)], tree.firmware_dir(), vec![(IpAddr::V4(net.pi), slot)])
            .await;
    let overlong = format!("{SERIAL_A}/{}", "a".repeat(300));
    let hostile = [
        ("../secret.txt", Refusal::Traversal),
        ("1234abcd/../../../secret.txt", Refusal::Traversal),
        ("/etc/passwd", Refusal::Absolute),
        ("escape", Refusal::SymlinkEscape),
        ("deadbeef/start.elf", Refusal::ForeignSlot),
        ("b8-27-eb-00-00-01/start.elf", Refusal::ForeignSlot),
        (overlong.as_str(), Refusal::Overlong),
    ];
    let local = tree.dir.path().join("download");
    for client in CLIENTS {
        for (name, _) in &hostile {
            let out = client.fetch(&net, run.addrs[0], name, &local).await;
            let got = fetched(&local);
            assert!(got.is_empty(), "{client:?} {name}: received {} bytes; {out:?}", got.len());
        }
    }
    let metrics = run.server.metrics().snapshot();
    for reason in
        [Refusal::Traversal, Refusal::Absolute, Refusal::SymlinkEscape, Refusal::ForeignSlot]
    {
        let want = 3 * hostile.iter().filter(|(_, r)| *r == reason).count() as u64;
        assert_eq!(metrics.refused(reason), want, "{} refusals: {metrics:?}", reason.name());
    }
    // One of the three clients shortens a 309-byte name before sending it, so the server
    // sees a 255-byte name of a file that does not exist; the other two send it whole.
    let overlong = metrics.refused(Refusal::Overlong);
    assert!(overlong >= 2 && overlong + metrics.refused(Refusal::NotFound) == 3, "{metrics:?}");
    assert_eq!(metrics.transfers_started, 0, "{metrics:?}");
    let events = run.sink.events();
    assert!(events.iter().all(|e| matches!(e.stage, BootStage::TftpError { .. })), "{events:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_slots_at_once_each_get_only_their_own_files() {
    require("tftp");
    let tree = BootTree::new();
    let (a, b) = (PiNet::new(), PiNet::new());
    let slots = vec![
        (IpAddr::V4(a.pi), tree.slot("slot-a", SERIAL_A, a.controller, a.pi)),
        (IpAddr::V4(b.pi), tree.slot("slot-b", SERIAL_B, b.controller, b.pi)),
    ];
    let run =
        start(&[IpAddr::V4(a.controller), IpAddr::V4(b.controller)], tree.firmware_dir(), slots)
            .await;
    let (la, lb) = (tree.dir.path().join("a"), tree.dir.path().join("b"));
    let want_a = std::fs::read(tree.boot_dir("slot-a").join("kernel8.img")).expect("fixture");
    let want_b = std::fs::read(tree.boot_dir("slot-b").join("kernel8.img")).expect("fixture");
    assert_ne!(want_a, want_b);
    let (_, _) = tokio::join!(
        Client::Hpa.fetch(&a, run.addrs[0], "1234abcd/kernel8.img", &la),
        Client::Hpa.fetch(&b, run.addrs[1], "deadbeef/kernel8.img", &lb),
    );
    assert!(fetched(&la) == want_a && fetched(&lb) == want_b, "each Pi receives its own kernel");
    // The same name from each Pi, and each Pi naming the other's serial.
    let (_, _) = tokio::join!(
        Client::Hpa.fetch(&a, run.addrs[0], "kernel8.img", &la),
        Client::Hpa.fetch(&b, run.addrs[1], "kernel8.img", &lb),
    );
    assert!(
        fetched(&la) == want_a && fetched(&lb) == want_b,
        "a bare name maps into the asking Pi's slot"
    );
    Client::Hpa.fetch(&a, run.addrs[0], "deadbeef/kernel8.img", &la).await;
    Client::Hpa.fetch(&b, run.addrs[1], "1234abcd/kernel8.img", &lb).await;
    assert!(fetched(&la).is_empty() && fetched(&lb).is_empty(), "another Pi's serial is refused");
    assert_eq!(run.server.metrics().snapshot().refused(Refusal::ForeignSlot), 2);
}
