//! The classifier, case by case: every kind from a timeline as netboot writes it.

use std::time::Duration;

use bramble_netboot::tftp::{Outcome, Refusal};
use serde_json::json;

use super::*;

const T0: i64 = 1_764_583_200_000;

fn ev(ms: i64, kind: &str, stage: serde_json::Value) -> Seen {
    Seen::from_event(T0 + ms, kind, &json!({ "stage": stage, "client": {} }))
}

fn discover(ms: i64, model: Option<&str>) -> Seen {
    ev(ms, "dhcp.discover", json!({ "stage": "dhcp_discover", "model": model }))
}

fn offer(ms: i64) -> Seen {
    ev(
        ms,
        "dhcp.offer",
        json!({ "stage": "dhcp_offer", "yiaddr": "10.0.0.2", "options": [1, 3, 43, 53, 54, 60, 66],
                "next_server": "10.0.0.1" }),
    )
}

fn read(ms: i64, file: &str) -> Seen {
    ev(ms, "tftp.read", json!({ "stage": "tftp_read", "file": file }))
}

fn done(ms: i64, file: &str) -> Seen {
    ev(ms, "tftp.complete", json!({ "stage": "tftp_complete", "file": file, "bytes": 10 }))
}

fn error(ms: i64, file: &str, reason: &str) -> Seen {
    ev(ms, "tftp.error", json!({ "stage": "tftp_error", "file": file, "reason": reason }))
}

fn not_found() -> String {
    Refusal::NotFound.name().to_string()
}

fn timed_out() -> String {
    Outcome::TimedOut { block: 7 }.reason().expect("a reason")
}

fn delivering(draw: u32) -> Option<PoeReading> {
    Some(PoeReading {
        admin_enabled: true,
        detection: "delivering_power".into(),
        draw_mw: Some(draw),
    })
}

fn attempt<'a>(events: &'a [Seen], console: &'a [String], ending: Ending) -> Attempt<'a> {
    Attempt {
        pi: "pi-0192f3a1b2c3d4e5f6",
        powered_at: T0,
        events,
        model: "3b",
        port: 7,
        poe: delivering(2100),
        console,
        ending,
    }
}

fn timed_out_wait() -> Ending {
    Ending::TimedOut { waited: Duration::from_secs(40), power_cycled: true }
}

fn no_ssh() -> Ending {
    Ending::NoSsh {
        address: "10.46.3.2:22".parse().unwrap(),
        waited: Duration::from_secs(180),
        kernel_at: T0 + 3_000,
    }
}

/// A Pi 3B's boot up to (and with) the kernel read.
fn pi3_boot() -> Vec<Seen> {
    vec![
        discover(1_000, Some("pi3_b")),
        offer(1_010),
        read(1_100, "bootcode.bin"),
        done(1_200, "bootcode.bin"),
        error(1_300, "1234abcd/autoboot.txt", "not_found"),
        read(1_400, "1234abcd/start.elf"),
        done(1_900, "1234abcd/start.elf"),
        read(2_900, "1234abcd/kernel8.img"),
        done(3_200, "1234abcd/kernel8.img"),
    ]
}

/// Internals a customer must never read.
fn assert_customer_clean(d: &Diagnosis) {
    for internal in ["port 7", "10.0.0.1", "PoE", "mW", "options", "not_found"] {
        assert!(
            !d.customer.contains(internal),
            "customer message has {internal:?}: {}",
            d.customer
        );
    }
}

#[test]
fn a_boot_with_ssh_is_booted_with_all_three_phases() {
    let events = pi3_boot();
    let d = diagnose(&attempt(&events, &[], Ending::SshAnswered { at: T0 + 20_000 }));
    assert_eq!((d.kind, d.phase()), (DiagnosisKind::Booted, BootPhase::Booted));
    assert_eq!(
        d.phases,
        Phases { discover_ms: Some(1_000), kernel_ms: Some(2_900), booted_ms: Some(20_000) }
    );
    assert_eq!(d.customer, "The Pi booted.");
}

#[test]
fn without_sshd_the_kernel_read_is_booted() {
    let events = pi3_boot();
    let d = diagnose(&attempt(&events, &[], Ending::KernelRead));
    assert_eq!(d.kind, DiagnosisKind::Booted);
    assert_eq!(d.phases.booted_ms, Some(2_900));
}

