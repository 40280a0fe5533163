//! The ganesha backend for real: rpcbind, a private D-Bus system bus and ganesha.nfsd are
//! started here, in a controller namespace and state directory of the test's own; a
//! provisioned root is exported to one Pi's storage address and read with libnfs's
//! nfs-cat/nfs-ls from a namespace holding that address, while a second namespace with
//! another address is refused. Exports are added and removed live, over D-Bus and by
//! SIGHUP reload. Another nfs-ganesha and rpcbind run beside it all along, as on a shared
//! machine, and must still run at the end.

mod common;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bramble_images::customize::HostKeyType;
use bramble_images::nfs::ganesha::{ServerConfig, render_server_config};
use bramble_images::nfs::{Export, GaneshaControl, GaneshaExporter, NfsExporter};
use bramble_images::{ImageStore, PiName, Roots, SystemRunner};
use bramble_lab::ganesha::{GaneshaOptions, GaneshaServer};
use bramble_lab::{Netns, Veth, VethSpec, unique_name};
use common::{cached_base, identity, real_public_key, require};

/// The controller's servers: rpcbind, a private D-Bus system bus and ganesha.nfsd in the
/// controller's namespace, under `unshare --mount` with a tmpfs on /run so they never
/// meet the machine's rpcbind or D-Bus sockets. Stopped by their pids on drop.
struct Servers {
    ganesha: Child,
    dir: PathBuf,
}

