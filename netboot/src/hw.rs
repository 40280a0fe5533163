//! Hardware identifiers shared by the DHCP and TFTP servers (and the orchestrator): MAC
//! addresses and Pi serials.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

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
/// digits and uses as the TFTP directory name. The product's one serial type (the API,
/// the database, DHCP and TFTP all carry this); its serde form is the canonical text,
/// `"5eed0001"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PiSerial(pub u32);

impl PiSerial {
    /// Parses the canonical form only, exactly what `Display` prints: 8 lowercase hex
    /// digits. The API, the database and JSON use this form. [`FromStr`] is laxer, for
    /// what firmware and `/proc/cpuinfo` print.
    pub fn parse_canonical(s: &str) -> Result<PiSerial, BadSerial> {
        let lower_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
        if s.len() != 8 || !s.bytes().all(lower_hex) {
            return Err(BadSerial { input: s.to_string(), want: CANONICAL });
        }
        u32::from_str_radix(s, 16)
            .map(PiSerial)
            .map_err(|_| BadSerial { input: s.to_string(), want: CANONICAL })
    }
}

impl fmt::Display for PiSerial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

/// What [`PiSerial::parse_canonical`] accepts.
const CANONICAL: &str = "8 lowercase hex digits";
/// What [`PiSerial`]'s `FromStr` accepts.
const LAX: &str = "8 hex digits";

/// A string that is not a Pi serial in the form asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` is not a Pi serial (want {want})")]
pub struct BadSerial {
    pub input: String,
    /// The form that was wanted, in words.
    pub want: &'static str,
}

impl FromStr for PiSerial {
    type Err = BadSerial;
    /// Any case, and the 16-digit zero-padded form `/proc/cpuinfo` prints.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadSerial { input: s.to_string(), want: LAX };
        let trimmed = s.trim_start_matches('0');
        let hex = s.bytes().all(|b| b.is_ascii_hexdigit());
        if s.is_empty() || s.len() > 16 || trimmed.len() > 8 || !hex {
            return Err(bad());
        }
        if trimmed.is_empty() {
            return Ok(PiSerial(0));
        }
        u32::from_str_radix(trimmed, 16).map(PiSerial).map_err(|_| bad())
    }
}

impl Serialize for PiSerial {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PiSerial {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        PiSerial::parse_canonical(&text).map_err(serde::de::Error::custom)
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

    #[test]
    fn serials_serialize_as_their_canonical_text_and_back() {
        let serial = PiSerial(0x5eed0001);
        let json = serde_json::to_string(&serde_json::json!({ "serial": serial })).expect("json");
        assert_eq!(json, r#"{"serial":"5eed0001"}"#);
        let back: PiSerial = serde_json::from_str(r#""5eed0001""#).expect("canonical");
        assert_eq!(back, serial);
        assert_eq!(serde_json::to_string(&PiSerial(0xab)).expect("json"), r#""000000ab""#);
    }

    #[test]
    fn serde_and_canonical_parse_refuse_anything_but_8_lowercase_hex_digits() {
        let cases = [
            r#""5EED0001""#,         // uppercase
            r#""5eed000g""#,         // not hex
            r#""5eed001""#,          // short
            r#""5eed00011""#,        // long
            r#""000000005eed0001""#, // the cpuinfo form is for FromStr only
            r#""""#,
            "1592459265", // the number, not its text
        ];
        for json in cases {
            assert!(serde_json::from_str::<PiSerial>(json).is_err(), "{json}");
        }
        let err = PiSerial::parse_canonical("5EED0001").expect_err("uppercase");
        assert_eq!(err.to_string(), "`5EED0001` is not a Pi serial (want 8 lowercase hex digits)");
        assert_eq!("5EED0001".parse::<PiSerial>(), Ok(PiSerial(0x5eed0001)));
    }
}