#[test]
fn no_dhcp_names_power_cable_or_spanning_tree_with_the_ports_poe() {
    let d = diagnose(&attempt(&[], &[], timed_out_wait()));
    assert_eq!((d.kind, d.phase()), (DiagnosisKind::NoDhcp, BootPhase::PowerOn));
    assert!(
        d.operator.starts_with(
            "no_dhcp: no DHCP from the Pi within 40 s of power-on (power-cycled once)"
        ),
        "{}",
        d.operator
    );
    assert!(
        d.operator.contains("port 7 PoE admin on, detection delivering_power, draw 2100 mW"),
        "{}",
        d.operator
    );
    assert!(d.operator.contains("spanning tree"), "{}", d.operator);
    assert_eq!(d.phases, Phases::default());
    assert!(d.customer.contains("never asked the network"), "{}", d.customer);
    assert_customer_clean(&d);
}

#[test]
fn no_dhcp_from_an_unpowered_or_faulty_port_says_so() {
    let mut a = attempt(&[], &[], timed_out_wait());
    a.poe =
        Some(PoeReading { admin_enabled: true, detection: "searching".into(), draw_mw: Some(0) });
    let d = diagnose(&a);
    assert!(d.operator.contains("detection searching, draw 0 mW"), "{}", d.operator);
    assert!(d.operator.contains("no powered device detected"), "{}", d.operator);
    a.poe = Some(PoeReading { admin_enabled: true, detection: "fault".into(), draw_mw: None });
    assert!(diagnose(&a).operator.contains("PoE fault"));
    a.poe = Some(PoeReading { admin_enabled: false, detection: "disabled".into(), draw_mw: None });
    assert!(diagnose(&a).operator.contains("the port is not powered"));
    a.poe = None;
    let d = diagnose(&a);
    assert!(d.operator.contains("PoE state unknown"), "{}", d.operator);
    assert_customer_clean(&d);
}

#[test]
fn an_offer_without_tftp_was_rejected_and_names_model_and_options() {
    let events = vec![
        discover(900, Some("pi3_b")),
        offer(910),
        discover(2_900, Some("pi3_b")),
        offer(2_910),
    ];
    let d = diagnose(&attempt(&events, &[], timed_out_wait()));
    assert_eq!((d.kind, d.phase()), (DiagnosisKind::OfferRejected, BootPhase::Dhcp));
    assert!(d.operator.contains("boot ROM model pi3_b, inventory model 3b"), "{}", d.operator);
    assert!(
        d.operator.contains("OFFER sent with options 1,3,43,53,54,60,66 and next server 10.0.0.1"),
        "{}",
        d.operator
    );
    assert_eq!(d.phases.discover_ms, Some(900));
    assert_customer_clean(&d);
}

#[test]
fn a_discover_with_no_answer_is_no_offer() {
    let events = vec![discover(900, None)];
    let d = diagnose(&attempt(&events, &[], timed_out_wait()));
    assert_eq!(d.kind, DiagnosisKind::NoOffer);
    assert!(d.operator.contains("boot ROM model not told"), "{}", d.operator);
    assert_customer_clean(&d);
}

#[test]
fn an_offer_event_without_option_data_still_classifies() {
    let events = vec![
        discover(900, None),
        Seen::from_event(
            T0 + 910,
            "dhcp.offer",
            &json!({"stage": {"stage": "dhcp_offer", "yiaddr": "10.0.0.2"}}),
        ),
    ];
    let d = diagnose(&attempt(&events, &[], timed_out_wait()));
    assert_eq!(d.kind, DiagnosisKind::OfferRejected);
    assert!(d.operator.contains("options not recorded and next server none"), "{}", d.operator);
}

#[test]
fn a_missing_kernel_is_named_after_optional_misses_and_fallback_names() {
    let mut events = pi3_boot();
    events.truncate(7); // up to start.elf done
    events.push(error(2_000, "1234abcd/overlays/overlay_map.dtb", &not_found()));
    events.push(error(2_100, "1234abcd/kernel8.img", &not_found()));
    events.push(error(2_200, "1234abcd/kernel7.img", &not_found()));
    let d = diagnose(&attempt(&events, &[], timed_out_wait()));
    assert_eq!((d.kind, d.phase()), (DiagnosisKind::TftpFileMissing, BootPhase::Tftp));
    assert_eq!(d.file.as_deref(), Some("1234abcd/kernel8.img"));
    assert!(
        d.operator.contains(
            "TFTP stopped at 1234abcd/kernel8.img (then also tried 1234abcd/kernel7.img): missing"
        ),
        "{}",
        d.operator
    );
    assert!(d.customer.contains("the file kernel8.img is missing"), "{}", d.customer);
    assert_eq!(d.phases.kernel_ms, None);
    assert_customer_clean(&d);
}

