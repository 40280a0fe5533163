//! Small value types of the DHCP server: MAC addresses, Pi serials, slot keys, models.

use std::fmt;

use serde::Serialize;

pub use crate::hw::{BadMac, BadSerial, MacAddr, PiSerial};

/// The orchestrator's opaque name for a storage slot (a switch port and its VLAN).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct SlotKey(pub String);

impl fmt::Display for SlotKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What kind of Pi a client is, as far as its MAC and option 97 tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PiModel {
    /// A b8:27:eb MAC: Pi 3B+ or older (the boot ROM cannot tell which more exactly
    /// unless option 97 does).
    Pi3OrOlder,
    /// A 3B ROM: option 97 with the constant GUID of 0x44 bytes.
    Pi3B,
    /// A 3B+ ROM: option 97 carrying the serial.
    Pi3BPlus,
    Pi4,
    Pi5,
    /// A Raspberry Pi Ltd OUI newer than b8:27:eb, model not told by option 97.
    NewerPi,
}

/// The key of all client state: the interface the packet came in on and the client's
/// MAC. Never the xid: every Pi 3 ROM uses the same one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ClientKey {
    pub interface: String,
    pub mac: MacAddr,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_round_trips_and_rejects_garbage() {
        let m: MacAddr = "b8:27:eb:12:34:56".parse().unwrap();
        assert_eq!(m.to_string(), "b8:27:eb:12:34:56");
        for bad in
            ["", "b8:27:eb:12:34", "b8:27:eb:12:34:56:78", "zz:27:eb:12:34:56", "b8:27:eb:123:4:56"]
        {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn serial_parses_short_and_cpuinfo_forms() {
        assert_eq!("1a2b3c4d".parse::<PiSerial>().unwrap(), PiSerial(0x1a2b3c4d));
        assert_eq!("000000001a2b3c4d".parse::<PiSerial>().unwrap().to_string(), "1a2b3c4d");
        assert!("11a2b3c4d".parse::<PiSerial>().is_err());
        assert!("xyz".parse::<PiSerial>().is_err());
    }
}
