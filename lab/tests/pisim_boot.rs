//! Simulated Pi 3B, 3B+ and Pi 4 boot against hand-configured dnsmasq and nfs-ganesha,
//! and fail precisely when their root is not the one they expect.

mod pisim_support;

use std::time::Duration;

use bramble_lab::pisim::{BootFailure, Event, PiModel, PiSim, PiState, PiStatus};
use pisim_support::Anchor;

fn files(status: &PiStatus, pick: impl Fn(&Event) -> Option<String>) -> Vec<String> {
    status.timeline.iter().filter_map(|e| pick(&e.event)).collect()
}

fn fetched(status: &PiStatus) -> Vec<String> {
    files(status, |e| match e {
        Event::TftpFetched { file, .. } => Some(file.clone()),
        _ => None,
    })
}

fn probed(status: &PiStatus) -> Vec<String> {
    files(status, |e| match e {
        Event::TftpProbed { file, .. } => Some(file.clone()),
        _ => None,
    })
}

fn block_sizes(status: &PiStatus) -> Vec<u16> {
    let mut sizes: Vec<u16> = status
        .timeline
        .iter()
        .filter_map(|e| match e.event {
            Event::TftpFetched { blksize, .. } => Some(blksize),
            _ => None,
        })
        .collect();
    sizes.dedup();
    sizes
}

fn requests(status: &PiStatus) -> usize {
    status.timeline.iter().filter(|e| matches!(e.event, Event::DhcpRequest { .. })).count()
}

