//! Shared fixtures for the TFTP tests: a boot tree on disk with two slots, a map
//! resolver, a server on a given address, and (for the real-peer tests) a Pi namespace
//! behind a veth pair in 10.102.N.0/30.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bramble_lab::{Netns, Veth, VethSpec, unique_name};
use bramble_netboot::bootfiles::BootParams;
use bramble_netboot::events::MemorySink;
use bramble_netboot::tftp::{BootResolver, MacAddr, SlotBoot, TftpConfig, TftpServer};
use tempfile::TempDir;
use tokio::net::UdpSocket;
use tokio::sync::watch;

pub const SERIAL_A: &str = "1234abcd";
pub const SERIAL_B: &str = "deadbeef";
/// A size that is a multiple of both 512 and 1468, so the transfer ends with an empty block.
pub const KERNEL_SIZE: usize = 512 * 1468 * 3;

/// Deterministic non-repeating bytes.
pub fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

/// firmware/bootcode.bin, slot-a/boot and slot-b/boot with different contents,
/// secret.txt outside every boot directory and a symlink pointing at it.
pub struct BootTree {
    pub dir: TempDir,
}

impl BootTree {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new().prefix("tf").tempdir().expect("tempdir");
        let root = dir.path();
        write(&root.join("firmware/bootcode.bin"), &pattern(51_000, 1));
        write(&root.join("secret.txt"), b"controller secret\n");
        for (slot, seed) in [("slot-a", 10), ("slot-b", 20)] {
            let boot = root.join(slot).join("boot");
            write(&boot.join("start.elf"), &pattern(100_000, seed));
            write(&boot.join("kernel8.img"), &pattern(KERNEL_SIZE, seed + 1));
            write(&boot.join("overlays/a.dtbo"), &pattern(1_000, seed + 2));
            write(
                &boot.join("cmdline.txt"),
                b"console=ttyAMA0,115200 console=tty1 root=PARTUUID=x rootwait\n",
            );
            write(&boot.join("config.txt"), format!("# {slot}\narm_64bit=1\n").as_bytes());
            std::os::unix::fs::symlink("../../secret.txt", boot.join("escape")).expect("symlink");
            std::os::unix::fs::symlink("start.elf", boot.join("inner")).expect("symlink");
        }
        BootTree { dir }
    }

    pub fn boot_dir(&self, slot: &str) -> PathBuf {
        self.dir.path().join(slot).join("boot")
    }

    pub fn firmware_dir(&self) -> PathBuf {
        self.dir.path().join("firmware")
    }

    pub fn slot(&self, slot: &str, serial: &str, controller: Ipv4Addr, pi: Ipv4Addr) -> SlotBoot {
        let mut params = BootParams::example();
        params.controller = controller;
        params.pi = pi;
        params.nfs_export = format!("/export/{pi}");
        params.config_additions = vec!["enable_uart=1".into()];
        SlotBoot {
            serial: Some(serial.parse().expect("serial")),
            mac: MacAddr([
                0xb8,
                0x27,
                0xeb,
                0x34,
                0xab,
                if slot == "slot-a" { 0xcd } else { 0xef },
            ]),
            boot_dir: self.boot_dir(slot),
            params,
        }
    }
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, bytes).expect("write fixture");
}

/// Resolves from a fixed table.
pub struct MapResolver(pub HashMap<IpAddr, SlotBoot>);

#[async_trait]
impl BootResolver for MapResolver {
    async fn resolve(&self, client: IpAddr) -> Option<SlotBoot> {
        self.0.get(&client).cloned()
    }
}

/// A running server; stops when dropped.
pub struct Running {
    /// One listening address per bind address, in order.
    pub addrs: Vec<SocketAddr>,
    pub server: Arc<TftpServer>,
    pub sink: Arc<MemorySink>,
    _stop: watch::Sender<()>,
}

/// Starts one server answering on a socket bound to port 0 of each address.
pub async fn start(binds: &[IpAddr], firmware: PathBuf, slots: Vec<(IpAddr, SlotBoot)>) -> Running {
    let sink = Arc::new(MemorySink::default());
    let resolver = Arc::new(MapResolver(slots.into_iter().collect()));
    let mut config = TftpConfig::new(firmware);
    config.max_retries = 2;
    let server = TftpServer::new(config, resolver, sink.clone());
    let (stop, stopped) = watch::channel(());
    let mut addrs = Vec::new();
    for bind in binds {
        let socket = UdpSocket::bind(SocketAddr::new(*bind, 0)).await.expect("bind server socket");
        addrs.push(socket.local_addr().expect("local addr"));
        let mut stopped = stopped.clone();
        tokio::spawn(Arc::clone(&server).serve(socket, async move {
            let _ = stopped.changed().await;
        }));
    }
    Running { addrs, server, sink, _stop: stop }
}

/// A Pi namespace on its own storage /30 (10.102.N.0/30: .1 controller, .2 Pi).
pub struct PiNet {
    pub ns: Netns,
    pub veth: Veth,
    pub controller: Ipv4Addr,
    pub pi: Ipv4Addr,
}

impl PiNet {
    pub fn new() -> Self {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        assert!(
            std::process::Command::new("id")
                .arg("-u")
                .output()
                .is_ok_and(|o| o.stdout.starts_with(b"0\n")),
            "the TFTP real-peer tests need root (ip netns, veth)"
        );
        let n = (std::process::id() * 7 + NEXT.fetch_add(1, Ordering::Relaxed)) % 250 + 1;
        let third = u8::try_from(n).expect("fits");
        let controller = Ipv4Addr::new(10, 102, third, 1);
        let pi = Ipv4Addr::new(10, 102, third, 2);
        let ns = Netns::new(&unique_name("tfns")).expect("create netns");
        let spec = VethSpec {
            host_if: unique_name("tfv"),
            host_addr: controller,
            prefix_len: 30,
            peer_if: "eth0".into(),
            peer_addr: Some(pi),
        };
        let veth = Veth::create(spec, &ns).expect("create veth");
        PiNet { ns, veth, controller, pi }
    }
}

/// Fails with a clear message when a client program is missing.
pub fn require(program: &str) {
    let found = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|p| p.join(program).is_file()));
    assert!(found, "{program} is not installed (apt-get install tftp-hpa atftp curl)");
}
