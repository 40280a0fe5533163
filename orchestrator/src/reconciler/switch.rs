//! One reconciliation pass over one switch: read it, decide with [`super::decide`], then
//! repair drift, correct recorded power, flag and unflag slots, and record each change
//! in the event log.

use serde_json::json;

use super::decide::{self, ClearCause, OutageEdge, PiView, SlotAction, SlotView};
use super::{ACTOR, Inner, PowerObserved, SwitchReport};
use crate::db::DbError;
use crate::db::events::NewEvent;
use crate::fabric::FabricError;
use crate::ids::PiId;
use crate::model::Switch;
use crate::time::now_millis;
use bramble_report::chain;
use bramble_switch::{DesiredConfig, Drift, SwitchSnapshot};

impl Inner {
    /// Reads `sw`, repairs its drift (unless `racking`) and checks its Pis' power draw.
    pub(super) async fn reconcile_switch(&self, sw: &Switch, racking: bool) -> SwitchReport {
        let mut report = SwitchReport::new(sw);
        let desired = match self.fabric.desired_for(sw).await {
            Ok(d) => d,
            Err(e) => {
                report.error("reading the desired configuration", &e);
                return report;
            }
        };
        // Pis whose record changes after this instant may have been acted on by a job
        // since the switch was read: they are left for the next pass.
        let read_at = now_millis();
        let Some(snapshot) = self.read(sw, &mut report).await else { return report };
        let slots = match self.slot_views(sw, read_at, racking).await {
            Ok(s) => s,
            Err(e) => {
                report.error("reading the switch's slots", &e);
                return report;
            }
        };
        let plan = decide::plan_switch(&desired, &snapshot, &slots, racking);
        report.drift = plan.drift.clone();
        match &plan.repair {
            Some(repair) => self.repair(sw, &plan.drift, repair, &mut report).await,
            None if plan.drift.is_empty() => {
                let mut memory = self.memory_of(&sw.id);
                memory.note_repair_ok();
                self.remember(&sw.id, memory);
            }
            None => {
                report.repair_deferred = true;
                tracing::debug!(switch = %sw.name, drift = plan.drift.len(), "repair deferred: a shelf on this switch is being racked");
            }
        }
        for action in &plan.slots {
            if let Err(e) = self.carry_out(action, read_at, &mut report).await {
                report.error("recording a slot change", &e);
            }
        }
        report
    }

    /// Takes a snapshot of `sw`; records the start and end of an outage once each.
    async fn read(&self, sw: &Switch, report: &mut SwitchReport) -> Option<SwitchSnapshot> {
        let read = self.fabric.with_driver(sw, |d| async move { d.snapshot().await }).await;
        let mut memory = self.memory_of(&sw.id);
        let edge = memory.note_read(read.is_ok());
        let event = match (&read, edge) {
            (Err(e), Some(OutageEdge::Began)) => Some(unreachable_event(sw, e)),
            (Ok(_), Some(OutageEdge::Ended)) => Some(
                NewEvent::new(
                    "switch.reachable",
                    ACTOR,
                    format!("switch {} answers again", sw.name),
                )
                .data(json!({"switch": sw.id, "name": sw.name})),
            ),
            _ => None,
        };
        // Remember the edge only once it is in the log, so a failed write is retried.
        match event {
            Some(ev) => match self.db.append_event(&ev).await {
                Ok(()) => self.remember(&sw.id, memory),
                Err(e) => report.error("recording the switch's reachability", &e),
            },
            None => self.remember(&sw.id, memory),
        }
        match read {
            Ok(snapshot) => {
                report.reachable = true;
                Some(snapshot)
            }
            Err(e) => {
                tracing::debug!(switch = %sw.name, error = %chain(&e), "switch did not answer the reconciler");
                report.error("reading the switch", &e);
                None
            }
        }
    }

    /// Applies `repair` (batched and verified by the driver) and records the outcome.
    async fn repair(
        &self,
        sw: &Switch,
        drift: &[Drift],
        repair: &DesiredConfig,
        report: &mut SwitchReport,
    ) {
        let summary: Vec<String> = drift.iter().map(ToString::to_string).collect();
        let owned = repair.clone();
        let applied = self.fabric.with_driver(sw, |d| async move { d.apply(&owned).await }).await;
        let mut memory = self.memory_of(&sw.id);
        let event = match &applied {
            Ok(done) => {
                report.repaired = true;
                memory.note_repair_ok();
                tracing::info!(switch = %sw.name, drift = ?summary, varbinds = done.varbinds, "repaired switch drift");
                Some(
                    NewEvent::new(
                        "switch.drift_repaired",
                        ACTOR,
                        format!(
                            "switch {}: repaired {} differences: {}",
                            sw.name,
                            drift.len(),
                            summary.join("; ")
                        ),
                    )
                    .data(
                        json!({"switch": sw.id, "name": sw.name, "drift": drift, "summary": summary,
                                     "varbinds": done.varbinds, "messages": done.messages}),
                    ),
                )
            }
            Err(e) => {
                report.error("repairing drift", e);
                tracing::warn!(switch = %sw.name, error = %chain(e), "could not repair switch drift");
                memory.note_repair_failed(drift).then(|| {
                    NewEvent::new(
                        "switch.repair_failed",
                        ACTOR,
                        format!("switch {}: could not repair {} differences: {}", sw.name, drift.len(), chain(e)),
                    )
                    .data(json!({"switch": sw.id, "name": sw.name, "drift": drift, "summary": summary, "error": chain(e)}))
                })
            }
        };
        match event {
            Some(ev) => match self.db.append_event(&ev).await {
                Ok(()) => self.remember(&sw.id, memory),
                Err(e) => report.error("recording the repair", &e),
            },
            None => self.remember(&sw.id, memory),
        }
    }

