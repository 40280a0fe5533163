//! DHCP sightings into the inventory: create `new` Pis (discovery), fill in a Pi's
//! serial/MAC/model when first seen, and notice a Pi replaced in its slot.
//!
//! [`decide`] is the pure rule (tested directly); [`apply`] reads the current Pi, asks
//! `decide`, and writes the result with its audit event in one transaction.

use bramble_netboot::dhcp::{PiModel, Sighting};
use bramble_netboot::hw::PiSerial;
use serde_json::json;

use crate::db::events::NewEvent;
use crate::db::pis::NewPi;
use crate::db::{Db, DbError, get_opt_serial, get_opt_str, get_str};
use crate::ids::{PiId, SlotId};
use crate::lifecycle::PiState;
use crate::time::now_millis;

/// Actor name of inventory changes made from DHCP.
const ACTOR: &str = "dhcp";

/// What the inventory holds for the Pi a sighting is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    pub id: PiId,
    pub serial: Option<PiSerial>,
    pub mac: Option<String>,
    pub model: String,
    pub slot: Option<SlotId>,
}

/// What the wire showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub mac: String,
    pub serial: Option<PiSerial>,
    pub model: Option<&'static str>,
}

/// What to do with a sighting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Nothing,
    /// No Pi is known: record a `new` one.
    Create,
    /// The known Pi lacks some identity the wire showed: add it.
    Fill {
        pi: PiId,
    },
    /// A different board answers for this slot: take over its identity, log it.
    Replaced {
        pi: PiId,
        old_mac: Option<String>,
        old_serial: Option<PiSerial>,
    },
}

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

/// The pure rule. A serial differing from a known serial, or a MAC differing from a known
/// MAC, is another board; anything the inventory lacks is filled in.
pub fn decide(known: Option<&Known>, seen: &Seen) -> Decision {
    let Some(k) = known else {
        return Decision::Create;
    };
    let mac_differs = k.mac.as_ref().is_some_and(|m| *m != seen.mac);
    let serial_differs = matches!((&k.serial, &seen.serial), (Some(a), Some(b)) if a != b);
    if mac_differs || serial_differs {
        return Decision::Replaced {
            pi: k.id.clone(),
            old_mac: k.mac.clone(),
            old_serial: k.serial,
        };
    }
    let model_news = seen.model.is_some_and(|m| k.model != m);
    if k.mac.is_none() || (k.serial.is_none() && seen.serial.is_some()) || model_news {
        return Decision::Fill { pi: k.id.clone() };
    }
    Decision::Nothing
}

/// Applies one sighting; returns whether the inventory changed.
pub async fn apply(db: &Db, s: &Sighting) -> Result<bool, DbError> {
    let seen = Seen { mac: s.mac.to_string(), serial: s.serial, model: model_name(s.model) };
    let slot = s.slot.as_ref().map(|k| SlotId(k.0.clone()));
    let known = match &slot {
        Some(slot) => find(db, By::Slot, slot.0.clone()).await?,
        None => find_by_identity(db, &seen).await?,
    };
    let decision = decide(known.as_ref(), &seen);
    tracing::debug!(interface = %s.interface, mac = %seen.mac, ?decision, "dhcp sighting");
    match decision {
        Decision::Nothing => Ok(false),
        Decision::Create => create(db, &seen, slot.as_ref()).await,
        Decision::Fill { pi } => {
            update_identity(db, &pi, &seen, None).await?;
            Ok(true)
        }
        Decision::Replaced { pi, old_mac, old_serial } => {
            let data = json!({ "slot": slot, "old_mac": old_mac, "old_serial": old_serial,
                               "new_mac": seen.mac, "new_serial": seen.serial, "interface": s.interface });
            let msg = format!("a different Pi ({}) answered in this Pi's slot", seen.mac);
            tracing::warn!(pi = %pi, mac = %seen.mac, old_mac = ?old_mac, "Pi replaced in its slot");
            update_identity(
                db,
                &pi,
                &seen,
                Some(NewEvent::new("pi.replaced", ACTOR, msg).pi(&pi).data(data)),
            )
            .await?;
            Ok(true)
        }
    }
}

async fn create(db: &Db, seen: &Seen, slot: Option<&SlotId>) -> Result<bool, DbError> {
    // A board the operator registered without a slot is adopted, not duplicated.
    if let Some(k) = find_by_identity(db, seen).await? {
        let Some(slot) = slot else { return Ok(false) };
        if k.slot.is_some() {
            tracing::warn!(pi = %k.id, mac = %seen.mac, "Pi seen in a second slot; inventory left as is");
            return Ok(false);
        }
        let mut tx = db.begin_write().await?;
        db.q("UPDATE pis SET slot_id = $1, updated_at = $2 WHERE id = $3 AND slot_id IS NULL")
            .bind(slot.0.clone())
            .bind(now_millis())
            .bind(k.id.0.clone())
            .execute(&mut *tx)
            .await?;
        let event = NewEvent::new(
            "pi.slotted",
            ACTOR,
            format!("seen on the storage network of slot {slot}"),
        )
        .pi(&k.id);
        db.append_event_with(&mut *tx, &event).await?;
        tx.commit().await?;
        return Ok(true);
    }
    let new = NewPi {
        serial: seen.serial,
        mac: Some(seen.mac.clone()),
        model: seen.model.unwrap_or("unknown").to_string(),
        slot: slot.cloned(),
        owner: None,
        state: PiState::New,
    };
    let pi = db.insert_pi(&new, ACTOR).await?;
    tracing::info!(pi = %pi.id, mac = %seen.mac, slot = ?slot, "new Pi discovered by dhcp");
    Ok(true)
}

