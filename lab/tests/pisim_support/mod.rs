//! The anchor the simulator boots against in tests: dnsmasq (DHCP + TFTP) and
//! nfs-ganesha (NFSv3, with its own rpcbind, run by `bramble_lab::ganesha`), all inside
//! one private controller namespace with a private /run, so they never meet another
//! engineer's daemons.

#![allow(dead_code)]

use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bramble_lab::ganesha::{GaneshaOptions, GaneshaServer};
use bramble_lab::pisim::{PiModel, PiSimConfig, Serial};
use bramble_lab::{Netns, run_ip, unique_name};

/// One simulated Pi's wiring: its namespace and /30.
pub struct PiSlot {
    pub netns: Netns,
    pub index: u8,
    pub model: PiModel,
    pub serial: Serial,
}

impl PiSlot {
    pub fn server(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 105, self.index, 1)
    }
    pub fn pi_addr(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 105, self.index, 2)
    }
    pub fn hostname(&self) -> String {
        format!("pi-{}", self.serial)
    }
    pub fn key(&self) -> String {
        format!("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{} customer@{}", self.serial, self.serial)
    }
}

/// dnsmasq + ganesha + rpcbind in namespace `ctl`, files in a temp dir.
pub struct Anchor {
    pub ctl: Netns,
    pub dir: tempfile::TempDir,
    pub slots: Vec<PiSlot>,
    ctl_ifs: Vec<String>,
    dnsmasq: Option<Child>,
    ganesha: Option<GaneshaServer>,
}

pub fn require_tools() {
    for tool in ["dnsmasq", "ganesha.nfsd", "rpcbind", "nfs-cat", "unshare", "ip"] {
        let found = Command::new("sh").args(["-c", &format!("command -v {tool}")]).output();
        assert!(
            found.is_ok_and(|o| o.status.success()),
            "{tool} is missing: install dnsmasq-base nfs-ganesha nfs-ganesha-vfs rpcbind libnfs-utils"
        );
    }
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "the Pi simulator tests need root (netns, veth)");
}

impl Anchor {
    pub fn new() -> Self {
        require_tools();
        let ctl = Netns::new(&unique_name("psc")).expect("controller netns");
        let dir = tempfile::Builder::new().prefix("pisim").tempdir().expect("temp dir");
        for sub in ["tftp", "roots", "recovery"] {
            fs::create_dir_all(dir.path().join(sub)).expect("mkdir");
        }
        write(&dir.path().join("tftp/bootcode.bin"), &pattern(51_200 + 17));
        Anchor { ctl, dir, slots: Vec::new(), ctl_ifs: Vec::new(), dnsmasq: None, ganesha: None }
    }

    pub fn tftp_root(&self) -> PathBuf {
        self.dir.path().join("tftp")
    }

    pub fn root_of(&self, slot: &PiSlot) -> PathBuf {
        self.dir.path().join("roots").join(slot.serial.to_string())
    }

    /// Wires a Pi: netns with an unaddressed `eth0`, boot files, NFS root.
    pub fn add_pi(&mut self, model: PiModel, serial: u32) -> PiSimConfig {
        let index = self.slots.len() as u8 + 1;
        let netns = Netns::new(&unique_name("psp")).expect("pi netns");
        let ctl_if = unique_name("psv");
        let tmp = format!("{ctl_if}p");
        run_ip(&["link", "add", &ctl_if, "type", "veth", "peer", "name", &tmp]).expect("veth");
        run_ip(&["link", "set", &ctl_if, "netns", self.ctl.name()]).expect("move ctl end");
        run_ip(&["link", "set", &tmp, "netns", netns.name()]).expect("move pi end");
        netns.ip(&["link", "set", &tmp, "name", "eth0"]).expect("rename");
        let slot = PiSlot { netns, index, model, serial: Serial(serial) };
        let cidr = format!("{}/30", slot.server());
        self.ctl.ip(&["addr", "add", &cidr, "dev", &ctl_if]).expect("ctl addr");
        self.ctl.ip(&["link", "set", &ctl_if, "up"]).expect("ctl up");
        self.ctl_ifs.push(ctl_if);
        self.write_boot_files(&slot);
        self.write_root(&slot);
        let mut cfg = PiSimConfig::new(model, slot.serial, slot.netns.name());
        cfg.expected_hostname = slot.hostname();
        cfg.expected_key = slot.key();
        self.slots.push(slot);
        cfg
    }

    fn write_boot_files(&self, slot: &PiSlot) {
        let dir = self.tftp_root().join(slot.serial.to_string());
        let (start, fixup, kernel) = match slot.model {
            PiModel::Pi4 => ("start4.elf", "fixup4.dat", "kernel8.img"),
            PiModel::Pi5 => ("start4.elf", "fixup4.dat", "kernel_2712.img"),
            // The 3B gets only a 32-bit kernel, so it must fall back to kernel7.img.
            PiModel::Pi3B => ("start.elf", "fixup.dat", "kernel7.img"),
            PiModel::Pi3BPlus => ("start.elf", "fixup.dat", "kernel8.img"),
        };
        write(&dir.join(start), &pattern(300_000));
        write(&dir.join(fixup), &pattern(7_000));
        write(&dir.join(kernel), &pattern(700_001));
        write(&dir.join(slot.model.dtb()), &pattern(25_000));
        write(&dir.join("config.txt"), b"arm_64bit=1\nenable_uart=1\n");
        let cmdline = format!(
            "console=serial0,115200 console=tty1 root=/dev/nfs rootfstype=nfs ip={pi}::{srv}:255.255.255.252::eth0:off nfsroot={srv}:{root},vers=3,tcp rootwait\n",
            pi = slot.pi_addr(),
            srv = slot.server(),
            root = self.root_of(slot).display(),
        );
        write(&dir.join("cmdline.txt"), cmdline.as_bytes());
    }

