//! A slot's boot plan: every fact a Pi's netboot depends on, worked out in one place.
//! The TFTP resolver serves from it and the reimage job checks the boot files against
//! it, so what the Pi is told (`cmdline.txt`) and what the controller serves and exports
//! cannot drift apart.
//!
//! - addresses: the slot's `.1` and `.2` as [`crate::alloc`] planned them, and the /30
//!   netmask ([`crate::alloc::storage_netmask`]);
//! - NFS: the server is the slot's `.1`, the path is what the configured exporter says a
//!   client mounts ([`NfsExporter::mount_path`]): the root's own path for the kernel
//!   server, the pseudo path `/export/<pi ip>` for ganesha (and, with no exporter
//!   configured, that same conventional path, served by someone else);
//! - files: the Pi's root is `<roots_dir>/<pi id>` and it boots from the `boot_dir` its
//!   base's manifest names ([`bramble_images::provision::boot_subdir`]).
//! - rescue: while the Pi's rescue root `<roots_dir>/<pi id>_rescue` exists (with its
//!   marker, written last when it is made), the slot boots that instead, from its own
//!   export ([`RootKind::Rescue`]); the Pi's own root stays exported beside it.
//!   [`BootPlanner::plan`] is what the slot boots now, [`BootPlanner::own`] and
//!   [`BootPlanner::rescue`] the plan of one root.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bramble_images::nfs::Export;
use bramble_images::provision::{boot_subdir, read_marker};
use bramble_images::{Base, ImageStore, ImagesError, NfsExporter, PiName};
use bramble_netboot::bootfiles::BootParams;

use crate::alloc::storage_netmask;
use crate::ids::PiId;

/// Everything one slot's Pi boots from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootPlan {
    /// The controller's end of the storage /30 (`.1`): TFTP and NFS server.
    pub controller: Ipv4Addr,
    /// The Pi's end (`.2`).
    pub pi: Ipv4Addr,
    pub netmask: Ipv4Addr,
    /// The NFS server's address as the Pi reaches it.
    pub nfs_server: Ipv4Addr,
    /// The path the Pi mounts (`nfsroot=<nfs_server>:<nfs_path>`).
    pub nfs_path: String,
    /// The export that serves `root` to the Pi, and only to it.
    pub export: Export,
    /// The Pi's root on the controller's disk.
    pub root: PathBuf,
    /// The directory of `root` the TFTP server serves (`boot` or `boot/firmware`).
    pub boot_dir: PathBuf,
    /// `console=` arguments from the root's base manifest (its recipe's consoles); empty
    /// when unknown, and then the image's own `cmdline.txt` decides.
    pub console: Vec<String>,
    /// Whether the root's base runs sshd at boot ([`bramble_images::Manifest::runs_sshd`]):
    /// then a job's boot check waits for SSH on the Pi's `.2`.
    pub sshd: bool,
    /// The controller's console port (`[console]`), where the Pi's netconsole sends to
    /// `controller`; `None` when the console receiver is off.
    pub netconsole_port: Option<u16>,
}

/// Which of a Pi's roots a plan is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootKind {
    /// `<roots_dir>/<pi id>`, exported at the exporter's path for the Pi.
    Own,
    /// `<roots_dir>/<pi id>_rescue`, exported to the same Pi at its rescue path.
    Rescue,
}

impl BootPlan {
    /// Inputs to the generated `cmdline.txt` and `config.txt`.
    pub fn params(&self) -> BootParams {
        BootParams {
            controller: self.nfs_server,
            pi: self.pi,
            netmask: self.netmask,
            nfs_export: self.nfs_path.clone(),
            console: self.console.clone(),
            extra_args: Vec::new(),
            config_additions: Vec::new(),
            netconsole: self
                .netconsole_port
                .map(|port| std::net::SocketAddrV4::new(self.controller, port)),
        }
    }
}

/// A plan that cannot be made (the image store's error names the path or address).
#[derive(Debug, thiserror::Error)]
pub enum BootPlanError {
    #[error("Pi id {pi} cannot name a root directory")]
    RootName {
        pi: PiId,
        #[source]
        source: Box<ImagesError>,
    },
    #[error("the root of Pi {pi} cannot be exported")]
    Export {
        pi: PiId,
        #[source]
        source: Box<ImagesError>,
    },
}

