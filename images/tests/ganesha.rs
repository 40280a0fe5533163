//! The ganesha backend for real: rpcbind, a private D-Bus system bus and ganesha.nfsd are
//! started here; a provisioned root is exported to one Pi's storage address and read
//! with libnfs's nfs-cat/nfs-ls from a namespace holding that address, while a second
//! namespace with another address is refused. Exports are added and removed live, over
//! D-Bus and by SIGHUP reload.

mod common;

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bramble_images::customize::HostKeyType;
use bramble_images::nfs::ganesha::{ServerConfig, render_server_config};
use bramble_images::nfs::{Export, GaneshaControl, GaneshaExporter, NfsExporter};
use bramble_images::{ImageStore, PiName, Roots, SystemRunner};
use bramble_lab::{Netns, Veth, VethSpec, unique_name};
use common::{cached_base, identity, real_public_key, require};

/// A child process killed and reaped on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(name: &'static str, cmd: &mut Command) -> Proc {
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("could not start {name}: {e}"));
    Proc(child)
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

fn side(host: Ipv4Addr, peer: Ipv4Addr) -> Side {
    let ns = Netns::new(&unique_name("im")).expect("netns");
    let spec = VethSpec {
        host_if: unique_name("im"),
        host_addr: host,
        prefix_len: 30,
        peer_if: "eth0".into(),
        peer_addr: Some(peer),
    };
    let veth = Veth::create(spec, &ns).expect("veth");
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
    let others = Command::new("pgrep").args(["-x", "ganesha.nfsd"]).output().expect("pgrep");
    assert!(
        !others.status.success(),
        "another ganesha.nfsd is running; stop it first (pids {})",
        String::from_utf8_lossy(&others.stdout).trim()
    );

    // A root provisioned from the debootstrapped base.
    let tmp = tempfile::tempdir().expect("tempdir");
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
    let pi_side = side(ctl, Ipv4Addr::new(10, 103, n, 2));
    let stranger = side(Ipv4Addr::new(10, 103, n, 5), Ipv4Addr::new(10, 103, n, 6));
    stranger
        .ns
        .ip(&["route", "add", &format!("{ctl}/32"), "via", &format!("10.103.{n}.5")])
        .expect("route");

    // rpcbind (if none), a private system bus, then ganesha on the controller address.
    let _rpcbind =
        (!Command::new("pgrep").args(["-x", "rpcbind"]).status().expect("pgrep").success())
            .then(|| spawn("rpcbind", Command::new("rpcbind").args(["-f", "-w"])));
    let gdir = tmp.path().join("ganesha");
    std::fs::create_dir_all(gdir.join("recovery")).expect("mkdir");
    std::fs::write(gdir.join("bus.conf"), bus_config(&gdir)).expect("bus conf");
    let _bus = spawn(
        "dbus-daemon",
        Command::new("dbus-daemon")
            .arg(format!("--config-file={}", gdir.join("bus.conf").display()))
            .args(["--nofork", "--nopidfile"]),
    );
    wait_for("the private bus", || gdir.join("bus").exists());
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
    let _ganesha = spawn(
        "ganesha.nfsd",
        Command::new("ganesha.nfsd")
            .env("DBUS_SYSTEM_BUS_ADDRESS", &bus)
            .arg("-F")
            .arg("-f")
            .arg(gdir.join("ganesha.conf"))
            .arg("-L")
            .arg(gdir.join("ganesha.log"))
            .arg("-p")
            .arg(&pid_file)
            .args(["-N", "NIV_EVENT"]),
    );
    wait_for("ganesha on 2049", || {
        TcpStream::connect_timeout(&SocketAddr::from((ctl, 2049)), Duration::from_millis(200))
            .is_ok()
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
}

fn sh_ok(cmd: &str) -> bool {
    Command::new("sh").args(["-c", cmd]).output().map(|o| o.status.success()).unwrap_or(false)
}