    /// Makes the boot directory of the Pi in `slot` name its kernel, device tree and
    /// initramfs in `config.txt`, as Debian's arm64 images do, and removes the files of
    /// the firmware's default names so that only a firmware honouring it boots.
    pub fn name_boot_files(&self, slot: usize, kernel: &str, dtb: &str, initramfs: &str) {
        let slot = &self.slots[slot];
        let dir = self.tftp_root().join(slot.serial.to_string());
        fs::remove_file(dir.join("kernel8.img")).expect("remove kernel8.img");
        fs::remove_file(dir.join(slot.model.dtb())).expect("remove the default dtb");
        write(&dir.join(kernel), &pattern(900_003));
        write(&dir.join(dtb), &pattern(25_001));
        write(&dir.join(initramfs), &pattern(400_007));
        let config = format!(
            "arm_64bit=1\nkernel={kernel}\ninitramfs {initramfs} followkernel\n\
             [pi3]\ndevice_tree=bcm2710-rpi-3-b.dtb\n[pi4]\ndevice_tree={dtb}\n[all]\n"
        );
        write(&dir.join("config.txt"), config.as_bytes());
    }

    fn write_root(&self, slot: &PiSlot) {
        let root = self.root_of(slot);
        write(&root.join("etc/hostname"), format!("{}\n", slot.hostname()).as_bytes());
        let keys = format!("ssh-rsa AAAAB3other other@x\n{}\n", slot.key());
        write(&root.join("root/.ssh/authorized_keys"), keys.as_bytes());
    }

    /// dnsmasq on every controller interface, one single-address range per Pi.
    pub fn start_dnsmasq(&mut self) {
        let d = self.dir.path();
        let mut args: Vec<String> = [
            "--no-daemon",
            "--conf-file=/dev/null",
            "--port=0",
            "--bind-interfaces",
            "--user=root",
            "--log-dhcp",
            "--enable-tftp",
            "--dhcp-reply-delay=1",
            "--pxe-service=0,\"Raspberry Pi Boot\"",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.push(format!("--tftp-root={}", self.tftp_root().display()));
        args.push(format!("--dhcp-leasefile={}", d.join("leases").display()));
        for (slot, ifname) in self.slots.iter().zip(&self.ctl_ifs) {
            let tag = format!("s{}", slot.index);
            args.push(format!("--interface={ifname}"));
            args.push(format!(
                "--dhcp-range=set:{tag},{a},{a},255.255.255.252,1h",
                a = slot.pi_addr()
            ));
            args.push(format!("--dhcp-option=tag:{tag},66,{}", slot.server()));
        }
        let log = fs::File::create(d.join("dnsmasq.log")).expect("log file");
        let child = self
            .ctl
            .command("dnsmasq")
            .args(&args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn dnsmasq");
        self.dnsmasq = Some(child);
        std::thread::sleep(Duration::from_millis(300));
    }

    pub fn dnsmasq_log(&self) -> String {
        fs::read_to_string(self.dir.path().join("dnsmasq.log")).unwrap_or_default()
    }

    /// nfs-ganesha (with its own rpcbind and /run) in the controller namespace through
    /// bramble-lab's `GaneshaServer`, exporting the roots directory read-only over
    /// NFSv3; waits until it serves the first Pi's root.
    pub fn start_ganesha(&mut self) {
        let d = self.dir.path();
        let exports = format!(
            "EXPORT {{ Export_Id = 105; Path = \"{roots}\"; Pseudo = \"{roots}\"; Protocols = 3; \
             Transports = TCP; Access_Type = RO; Squash = No_Root_Squash; SecType = sys; \
             FSAL {{ Name = VFS; }} }}\n",
            roots = d.join("roots").display(),
        );
        write(&d.join("exports.conf"), exports.as_bytes());
        let mut opts = GaneshaOptions::new(d.join("ganesha"), d.join("exports.conf"));
        opts.netns = Some(self.ctl.name().to_string());
        self.ganesha = Some(GaneshaServer::start(opts).expect("ganesha starts"));
        let slot = self.slots.first().expect("add a Pi before starting ganesha");
        let url = format!("nfs://{}{}/etc/hostname", slot.server(), self.root_of(slot).display());
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            let ok =
                self.ctl.command("nfs-cat").arg(&url).output().is_ok_and(|o| o.status.success());
            if ok {
                return;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        panic!(
            "ganesha did not serve {url} within 30 s; see {}",
            d.join("ganesha/ganesha.log").display()
        );
    }
}

impl Drop for Anchor {
    fn drop(&mut self) {
        if let Some(child) = self.dnsmasq.take() {
            stop(child);
        }
        self.ganesha.take();
    }
}

fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn write(path: &Path, bytes: &[u8]) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).expect("mkdir");
    }
    fs::write(path, bytes).expect("write");
}

/// Deterministic non-trivial content of `len` bytes.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}
