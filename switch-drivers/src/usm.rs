//! The SNMPv3 USM protocols a switch session can use, named as net-snmp's tools name
//! them (`snmpget -a` for authentication, `-x` for privacy), so an operator can copy
//! the switch's settings across. Names parse case-insensitively; `SHA-1`/`SHA1` are
//! accepted for `SHA` and `AES-128`/`AES128` for `AES`.
//!
//! AES-192 and AES-256 are net-snmp's (Blumenthal draft) key extension; the
//! Reeder/Cisco variant is not offered. DES is not offered either: it is broken, and
//! async-snmp sends it only with a durable salt counter Bramble does not keep.

use async_snmp::{AuthProtocol, PrivProtocol};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// USM authentication protocol (HMAC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum V3Auth {
    /// HMAC-MD5-96 (RFC 3414), usmHMACMD5AuthProtocol.
    Md5,
    /// HMAC-SHA-96 (RFC 3414), usmHMACSHAAuthProtocol: the common one on PoE switches.
    Sha1,
    /// HMAC-SHA-2 (RFC 7860).
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

/// USM privacy protocol (encryption of the scoped PDU).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum V3Priv {
    /// AES-128-CFB (RFC 3826).
    Aes128,
    Aes192,
    Aes256,
}

impl V3Auth {
    pub const ALL: [V3Auth; 6] =
        [V3Auth::Md5, V3Auth::Sha1, V3Auth::Sha224, V3Auth::Sha256, V3Auth::Sha384, V3Auth::Sha512];

    /// net-snmp's name (`snmpget -a`).
    pub fn name(self) -> &'static str {
        match self {
            V3Auth::Md5 => "MD5",
            V3Auth::Sha1 => "SHA",
            V3Auth::Sha224 => "SHA-224",
            V3Auth::Sha256 => "SHA-256",
            V3Auth::Sha384 => "SHA-384",
            V3Auth::Sha512 => "SHA-512",
        }
    }

    pub(crate) fn protocol(self) -> AuthProtocol {
        match self {
            V3Auth::Md5 => AuthProtocol::Md5,
            V3Auth::Sha1 => AuthProtocol::Sha1,
            V3Auth::Sha224 => AuthProtocol::Sha224,
            V3Auth::Sha256 => AuthProtocol::Sha256,
            V3Auth::Sha384 => AuthProtocol::Sha384,
            V3Auth::Sha512 => AuthProtocol::Sha512,
        }
    }
}

impl V3Priv {
    pub const ALL: [V3Priv; 3] = [V3Priv::Aes128, V3Priv::Aes192, V3Priv::Aes256];

    /// net-snmp's name (`snmpget -x`).
    pub fn name(self) -> &'static str {
        match self {
            V3Priv::Aes128 => "AES",
            V3Priv::Aes192 => "AES-192",
            V3Priv::Aes256 => "AES-256",
        }
    }

    pub(crate) fn protocol(self) -> PrivProtocol {
        match self {
            V3Priv::Aes128 => PrivProtocol::Aes128,
            V3Priv::Aes192 => PrivProtocol::Aes192Blumenthal,
            V3Priv::Aes256 => PrivProtocol::Aes256Blumenthal,
        }
    }
}

/// A protocol name that is not one of the supported ones; the message lists them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} protocol {given:?}: expected one of {expected}")]
pub struct UnknownProtocol {
    kind: &'static str,
    given: String,
    expected: String,
}

fn parse<T: Copy>(
    kind: &'static str,
    s: &str,
    all: &[T],
    name: fn(T) -> &'static str,
    aliases: &[(&str, T)],
) -> Result<T, UnknownProtocol> {
    let found = all.iter().copied().find(|p| name(*p).eq_ignore_ascii_case(s));
    let alias = || aliases.iter().find(|(a, _)| a.eq_ignore_ascii_case(s)).map(|(_, p)| *p);
    found.or_else(alias).ok_or_else(|| UnknownProtocol {
        kind,
        given: s.to_string(),
        expected: all.iter().map(|p| name(*p)).collect::<Vec<_>>().join(", "),
    })
}

impl FromStr for V3Auth {
    type Err = UnknownProtocol;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let aliases = [("SHA-1", V3Auth::Sha1), ("SHA1", V3Auth::Sha1)];
        parse("SNMPv3 authentication", s, &V3Auth::ALL, V3Auth::name, &aliases)
    }
}

impl FromStr for V3Priv {
    type Err = UnknownProtocol;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let aliases = [("AES-128", V3Priv::Aes128), ("AES128", V3Priv::Aes128)];
        parse("SNMPv3 privacy", s, &V3Priv::ALL, V3Priv::name, &aliases)
    }
}

macro_rules! named {
    ($t:ty) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.name())
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
named!(V3Auth);
named!(V3Priv);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_list_the_choices() {
        for p in V3Auth::ALL {
            assert_eq!(p.name().to_lowercase().parse::<V3Auth>(), Ok(p));
        }
        for p in V3Priv::ALL {
            assert_eq!(p.name().parse::<V3Priv>(), Ok(p));
        }
        assert_eq!("sha1".parse::<V3Auth>(), Ok(V3Auth::Sha1));
        assert_eq!("AES-128".parse::<V3Priv>(), Ok(V3Priv::Aes128));
        let err = "SHA-3".parse::<V3Auth>().unwrap_err().to_string();
        assert!(err.contains("\"SHA-3\"") && err.contains("MD5, SHA, SHA-224"), "{err}");
        let json = serde_json::to_string(&V3Priv::Aes256).unwrap();
        assert_eq!(json, "\"AES-256\"");
        assert_eq!(serde_json::from_str::<V3Priv>(&json).unwrap(), V3Priv::Aes256);
    }
}