async fn update_identity(
    db: &Db,
    pi: &PiId,
    seen: &Seen,
    event: Option<NewEvent>,
) -> Result<(), DbError> {
    let mut tx = db.begin_write().await?;
    // A replacement takes the new board's serial even when DHCP did not show one.
    let replace = event.is_some();
    db.q("UPDATE pis SET mac = $1, serial = CASE WHEN $2 IS NOT NULL OR $5 = 1 THEN $2 ELSE serial END, \
          model = COALESCE($3, model), updated_at = $4 WHERE id = $6")
        .bind(seen.mac.clone())
        .bind(seen.serial.map(|s| s.to_string()))
        .bind(seen.model.map(str::to_string))
        .bind(now_millis())
        .bind(i64::from(replace))
        .bind(pi.0.clone())
        .execute(&mut *tx)
        .await?;
    if let Some(event) = event {
        db.append_event_with(&mut *tx, &event).await?;
    }
    tx.commit().await?;
    Ok(())
}

async fn find_by_identity(db: &Db, seen: &Seen) -> Result<Option<Known>, DbError> {
    if let Some(k) = find(db, By::Mac, seen.mac.clone()).await? {
        return Ok(Some(k));
    }
    match &seen.serial {
        Some(serial) => find(db, By::Serial, serial.to_string()).await,
        None => Ok(None),
    }
}

/// Which column a Pi is looked up by.
enum By {
    Slot,
    Mac,
    Serial,
}

async fn find(db: &Db, by: By, value: String) -> Result<Option<Known>, DbError> {
    let sql: &'static str = match by {
        By::Slot => "SELECT id, serial, mac, model, slot_id FROM pis WHERE slot_id = $1",
        By::Mac => "SELECT id, serial, mac, model, slot_id FROM pis WHERE mac = $1",
        By::Serial => "SELECT id, serial, mac, model, slot_id FROM pis WHERE serial = $1",
    };
    let row = db.q(sql).bind(value).fetch_optional(db.pool()).await?;
    row.map(|r| {
        Ok(Known {
            id: PiId(get_str(&r, "id")?),
            serial: get_opt_serial(&r, "serial", "pis.serial")?,
            mac: get_opt_str(&r, "mac")?,
            model: get_str(&r, "model")?,
            slot: get_opt_str(&r, "slot_id")?.map(SlotId),
        })
    })
    .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(mac: Option<&str>, serial: Option<u32>) -> Known {
        Known {
            id: PiId("pi-1".into()),
            serial: serial.map(PiSerial),
            mac: mac.map(Into::into),
            model: "unknown".into(),
            slot: None,
        }
    }

    fn seen(mac: &str, serial: Option<u32>) -> Seen {
        Seen { mac: mac.into(), serial: serial.map(PiSerial), model: None }
    }

    #[test]
    fn decisions_follow_the_rule() {
        let pi = PiId("pi-1".into());
        let m1 = "b8:27:eb:00:00:01";
        let m2 = "b8:27:eb:00:00:02";
        let cases = [
            (None, seen(m1, None), Decision::Create),
            (Some(known(None, None)), seen(m1, None), Decision::Fill { pi: pi.clone() }),
            (Some(known(Some(m1), None)), seen(m1, None), Decision::Nothing),
            (
                Some(known(Some(m1), None)),
                seen(m1, Some(0x1234abcd)),
                Decision::Fill { pi: pi.clone() },
            ),
            (
                Some(known(Some(m1), Some(0x1234abcd))),
                seen(m1, Some(0x1234abcd)),
                Decision::Nothing,
            ),
            (
                Some(known(Some(m1), None)),
                seen(m2, None),
                Decision::Replaced { pi: pi.clone(), old_mac: Some(m1.into()), old_serial: None },
            ),
            (
                Some(known(Some(m1), Some(0x1234abcd))),
                seen(m1, Some(0x99999999)),
                Decision::Replaced {
                    pi: pi.clone(),
                    old_mac: Some(m1.into()),
                    old_serial: Some(PiSerial(0x1234abcd)),
                },
            ),
        ];
        for (k, s, want) in cases {
            assert_eq!(decide(k.as_ref(), &s), want, "{k:?} {s:?}");
        }
        let mut s = seen(m1, None);
        s.model = Some("3b+");
        assert_eq!(decide(Some(&known(Some(m1), None)), &s), Decision::Fill { pi });
    }
}