impl Servers {
    fn start(ns: &Netns, dir: &Path) -> Servers {
        let d = dir.display();
        let script = format!(
            "mount -t tmpfs bramble-test-run /run || exit 97\n\
             rpcbind -f -w & echo $! > '{d}/rpcbind.pid'\n\
             dbus-daemon --config-file='{d}/bus.conf' --nofork --nopidfile & echo $! > '{d}/dbus.pid'\n\
             i=0; while {{ [ ! -S /run/rpcbind.sock ] || [ ! -S '{d}/bus' ]; }} && [ $i -lt 200 ]; do\n\
               sleep 0.05; i=$((i+1)); done\n\
             export DBUS_SYSTEM_BUS_ADDRESS='unix:path={d}/bus'\n\
             exec ganesha.nfsd -F -f '{d}/ganesha.conf' -L '{d}/ganesha.log' -p '{d}/ganesha.pid' -N NIV_EVENT\n"
        );
        let ganesha = ns
            .command("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("servers.err")).expect("servers.err"))
            .spawn()
            .expect("start the controller's servers");
        Servers { ganesha, dir: dir.to_path_buf() }
    }

    fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.ganesha.try_wait() {
            let read = |f: &str| std::fs::read_to_string(self.dir.join(f)).unwrap_or_default();
            panic!(
                "ganesha exited with {status}: {}\nlog tail:\n{}",
                read("servers.err"),
                read("ganesha.log").lines().rev().take(20).collect::<Vec<_>>().join("\n")
            );
        }
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        let _ = self.ganesha.kill();
        let _ = self.ganesha.wait();
        for (file, name) in [("rpcbind.pid", "rpcbind"), ("dbus.pid", "dbus-daemon")] {
            if let Some(pid) = live_pid(&self.dir.join(file), name) {
                // SAFETY: kill has no memory preconditions; the pid is one we started
                // (read from our own pid file and checked to still be that program).
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

/// The pid in `pid_file` if that process is still running `name`.
fn live_pid(pid_file: &Path, name: &str) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(pid_file).ok()?.trim().parse().ok()?;
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    (comm.trim() == name).then_some(pid)
}

/// Whether `addr:port` accepts a TCP connection from `side`'s namespace.
fn tcp_accepts(side: &Side, addr: Ipv4Addr, port: u16) -> bool {
    side.ns
        .command("timeout")
        .args(["1", "bash", "-c", &format!("exec 3<>/dev/tcp/{addr}/{port}")])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let t = Instant::now();
    while !ok() {
        assert!(t.elapsed() < Duration::from_secs(20), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A Pi-side namespace with its veth to the controller.
struct Side {
    ns: Netns,
    _veth: Veth,
    addr: Ipv4Addr,
}

fn side(ctl: &Netns, host: Ipv4Addr, peer: Ipv4Addr) -> Side {
    let ns = Netns::new(&unique_name("im")).expect("netns");
    let spec = VethSpec {
        host_if: unique_name("im"),
        host_addr: host,
        prefix_len: 30,
        peer_if: "eth0".into(),
        peer_addr: Some(peer),
    };
    let veth = Veth::create_between(spec, ctl, &ns).expect("veth");
    Side { ns, _veth: veth, addr: peer }
}

fn nfs(side: &Side, tool: &str, url: &str) -> Output {
    side.ns.command("timeout").args(["20", tool, url]).output().expect("run libnfs tool")
}

fn cat_ok(side: &Side, url: &str) -> String {
    let out = nfs(side, "nfs-cat", url);
    assert!(
        out.status.success(),
        "nfs-cat {url} from {} failed: {}",
        side.addr,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn bus_config(dir: &Path) -> String {
    format!(
        "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\" \
         \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n<busconfig><type>system</type>\
         <listen>unix:path={}/bus</listen><auth>EXTERNAL</auth><policy context=\"default\">\
         <allow user=\"*\"/><allow own=\"*\"/><allow send_destination=\"*\"/><allow receive_sender=\"*\"/>\
         </policy></busconfig>\n",
        dir.display()
    )
}

#[test]
fn ganesha_serves_a_provisioned_root_only_to_its_pi() {
    require(&["ganesha.nfsd", "rpcbind", "dbus-daemon", "dbus-send", "nfs-cat", "nfs-ls", "ip"]);
    let tmp = tempfile::tempdir().expect("tempdir");
    let neighbour = Neighbour::start(&tmp.path().join("neighbour"));

    // A root provisioned from the debootstrapped base.
    let store = ImageStore::open(&tmp.path().join("store"), &SystemRunner).expect("store");
    let base = store.import(&cached_base(), &SystemRunner).expect("import");
    let key = real_public_key("carol@example");
    let pi = PiName::new("pi-nfs").expect("name");
    let root = Roots::new(&store, &SystemRunner)
        .with_host_keys(&[HostKeyType::Ed25519])
        .reimage(&pi, &base, &identity("pi-nfs", vec![key.clone()]))
        .expect("root");

    // Storage networks: the Pi at .2 of its /30, a stranger on another /30.
    let n = (std::process::id() % 250 + 1) as u8;
    let ctl = Ipv4Addr::new(10, 103, n, 1);
    let ctl_ns = Netns::new(&unique_name("imc")).expect("controller netns");
    let pi_side = side(&ctl_ns, ctl, Ipv4Addr::new(10, 103, n, 2));
    let stranger = side(&ctl_ns, Ipv4Addr::new(10, 103, n, 5), Ipv4Addr::new(10, 103, n, 6));
    stranger
        .ns
        .ip(&["route", "add", &format!("{ctl}/32"), "via", &format!("10.103.{n}.5")])
        .expect("route");

    // rpcbind, a private system bus and ganesha on the controller address, all in the
    // controller's namespace under a private /run.
    let gdir = tmp.path().join("ganesha");
    std::fs::create_dir_all(gdir.join("recovery")).expect("mkdir");
    std::fs::write(gdir.join("bus.conf"), bus_config(&gdir)).expect("bus conf");
    let bus = format!("unix:path={}/bus", gdir.display());
    let runner = Arc::new(SystemRunner);
    let exporter = GaneshaExporter::new(
        runner.clone(),
        gdir.join("exports"),
        GaneshaControl::DBus { bus_address: Some(bus.clone()) },
    )
    .expect("exporter");
    let conf = ServerConfig {
        bind: Some(ctl),
        recovery_dir: gdir.join("recovery"),
        exports_include: exporter.include_file(),
        nfsv3: true,
    };
    std::fs::write(gdir.join("ganesha.conf"), render_server_config(&conf)).expect("conf");
    let pid_file = gdir.join("ganesha.pid");
    let mut servers = Servers::start(&ctl_ns, &gdir);
    wait_for("ganesha on 2049", || {
        servers.assert_running();
        tcp_accepts(&pi_side, ctl, 2049)
    });
    wait_for("ganesha on D-Bus", || {
        sh_ok(&format!(
            "DBUS_SYSTEM_BUS_ADDRESS={bus} dbus-send --system --print-reply \
        --dest=org.ganesha.nfsd /org/ganesha/nfsd/ExportMgr org.ganesha.nfsd.exportmgr.ShowExports"
        ))
    });

    let export = Export::new(pi_side.addr, root.path.clone()).expect("export");
    let url = |file: &str, v: &str| format!("nfs://{ctl}{}{file}{v}", exporter.mount_path(&export));
    let check_served = |how: &str| {
        assert_eq!(cat_ok(&pi_side, &url("/etc/hostname", "?version=4")), "pi-nfs\n", "{how} v4");
        assert_eq!(cat_ok(&pi_side, &url("/etc/hostname", "")), "pi-nfs\n", "{how} v3");
        assert_eq!(
            cat_ok(&pi_side, &url("/root/.ssh/authorized_keys", "?version=4")),
            format!("{key}\n"),
            "{how}"
        );
        let ls = nfs(&pi_side, "nfs-ls", &url("/etc/ssh", "?version=4"));
        assert!(
            String::from_utf8_lossy(&ls.stdout).contains("ssh_host_ed25519_key.pub"),
            "{how}: {ls:?}"
        );
        let refused = nfs(&stranger, "nfs-cat", &url("/etc/hostname", "?version=4"));
        assert!(!refused.status.success(), "{how}: {} could read the Pi's root", stranger.addr);
        let refused3 = nfs(&stranger, "nfs-cat", &url("/etc/hostname", ""));
        assert!(
            !refused3.status.success(),
            "{how}: {} could read the Pi's root over v3",
            stranger.addr
        );
    };
    let check_gone = |how: &str| {
        assert!(
            !nfs(&pi_side, "nfs-cat", &url("/etc/hostname", "?version=4")).status.success(),
            "{how}: still exported"
        );
    };

    check_gone("before add");
    exporter.add(&export).expect("add over D-Bus");
    check_served("D-Bus");
    exporter.remove(&export).expect("remove over D-Bus");
    check_gone("D-Bus remove");

    let reload = GaneshaExporter::new(
        runner,
        gdir.join("exports"),
        GaneshaControl::Reload { pid_file, log_file: Some(gdir.join("ganesha.log")) },
    )
    .expect("reload exporter");
    let sent = Instant::now();
    reload.add(&export).expect("add by reload");
    eprintln!("SIGHUP add returned after {:?} (ganesha logged the reload)", sent.elapsed());
    wait_for("export after SIGHUP", || {
        nfs(&pi_side, "nfs-cat", &url("/etc/hostname", "?version=4")).status.success()
    });
    check_served("SIGHUP");
    reload.remove(&export).expect("remove by reload");
    wait_for("unexport after SIGHUP", || {
        !nfs(&pi_side, "nfs-cat", &url("/etc/hostname", "?version=4")).status.success()
    });
    neighbour.assert_alive();
}

/// Somebody else's nfs-ganesha (and its rpcbind) in a namespace of its own, as on a
/// shared machine: the test must run beside it and leave it running.
struct Neighbour {
    server: GaneshaServer,
    _ns: Netns,
}

impl Neighbour {
    fn start(dir: &Path) -> Neighbour {
        let ns = Netns::new(&unique_name("imn")).expect("neighbour netns");
        let opts = GaneshaOptions {
            netns: Some(ns.name().to_string()),
            ..GaneshaOptions::new(dir, dir.join("exports.conf"))
        };
        let server = GaneshaServer::start(opts).expect("the neighbour's ganesha starts");
        Neighbour { server, _ns: ns }
    }

    fn assert_alive(&self) {
        let dir = &self.server.options().state_dir;
        for (file, name) in [("ganesha.pid", "ganesha.nfsd"), ("rpcbind.pid", "rpcbind")] {
            assert!(
                live_pid(&dir.join(file), name).is_some(),
                "the neighbour's {name} was stopped"
            );
        }
    }
}

fn sh_ok(cmd: &str) -> bool {
    Command::new("sh").args(["-c", cmd]).output().map(|o| o.status.success()).unwrap_or(false)
}
