//! The anchor shelf: up to 96 simulated Pis netbooting from daemons configured by hand,
//! the way an operator runs a Pi cluster without Bramble. dnsmasq does DHCP only,
//! tftpd-hpa serves the firmware and `<serial>/` directories, nfs-ganesha exports one
//! root per Pi. It is the baseline the boot-storm benchmark compares Bramble against.
//!
//! Wiring: the daemons live in one private "anchor" network namespace (so their ports
//! 67, 69, 111 and 2049 never meet another test's); each Pi has its own namespace with
//! `eth0`, joined to interface `pi<N>` of the anchor namespace by a veth pair on a /30
//! from 10.107.0.0/16. Everything is removed on drop; a crashed run's leftovers are
//! removed by [`AnchorShelf::cleanup_stale`].

mod files;
mod layout;
pub(crate) mod process;
mod stale;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use files::BootFileSizes;
pub use layout::{
    MAX_PIS, SlotPlan, WITH_PI5, cmdline, dnsmasq_args, mixed_shelf, render_exports, shelf_of,
    tftpd_args,
};

use crate::ganesha::{GaneshaOptions, GaneshaServer};
use crate::pisim::{PiModel, PiSimConfig, Serial};
use crate::{LabError, Netns, require_tools, run_ip, unique_name};
use process::Daemon;
use stale::StateDir;

/// What to build.
#[derive(Debug, Clone)]
pub struct AnchorConfig {
    /// Prefix of every namespace and state directory (at most 5 bytes).
    pub prefix: String,
    /// The boards, slot by slot.
    pub pis: Vec<(PiModel, Serial)>,
    /// dnsmasq's `--dhcp-reply-delay` (the usual workaround for the Pi 3B ROM); 0 = none.
    pub dhcp_reply_delay_secs: u32,
    pub file_sizes: BootFileSizes,
}

impl AnchorConfig {
    /// `pis` boards cycling 3B, 3B+, 4; a 1 s reply delay; small boot files.
    pub fn mixed(prefix: &str, pis: usize) -> Self {
        AnchorConfig {
            prefix: prefix.to_string(),
            pis: mixed_shelf(pis),
            dhcp_reply_delay_secs: 1,
            file_sizes: BootFileSizes::SMALL,
        }
    }
}

/// A running anchor shelf. Dropping it stops the daemons and deletes every namespace,
/// link and file it made.
pub struct AnchorShelf {
    state: StateDir,
    slots: Vec<SlotPlan>,
    ganesha: Option<GaneshaServer>,
    dnsmasq: Option<Daemon>,
    tftpd: Option<Daemon>,
    pi_netns: Vec<Netns>,
    ctl: Netns,
}

const TOOLS: [(&str, &str); 6] = [
    ("dnsmasq", "dnsmasq-base"),
    ("in.tftpd", "tftpd-hpa"),
    ("ganesha.nfsd", "nfs-ganesha nfs-ganesha-vfs"),
    ("rpcbind", "rpcbind"),
    ("nfs-cat", "libnfs-utils"),
    ("ip", "iproute2"),
];

impl AnchorShelf {
    /// Builds the namespaces and links, writes boot files, roots and configs, starts
    /// ganesha, tftpd-hpa and dnsmasq. Blocking (a few seconds for 96 Pis).
    pub fn start(cfg: AnchorConfig) -> Result<AnchorShelf, LabError> {
        require_tools(&TOOLS)?;
        if cfg.pis.is_empty() || cfg.pis.len() > MAX_PIS {
            let reason = format!("{} Pis; an anchor shelf holds 1 to {MAX_PIS}", cfg.pis.len());
            return Err(LabError::Invalid { what: "pis", reason });
        }
        if cfg.prefix.is_empty()
            || cfg.prefix.len() > 5
            || !cfg.prefix.chars().all(|c| c.is_ascii_alphanumeric())
        {
            let reason = format!("{:?} must be 1-5 ASCII letters or digits", cfg.prefix);
            return Err(LabError::Invalid { what: "prefix", reason });
        }
        let ctl_name = unique_name(&cfg.prefix);
        let state = StateDir::create(&cfg.prefix, &ctl_name)?;
        state.record_netns(&ctl_name)?;
        let ctl = Netns::new(&ctl_name).map_err(LabError::cmd("creating the anchor namespace"))?;
        let slots: Vec<SlotPlan> = cfg
            .pis
            .iter()
            .enumerate()
            .map(|(i, &(model, serial))| SlotPlan::new(i, model, serial))
            .collect();
        let mut shelf = AnchorShelf {
            state,
            slots,
            ganesha: None,
            dnsmasq: None,
            tftpd: None,
            pi_netns: Vec::new(),
            ctl,
        };
        shelf.wire(&cfg.prefix)?;
        shelf.write_files(cfg.file_sizes)?;
        shelf.start_daemons(cfg.dhcp_reply_delay_secs)?;
        tracing::info!(pis = shelf.slots.len(), netns = %shelf.ctl.name(), "anchor shelf up");
        Ok(shelf)
    }

