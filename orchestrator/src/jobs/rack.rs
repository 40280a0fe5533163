//! The rack-shelf job (operators): for a shelf already enrolled (VLANs, /30s and IPv6
//! addresses allocated), create the controller's storage interfaces, configure the
//! switch in batches with the shelf's ports unpowered and verify it by reading back,
//! power the ports on in waves sized to the switch's PoE budget (and at most
//! `rack_group_size` at once) so a shelf of 96 does not boot at once, wait for each Pi to show up in DHCP
//! (the netboot service records serial, MAC and model as it does), and end with every
//! slot either ready or flagged with the reason. Racking a shelf again power-cycles it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bramble_switch::model::{DetectionStatus, PortPower};
use bramble_switch::{DesiredConfig, PoeBudget, PortNo, SwitchSnapshot};
use serde_json::json;

use super::hardware::Hardware;
use super::model::JobStep;
use super::power::unknown_step;
use super::runner::{Executor, StepError};
use crate::db::events::NewEvent;
use crate::fabric::FabricError;
use crate::lifecycle::{LifecycleEvent, PiState, transition};
use crate::model::{Job, PowerState, Shelf, Slot, Switch};
use crate::poe::draw;
use bramble_report::chain;

pub struct RackExecutor {
    hw: Arc<Hardware>,
}

/// What racking found for one slot.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SlotOutcome {
    pub port: u16,
    pub pi: Option<String>,
    /// `ready`, or `flagged` with `reason`.
    pub outcome: &'static str,
    pub reason: Option<String>,
}

impl RackExecutor {
    pub fn new(hw: Arc<Hardware>) -> Self {
        RackExecutor { hw }
    }

    async fn shelf(&self, job: &Job) -> Result<(Shelf, Switch), StepError> {
        let gone = |what: String| StepError::permanent(what, "The shelf is not in the inventory.");
        let id =
            job.shelf.as_ref().ok_or_else(|| gone(format!("job {} names no shelf", job.id)))?;
        let shelf = self
            .hw
            .db
            .get_shelf(id.as_str())
            .await?
            .ok_or_else(|| gone(format!("shelf {id} is gone")))?;
        let switch = self
            .hw
            .db
            .get_switch(&shelf.switch)
            .await?
            .ok_or_else(|| gone(format!("switch {} is gone", shelf.switch)))?;
        Ok((shelf, switch))
    }

    fn desired(&self, shelf: &Shelf, switch: &Switch) -> DesiredConfig {
        self.hw.fabric.shelf_plan(shelf, switch.trunk_port).desired()
    }

    async fn event(
        &self,
        job: &Job,
        kind: &str,
        message: String,
        data: serde_json::Value,
    ) -> Result<(), StepError> {
        self.hw
            .db
            .append_event(&NewEvent::new(kind, "controller", message).job(&job.id).data(data))
            .await?;
        Ok(())
    }

    /// The shelf's VLANs and, for the ports, PoE off: the Pis are powered on afterwards,
    /// in groups, once their storage networks exist.
    fn desired_unpowered(&self, shelf: &Shelf, switch: &Switch) -> DesiredConfig {
        let mut d = self.desired(shelf, switch);
        d.poe = shelf.slots.iter().map(|s| (PortNo(s.port), false)).collect();
        d
    }

    async fn configure(&self, job: &Job, shelf: &Shelf, switch: &Switch) -> Result<(), StepError> {
        let desired = self.desired_unpowered(shelf, switch);
        let report = self
            .hw
            .fabric
            .with_driver(switch, |d| async move { d.apply(&desired).await })
            .await
            .map_err(switch_step)?;
        let msg = format!(
            "switch {} configured for shelf {}: {} varbinds in {} SETs",
            switch.name, shelf.name, report.varbinds, report.messages
        );
        self.event(job, "shelf.switch_configured", msg, json!(report)).await
    }

