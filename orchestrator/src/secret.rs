//! Switch credentials as the API accepts them and the database stores them. They must
//! never reach a log line, an error message or an API response: every secret is a
//! [`Secret`] (from `bramble-switch`), which prints as `***` and is only readable through
//! `expose`, and the stored form is written only here.

use serde::{Deserialize, Serialize};

pub use bramble_switch::Secret;

/// How Bramble authenticates to a switch's SNMP agent.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(tag = "version", rename_all = "snake_case", deny_unknown_fields)]
pub enum SnmpCredentials {
    /// SNMPv2c: a community string, sent in clear text; for labs only.
    V2c {
        #[schema(value_type = String)]
        community: Secret,
    },
    /// SNMPv3 USM with authentication and privacy (SHA + AES).
    V3 {
        user: String,
        #[schema(value_type = String)]
        auth_pass: Secret,
        #[schema(value_type = String)]
        priv_pass: Secret,
    },
}

impl SnmpCredentials {
    pub fn version(&self) -> &'static str {
        match self {
            SnmpCredentials::V2c { .. } => "v2c",
            SnmpCredentials::V3 { .. } => "v3",
        }
    }

    pub(crate) fn to_stored(&self) -> String {
        let stored = match self {
            SnmpCredentials::V2c { community } => Stored::V2c { community: community.expose() },
            SnmpCredentials::V3 { user, auth_pass, priv_pass } => {
                Stored::V3 { user, auth_pass: auth_pass.expose(), priv_pass: priv_pass.expose() }
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
            SnmpCredentials::V3 { user, auth_pass, priv_pass } => bramble_switch::Credentials::V3 {
                user: user.clone(),
                auth: bramble_switch::V3Auth::Sha256,
                auth_pass: auth_pass.clone(),
                priv_pass: priv_pass.clone(),
            },
        }
    }
}

/// The stored (database) form: the only place secrets are serialized.
#[derive(Serialize)]
#[serde(tag = "version", rename_all = "snake_case")]
enum Stored<'a> {
    V2c { community: &'a str },
    V3 { user: &'a str, auth_pass: &'a str, priv_pass: &'a str },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_print() {
        let c = SnmpCredentials::V3 {
            user: "ops".into(),
            auth_pass: Secret::new("hunter22"),
            priv_pass: Secret::new("s3cr3t!!"),
        };
        let shown = format!("{c:?} {}", Secret::new("x"));
        assert!(!shown.contains("hunter22") && !shown.contains("s3cr3t!!"), "{shown}");
        assert_eq!(SnmpCredentials::from_stored(&c.to_stored()), Some(c));
    }
}