#[test]
fn a_miss_of_only_optional_files_names_the_first() {
    let events = vec![
        discover(900, Some("pi4")),
        offer(910),
        error(1_000, "config.txt", &not_found()),
        error(1_100, "pieeprom.sig", &not_found()),
    ];
    let d = diagnose(&attempt(&events, &[], timed_out_wait()));
    assert_eq!(d.kind, DiagnosisKind::TftpFileMissing);
    assert_eq!(d.file.as_deref(), Some("config.txt"));
}

#[test]
fn a_timed_out_transfer_is_a_tftp_timeout() {
    let mut events = pi3_boot();
    events.truncate(7);
    events.push(read(2_000, "1234abcd/bcm2710-rpi-3-b.dtb"));
    events.push(error(9_000, "1234abcd/bcm2710-rpi-3-b.dtb", &timed_out()));
    let d = diagnose(&attempt(&events, &[], timed_out_wait()));
    assert_eq!(d.kind, DiagnosisKind::TftpTimeout);
    assert_eq!(d.file.as_deref(), Some("1234abcd/bcm2710-rpi-3-b.dtb"));
    assert!(
        d.operator.contains("the transfer timed out (no acknowledgement of block 7)"),
        "{}",
        d.operator
    );
    assert!(d.customer.contains("while loading bcm2710-rpi-3-b.dtb"), "{}", d.customer);
    assert_customer_clean(&d);
}

#[test]
fn a_transfer_that_never_ended_is_a_timeout_too() {
    let mut events = pi3_boot();
    events.truncate(7);
    events.push(read(2_000, "1234abcd/fixup.dat"));
    let d = diagnose(&attempt(&events, &[], timed_out_wait()));
    assert_eq!(d.kind, DiagnosisKind::TftpTimeout);
    assert!(d.operator.contains("started and never finished"), "{}", d.operator);
}

#[test]
fn another_refusal_is_refused() {
    let mut events = pi3_boot();
    events.truncate(7);
    events.push(error(2_000, "1234abcd/../x", Refusal::Traversal.name()));
    let d = diagnose(&attempt(&events, &[], timed_out_wait()));
    assert_eq!(d.kind, DiagnosisKind::TftpRefused);
    assert!(d.operator.contains("refused: traversal"), "{}", d.operator);
    assert_customer_clean(&d);
}

#[test]
fn a_boot_that_asks_for_nothing_after_a_transfer_stopped_there() {
    let mut events = pi3_boot();
    events.truncate(7);
    let d = diagnose(&attempt(&events, &[], timed_out_wait()));
    assert_eq!(d.kind, DiagnosisKind::TftpStopped);
    assert_eq!(d.file.as_deref(), Some("1234abcd/start.elf"));
    assert!(d.customer.contains("after loading start.elf"), "{}", d.customer);
}

#[test]
fn a_kernel_read_without_a_dhcp_answer_on_record_is_not_called_a_tftp_stop() {
    let events = vec![read(2_900, "kernel8.img")];
    let d = diagnose(&attempt(&events, &[], timed_out_wait()));
    assert_eq!(d.kind, DiagnosisKind::NoRoot);
    assert_eq!(d.phases.kernel_ms, Some(2_900));
}

fn lines(text: &[&str]) -> Vec<String> {
    text.iter().map(|s| s.to_string()).collect()
}

#[test]
fn no_ssh_after_the_root_mounted_quotes_the_last_console_lines() {
    let events = pi3_boot();
    let console = lines(&[
        "[    0.000000] Linux version 6.1.0",
        "bramble: NFS root 10.46.3.1:/export/10.46.3.2 mounted on /root (vers=3)",
        "[   12.000000] systemd[1]: Started a.service",
        "[   13.000000] systemd[1]: ssh.service: masked",
    ]);
    let d = diagnose(&attempt(&events, &console, no_ssh()));
    assert_eq!((d.kind, d.phase()), (DiagnosisKind::NoSsh, BootPhase::System));
    assert!(d.operator.contains("last console lines: bramble: NFS root"), "{}", d.operator);
    assert!(d.operator.ends_with("ssh.service: masked"), "{}", d.operator);
    assert!(d.customer.contains("kernel") && d.customer.contains("10.46.3.2:22"), "{}", d.customer);
    assert!(d.customer.contains("/v1/pis/pi-0192f3a1b2c3d4e5f6/rescue"));
}

