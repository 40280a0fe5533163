//! What a sighting may do to the inventory: the pure rule ([`decide`]) behind DHCP and
//! TFTP sightings. [`super::identity`] reads what it needs, asks `decide` and writes the
//! result.
//!
//! **Identity belongs to the slot, and a sighting is untrusted.** A deployed Pi's
//! customer has root on it and can send any DHCP or TFTP packet on its storage link, so:
//! - a sighting only ever concerns the Pi of the slot it came in on (a flat-network
//!   sighting: the slotless Pi with that MAC or serial), never another slot's Pi;
//! - a MAC or serial another Pi holds is never taken: the sighting is flagged;
//! - on a Pi that is owned or has run a customer's root ([`Trust::Guarded`]), nothing is
//!   rewritten or even filled in: what was seen is flagged for an operator;
//! - a different board is taken as the Pi's new hardware only while the Pi is in
//!   maintenance ([`Trust::Maintenance`]), or when an operator accepts a flagged
//!   sighting ([`merged`] gives the identity either way).

use bramble_netboot::dhcp::PiModel;
use bramble_netboot::hw::PiSerial;

use crate::ids::{PiId, SlotId};
use crate::lifecycle::PiState;

/// The model name of a Pi the inventory knows no model for.
pub const UNKNOWN_MODEL: &str = "unknown";

/// The inventory model name for what DHCP could tell.
pub fn model_name(model: Option<PiModel>) -> Option<&'static str> {
    match model? {
        PiModel::Pi3B => Some("3b"),
        PiModel::Pi3BPlus => Some("3b+"),
        PiModel::Pi4 => Some("4b"),
        PiModel::Pi5 => Some("5"),
        PiModel::Pi3OrOlder | PiModel::NewerPi => None,
    }
}

/// A board's identity as the inventory records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub mac: Option<String>,
    pub serial: Option<PiSerial>,
    pub model: String,
}

/// How far sightings are believed on a Pi.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// Never owned and never ran a customer's root (`new`, or `ready` without an image):
    /// what it lacks may be filled in; a different identity is flagged.
    Open,
    /// Owned, or running (or having run) a customer's root, or retired: nothing changes
    /// without an operator; anything new is flagged.
    Guarded,
    /// Marked for maintenance by an operator: a different board is its replacement.
    Maintenance,
}

/// The trust a Pi's record earns.
pub fn trust(state: PiState, owned: bool, has_root: bool, maintenance: bool) -> Trust {
    match state {
        PiState::Retired => Trust::Guarded,
        _ if maintenance || state == PiState::Maintenance => Trust::Maintenance,
        PiState::New | PiState::Ready if !owned && !has_root => Trust::Open,
        _ => Trust::Guarded,
    }
}

/// What the inventory holds for the Pi a sighting is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    pub id: PiId,
    pub identity: Identity,
    pub slot: Option<SlotId>,
    pub trust: Trust,
}

/// Which server saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A DHCP packet: MAC, model, and the serial where the model sends it.
    Dhcp,
    /// A TFTP path naming a serial directory (the Pi 3B's only way to show its serial).
    Tftp,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Dhcp => "dhcp",
            Source::Tftp => "tftp",
        }
    }
}

/// What the wire showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub source: Source,
    pub mac: Option<String>,
    pub serial: Option<PiSerial>,
    pub model: Option<&'static str>,
}

/// Which identifier a packet claimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    Mac,
    Serial,
}

/// Another Pi that already holds the MAC or serial a packet showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub id: PiId,
    pub slot: Option<SlotId>,
    pub trust: Trust,
}

/// The Pis (other than the one concerned) holding the seen MAC and serial.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claims {
    pub mac: Option<Holder>,
    pub serial: Option<Holder>,
}

impl Claims {
    /// The first claim on a Pi other than `except`.
    fn taken(&self, except: Option<&PiId>) -> Option<(Claim, &Holder)> {
        let other = |h: &&Holder| Some(&h.id) != except;
        (self.mac.as_ref().filter(other).map(|h| (Claim::Mac, h)))
            .or_else(|| self.serial.as_ref().filter(other).map(|h| (Claim::Serial, h)))
    }
}

/// Why a sighting was flagged for an operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlagReason {
    /// A different board (or a packet claiming to be one).
    Differs,
    /// Something the record lacks, on a Pi whose record only an operator changes.
    Adds,
    /// The MAC or serial of another Pi.
    Taken { claim: Claim, other: PiId },
}

impl FlagReason {
    /// The stored and shown name.
    pub fn name(&self) -> &'static str {
        match self {
            FlagReason::Differs => "differs",
            FlagReason::Adds => "adds",
            FlagReason::Taken { claim: Claim::Mac, .. } => "mac_taken",
            FlagReason::Taken { claim: Claim::Serial, .. } => "serial_taken",
        }
    }

    pub fn other(&self) -> Option<&PiId> {
        match self {
            FlagReason::Taken { other, .. } => Some(other),
            _ => None,
        }
    }
}

