//! The boot driver: the async run from power-on to the NFS root check, reporting every
//! step as an [`Event`].

use std::time::Instant;

use dhcproto::v4::MessageType;
use tokio::net::UdpSocket;

use super::cmdline::{IpConfig, parse_cmdline};
use super::config_txt::{BootConfig, parse_config_txt};
use super::dhcp::{self, Lease, PI3_XID};
use super::netio::{self, DhcpSockets};
use super::nfs::{self, RootExpectation};
use super::sequence::{FetchKind, FileRole, firmware_sequence};
use super::sim::Recorder;
use super::state::{BootFailure, DHCP_ATTEMPTS, Event};
use super::tftp::{self, Outcome, TftpOptions, Timing};
use super::{PiModel, PiSimConfig};

/// Why a run stopped before booting.
pub(crate) enum Stop {
    GaveUp,
    Failed(BootFailure),
}

impl From<BootFailure> for Stop {
    fn from(f: BootFailure) -> Self {
        Stop::Failed(f)
    }
}

/// Which DHCP exchange: the ROM's (OFFER only on a Pi 3), the Pi 3 second stage's,
/// or the Pi 4 EEPROM's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DhcpStage {
    Rom,
    Bootcode,
}

struct Boot<'a> {
    cfg: &'a PiSimConfig,
    rec: &'a Recorder,
    xid: u32,
}

fn sim_io(what: &str, e: impl std::fmt::Display) -> Stop {
    Stop::Failed(BootFailure::SimIo { detail: format!("{what}: {e}") })
}

/// A file the firmware read: the path it asked for and the bytes it got.
#[derive(Debug, Clone)]
pub(crate) struct LoadedFile {
    pub(crate) path: String,
    pub(crate) data: Vec<u8>,
}

/// What the firmware stage ends with: the lease and the files a kernel starts from.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub(crate) lease: Lease,
    pub(crate) config: Option<LoadedFile>,
    pub(crate) cmdline: LoadedFile,
    pub(crate) kernel: LoadedFile,
    pub(crate) initramfs: Option<LoadedFile>,
}

/// The files of [`Loaded`] as the sequence reads them.
#[derive(Default)]
struct Kept {
    config: Option<LoadedFile>,
    cmdline: Option<LoadedFile>,
    kernel: Option<LoadedFile>,
    initramfs: Option<LoadedFile>,
}

impl Kept {
    fn keep(&mut self, role: FileRole, file: LoadedFile) {
        let slot = match role {
            FileRole::Config => &mut self.config,
            FileRole::Cmdline => &mut self.cmdline,
            FileRole::Kernel => &mut self.kernel,
            FileRole::Initramfs => &mut self.initramfs,
            FileRole::Firmware | FileRole::DeviceTree => return,
        };
        *slot = Some(file);
    }

    fn loaded(self, lease: Lease, dir: &str) -> Result<Loaded, Stop> {
        let missing = |file: &str| -> Stop {
            BootFailure::TftpFailed { file: format!("{dir}{file}"), reason: "not read".into() }
                .into()
        };
        Ok(Loaded {
            lease,
            config: self.config,
            cmdline: self.cmdline.ok_or_else(|| missing("cmdline.txt"))?,
            kernel: self.kernel.ok_or_else(|| missing("kernel"))?,
            initramfs: self.initramfs,
        })
    }
}

/// Boots once from power-on; returns when the root checked out or the boot stopped.
pub(crate) async fn run(cfg: &PiSimConfig, rec: &Recorder) -> Result<(), Stop> {
    let loaded = firmware(cfg, rec).await?;
    let boot = Boot { cfg, rec, xid: 0 };
    boot.root(&loaded.lease, &loaded.cmdline.data).await
}

/// The boot ROM and firmware from power-on: DHCP, then the model's TFTP sequence as
/// `config.txt` adjusts it; returns the files the kernel would start from.
pub(crate) async fn firmware(cfg: &PiSimConfig, rec: &Recorder) -> Result<Loaded, Stop> {
    let xid = match cfg.model {
        PiModel::Pi3B | PiModel::Pi3BPlus => PI3_XID,
        PiModel::Pi4 | PiModel::Pi5 => random_xid(cfg.serial.0),
    };
    let boot = Boot { cfg, rec, xid };
    let lease = boot.dhcp(DhcpStage::Rom).await?;
    match cfg.model {
        PiModel::Pi3B | PiModel::Pi3BPlus => {
            let sock = boot.tftp_socket().await?;
            let rom = TftpOptions::NONE;
            boot.fetch(&sock, &lease, "bootcode.bin", rom, FetchKind::Required).await?;
            boot.fetch(&sock, &lease, "bootsig.bin", rom, FetchKind::Optional).await?;
            drop(sock);
            let lease = boot.dhcp(DhcpStage::Bootcode).await?;
            boot.firmware(lease, "start.elf", TftpOptions::NONE).await
        }
        PiModel::Pi4 => {
            let opts = TftpOptions { tsize: true, blksize: Some(1024) };
            boot.firmware(lease, "start4.elf", opts).await
        }
        // blksize 1468 (DESIGN.md, from rpi-eeprom's release notes): a full Ethernet frame.
        PiModel::Pi5 => {
            let opts = TftpOptions { tsize: true, blksize: Some(1468) };
            boot.firmware(lease, "config.txt", opts).await
        }
    }
}

