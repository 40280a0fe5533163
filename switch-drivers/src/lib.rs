//! PoE switch drivers: powering Pi ports and wiring their VLANs over SNMP, behind the
//! [`SwitchDriver`] trait, plus a virtual PoE switch ([`sim`]) that speaks real SNMP.
//!
//! Entry points for the orchestrator: [`connect`] (GETs sysObjectID and returns a boxed
//! driver), then [`SwitchDriver`] methods; [`ShelfPlan::desired`] plus
//! [`SwitchDriver::apply`] for whole shelves; [`model::drift`] for reconcilers.
//!
//! SNMP crate: `async-snmp` (0.18) rather than `snmp2` (0.5). async-snmp has v1/v2c/v3
//! USM (SHA-1/SHA-2 auth, AES privacy) with redacted credentials in Debug, a `&self`
//! client usable from many tasks, configurable per-request timeout and bounded retries,
//! GETBULK walks, multi-varbind SET that refuses to split a SET silently, structured
//! errors carrying error-status and the failing OID, and an agent with RFC 3416
//! test/commit/undo SET phases, USM and VACM, which the virtual switch is built on.
//! snmp2 has a client only (sync and async), a `&mut` session with one request in
//! flight, borrowed response PDUs, and no agent, so the simulator would have had to
//! re-implement USM by hand.

pub mod budget;
pub mod cisco;
pub mod detect;
pub mod driver;
pub mod error;
pub mod model;
pub mod oids;
pub mod plan;
pub mod portlist;
pub mod secret;
pub mod session;
pub mod sim;
pub mod standard;
pub mod stp;
pub mod usm;

pub use budget::PoeBudget;
pub use cisco::CiscoDriver;
pub use detect::connect;
pub use driver::{ApplyReport, MacEntry, SwitchDriver, SwitchIdentity};
pub use error::{SimError, SwitchError};
pub use model::{
    AccessPort, DesiredConfig, Drift, PortNo, PortPower, ShelfPlan, SwitchSnapshot, VlanId,
};
pub use secret::Secret;
pub use session::{Credentials, Session, SessionConfig};
pub use standard::StandardDriver;
pub use usm::{V3Auth, V3Priv};