/// The root name of `pi`'s root of `kind` in the image store.
pub fn root_name(pi: &PiId, kind: RootKind) -> Result<PiName, BootPlanError> {
    let name = PiName::new(pi.as_str()).and_then(|n| match kind {
        RootKind::Own => Ok(n),
        RootKind::Rescue => n.rescue(),
    });
    name.map_err(|e| BootPlanError::RootName { pi: pi.clone(), source: Box::new(e) })
}

/// The pure plan of a slot whose Pi `pi` has its root of `kind` under `roots_dir` and
/// boots from `boot_subdir` of it; `mount_path` is the exporter's answer for the export.
pub fn plan(
    controller: Ipv4Addr,
    pi_ip: Ipv4Addr,
    pi: &PiId,
    kind: RootKind,
    roots_dir: &std::path::Path,
    boot_subdir: &str,
    mount_path: impl FnOnce(&Export) -> String,
) -> Result<BootPlan, BootPlanError> {
    let name = root_name(pi, kind)?;
    let root = roots_dir.join(name.as_str());
    let export = Export::new(pi_ip, root.clone())
        .map_err(|e| BootPlanError::Export { pi: pi.clone(), source: Box::new(e) })?;
    Ok(BootPlan {
        controller,
        pi: pi_ip,
        netmask: storage_netmask(),
        nfs_server: controller,
        nfs_path: mount_path(&export),
        boot_dir: root.join(boot_subdir),
        export,
        root,
        console: Vec::new(),
        sshd: false,
        netconsole_port: None,
    })
}

/// Makes boot plans from the controller's configuration: where roots live, the
/// configured NFS exporter and the image store whose manifests name each root's boot
/// directory. Bases never change once registered, so the bases roots were provisioned
/// from are cached.
pub struct BootPlanner {
    roots_dir: PathBuf,
    exporter: Option<Arc<dyn NfsExporter>>,
    store: Option<ImageStore>,
    bases: Mutex<HashMap<(String, String), Arc<Base>>>,
    netconsole_port: Option<u16>,
}

impl BootPlanner {
    pub fn new(
        roots_dir: PathBuf,
        exporter: Option<Arc<dyn NfsExporter>>,
        store: Option<ImageStore>,
    ) -> BootPlanner {
        BootPlanner {
            roots_dir,
            exporter,
            store,
            bases: Mutex::new(HashMap::new()),
            netconsole_port: None,
        }
    }

    /// Plans that send every Pi's netconsole to its `.1` on `port`.
    pub fn with_netconsole(mut self, port: Option<u16>) -> BootPlanner {
        self.netconsole_port = port;
        self
    }

    /// What the slot with storage addresses `controller`/`pi_ip` holding Pi `pi` boots
    /// now: its rescue root while one exists, else its own root.
    pub fn plan(
        &self,
        controller: Ipv4Addr,
        pi_ip: Ipv4Addr,
        pi: &PiId,
    ) -> Result<BootPlan, BootPlanError> {
        let rescue = self.rescue(controller, pi_ip, pi)?;
        if read_marker(&rescue.root).is_some() {
            return Ok(rescue);
        }
        self.own(controller, pi_ip, pi)
    }

    /// The plan of Pi `pi`'s own root.
    pub fn own(
        &self,
        controller: Ipv4Addr,
        pi_ip: Ipv4Addr,
        pi: &PiId,
    ) -> Result<BootPlan, BootPlanError> {
        self.plan_of(controller, pi_ip, pi, RootKind::Own)
    }

    /// The plan of Pi `pi`'s rescue root (which may not exist).
    pub fn rescue(
        &self,
        controller: Ipv4Addr,
        pi_ip: Ipv4Addr,
        pi: &PiId,
    ) -> Result<BootPlan, BootPlanError> {
        self.plan_of(controller, pi_ip, pi, RootKind::Rescue)
    }

    /// Reads the root's marker (one small file), and its base's manifest the first time
    /// that base is named; a marker naming no registered base costs one `stat`.
    fn plan_of(
        &self,
        controller: Ipv4Addr,
        pi_ip: Ipv4Addr,
        pi: &PiId,
        kind: RootKind,
    ) -> Result<BootPlan, BootPlanError> {
        let root = self.roots_dir.join(root_name(pi, kind)?.as_str());
        let marker = read_marker(&root);
        let base = marker.as_ref().and_then(|m| self.base(&m.image, &m.version));
        let subdir =
            boot_subdir(marker.as_ref(), base.as_deref().map(std::slice::from_ref).unwrap_or(&[]));
        let mut plan =
            plan(controller, pi_ip, pi, kind, &self.roots_dir, &subdir, |e| {
                match &self.exporter {
                    Some(x) => x.mount_path(e),
                    None => e.pseudo_path(),
                }
            })?;
        plan.console = base.as_ref().map(|b| b.manifest.console_args.clone()).unwrap_or_default();
        plan.sshd = base.is_some_and(|b| b.manifest.runs_sshd());
        plan.netconsole_port = self.netconsole_port;
        Ok(plan)
    }