fn random_xid(seed: u32) -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    nanos ^ seed.rotate_left(7)
}

impl Boot<'_> {
    /// Up to five DISCOVERs `dhcp_interval` apart; REQUEST/ACK where the model does it.
    async fn dhcp(&self, stage: DhcpStage) -> Result<Lease, Stop> {
        let cfg = self.cfg;
        netio::flush(&cfg.netns, &cfg.interface)
            .await
            .map_err(|e| sim_io("flushing addresses", e))?;
        let socks = DhcpSockets::open(&cfg.netns, &cfg.interface)
            .await
            .map_err(|e| sim_io("DHCP sockets", e))?;
        let request = match stage {
            DhcpStage::Rom => cfg.model.has_eeprom(),
            DhcpStage::Bootcode => cfg.model == PiModel::Pi3BPlus,
        };
        let mac = cfg.mac();
        for attempt in 1..=DHCP_ATTEMPTS {
            self.rec.emit(Event::DhcpDiscover { attempt });
            let packet = dhcp::discover(cfg.model, cfg.serial, mac, self.xid);
            socks.broadcast(&packet).await.map_err(|e| sim_io("sending DISCOVER", e))?;
            let deadline = Instant::now() + cfg.dhcp_interval;
            let Some(offer) = self.reply(&socks, MessageType::Offer, deadline).await? else {
                continue;
            };
            let lease = if request {
                self.rec.emit(Event::DhcpRequest { addr: offer.addr });
                let packet = dhcp::request(cfg.model, cfg.serial, mac, self.xid, &offer);
                socks.broadcast(&packet).await.map_err(|e| sim_io("sending REQUEST", e))?;
                let deadline = Instant::now() + cfg.dhcp_interval;
                match self.reply(&socks, MessageType::Ack, deadline).await? {
                    Some(ack) => ack,
                    None => continue,
                }
            } else {
                offer
            };
            self.bind(&lease).await?;
            return Ok(lease);
        }
        match stage {
            DhcpStage::Rom => Err(Stop::GaveUp),
            DhcpStage::Bootcode => Err(BootFailure::NoDhcpOffer.into()),
        }
    }

    /// The first usable reply of type `want` before `deadline`.
    async fn reply(
        &self,
        socks: &DhcpSockets,
        want: MessageType,
        deadline: Instant,
    ) -> Result<Option<Lease>, Stop> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let bytes = match tokio::time::timeout(left, socks.recv()).await {
                Err(_) => return Ok(None),
                Ok(r) => r.map_err(|e| sim_io("receiving DHCP", e))?,
            };
            match dhcp::parse_reply(&bytes, self.cfg.model, self.cfg.mac(), self.xid, want) {
                Ok(lease) => return Ok(Some(lease)),
                Err(reason) => self.rec.emit(Event::DhcpIgnored { reason }),
            }
        }
    }

    /// Gives the interface the leased address so TFTP can use kernel sockets.
    async fn bind(&self, lease: &Lease) -> Result<(), Stop> {
        self.set_addr(lease.addr, lease.prefix_len).await?;
        self.rec.emit(Event::DhcpBound { addr: lease.addr, tftp_server: lease.tftp_server });
        Ok(())
    }

    async fn set_addr(&self, addr: std::net::Ipv4Addr, prefix_len: u8) -> Result<(), Stop> {
        let iface = self.cfg.interface.clone();
        netio::flush(&self.cfg.netns, &iface).await.map_err(|e| sim_io("flushing addresses", e))?;
        let cidr = format!("{addr}/{prefix_len}");
        let args = ["addr", "add", &cidr, "dev", &iface].map(String::from).to_vec();
        netio::ip_in(&self.cfg.netns, args).await.map_err(|e| sim_io("adding address", e))
    }

    async fn tftp_socket(&self) -> Result<UdpSocket, Stop> {
        netio::udp_socket(&self.cfg.netns, &self.cfg.interface)
            .await
            .map_err(|e| sim_io("TFTP socket", e))
    }

    /// Reads one file (or probes it) and reports it; `Required` files must exist.
    async fn fetch(
        &self,
        sock: &UdpSocket,
        lease: &Lease,
        path: &str,
        opts: TftpOptions,
        kind: FetchKind,
    ) -> Result<Outcome, Stop> {
        self.rec.emit(Event::TftpRequest { file: path.to_string() });
        let probe = kind == FetchKind::Probe;
        let opts = if probe { TftpOptions { tsize: true, ..opts } } else { opts };
        let timing = Timing { timeout: self.cfg.tftp_timeout, retries: self.cfg.tftp_retries };
        let failed = |reason: String| {
            Stop::Failed(BootFailure::TftpFailed { file: path.to_string(), reason })
        };
        let outcome = tftp::read(sock, lease.tftp_server, path, opts, probe, timing)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let file = path.to_string();
        match &outcome {
            Outcome::Fetched { data, blksize } => self.rec.emit(Event::TftpFetched {
                file,
                bytes: data.len() as u64,
                blksize: *blksize,
            }),
            Outcome::Probed { size } => self.rec.emit(Event::TftpProbed { file, size: *size }),
            Outcome::NotFound => {
                self.rec.emit(Event::TftpMissing { file });
                if kind == FetchKind::Required {
                    return Err(failed("not found".into()));
                }
            }
        }
        Ok(outcome)
    }

    /// Probes `<serial>/<first>` to choose the boot directory, then reads the model's
    /// sequence from it, with the names `config.txt` gives, and the initramfs it names
    /// after the kernel.
    async fn firmware(&self, lease: Lease, first: &str, opts: TftpOptions) -> Result<Loaded, Stop> {
        let sock = self.tftp_socket().await?;
        let serial_dir = format!("{}/", self.cfg.serial);
        let probe = self
            .fetch(&sock, &lease, &format!("{serial_dir}{first}"), opts, FetchKind::Probe)
            .await?;
        let dir = if probe == Outcome::NotFound { String::new() } else { serial_dir };
        let mut config = BootConfig::default();
        let mut kept = Kept::default();
        for step in firmware_sequence(self.cfg.model) {
            let file = match config.names(&step).as_slice() {
                [one] => one.clone(),
                alternatives => {
                    self.first_existing(&sock, &lease, &dir, alternatives, opts).await?
                }
            };
            let mut read = vec![(step.role, step.kind, format!("{dir}{file}"))];
            if let (FileRole::Kernel, Some(initramfs)) = (step.role, &config.initramfs) {
                read.push((FileRole::Initramfs, FetchKind::Required, format!("{dir}{initramfs}")));
            }
            for (role, kind, path) in read {
                if let Outcome::Fetched { data, .. } =
                    self.fetch(&sock, &lease, &path, opts, kind).await?
                {
                    if role == FileRole::Config {
                        config = parse_config_txt(&data, self.cfg.model, self.cfg.serial);
                    }
                    kept.keep(role, LoadedFile { path, data });
                }
            }
        }
        kept.loaded(lease, &dir)
    }

    /// Probes `alternatives` in order (early terminate) and names the first that exists,
    /// or the last one (whose fetch then reports it missing).
    async fn first_existing(
        &self,
        sock: &UdpSocket,
        lease: &Lease,
        dir: &str,
        alternatives: &[String],
        opts: TftpOptions,
    ) -> Result<String, Stop> {
        for file in alternatives {
            let path = format!("{dir}{file}");
            if self.fetch(sock, lease, &path, opts, FetchKind::Probe).await? != Outcome::NotFound {
                return Ok(file.clone());
            }
        }
        Ok(alternatives.last().cloned().unwrap_or_default())
    }

    /// Configures the address the kernel would use and checks the NFS root.
    async fn root(&self, lease: &Lease, cmdline: &[u8]) -> Result<(), Stop> {
        let line = parse_cmdline(cmdline)
            .map_err(|e| BootFailure::BadCmdline { reason: e.to_string() })?;
        let (addr, prefix_len) = match line.ip {
            IpConfig::Static { client, netmask, .. } => {
                (client, netmask.map_or(lease.prefix_len, |m| u32::from(m).leading_ones() as u8))
            }
            IpConfig::Dhcp => (lease.addr, lease.prefix_len),
        };
        if addr != lease.addr || prefix_len != lease.prefix_len {
            self.set_addr(addr, prefix_len).await?;
        }
        self.rec.emit(Event::AddressConfigured { addr, prefix_len });
        let server = line.root_server(lease.server_id.unwrap_or(lease.tftp_server));
        self.rec.emit(Event::NfsCheck { server, path: line.nfs_path.clone() });
        let expect =
            RootExpectation { hostname: &self.cfg.expected_hostname, key: &self.cfg.expected_key };
        nfs::check_root(&self.cfg.netns, server, &line.nfs_path, expect, self.cfg.nfs_timeout)
            .await?;
        Ok(())
    }
}
