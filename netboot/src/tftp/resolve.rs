//! What the TFTP server asks the inventory: which slot (if any) owns a client address,
//! and what that slot boots. The orchestrator implements [`BootResolver`].

use std::net::IpAddr;
use std::path::PathBuf;

use async_trait::async_trait;

use crate::bootfiles::BootParams;

/// Maps a client's source address to the slot it belongs to. Called once per read
/// request; implementations should answer from memory (a cache) and must not block.
#[async_trait]
pub trait BootResolver: Send + Sync + 'static {
    /// The slot whose Pi owns `client`, or `None` to refuse the client.
    async fn resolve(&self, client: IpAddr) -> Option<SlotBoot>;
}

/// Everything needed to serve one Pi its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotBoot {
    /// The Pi's serial, `None` until the inventory learns it (a Pi 3B's ROM does not send
    /// it in DHCP); any `<serial>/` prefix is then taken as this slot's own.
    pub serial: Option<PiSerial>,
    pub mac: MacAddr,
    /// The `/boot` directory of the Pi's own root filesystem on the controller's disk.
    pub boot_dir: PathBuf,
    /// Inputs to the generated `cmdline.txt` and `config.txt`.
    pub params: BootParams,
}

/// True for 8 hex digits in either case: the shape of a serial directory name.
pub(crate) fn looks_like_serial(s: &str) -> bool {
    s.len() == 8 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

pub use crate::hw::{MacAddr, PiSerial};

/// True for a dashed MAC directory name (`aa-bb-cc-dd-ee-ff`).
pub(crate) fn looks_like_mac_dir(s: &str) -> bool {
    s.len() == 17 && s.contains('-') && s.parse::<MacAddr>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ids() {
        assert!(looks_like_serial("DEADBEEF") && !looks_like_serial("deadbee"));
        assert!(!looks_like_serial("deadbeeg") && !looks_like_serial("+eadbeef"));
        assert_eq!("DEADBEEF".parse::<PiSerial>().map(|s| s.to_string()), Ok("deadbeef".into()));
        assert!("deadbeeg".parse::<PiSerial>().is_err() && "+eadbeef".parse::<PiSerial>().is_err());
        let mac: MacAddr = "B8:27:EB:01:02:03".parse().expect("mac");
        assert_eq!(mac.to_string(), "b8:27:eb:01:02:03");
        assert_eq!(mac.dashed(), "b8-27-eb-01-02-03");
        assert_eq!("b8-27-eb-01-02-03".parse::<MacAddr>(), Ok(mac));
        assert!("b8:27:eb:01:02".parse::<MacAddr>().is_err());
        assert!("b8:27:eb:01:02:03:04".parse::<MacAddr>().is_err());
        assert!(looks_like_mac_dir("b8-27-eb-01-02-03"));
        assert!(!looks_like_mac_dir("b8:27:eb:01:02:03"));
    }
}
