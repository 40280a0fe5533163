//! Hardware identifiers shared by the DHCP and TFTP servers (and the orchestrator): MAC
//! addresses and Pi serials.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// An Ethernet hardware address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// The first three bytes (the vendor's OUI).
    pub fn oui(&self) -> [u8; 3] {
        [self.0[0], self.0[1], self.0[2]]
    }

    /// The Pi 4 `TFTP_PREFIX=2` directory name: `aa-bb-cc-dd-ee-ff`.
    pub fn dashed(&self) -> String {
        let parts: Vec<String> = self.0.iter().map(|b| format!("{b:02x}")).collect();
        parts.join("-")
    }

    /// All-zero, broadcast and multicast addresses cannot be a client's.
    pub fn is_valid_client(&self) -> bool {
        self.0 != [0; 6] && self.0[0] & 0x01 == 0
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3], b[4], b[5])
    }
}

/// A string that is not `aa:bb:cc:dd:ee:ff` (or `aa-bb-cc-dd-ee-ff`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` is not a MAC address (want aa:bb:cc:dd:ee:ff)")]
pub struct BadMac {
    pub input: String,
}

impl FromStr for MacAddr {
    type Err = BadMac;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadMac { input: s.to_string() };
        let mut out = [0u8; 6];
        let sep = if s.contains(':') { ':' } else { '-' };
        let mut parts = s.split(sep);
        for byte in &mut out {
            let part = parts.next().ok_or_else(bad)?;
            if part.len() != 2 {
                return Err(bad());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(MacAddr(out))
    }
}

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
        let hex = s.bytes().all(|b| b.is_ascii_hexdigit());
        if s.is_empty() || s.len() > 16 || trimmed.len() > 8 || !hex {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_parse_with_either_separator_and_print_both_ways() {
        let mac: MacAddr = "B8:27:EB:01:02:03".parse().expect("colons");
        assert_eq!(mac, "b8-27-eb-01-02-03".parse().expect("dashes"));
        assert_eq!(mac.to_string(), "b8:27:eb:01:02:03");
        assert_eq!(mac.dashed(), "b8-27-eb-01-02-03");
        assert_eq!(mac.oui(), [0xb8, 0x27, 0xeb]);
        for bad in
            ["b8:27:eb:01:02", "b8:27:eb:01:02:03:04", "b8:27:eb:01:02:0g", "b8:27-eb:01:02:03", ""]
        {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad:?}");
        }
    }
}