fn dump(status: &PiStatus) -> String {
    status.timeline.iter().map(|e| format!("{:>8.3?} {:?}\n", e.elapsed, e.event)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_models_boot_and_wrong_roots_fail_precisely() {
    let mut lab = Anchor::new();
    let pi3 = lab.add_pi(PiModel::Pi3B, 0x00c0_ffee);
    let pi3plus = lab.add_pi(PiModel::Pi3BPlus, 0x1a2b_3c4d);
    let pi4 = lab.add_pi(PiModel::Pi4, 0xdca6_3201);
    let mut wrong_key = lab.add_pi(PiModel::Pi3BPlus, 0x0bad_0001);
    wrong_key.expected_key = "ssh-ed25519 AAAAnotthisone someone@else".into();
    let mut wrong_host = lab.add_pi(PiModel::Pi4, 0x0bad_0002);
    wrong_host.expected_hostname = "somebody-else".into();
    let no_hostname = lab.add_pi(PiModel::Pi3B, 0x0bad_0003);
    // The Pi 4 with the wrong host also boots from names in config.txt.
    lab.name_boot_files(4, "vmlinuz-6.1-test", "custom-rpi-4.dtb", "initrd.img-6.1-test");
    let root = lab.root_of(&lab.slots[5]);
    std::fs::remove_file(root.join("etc/hostname")).expect("remove hostname");
    lab.start_dnsmasq();
    lab.start_ganesha();

    let sims: Vec<PiSim> = [pi3, pi3plus, pi4, wrong_key, wrong_host, no_hostname]
        .into_iter()
        .map(PiSim::new)
        .collect();
    // Two waves of three: dnsmasq's reply delay blocks the whole server, and six Pis
    // retrying at once could starve a 3B's second-stage DHCP budget.
    for wave in sims.chunks(3) {
        for sim in wave {
            sim.set_power(true).await.expect("power on");
        }
        for sim in wave {
            sim.wait_for(Duration::from_secs(90), PiState::is_terminal).await;
        }
    }
    let status: Vec<PiStatus> = sims.iter().map(PiSim::status).collect();
    let log = lab.dnsmasq_log();
    for (i, s) in status.iter().enumerate().take(3) {
        assert_eq!(s.state, PiState::Booted, "Pi {i} did not boot:\n{}\ndnsmasq:\n{log}", dump(s));
        assert_eq!(s.counters.boots, 1);
        let slot = &lab.slots[i];
        let configured = s
            .timeline
            .iter()
            .any(|e| e.event == Event::AddressConfigured { addr: slot.pi_addr(), prefix_len: 30 });
        assert!(configured, "Pi {i} did not configure its ip= address:\n{}", dump(s));
    }

    // Pi 3B: ROM files from the root, no REQUEST ever, kernel7.img as the fallback.
    let (s, serial) = (&status[0], lab.slots[0].serial);
    assert_eq!(requests(s), 0, "the 3B never sends REQUEST:\n{}", dump(s));
    let got = fetched(s);
    assert_eq!(got[0], "bootcode.bin");
    assert!(got.contains(&format!("{serial}/start.elf")));
    assert!(got.contains(&format!("{serial}/kernel7.img")));
    assert!(got.contains(&format!("{serial}/bcm2710-rpi-3-b.dtb")));
    assert!(
        s.timeline.iter().any(|e| e.event == Event::TftpMissing { file: "bootsig.bin".into() })
    );
    assert!(
        s.timeline
            .iter()
            .any(|e| e.event == Event::TftpMissing { file: format!("{serial}/kernel8.img") })
    );
    assert_eq!(block_sizes(s), [512], "the 3B never negotiates blksize");
    let want: Vec<String> = ["start.elf", "config.txt", "start.elf", "kernel7.img"]
        .iter()
        .map(|f| format!("{serial}/{f}"))
        .collect();
    assert_eq!(probed(s), want, "early terminates:\n{}", dump(s));
    // dnsmasq answers slowly when five Pis share it (its reply delay blocks), so
    // count bound leases, not DISCOVERs: one for the ROM, one for bootcode.bin.
    let bound = s.timeline.iter().filter(|e| matches!(e.event, Event::DhcpBound { .. })).count();
    assert_eq!(bound, 2, "one DHCP for the ROM, one for bootcode.bin:\n{}", dump(s));

    // Pi 3B+: REQUEST only in the second stage (after bootcode.bin).
    let s = &status[1];
    let position = |want: &dyn Fn(&Event) -> bool| s.timeline.iter().position(|e| want(&e.event));
    let first_request = position(&|e| matches!(e, Event::DhcpRequest { .. }));
    let bootcode =
        position(&|e| matches!(e, Event::TftpFetched { file, .. } if file == "bootcode.bin"));
    assert!(first_request.is_some() && first_request > bootcode, "{}", dump(s));
    assert!(fetched(s).contains(&format!("{}/kernel8.img", lab.slots[1].serial)));

    // Pi 4: REQUEST/ACK, no bootcode.bin, start4.elf and its device tree.
    let (s, serial) = (&status[2], lab.slots[2].serial);
    assert!(requests(s) >= 1, "{}", dump(s));
    let got = fetched(s);
    assert_eq!(block_sizes(s), [1024], "dnsmasq acknowledges the Pi 4's blksize 1024");
    assert!(!got.iter().any(|f| f.contains("bootcode")));
    for f in ["start4.elf", "fixup4.dat", "bcm2711-rpi-4-b.dtb", "cmdline.txt", "kernel8.img"] {
        assert!(got.contains(&format!("{serial}/{f}")), "Pi 4 did not fetch {f}:\n{}", dump(s));
    }

    // The anchor saw the early terminates and the Pi 4's options.
    assert!(log.to_lowercase().contains("early terminate"), "dnsmasq log:\n{log}");

    // config.txt named the kernel, the device tree and an initramfs read after the kernel.
    let (s, serial) = (&status[4], lab.slots[4].serial);
    let got = fetched(s);
    let at = |f: &str| got.iter().position(|g| *g == format!("{serial}/{f}"));
    for f in ["config.txt", "custom-rpi-4.dtb", "vmlinuz-6.1-test", "initrd.img-6.1-test"] {
        assert!(at(f).is_some(), "Pi 4 did not fetch {f}:\n{}", dump(s));
    }
    assert_eq!(at("initrd.img-6.1-test"), at("vmlinuz-6.1-test").map(|k| k + 1), "{}", dump(s));
    let asked = |f: &str| {
        s.timeline.iter().any(|e| e.event == Event::TftpRequest { file: format!("{serial}/{f}") })
    };
    assert!(!asked("kernel8.img") && !asked("bcm2711-rpi-4-b.dtb"), "{}", dump(s));

    // The wrong roots: served, but not what the Pi expects.
    let cases = [
        (&status[3], "authorized_keys"),
        (&status[4], "hostname is"),
        (&status[5], "no etc/hostname"),
    ];
    for (s, what) in cases {
        match &s.state {
            PiState::Failed(BootFailure::WrongRoot { problem, .. }) => {
                assert!(problem.contains(what), "{problem}")
            }
            other => panic!("expected WrongRoot about {what}, got {other:?}:\n{}", dump(s)),
        }
    }
}