    /// The switch's slots with their Pis, as of after the read at `read_at`. While a shelf
    /// on the switch is being racked, its Pis are the rack job's (busy).
    async fn slot_views(
        &self,
        sw: &Switch,
        read_at: i64,
        racking: bool,
    ) -> Result<Vec<SlotView>, DbError> {
        let locations = self.db.switch_locations(&sw.id).await?;
        let mut out = Vec::with_capacity(locations.len());
        for loc in locations {
            let pi = match self.db.pi_in_slot(&loc.slot).await? {
                Some(id) => self.pi_view(&id, read_at, racking).await?,
                None => None,
            };
            out.push(SlotView { slot: loc.slot, port: loc.port, flag: loc.flag, pi });
        }
        Ok(out)
    }

    async fn pi_view(
        &self,
        id: &PiId,
        read_at: i64,
        racking: bool,
    ) -> Result<Option<PiView>, DbError> {
        let Some(pi) = self.db.get_pi(id).await? else { return Ok(None) };
        let busy =
            racking || pi.updated_at >= read_at || self.db.active_job_for(id).await?.is_some();
        Ok(Some(PiView { id: pi.id, owner: pi.owner, power: pi.power, busy }))
    }

    /// Writes one slot decision and its event.
    async fn carry_out(
        &self,
        action: &SlotAction,
        read_at: i64,
        report: &mut SwitchReport,
    ) -> Result<(), DbError> {
        match action {
            SlotAction::ObservePower { pi, owner, port, from, to } => {
                // A job may have changed the Pi since the read: then the read is stale.
                if !self.db.observe_pi_power(pi, *from, *to, read_at).await? {
                    return Ok(());
                }
                let msg = format!(
                    "switch port {port} reads PoE {}; recorded power was {}",
                    to.as_str(),
                    from.as_str()
                );
                let ev =
                    NewEvent::new("pi.power_observed", ACTOR, msg).pi(pi).customer(owner.as_ref());
                self.db
                    .append_event(&ev.data(json!({"port": port, "from": from, "to": to})))
                    .await?;
                report.power_observed.push(PowerObserved {
                    pi: pi.clone(),
                    port: *port,
                    from: *from,
                    to: *to,
                });
            }
            SlotAction::FlagNoDraw { slot, pi, owner, port, flag } => {
                self.db.set_slot_flag(slot, Some(flag)).await?;
                let ev = NewEvent::new("pi.no_power_draw", ACTOR, flag.clone())
                    .pi(pi)
                    .customer(owner.as_ref());
                self.db.append_event(&ev.data(json!({"port": port, "slot": slot}))).await?;
                tracing::warn!(%pi, port, flag = %flag, "Pi stopped drawing power");
                report.flagged.push(*port);
            }
            SlotAction::ClearNoDraw { slot, pi, owner, port, cause } => {
                self.db.set_slot_flag(slot, None).await?;
                let (kind, msg) = match cause {
                    ClearCause::Restored => {
                        ("pi.power_draw_restored", format!("port {port} draws power again"))
                    }
                    ClearCause::PortOff => (
                        "slot.flag_cleared",
                        format!("port {port} was switched off; no power draw expected"),
                    ),
                    ClearCause::SlotEmpty => {
                        ("slot.flag_cleared", format!("port {port} no longer holds a Pi"))
                    }
                };
                let mut ev = NewEvent::new(kind, ACTOR, msg)
                    .customer(owner.as_ref())
                    .data(json!({"port": port, "slot": slot}));
                if let Some(pi) = pi {
                    ev = ev.pi(pi);
                }
                self.db.append_event(&ev).await?;
                report.unflagged.push(*port);
            }
        }
        Ok(())
    }
}

fn unreachable_event(sw: &Switch, e: &FabricError) -> NewEvent {
    NewEvent::new(
        "switch.unreachable",
        ACTOR,
        format!("switch {} cannot be read: {}", sw.name, chain(e)),
    )
    .data(json!({"switch": sw.id, "name": sw.name, "address": sw.address, "error": chain(e)}))
}