    fn base(&self, image: &str, version: &str) -> Option<Arc<Base>> {
        let key = (image.to_string(), version.to_string());
        let cache = || self.bases.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(found) = cache().get(&key) {
            return Some(found.clone());
        }
        let found = match self.store.as_ref()?.base(image, version) {
            Ok(found) => Arc::new(found?),
            Err(error) => {
                tracing::warn!(image, version, error = %error, "cannot read a base's manifest");
                return None;
            }
        };
        cache().insert(key, found.clone());
        Some(found)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use bramble_images::nfs::{GaneshaControl, GaneshaExporter, KernelExporter};
    use bramble_images::{NfsExporter, RecordingRunner};
    use bramble_netboot::bootfiles::render_cmdline;

    use super::*;

    const CTL: Ipv4Addr = Ipv4Addr::new(10, 46, 189, 1);
    const PI: Ipv4Addr = Ipv4Addr::new(10, 46, 189, 2);

    /// The `nfsroot=` server and path of a rendered `cmdline.txt`.
    fn nfsroot(cmdline: &str) -> (String, String) {
        let value = cmdline.split_whitespace().find_map(|a| a.strip_prefix("nfsroot="));
        let (server, rest) = value.and_then(|v| v.split_once(':')).expect("nfsroot=server:path");
        (server.to_string(), rest.split(',').next().unwrap_or_default().to_string())
    }

    /// The value of `key = "..."` in a ganesha block.
    fn block_value(block: &str, key: &str) -> String {
        let line = block.lines().map(str::trim).find(|l| l.starts_with(key)).expect("key");
        line.split('"').nth(1).expect("quoted").to_string()
    }

    /// What a client of the kernel server mounts: the directory `exportfs` exported.
    fn kernel_exported(file: &Path) -> String {
        let text = std::fs::read_to_string(file).expect("exports file");
        let line = text.lines().find(|l| !l.starts_with('#')).expect("an export line");
        line.split_whitespace().next().unwrap_or_default().to_string()
    }

    #[test]
    fn cmdline_mounts_what_each_backend_exports() {
        let dir = tempfile::tempdir().expect("tempdir");
        let runner = Arc::new(RecordingRunner::default());
        let exports_file = dir.path().join("bramble.exports");
        let kernel = KernelExporter::new(runner.clone(), exports_file.clone()).expect("kernel");
        let gdir = dir.path().join("ganesha");
        let control = GaneshaControl::DBus { bus_address: None };
        let ganesha = GaneshaExporter::new(runner, gdir.clone(), control).expect("ganesha");
        let backends: [(&str, Arc<dyn NfsExporter>); 2] =
            [("kernel", Arc::new(kernel)), ("ganesha", Arc::new(ganesha))];
        let pi = PiId("pi-7".into());
        for (name, exporter) in backends {
            let roots = dir.path().join("roots");
            let planner = BootPlanner::new(roots.clone(), Some(exporter.clone()), None);
            let plan = planner.plan(CTL, PI, &pi).expect("plan");
            assert_eq!(plan.root, roots.join("pi-7"));
            // The export step exports the plan's export; the cmdline must mount it.
            exporter.add(&plan.export).expect("export");
            let exported = match name {
                "kernel" => kernel_exported(&exports_file),
                _ => {
                    let file = gdir.join(format!("export-{}.conf", plan.export.id));
                    let block = std::fs::read_to_string(file).expect("block");
                    assert_eq!(block_value(&block, "Path"), plan.root.display().to_string());
                    // v4 mounts the pseudo path; v3 too, with Mount_Path_Pseudo.
                    block_value(&block, "Pseudo")
                }
            };
            let cmdline = render_cmdline(&plan.params(), None).expect("render");
            assert_eq!(nfsroot(&cmdline), (CTL.to_string(), exported), "{name}: {cmdline}");
        }
    }

    #[test]
    fn the_boot_dir_and_consoles_are_the_ones_the_roots_base_names() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ImageStore::open(dir.path(), &RecordingRunner::default()).expect("store");
        let manifest = serde_json::json!({
            "image": "deb", "version": "1", "recipe_hash": "h", "suite": "bookworm",
            "arch": "arm64", "boot_dir": "boot/firmware", "network": "systemd-networkd",
            "console_args": ["console=ttyS1,115200", "console=tty1"], "packages": [],
            "size_bytes": 0, "file_count": 0,
            "tree_sha256": "", "built_at_unix": 0, "build_seconds": 0.0,
        });
        let base = dir.path().join("bases/deb/1");
        std::fs::create_dir_all(&base).expect("base dir");
        std::fs::write(base.join("manifest.json"), manifest.to_string()).expect("manifest");
        let write_marker = |pi: &str, image: &str| {
            let etc = store.roots_dir().join(pi).join("etc/bramble");
            std::fs::create_dir_all(&etc).expect("marker dir");
            let marker =
                serde_json::json!({"pi": pi, "image": image, "version": "1", "token": "t"});
            std::fs::write(etc.join("root.json"), marker.to_string()).expect("marker");
        };
        write_marker("pi-1", "deb");
        write_marker("pi-2", "../bases/deb");
        let planner = BootPlanner::new(store.roots_dir(), None, Some(store.clone()));
        let boot = |pi: &str| planner.plan(CTL, PI, &PiId(pi.into())).expect("plan").boot_dir;
        assert_eq!(boot("pi-1"), store.roots_dir().join("pi-1/boot/firmware"));
        assert_eq!(boot("pi-1"), store.roots_dir().join("pi-1/boot/firmware"), "cached");
        assert_eq!(boot("pi-2"), store.roots_dir().join("pi-2/boot"), "not a registered base");
        assert_eq!(boot("pi-3"), store.roots_dir().join("pi-3/boot"), "no marker");
        let console = |pi: &str| planner.plan(CTL, PI, &PiId(pi.into())).expect("plan").console;
        assert_eq!(console("pi-1"), ["console=ttyS1,115200", "console=tty1"]);
        assert!(console("pi-3").is_empty(), "unknown base: the image's cmdline.txt decides");
    }

