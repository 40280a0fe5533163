//! Newtype identifiers for inventory objects.
//!
//! Every ID is a short string `<prefix>-<time><random>`: the time part makes IDs sort in
//! creation order (the list endpoints page by ID), the prefix makes a pasted ID
//! self-describing, and the type keeps a `JobId` from being passed where a `PiId` belongs.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(transparent)]
        #[schema(value_type = String, example = json!(concat!($prefix, "-0192f3a1b2c3d4e5f6")))]
        pub struct $name(pub String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// A fresh, time-ordered ID.
            pub fn generate() -> Self {
                $name(generate($prefix))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                $name(s)
            }
        }
    };
}

id_type!(/// A Raspberry Pi (the board, which may move between slots).
    PiId, "pi");
id_type!(/// A switch port position on a shelf, with its VLAN and addresses.
    SlotId, "slot");
id_type!(/// A shelf: a switch and a range of its ports.
    ShelfId, "shelf");
id_type!(/// A managed PoE switch.
    SwitchId, "sw");
id_type!(/// A job (power, reboot, reimage, rack).
    JobId, "job");
id_type!(/// An API token (the ID, never the secret).
    TokenId, "tok");

fn generate(prefix: &str) -> String {
    let millis = crate::time::now_millis() as u64;
    let random: u32 = rand::random::<u32>() & 0xff_ffff;
    format!("{prefix}-{millis:012x}{random:06x}")
}

/// A customer of the hosting platform, as named by the control panel.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, example = "cust-4711")]
pub struct CustomerId(pub String);

impl fmt::Display for CustomerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_their_prefix_and_sort_by_creation() {
        let a = JobId::generate();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = JobId::generate();
        assert!(a.as_str().starts_with("job-"));
        assert!(a < b, "{a} should sort before {b}");
    }
}
