//! The repository's scripts on a shared machine: `scripts/install-deps.sh` leaves other
//! people's DHCP/DNS and TFTP servers running, and `scripts/check-ports.sh` names the
//! process holding a port a benchmark needs (bench/tftp.sh) instead of stopping it.
//! (Needs root, iproute2, util-linux, dnsmasq and tftpd-hpa, as `install-deps.sh test`
//! installs.)

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;

use bramble_lab::{Netns, unique_name};
use bramble_tests::output_text;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Starts a dnsmasq (DNS on 5353) and an in.tftpd (6969) in `ns`, runs install-deps.sh,
/// then says whether each neighbour still runs. Everything happens in a PID namespace of
/// its own, so even a script that kills by name cannot reach the machine's processes.
fn neighbours_script(ns: &str, tftp_dir: &str, install_deps: &str) -> String {
    format!(
        "ip netns exec {ns} dnsmasq -k -C /dev/null -p 5353 -a 127.0.0.1 -z -R -h --pid-file= &\n\
         dns=$!\n\
         ip netns exec {ns} in.tftpd --foreground --address :6969 --secure --user root {tftp_dir} &\n\
         tftp=$!\n\
         i=0; until ip netns exec {ns} ss -Hlnu 'sport = :6969' | grep -q . &&\n\
           ip netns exec {ns} ss -Hlnu 'sport = :5353' | grep -q .; do\n\
           i=$((i+1)); [ $i -lt 100 ] || {{ echo 'neighbours did not start' >&2; exit 3; }}; sleep 0.05\n\
         done\n\
         {install_deps} test || exit 4\n\
         sleep 0.5\n\
         for p in $dns $tftp; do\n\
           if kill -0 $p 2>/dev/null; then echo \"alive $(cat /proc/$p/comm)\"; else echo \"gone $p\"; fi\n\
         done\n"
    )
}

#[test]
fn install_deps_leaves_other_dhcp_dns_and_tftp_servers_running() {
    let ns = Netns::new(&unique_name("idn")).expect("netns");
    let tftp_dir = tempfile::tempdir().expect("tempdir");
    let script = neighbours_script(
        ns.name(),
        tftp_dir.path().to_str().expect("utf-8"),
        repo().join("scripts/install-deps.sh").to_str().expect("utf-8"),
    );
    let out = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "--kill-child", "sh", "-c", &script])
        .output()
        .expect("run unshare");
    let report = output_text(&out);
    assert!(out.status.success(), "{report}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("alive dnsmasq"), "the neighbour's dnsmasq was stopped: {report}");
    assert!(stdout.contains("alive in.tftpd"), "the neighbour's in.tftpd was stopped: {report}");
}

#[test]
fn check_ports_names_the_process_holding_a_port_and_stops_nothing() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let check = || {
        Command::new(repo().join("scripts/check-ports.sh"))
            .arg(format!("tcp/{port}"))
            .output()
            .expect("run check-ports.sh")
    };
    let held = check();
    let stderr = String::from_utf8_lossy(&held.stderr);
    assert_eq!(held.status.code(), Some(1), "{}", output_text(&held));
    assert!(stderr.contains(&format!("tcp port {port}")), "{stderr}");
    assert!(stderr.contains(&format!("pid {}:", std::process::id())), "{stderr}");
    let exe = std::env::current_exe().expect("exe");
    assert!(stderr.contains(exe.to_str().expect("utf-8")), "names the command: {stderr}");
    // Still ours and still listening: nothing was stopped.
    assert!(listener.local_addr().is_ok());
    drop(listener);
    let free = check();
    assert!(free.status.success(), "{}", output_text(&free));
}
