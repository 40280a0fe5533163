//! Unit tests of the pure boot state machine: whole boots as event lists, and the
//! transitions it must refuse.

use super::*;

fn run(events: &[Event]) -> Result<PiState, InvalidTransition> {
    events.iter().try_fold(PiState::Off, |s, e| next(&s, e))
}

fn tftp(file: &str) -> [Event; 2] {
    [
        Event::TftpRequest { file: file.into() },
        Event::TftpFetched { file: file.into(), bytes: 10, blksize: 512 },
    ]
}

#[test]
fn a_full_pi3_boot_reaches_booted() {
    let mut events = vec![Event::PowerOn, Event::DhcpDiscover { attempt: 1 }];
    events.push(Event::DhcpBound { addr: [10, 0, 0, 2].into(), tftp_server: [10, 0, 0, 1].into() });
    events.extend(tftp("bootcode.bin"));
    events.push(Event::TftpRequest { file: "bootsig.bin".into() });
    events.push(Event::TftpMissing { file: "bootsig.bin".into() });
    events.push(Event::DhcpDiscover { attempt: 1 });
    events.push(Event::DhcpBound { addr: [10, 0, 0, 2].into(), tftp_server: [10, 0, 0, 1].into() });
    events.push(Event::TftpRequest { file: "abc/start.elf".into() });
    events.push(Event::TftpProbed { file: "abc/start.elf".into(), size: Some(3) });
    events.extend(tftp("abc/cmdline.txt"));
    events.push(Event::AddressConfigured { addr: [10, 0, 0, 2].into(), prefix_len: 30 });
    events.push(Event::NfsCheck { server: [10, 0, 0, 1].into(), path: "/x".into() });
    events.push(Event::Booted);
    assert_eq!(run(&events), Ok(PiState::Booted));
}

#[test]
fn a_qemu_pi_runs_its_kernel_until_the_vm_stops() {
    let mut events = vec![Event::PowerOn, Event::DhcpDiscover { attempt: 1 }];
    events.push(Event::DhcpBound { addr: [10, 0, 0, 2].into(), tftp_server: [10, 0, 0, 1].into() });
    events.extend(tftp("abc/vmlinuz-6.1"));
    events.extend(tftp("abc/initrd.img-6.1"));
    events.push(Event::KernelStarted { pid: 42 });
    assert_eq!(run(&events), Ok(PiState::Running));
    assert!(!PiState::Running.is_terminal(), "a running VM may still stop");
    let exited = BootFailure::VmExited { status: "exit status: 0".into() };
    events.push(Event::Failed(exited.clone()));
    assert_eq!(run(&events), Ok(PiState::Failed(exited)));
}

#[test]
fn five_silent_attempts_give_up_and_only_power_off_leaves() {
    let mut events = vec![Event::PowerOn];
    events.extend((1..=DHCP_ATTEMPTS).map(|attempt| Event::DhcpDiscover { attempt }));
    events.push(Event::DhcpExhausted);
    assert_eq!(run(&events), Ok(PiState::GaveUp));
    for e in [Event::PowerOn, Event::DhcpDiscover { attempt: 1 }, Event::Booted] {
        assert!(next(&PiState::GaveUp, &e).is_err(), "{e:?} left GaveUp");
    }
    assert_eq!(next(&PiState::GaveUp, &Event::PowerOff), Ok(PiState::Off));
    assert_eq!(next(&PiState::Off, &Event::PowerOn), Ok(PiState::DhcpDiscovering { attempt: 0 }));
}

#[test]
fn refused_transitions() {
    let discovering = |attempt| PiState::DhcpDiscovering { attempt };
    let cases: Vec<(PiState, Event)> = vec![
        // A sixth DISCOVER does not exist.
        (discovering(5), Event::DhcpDiscover { attempt: 6 }),
        // Attempts are counted one by one.
        (discovering(1), Event::DhcpDiscover { attempt: 3 }),
        // Giving up before the budget is spent.
        (discovering(2), Event::DhcpExhausted),
        // Power on while on.
        (discovering(1), Event::PowerOn),
        (PiState::Booted, Event::PowerOn),
        // A transfer result for another file.
        (
            PiState::Tftp { file: "a".into() },
            Event::TftpFetched { file: "b".into(), bytes: 1, blksize: 512 },
        ),
        // Booted without checking the root.
        (PiState::Tftp { file: "a".into() }, Event::Booted),
        // A kernel started before the firmware read anything, or twice.
        (discovering(1), Event::KernelStarted { pid: 1 }),
        (PiState::Running, Event::KernelStarted { pid: 1 }),
        (PiState::Running, Event::Booted),
        // Nothing happens while off.
        (PiState::Off, Event::DhcpDiscover { attempt: 1 }),
        (PiState::Off, Event::Failed(BootFailure::NoDhcpOffer)),
    ];
    for (state, event) in cases {
        assert!(next(&state, &event).is_err(), "{event:?} accepted in {state:?}");
    }
}

#[test]
fn failures_are_terminal_and_power_off_always_works() {
    let failure = BootFailure::TftpFailed { file: "x/start.elf".into(), reason: "timeout".into() };
    let states = [
        PiState::DhcpDiscovering { attempt: 2 },
        PiState::Tftp { file: "x/start.elf".into() },
        PiState::Nfs,
        PiState::Running,
    ];
    for s in states {
        let failed = next(&s, &Event::Failed(failure.clone())).expect("failure accepted");
        assert_eq!(failed, PiState::Failed(failure.clone()));
        assert!(failed.is_terminal());
        assert_eq!(next(&failed, &Event::PowerOff), Ok(PiState::Off));
    }
}

#[test]
fn states_print_as_short_labels() {
    assert_eq!(PiState::DhcpDiscovering { attempt: 2 }.to_string(), "dhcp 2/5");
    assert_eq!(PiState::Tftp { file: "abc/start.elf".into() }.to_string(), "tftp abc/start.elf");
    let failed = PiState::Failed(BootFailure::WrongRoot {
        path: "/r".into(),
        problem: "no etc/hostname".into(),
    });
    assert_eq!(failed.to_string(), "failed: wrong root /r: no etc/hostname");
    assert_eq!(PiState::Running.to_string(), "running");
}