    async fn verify(&self, job: &Job, shelf: &Shelf, switch: &Switch) -> Result<(), StepError> {
        let desired = self.desired_unpowered(shelf, switch);
        let drift = self
            .hw
            .fabric
            .with_driver(switch, |d| async move { d.drift(&desired).await })
            .await
            .map_err(switch_step)?;
        if let Some(first) = drift.first() {
            return Err(StepError::permanent(
                format!(
                    "switch {} differs from the plan in {} place(s), first: {first:?}",
                    switch.name,
                    drift.len()
                ),
                "The switch configuration could not be verified.",
            ));
        }
        self.event(
            job,
            "shelf.switch_verified",
            format!("switch {} matches shelf {}", switch.name, shelf.name),
            json!({ "ports": shelf.slots.len() }),
        )
        .await
    }

    /// The worst-case draw expected on each slot's port: its Pi's model once seen, else
    /// the worst of the table ([`crate::poe::draw`]).
    async fn expected_draw(&self, shelf: &Shelf) -> Result<BTreeMap<u16, u32>, StepError> {
        let mut out = BTreeMap::new();
        for slot in &shelf.slots {
            out.insert(slot.port, self.slot_expected_draw(slot).await?);
        }
        Ok(out)
    }

    /// Re-reads the expected draw of `ports`, whose Pis may have been seen (and so their
    /// model known) since the last read.
    async fn refresh_expected_draw(
        &self,
        shelf: &Shelf,
        ports: &[u16],
        expected: &mut BTreeMap<u16, u32>,
    ) -> Result<(), StepError> {
        for slot in shelf.slots.iter().filter(|s| ports.contains(&s.port)) {
            expected.insert(slot.port, self.slot_expected_draw(slot).await?);
        }
        Ok(())
    }

    async fn slot_expected_draw(&self, slot: &Slot) -> Result<u32, StepError> {
        let model = match self.hw.db.pi_in_slot(&slot.id).await? {
            Some(pi) => self.hw.db.get_pi(&pi).await?.map(|p| p.model),
            None => None,
        };
        Ok(draw::worst_case_mw(model.as_deref().unwrap_or("unknown")))
    }

    /// The switch's state now (PoE included), as a step error when it cannot be read.
    async fn snapshot(&self, switch: &Switch) -> Result<SwitchSnapshot, StepError> {
        self.hw
            .fabric
            .with_driver(switch, |d| async move { d.snapshot().await })
            .await
            .map_err(switch_step)
    }

    /// Powers the shelf's unpowered ports on in waves sized to the switch's PoE budget:
    /// each wave holds at most `rack_group_size` ports whose worst-case draws fit in what
    /// the budget has left (pethMainPsePower less pethMainPseConsumptionPower, less what
    /// the previous wave's ports may still add up to their worst case). A wave waits
    /// until the previous one settled: every port delivering power (or given up on after
    /// `power_confirm`), `rack_group_pause` passed, and room in the budget. Ports still
    /// without room `rack_await` after the last wave stay off and are flagged by the
    /// next step.
    async fn power_on(&self, job: &Job, shelf: &Shelf, switch: &Switch) -> Result<(), StepError> {
        let snapshot = self.snapshot(switch).await?;
        let mut expected = self.expected_draw(shelf).await?;
        let mut pending: Vec<(u16, u32)> = shelf
            .slots
            .iter()
            .map(|s| s.port)
            .filter(|p| !snapshot.poe.get(p).is_some_and(|x| x.admin_enabled))
            .map(|p| (p, expected[&p]))
            .collect();
        let total = pending.len();
        let mut deadline = Instant::now() + self.hw.timing().rack_await;
        let mut previous: Vec<u16> = Vec::new();
        let mut waves = 0;
        let mut fresh = false;
        while !pending.is_empty() {
            let (budget, measured) = self.settle(switch, &previous, fresh).await?;
            fresh = false;
            // The previous wave's Pis that have answered DHCP are known by model now, so
            // what they may still add is their model's worst case, not the table's.
            self.refresh_expected_draw(shelf, &previous, &mut expected).await?;
            let recent: Vec<(u32, u32)> = measured
                .iter()
                .map(|(p, mw)| (expected.get(p).copied().unwrap_or(draw::WORST_MW), *mw))
                .collect();
            let available = draw::available_mw(budget.power_w, budget.consumption_w, &recent);
            let wave = draw::next_wave(&pending, available, self.hw.timing().rack_group_size);
            if wave.is_empty() {
                if Instant::now() >= deadline {
                    let left: Vec<u16> = pending.iter().map(|(p, _)| *p).collect();
                    let msg = format!(
                        "PoE budget of switch {} ({} W, {} W in use) has no room for ports {left:?}; left off",
                        switch.name, budget.power_w, budget.consumption_w
                    );
                    return self
                        .event(job, "shelf.power_budget", msg, json!({ "ports": left }))
                        .await;
                }
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                continue;
            }
            let ports: Vec<(PortNo, bool)> = wave.iter().map(|&p| (PortNo(p), true)).collect();
            self.hw
                .fabric
                .with_driver(switch, |d| async move { d.set_ports_power(&ports).await })
                .await
                .map_err(switch_step)?;
            waves += 1;
            pending.retain(|(p, _)| !wave.contains(p));
            let msg = format!(
                "powered on ports {wave:?} (wave {waves}, {} of {total} ports left; budget {} W, {} W in use, {} mW available)",
                pending.len(),
                budget.power_w,
                budget.consumption_w,
                available
            );
            let data = json!({ "ports": wave, "budget_w": budget.power_w,
                "consumption_w": budget.consumption_w, "available_mw": available });
            self.event(job, "shelf.power_group", msg, data).await?;
            previous = wave;
            fresh = true;
            deadline = Instant::now() + self.hw.timing().rack_await;
        }
        Ok(())
    }

