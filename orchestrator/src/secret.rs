//! Switch credentials as the API accepts them and the database stores them. They must
//! never reach a log line, an error message or an API response: every secret is a
//! [`Secret`] (from `bramble-switch`), which prints as `***` and is only readable through
//! `expose`, and the stored form is written only here.

use serde::{Deserialize, Deserializer, Serialize};
use std::str::FromStr;

pub use bramble_switch::{Secret, V3Auth, V3Priv};

/// How Bramble authenticates to a switch's SNMP agent.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(tag = "version", rename_all = "snake_case", deny_unknown_fields)]
pub enum SnmpCredentials {
    /// SNMPv2c: a community string, sent in clear text; for labs only.
    V2c {
        #[schema(value_type = String)]
        community: Secret,
    },
    /// SNMPv3 USM with authentication and privacy (authPriv).
    V3 {
        user: String,
        /// The authentication protocol, as net-snmp's `snmpget -a` names it: `MD5`,
        /// `SHA` (SHA-1; `SHA-1` is accepted too), `SHA-224`, `SHA-256`, `SHA-384` or
        /// `SHA-512`, in any case. Default `SHA-256`, which is also what a switch
        /// stored before this field existed uses.
        #[serde(default = "default_auth", deserialize_with = "auth_protocol")]
        #[schema(value_type = String, example = "SHA")]
        auth_protocol: V3Auth,
        #[schema(value_type = String)]
        auth_pass: Secret,
        /// The privacy protocol, as `snmpget -x` names it: `AES` (AES-128),
        /// `AES-192` or `AES-256` (not DES). Default `AES`, also for switches stored before.
        #[serde(default = "default_priv", deserialize_with = "priv_protocol")]
        #[schema(value_type = String, example = "AES")]
        priv_protocol: V3Priv,
        #[schema(value_type = String)]
        priv_pass: Secret,
    },
}

/// What a v3 switch without `auth_protocol` means: the only protocol Bramble spoke
/// before the field existed, so stored rows keep working unchanged.
fn default_auth() -> V3Auth {
    V3Auth::Sha256
}

/// Likewise for `priv_protocol`.
fn default_priv() -> V3Priv {
    V3Priv::Aes128
}

fn auth_protocol<'de, D: Deserializer<'de>>(d: D) -> Result<V3Auth, D::Error> {
    named(d, "auth_protocol")
}

fn priv_protocol<'de, D: Deserializer<'de>>(d: D) -> Result<V3Priv, D::Error> {
    named(d, "priv_protocol")
}

/// Parses a protocol name. The error starts with `field: ` because serde gives a field
/// of an internally tagged enum no path of its own (only `credentials`); the API's body
/// extractor joins the two (`credentials.auth_protocol`).
fn named<'de, D: Deserializer<'de>, T: FromStr<Err: std::fmt::Display>>(
    d: D,
    field: &str,
) -> Result<T, D::Error> {
    let s = String::deserialize(d)?;
    s.parse().map_err(|e| serde::de::Error::custom(format!("{field}: {e}")))
}

impl SnmpCredentials {
    pub fn version(&self) -> &'static str {
        match self {
            SnmpCredentials::V2c { .. } => "v2c",
            SnmpCredentials::V3 { .. } => "v3",
        }
    }

    /// SNMPv3: `AUTH/PRIV` protocol names (`SHA/AES`), which are not secret.
    pub fn protocols(&self) -> Option<String> {
        match self {
            SnmpCredentials::V2c { .. } => None,
            SnmpCredentials::V3 { auth_protocol, priv_protocol, .. } => {
                Some(format!("{auth_protocol}/{priv_protocol}"))
            }
        }
    }

    pub(crate) fn to_stored(&self) -> String {
        let stored = match self {
            SnmpCredentials::V2c { community } => Stored::V2c { community: community.expose() },
            SnmpCredentials::V3 { user, auth_protocol, auth_pass, priv_protocol, priv_pass } => {
                Stored::V3 {
                    user,
                    auth_protocol: *auth_protocol,
                    auth_pass: auth_pass.expose(),
                    priv_protocol: *priv_protocol,
                    priv_pass: priv_pass.expose(),
                }
            }
        };
        serde_json::to_string(&stored).unwrap_or_default()
    }

    pub(crate) fn from_stored(s: &str) -> Option<Self> {
        serde_json::from_str(s).ok()
    }

    /// The session settings the switch driver needs.
    pub fn to_driver(&self) -> bramble_switch::Credentials {
        match self {
            SnmpCredentials::V2c { community } => {
                bramble_switch::Credentials::V2c { community: community.clone() }
            }
            SnmpCredentials::V3 { user, auth_protocol, auth_pass, priv_protocol, priv_pass } => {
                bramble_switch::Credentials::V3 {
                    user: user.clone(),
                    auth: *auth_protocol,
                    auth_pass: auth_pass.clone(),
                    privacy: *priv_protocol,
                    priv_pass: priv_pass.clone(),
                }
            }
        }
    }
}

/// The stored (database) form: the only place secrets are serialized.
#[derive(Serialize)]
#[serde(tag = "version", rename_all = "snake_case")]
enum Stored<'a> {
    V2c {
        community: &'a str,
    },
    V3 {
        user: &'a str,
        auth_protocol: V3Auth,
        auth_pass: &'a str,
        priv_protocol: V3Priv,
        priv_pass: &'a str,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v3(auth_protocol: V3Auth, auth_pass: &str, priv_pass: &str) -> SnmpCredentials {
        SnmpCredentials::V3 {
            user: "bramble".into(),
            auth_protocol,
            auth_pass: Secret::new(auth_pass),
            priv_protocol: V3Priv::Aes128,
            priv_pass: Secret::new(priv_pass),
        }
    }

    #[test]
    fn secrets_do_not_print() {
        let c = v3(V3Auth::Sha1, "hunter22", "s3cr3t!!");
        let shown = format!("{c:?} {}", Secret::new("x"));
        assert!(!shown.contains("hunter22") && !shown.contains("s3cr3t!!"), "{shown}");
        assert!(shown.contains("Sha1"), "the protocol is not secret: {shown}");
        assert_eq!(SnmpCredentials::from_stored(&c.to_stored()), Some(c));
    }

    /// A row stored before the protocol fields existed is SHA-256 with AES-128, as the
    /// driver was then; the stored form now names both protocols.
    #[test]
    fn old_rows_mean_sha256_and_new_rows_name_the_protocols() {
        let old =
            r#"{"version":"v3","user":"bramble","auth_pass":"authpass1","priv_pass":"privpass1"}"#;
        let c = SnmpCredentials::from_stored(old).expect("an old row loads");
        assert_eq!(c, v3(V3Auth::Sha256, "authpass1", "privpass1"));
        let sha1 = v3(V3Auth::Sha1, "authpass1", "privpass1").to_stored();
        assert!(sha1.contains(r#""auth_protocol":"SHA""#), "{sha1}");
        assert!(sha1.contains(r#""priv_protocol":"AES""#), "{sha1}");
        let bad = r#"{"version":"v3","user":"u","auth_protocol":"SHA-3","auth_pass":"a","priv_pass":"p"}"#;
        let err = serde_json::from_str::<SnmpCredentials>(bad).expect_err("unknown protocol");
        assert!(err.to_string().contains("MD5, SHA, SHA-224"), "{err}");
    }
}
