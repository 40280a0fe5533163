//! Small value types of the DHCP server: MAC addresses, Pi serials, slot keys, models.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

pub use crate::hw::{BadMac, MacAddr};

/// A Raspberry Pi serial number: the 32 bits the firmware prints as 8 lowercase hex
/// digits and uses as the TFTP directory name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct PiSerial(pub u32);

impl fmt::Display for PiSerial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

/// A string that is not 8 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` is not a Pi serial (want 8 hex digits)")]
pub struct BadSerial {
    pub input: String,
}

impl FromStr for PiSerial {
    type Err = BadSerial;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // /proc/cpuinfo prints 16 digits with leading zeros; accept those too.
        let trimmed = s.trim_start_matches('0');
        if s.is_empty() || s.len() > 16 || trimmed.len() > 8 {
            return Err(BadSerial { input: s.to_string() });
        }
        if trimmed.is_empty() {
            return Ok(PiSerial(0));
        }
        u32::from_str_radix(trimmed, 16)
            .map(PiSerial)
            .map_err(|_| BadSerial { input: s.to_string() })
    }
}

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