    /// One namespace per Pi and a veth pair straight between it and the anchor's.
    fn wire(&mut self, prefix: &str) -> Result<(), LabError> {
        for slot in &self.slots {
            let name = unique_name(prefix);
            self.state.record_netns(&name)?;
            let ns = Netns::new(&name)
                .map_err(LabError::cmd(format!("creating namespace for slot {}", slot.index)))?;
            let what = || format!("wiring slot {}", slot.index);
            run_ip(&[
                "link",
                "add",
                &slot.server_if,
                "netns",
                self.ctl.name(),
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                ns.name(),
            ])
            .map_err(LabError::cmd(what()))?;
            let cidr = format!("{}/30", slot.server);
            self.ctl
                .ip(&["addr", "add", &cidr, "dev", &slot.server_if])
                .map_err(LabError::cmd(what()))?;
            self.ctl.ip(&["link", "set", &slot.server_if, "up"]).map_err(LabError::cmd(what()))?;
            self.pi_netns.push(ns);
        }
        Ok(())
    }

    fn write_files(&self, sizes: BootFileSizes) -> Result<(), LabError> {
        let (tftp, blobs) = (self.tftp_root(), self.state.path().join("blobs"));
        files::write_shared(&tftp, &blobs, sizes)?;
        for slot in &self.slots {
            let root = self.root_dir(slot.index);
            files::write_boot_dir(&tftp, &blobs, slot, &root)?;
            files::write_root(&root, slot)?;
        }
        let exports = render_exports(&self.slots, |s| {
            files::root_path(&self.roots(), s).display().to_string()
        });
        files::write(&self.exports_file(), exports.as_bytes())
    }

    fn start_daemons(&mut self, reply_delay: u32) -> Result<(), LabError> {
        let dir = self.state.path().to_path_buf();
        let mut opts = GaneshaOptions::new(dir.join("ganesha"), self.exports_file());
        opts.netns = Some(self.ctl.name().to_string());
        self.ganesha = Some(GaneshaServer::start(opts)?);

        let mut tftpd = self.ctl.command("in.tftpd");
        tftpd.args(tftpd_args(&self.tftp_root()));
        self.tftpd = Some(Daemon::spawn("in.tftpd", tftpd, &dir.join("tftpd.log"))?);

        let mut dnsmasq = self.ctl.command("dnsmasq");
        dnsmasq.args(dnsmasq_args(&self.slots, &dir.join("dnsmasq.leases"), reply_delay));
        self.dnsmasq = Some(Daemon::spawn("dnsmasq", dnsmasq, &self.dnsmasq_log_file())?);

        std::thread::sleep(Duration::from_millis(300));
        for daemon in [&mut self.tftpd, &mut self.dnsmasq].into_iter().flatten() {
            daemon.check_running()?;
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn slots(&self) -> &[SlotPlan] {
        &self.slots
    }

    /// The simulator configuration for slot `index` with the real ROM timings; `None`
    /// past the end of the shelf.
    pub fn sim_config(&self, index: usize) -> Option<PiSimConfig> {
        let slot = self.slots.get(index)?;
        let ns = self.pi_netns.get(index)?;
        let mut cfg = PiSimConfig::new(slot.model, slot.serial, ns.name());
        cfg.expected_hostname = slot.hostname();
        cfg.expected_key = slot.key();
        Some(cfg)
    }

    /// Configurations for every slot, in order.
    pub fn sim_configs(&self) -> Vec<PiSimConfig> {
        (0..self.len()).filter_map(|i| self.sim_config(i)).collect()
    }

    /// The namespace the daemons run in.
    pub fn anchor_netns(&self) -> &str {
        self.ctl.name()
    }

    pub fn state_dir(&self) -> &Path {
        self.state.path()
    }

    pub fn tftp_root(&self) -> PathBuf {
        self.state.path().join("tftp")
    }

    fn roots(&self) -> PathBuf {
        self.state.path().join("roots")
    }

    /// The NFS root of slot `index` (exported to that Pi only).
    pub fn root_dir(&self, index: usize) -> PathBuf {
        match self.slots.get(index) {
            Some(slot) => files::root_path(&self.roots(), slot),
            None => self.roots().join(format!("no-slot-{index}")),
        }
    }

    /// The ganesha exports file (one EXPORT per Pi).
    pub fn exports_file(&self) -> PathBuf {
        self.state.path().join("exports.conf")
    }

    fn dnsmasq_log_file(&self) -> PathBuf {
        self.state.path().join("dnsmasq.log")
    }

    /// dnsmasq's output so far (it logs every DHCP exchange).
    pub fn dnsmasq_log(&self) -> String {
        std::fs::read_to_string(self.dnsmasq_log_file()).unwrap_or_default()
    }

    /// Removes what crashed anchor shelves with this prefix left behind (namespaces,
    /// the processes in them, state directories); live shelves are left alone. Returns
    /// how many shelves were cleaned.
    pub fn cleanup_stale(prefix: &str) -> usize {
        stale::cleanup(prefix)
    }
}

impl Drop for AnchorShelf {
    fn drop(&mut self) {
        self.dnsmasq.take();
        self.tftpd.take();
        self.ganesha.take();
        // tftpd's per-transfer children and anything else left in the anchor namespace;
        // the state directory goes with the `state` field, the namespaces after it.
        stale::kill_netns_processes(self.ctl.name());
    }
}