/// What to do with a sighting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Nothing,
    /// No Pi is known: record a `new` one.
    Create,
    /// The Pi lacks some identity the wire showed: add it.
    Fill {
        pi: PiId,
        identity: Identity,
    },
    /// A slotless `Open` Pi (registered by an operator) seen in an empty slot: put it
    /// there, filling in what its record lacks.
    Adopt {
        pi: PiId,
    },
    /// A different board in a Pi's place during maintenance: it becomes the Pi's hardware.
    Replace {
        pi: PiId,
        identity: Identity,
    },
    /// Record what was seen on this Pi for an operator; change nothing.
    Flag {
        pi: PiId,
        reason: FlagReason,
    },
    /// Nothing here to flag (an empty slot, or a flat-network packet about a slotted
    /// Pi): log it, change nothing.
    Foreign {
        claim: Claim,
        other: PiId,
    },
}

/// How a sighting compares with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Diff {
    Same,
    Adds,
    Differs,
}

fn compare(known: &Identity, seen: &Seen) -> Diff {
    let mut adds = false;
    match (&known.mac, &seen.mac) {
        (Some(a), Some(b)) if a != b => return Diff::Differs,
        (None, Some(_)) => adds = true,
        _ => {}
    }
    match (known.serial, seen.serial) {
        (Some(a), Some(b)) if a != b => return Diff::Differs,
        (None, Some(_)) => adds = true,
        _ => {}
    }
    match seen.model {
        Some(_) if known.model == UNKNOWN_MODEL => adds = true,
        Some(m) if known.model != m => return Diff::Differs,
        _ => {}
    }
    if adds { Diff::Adds } else { Diff::Same }
}

/// The record with only what it lacked filled in from `seen`.
pub fn filled(known: &Identity, seen: &Seen) -> Identity {
    let model = match seen.model {
        Some(m) if known.model == UNKNOWN_MODEL => m.to_string(),
        _ => known.model.clone(),
    };
    Identity {
        mac: known.mac.clone().or_else(|| seen.mac.clone()),
        serial: known.serial.or(seen.serial),
        model,
    }
}

/// The identity of the board `seen` shows, taking what it does not show from the record:
/// except the serial, which belongs to the old board once the MAC changed (a Pi 3B shows
/// its serial only later, over TFTP).
pub fn merged(known: &Identity, seen: &Seen) -> Identity {
    let new_board = matches!((&known.mac, &seen.mac), (Some(a), Some(b)) if a != b);
    let serial = match seen.serial {
        Some(s) => Some(s),
        None if new_board => None,
        None => known.serial,
    };
    Identity {
        mac: seen.mac.clone().or_else(|| known.mac.clone()),
        serial,
        model: seen.model.map_or_else(|| known.model.clone(), str::to_string),
    }
}

/// The rule. `slot` is the slot the sighting came in on (`None` on a flat network);
/// `known` is that slot's Pi, or on a flat network the slotless-or-not Pi holding the
/// seen MAC (else serial); `claims` are the Pis other than `known` holding them.
pub fn decide(
    slot: Option<&SlotId>,
    known: Option<&Known>,
    seen: &Seen,
    claims: &Claims,
) -> Decision {
    let Some(k) = known else {
        return match claims.taken(None) {
            None if slot.is_none() && seen.source == Source::Tftp => Decision::Nothing,
            None => Decision::Create,
            // A board an operator registered without a slot, seen in an empty slot.
            Some((_, h))
                if slot.is_some()
                    && h.slot.is_none()
                    && h.trust == Trust::Open
                    && claims.taken(Some(&h.id)).is_none() =>
            {
                Decision::Adopt { pi: h.id.clone() }
            }
            Some((claim, h)) => Decision::Foreign { claim, other: h.id.clone() },
        };
    };
    // A flat-network sighting never concerns a Pi in a slot.
    if slot.is_none() && k.slot.is_some() {
        let claim = if k.identity.mac.is_some() && k.identity.mac == seen.mac {
            Claim::Mac
        } else {
            Claim::Serial
        };
        return Decision::Foreign { claim, other: k.id.clone() };
    }
    if let Some((claim, h)) = claims.taken(Some(&k.id)) {
        return Decision::Flag {
            pi: k.id.clone(),
            reason: FlagReason::Taken { claim, other: h.id.clone() },
        };
    }
    let pi = k.id.clone();
    match (compare(&k.identity, seen), k.trust) {
        (Diff::Same, _) => Decision::Nothing,
        (Diff::Adds, Trust::Open | Trust::Maintenance) => {
            Decision::Fill { pi, identity: filled(&k.identity, seen) }
        }
        (Diff::Adds, Trust::Guarded) => Decision::Flag { pi, reason: FlagReason::Adds },
        (Diff::Differs, Trust::Maintenance) => {
            Decision::Replace { pi, identity: merged(&k.identity, seen) }
        }
        (Diff::Differs, Trust::Open | Trust::Guarded) => {
            Decision::Flag { pi, reason: FlagReason::Differs }
        }
    }
}

/// The serial a TFTP path names in its first component (`1234abcd/start.elf`), if any.
pub fn serial_in_path(file: &str) -> Option<PiSerial> {
    let (first, rest) = file.split_once('/')?;
    let hex = first.len() == 8 && first.bytes().all(|b| b.is_ascii_hexdigit());
    (hex && !rest.is_empty()).then(|| u32::from_str_radix(first, 16).ok().map(PiSerial)).flatten()
}

#[cfg(test)]
#[path = "sightings_tests.rs"]
mod tests;