#[test]
fn no_root_quotes_the_consoles_errors() {
    let events = pi3_boot();
    let console = lines(&[
        "[    0.000000] Linux version 6.1.0",
        "[    9.000000] nfs: server 10.46.3.1 not responding, still trying",
        "ALERT!  /dev/nfs does not exist.  Dropping to a shell!",
        "(initramfs)",
    ]);
    let d = diagnose(&attempt(&events, &console, no_ssh()));
    assert_eq!((d.kind, d.phase()), (DiagnosisKind::NoRoot, BootPhase::Kernel));
    assert!(d.operator.contains("check the Pi's NFS export"), "{}", d.operator);
    assert!(d.operator.contains("console errors: [    9.000000] nfs: server 10.46.3.1 not responding, still trying | ALERT!"), "{}", d.operator);
    assert!(d.customer.contains("did not mount its system"), "{}", d.customer);
}

#[test]
fn no_root_without_console_says_so() {
    let events = pi3_boot();
    let d = diagnose(&attempt(&events, &[], no_ssh()));
    assert_eq!(d.kind, DiagnosisKind::NoRoot);
    assert!(d.operator.ends_with("no console lines from this boot"), "{}", d.operator);
    let console =
        lines(&["[    0.000000] Linux version 6.1.0", "[    1.0] Run /init as init process"]);
    let d = diagnose(&attempt(&events, &console, no_ssh()));
    assert!(
        d.operator.contains("last console lines: [    0.000000] Linux version"),
        "{}",
        d.operator
    );
}

#[test]
fn every_kind_has_a_name_and_a_phase() {
    let names: std::collections::BTreeSet<_> =
        DiagnosisKind::ALL.iter().map(|k| k.as_str()).collect();
    assert_eq!(names.len(), DiagnosisKind::ALL.len());
    for k in DiagnosisKind::ALL {
        let json = serde_json::to_value(k).unwrap();
        assert_eq!(json, k.as_str());
        let _ = k.phase();
    }
}

#[test]
fn kernel_files_are_recognised_by_name() {
    assert!(is_kernel_file("1234abcd/kernel7.img"));
    assert!(is_kernel_file("kernel8.img"));
    assert!(is_kernel_file("vmlinuz-6.1.0-arm64"));
    assert!(is_kernel_file("Image"));
    assert!(!is_kernel_file("start.elf"));
    assert!(!is_kernel_file("kernel.txt"));
}

#[test]
fn a_customer_sees_only_their_own_last_boot_without_details() {
    let events = pi3_boot();
    let d = diagnose(&attempt(&events, &[], timed_out_wait()));
    let ann = crate::ids::CustomerId("ann".into());
    let boot = LastBoot::new(&d, T0, &JobId("job-1".into()), delivering(5), Some(ann.clone()));
    assert!(boot.failed());
    let shown = boot.clone().for_customer(&ann).expect("ann's own");
    assert_eq!((shown.operator_message, shown.poe), (None, None));
    assert_eq!(shown.customer_message, d.customer);
    assert!(boot.for_customer(&crate::ids::CustomerId("bob".into())).is_none());
}

#[test]
fn metrics_count_kinds_and_time_phases_per_model() {
    let m = metrics::BootMetrics::default();
    let events = pi3_boot();
    m.record("3b", &diagnose(&attempt(&events, &[], Ending::SshAnswered { at: T0 + 20_000 })));
    m.record("3b", &diagnose(&attempt(&[], &[], timed_out_wait())));
    let registry = crate::metrics::Metrics::default();
    registry.add_collector(std::sync::Arc::new(m));
    let text = registry.render(&[]);
    assert!(text.contains("# TYPE bramble_boot_phase_seconds histogram"), "{text}");
    assert!(text.contains("bramble_boot_diagnoses_total{kind=\"no_dhcp\"} 1\n"), "{text}");
    assert!(text.contains("bramble_boot_diagnoses_total{kind=\"booted\"} 1\n"), "{text}");
    assert!(
        text.contains("bramble_boot_diagnoses_total{kind=\"tftp_file_missing\"} 0\n"),
        "{text}"
    );
    assert!(
        text.contains(
            "bramble_boot_phase_seconds_bucket{model=\"3b\",phase=\"discover\",le=\"1\"} 1\n"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "bramble_boot_phase_seconds_bucket{model=\"3b\",phase=\"booted\",le=\"15\"} 0\n"
        ) && text.contains(
            "bramble_boot_phase_seconds_bucket{model=\"3b\",phase=\"booted\",le=\"20\"} 1\n"
        ) && text.contains(
            "bramble_boot_phase_seconds_bucket{model=\"3b\",phase=\"booted\",le=\"+Inf\"} 1\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("bramble_boot_phase_seconds_sum{model=\"3b\",phase=\"kernel\"} 2.9\n"),
        "{text}"
    );
    assert!(
        text.contains("bramble_boot_phase_seconds_count{model=\"3b\",phase=\"kernel\"} 1\n"),
        "{text}"
    );
}