    /// Waits for the ports of the previous wave to settle (each delivering power, up to
    /// `power_confirm`; `rack_group_pause` first when the wave was `fresh`), then reads
    /// the budget. Returns it with the measured draw of those ports that deliver power.
    async fn settle(
        &self,
        switch: &Switch,
        previous: &[u16],
        fresh: bool,
    ) -> Result<(PoeBudget, Vec<(u16, u32)>), StepError> {
        if fresh {
            tokio::time::sleep(self.hw.timing().rack_group_pause).await;
        }
        let until = Instant::now() + self.hw.timing().power_confirm;
        loop {
            let snapshot = self.snapshot(switch).await?;
            let delivering = |p: &u16| {
                snapshot.poe.get(p).is_some_and(|x| x.detection == DetectionStatus::DeliveringPower)
            };
            if previous.iter().all(delivering) || Instant::now() >= until {
                let budget = self
                    .hw
                    .fabric
                    .with_driver(switch, |d| async move { d.poe_budget().await })
                    .await
                    .map_err(switch_step)?;
                let measured = previous
                    .iter()
                    .filter(|p| delivering(p))
                    .map(|&p| (p, snapshot.poe.get(&p).and_then(|x| x.draw_mw).unwrap_or(0)))
                    .collect();
                return Ok((budget, measured));
            }
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
    }

    /// Waits for a Pi (with a MAC) in every slot, then marks each slot ready (its Pi seen
    /// and its port delivering power) or flagged.
    async fn await_pis(&self, job: &Job, shelf: &Shelf, switch: &Switch) -> Result<(), StepError> {
        let deadline = Instant::now() + self.hw.timing().rack_await;
        loop {
            let mut missing = 0;
            for slot in &shelf.slots {
                let seen = match self.hw.db.pi_in_slot(&slot.id).await? {
                    Some(pi) => self.hw.db.get_pi(&pi).await?.is_some_and(|p| p.mac.is_some()),
                    None => false,
                };
                missing += usize::from(!seen);
            }
            if missing == 0 || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
        // A Pi seen before this job (booted on a factory-fresh switch's default PoE, or
        // racked before) is not ready while its port is off (left off by the budget).
        let poe = self.snapshot(switch).await?.poe;
        let mut outcomes = Vec::new();
        for slot in &shelf.slots {
            let pi = match self.hw.db.pi_in_slot(&slot.id).await? {
                Some(id) => self.hw.db.get_pi(&id).await?,
                None => None,
            };
            let unpowered = poe
                .get(&slot.port)
                .filter(|p| p.detection != DetectionStatus::DeliveringPower)
                .map(|p| (p.admin_enabled, p.detection));
            let outcome = match (pi, unpowered) {
                (Some(pi), Some((admin, detection))) if pi.mac.is_some() => {
                    let reason = format!(
                        "port {} delivers no power (PoE {}, {detection:?}); its Pi {} was seen before",
                        slot.port,
                        if admin { "enabled" } else { "disabled" },
                        pi.id
                    );
                    self.hw.db.set_slot_flag(&slot.id, Some(&reason)).await?;
                    SlotOutcome {
                        port: slot.port,
                        pi: Some(pi.id.0),
                        outcome: "flagged",
                        reason: Some(reason),
                    }
                }
                (Some(pi), None) if pi.mac.is_some() => {
                    if pi.state == PiState::New
                        && let Ok(next) = transition(pi.state, LifecycleEvent::Commissioned)
                        && !self.hw.db.set_pi_state(&pi.id, pi.state, next, None).await?
                    {
                        tracing::warn!(pi = %pi.id, "the Pi left `new` while being commissioned; its state is left as is");
                    }
                    self.hw.db.set_pi_power(&pi.id, PowerState::On).await?;
                    self.hw.db.set_slot_flag(&slot.id, None).await?;
                    SlotOutcome {
                        port: slot.port,
                        pi: Some(pi.id.0),
                        outcome: "ready",
                        reason: None,
                    }
                }
                _ => {
                    let reason = self.why_missing(slot.port, poe.get(&slot.port));
                    self.hw.db.set_slot_flag(&slot.id, Some(&reason)).await?;
                    SlotOutcome {
                        port: slot.port,
                        pi: None,
                        outcome: "flagged",
                        reason: Some(reason),
                    }
                }
            };
            outcomes.push(outcome);
        }
        let ready = outcomes.iter().filter(|o| o.outcome == "ready").count();
        let flagged = outcomes.len() - ready;
        self.hw
            .db
            .set_job_result(
                &job.id,
                &json!({ "ready": ready, "flagged": flagged, "slots": outcomes }),
            )
            .await?;
        let msg = format!("shelf {} racked: {ready} ready, {flagged} flagged", shelf.name);
        self.event(job, "shelf.racked", msg, json!({ "ready": ready, "flagged": flagged })).await
    }

    /// A flag for a slot whose Pi never appeared, from what its port reported in the
    /// step's one PoE read.
    fn why_missing(&self, port: u16, power: Option<&PortPower>) -> String {
        let waited = self.hw.timing().rack_await.as_secs();
        match power {
            Some(p) => format!(
                "no Pi answered DHCP within {waited} s; port {port} PoE {:?}, {}",
                p.detection,
                p.draw_mw
                    .map(|mw| format!("drawing {mw} mW"))
                    .unwrap_or_else(|| "draw not reported".into())
            ),
            None => format!(
                "no Pi answered DHCP within {waited} s; port {port} not in the switch's PoE table"
            ),
        }
    }
}

fn switch_step(e: FabricError) -> StepError {
    let customer = "The shelf's switch could not be configured.";
    if e.is_transient() {
        StepError::retryable(chain(&e), customer)
    } else {
        StepError::permanent(chain(&e), customer)
    }
}

#[async_trait]
impl Executor for RackExecutor {
    async fn run_step(&self, job: &Job, step: JobStep) -> Result<(), StepError> {
        use JobStep as S;
        let (shelf, switch) = self.shelf(job).await?;
        match step {
            S::CreateStorageLinks => {
                let served = self.hw.storage.sync().await.map_err(|e| {
                    StepError::retryable(e, "The shelf's networks could not be set up yet.")
                })?;
                self.event(
                    job,
                    "shelf.links",
                    format!("{served} storage interfaces served"),
                    json!({ "served": served, "ports": shelf.slots.len() }),
                )
                .await
            }
            S::ConfigureSwitch => self.configure(job, &shelf, &switch).await,
            S::VerifySwitch => self.verify(job, &shelf, &switch).await,
            S::PowerOnStaggered => self.power_on(job, &shelf, &switch).await,
            S::AwaitPis => self.await_pis(job, &shelf, &switch).await,
            S::PowerOn
            | S::PowerOff
            | S::ConfirmPower
            | S::ConfirmOff
            | S::Settle
            | S::AwaitBoot
            | S::ProvisionRoot
            | S::ExportRoot
            | S::RenderBootFiles
            | S::TakeSnapshot
            | S::RestoreRoot
            | S::ProvisionRescue
            | S::ExportRescue
            | S::RemoveRescue => Err(unknown_step(job, step)),
        }
    }
}
