//! A lab whose one slot holds a QEMU Pi: reinstalled with debian-bookworm-arm64 through
//! the API, it reads the image's real kernel and initramfs over the lab's DHCP and TFTP
//! (the controller's timeline sees it as for any Pi), boots them in QEMU with its root
//! on the lab's nfs-ganesha, and answers SSH with the lab's key.
//!
//! Needs qemu-system-arm, and the debian-bookworm-arm64 base in the image build cache
//! (`BRAMBLE_IMAGE_CACHE`, default /var/cache/bramble/images; built there on a miss,
//! which takes minutes). Run it under `flock /tmp/bramble-lab.lock`.

use std::time::{Duration, Instant};

use bramble::jobs::model::JobState;
use bramble::lab::{Lab, REAL_IMAGE};
use bramble_lab::pisim::{Event, PiState, PiStatus};
use bramble_lab::qemupi::QemuPi;
use bramble_tests::shelf;

/// A real kernel under TCG on a shared two-core machine: generous.
const SSH_LIMIT: Duration = Duration::from_secs(420);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_qemu_pi_reinstalled_with_the_real_image_boots_it_and_answers_ssh() {
    let _one = shelf::serial().await;
    let mut opts = shelf::options(1, 10, 'q');
    opts.real = 1;
    let started = Instant::now();
    let lab = shelf::racked(opts).await;
    println!("lab up and racked: {:.1?}", started.elapsed());
    let (pi, port) = shelf::pi_ports(&lab).await.remove(0);

    let job = lab.reimage(&pi, REAL_IMAGE).await.expect("reinstall accepted");
    let asked = Instant::now();
    let done = lab.wait_job(job.id.as_str(), Duration::from_secs(600)).await.expect("job");
    let qemu = lab.cabling.qemu(port).expect("a QEMU Pi in the slot");
    let console = qemu.config().console_log();
    assert_eq!(done.state, JobState::Succeeded, "reinstall: {done:?}\n{}", tail(&console));
    println!("reinstall job succeeded: {:.1?}", asked.elapsed());

    let state = qemu.wait_for(Duration::from_secs(120), |s| *s == PiState::Running).await;
    let status = qemu.status();
    assert_eq!(state, PiState::Running, "{}\n{}", timeline(&status), tail(&console));
    let (firmware, initramfs) = firmware_stage(&status);
    println!("firmware stage (DHCP, TFTP of config.txt, kernel, initramfs): {firmware:.1?}");
    assert!(initramfs.contains("initrd.img-"), "the initramfs config.txt names: {initramfs}");
    let kernel_seen = shelf::timeline(&lab, &pi).await.iter().any(|e| {
        e["kind"].as_str().is_some_and(|k| k.starts_with("tftp"))
            && e["data"]["stage"]["file"].as_str().is_some_and(|f| f.contains("vmlinuz-"))
    });
    assert!(kernel_seen, "the controller saw the kernel config.txt names read over TFTP");
    let qemu_started = Instant::now();
    println!("QEMU started: {:.1?} after the reinstall was asked for", asked.elapsed());

    let address = lab.pis().await.expect("pis")[0].storage_ip.clone().expect("storage address");
    let answer = ssh_until_answered(&lab, &address, &qemu).await;
    println!("SSH answering: {:.1?} after QEMU started", qemu_started.elapsed());
    let mut lines = answer.lines();
    assert_eq!(lines.next(), Some(format!("{}-p{port:02}", lab.opts.shelf).as_str()), "{answer}");
    let root = lines.next().unwrap_or_default().to_string();
    let controller =
        address.rsplit_once('.').map(|(net, _)| format!("{net}.1")).unwrap_or_default();
    assert!(root.starts_with("nfs ") && root.contains(&format!("{controller}:/")), "{answer}");
    println!("{address}: {answer}");
    let state_dir = lab.opts.state_dir.clone();
    lab.down().await;
    remove_state_dir(&state_dir).await;
}

/// Two copies of a real root (the base and the Pi's), about 1.4 GB: not worth keeping.
/// Daemons the lab stopped may still be writing their last files, so a few tries.
async fn remove_state_dir(dir: &std::path::Path) {
    for _ in 0..5 {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => return,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) => eprintln!("removing {}: {e}; trying again", dir.display()),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// From the last power-on to the kernel's start, and the initramfs path read.
fn firmware_stage(status: &PiStatus) -> (Duration, String) {
    let on = status.timeline.iter().rposition(|e| e.event == Event::PowerOn).unwrap_or(0);
    let boot = &status.timeline[on..];
    let at = |want: fn(&Event) -> bool| boot.iter().find(|e| want(&e.event)).map(|e| e.elapsed);
    let started = at(|e| matches!(e, Event::KernelStarted { .. })).unwrap_or_default();
    let fetched: Vec<&str> = boot
        .iter()
        .filter_map(|e| match &e.event {
            Event::TftpFetched { file, .. } => Some(file.as_str()),
            _ => None,
        })
        .collect();
    let initramfs = fetched.iter().find(|f| f.contains("initrd")).copied().unwrap_or("none");
    (started.saturating_sub(boot[0].elapsed), initramfs.to_string())
}

/// Runs `hostname; findmnt` over SSH until it answers; fails after [`SSH_LIMIT`], or as
/// soon as the machine stopped.
async fn ssh_until_answered(lab: &Lab, address: &str, qemu: &QemuPi) -> String {
    let console = qemu.config().console_log();
    let argv = lab.ssh_argv(address, &["hostname; findmnt -no FSTYPE,SOURCE /"]);
    let start = Instant::now();
    loop {
        let out = tokio::process::Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .expect("run ssh");
        if out.status.success() {
            return String::from_utf8_lossy(&out.stdout).trim().to_string();
        }
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        let state = qemu.state();
        assert_eq!(state, PiState::Running, "the machine stopped: {stderr}\n{}", tail(&console));
        assert!(
            start.elapsed() < SSH_LIMIT,
            "no SSH after {SSH_LIMIT:?}: {stderr}\n{}",
            tail(&console)
        );
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
}

fn timeline(status: &PiStatus) -> String {
    status.timeline.iter().map(|e| format!("{:>9.3?} {:?}\n", e.elapsed, e.event)).collect()
}

/// The last lines of the Pi's serial console, for failure messages.
fn tail(console: &std::path::Path) -> String {
    let text = std::fs::read_to_string(console).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(60);
    format!("console ({}):\n{}", console.display(), lines[from..].join("\n"))
}
