//! Fuzzes the DHCP server's packet entry point (`Engine::handle`): any bytes, on a
//! storage slot and on a flat network, must give an outcome and never a panic.
#![no_main]

use std::net::Ipv4Addr;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use bramble_netboot::dhcp::{
    Engine, FlatNetwork, Reservation, ReservationKey, Role, ServerOptions, SlotKey, StorageIface,
};
use libfuzzer_sys::fuzz_target;

fn engine() -> Engine {
    let mut e = Engine::new(ServerOptions::default());
    let c = Ipv4Addr::new(10, 101, 1, 1);
    if let Ok(s) = StorageIface::new("st", c, c, SlotKey("slot".into())) {
        e.set_interface(Role::Storage(s));
    }
    e.set_interface(Role::Flat(FlatNetwork {
        ifname: "flat".into(),
        server_addr: Ipv4Addr::new(10, 101, 200, 1),
        network: Ipv4Addr::new(10, 101, 200, 0),
        prefix: 24,
        // A small pool so the fuzzer also reaches exhaustion, reuse and declines.
        pool: Some((
            Ipv4Addr::new(10, 101, 200, 100),
            Ipv4Addr::new(10, 101, 200, 103),
        )),
        router: Some(Ipv4Addr::new(10, 101, 200, 1)),
        dns: vec![Ipv4Addr::new(10, 101, 200, 1)],
        tftp_server: Some(Ipv4Addr::new(10, 101, 200, 1)),
        reservations: vec![Reservation {
            key: ReservationKey::Serial(bramble_netboot::dhcp::PiSerial(0x1234)),
            addr: Ipv4Addr::new(10, 101, 200, 9),
        }],
        discovery: true,
        lease_time: Duration::from_secs(60),
    }));
    e
}

// One engine across inputs, so state built by earlier packets meets later ones.
static ENGINE: Mutex<Option<Engine>> = Mutex::new(None);

fuzz_target!(|data: &[u8]| {
    let mut guard = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    let e = guard.get_or_insert_with(engine);
    let now = SystemTime::UNIX_EPOCH
        + Duration::from_secs(1_800_000_000 + u64::from(data.first().copied().unwrap_or(0)));
    for ifname in ["st", "flat"] {
        let out = e.handle(ifname, data, now);
        if let bramble_netboot::dhcp::Action::CommitThenReply { lease, .. } = &out.action {
            e.confirm(lease);
        }
    }
});