    #[test]
    fn a_slot_boots_its_rescue_root_while_one_exists() {
        let dir = tempfile::tempdir().expect("tempdir");
        let roots = dir.path().to_path_buf();
        let planner = BootPlanner::new(roots.clone(), None, None);
        let pi = PiId("pi-7".into());
        let own = planner.plan(CTL, PI, &pi).expect("plan");
        assert_eq!(
            (own.root.clone(), own.nfs_path.as_str()),
            (roots.join("pi-7"), "/export/10.46.189.2")
        );
        // A rescue root without its marker (being made) is not booted yet.
        let etc = roots.join("pi-7_rescue/etc/bramble");
        std::fs::create_dir_all(&etc).expect("rescue root");
        assert_eq!(planner.plan(CTL, PI, &pi).expect("plan"), own);
        let marker =
            serde_json::json!({"pi": "pi-7_rescue", "image": "r", "version": "1", "token": "t"});
        std::fs::write(etc.join("root.json"), marker.to_string()).expect("marker");
        let rescue = planner.plan(CTL, PI, &pi).expect("plan");
        assert_eq!(rescue.root, roots.join("pi-7_rescue"));
        assert_eq!(rescue.boot_dir, roots.join("pi-7_rescue/boot"));
        assert_eq!(rescue.nfs_path, "/rescue/10.46.189.2");
        assert!(rescue.export.is_rescue() && rescue.export.client == PI);
        assert_ne!(rescue.export.id, own.export.id);
        // The Pi's own root keeps its plan (and export) beside it.
        assert_eq!(planner.own(CTL, PI, &pi).expect("own"), own);
    }

    #[test]
    fn without_an_exporter_the_conventional_path_and_boot_dir() {
        let planner = BootPlanner::new(PathBuf::from("/r"), None, None);
        let plan = planner.plan(CTL, PI, &PiId("pi-7".into())).expect("plan");
        assert_eq!(plan.boot_dir, PathBuf::from("/r/pi-7/boot"));
        assert_eq!(plan.params(), BootParams::example());
        assert!(planner.plan(CTL, PI, &PiId("../x".into())).is_err(), "not a root name");
    }
}
