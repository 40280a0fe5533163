//! The virtual PoE switch: a real SNMP v2c/v3 agent on UDP with N PoE ports plus a
//! trunk, standard bridge and PoE MIBs, persistent state, fault switches and event hooks.
//!
//! Built on async-snmp's agent (two-phase SET, USM, GETBULK); see [`SimSwitch`].

mod core;
mod counters;
mod mib;
pub mod poe;
mod relay;
pub mod state;
pub mod stp;
pub mod view;

pub use state::{FdbEntry, SimEvent, SimState};

use crate::error::SimError;
use crate::secret::Secret;
use async_snmp::agent::Agent;
use async_snmp::{AuthProtocol, AuthoritativeEngine, Oid, PrivProtocol};
use core::SimCore;
use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::broadcast;

/// SNMPv3 user of the virtual switch (SHA-1 auth, AES-128 privacy).
#[derive(Debug, Clone)]
pub struct SimV3User {
    pub user: String,
    pub auth_pass: Secret,
    pub priv_pass: Secret,
}

/// How to run the virtual switch.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Address to report/bind (informational when a socket is handed to `serve`).
    pub listen: SocketAddr,
    /// Number of PoE ports; bridge port `ports + 1` is the trunk.
    pub ports: u16,
    pub community: Secret,
    pub v3: Option<SimV3User>,
    /// JSON state file; created on first change, loaded at start.
    pub state_file: Option<PathBuf>,
    /// Answer as a Cisco switch (sysObjectID, vmVlan, trunk and PoE objects).
    pub cisco: bool,
    /// Spanning tree's forward delay: a port that is not an edge port forwards twice
    /// this after its link comes up (listening, then learning). Real switches: 15 s.
    pub forward_delay: Duration,
    /// Whether the switch has the RSTP-MIB (`dot1dStpPortAdminEdgePort`); without it,
    /// edge ports are made by disabling spanning tree on them. Ignored when the state
    /// file already says.
    pub rstp: bool,
}

impl SimOptions {
    /// v2c only, no persistence.
    pub fn new(ports: u16, community: &str) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            ports,
            community: Secret::new(community),
            v3: None,
            state_file: None,
            cisco: false,
            forward_delay: stp::DEFAULT_FORWARD_DELAY,
            rstp: true,
        }
    }
}

/// Control of a running (or about to run) virtual switch: faults, events, lab API.
#[derive(Clone)]
pub struct SimHandle {
    core: Arc<SimCore>,
}

impl std::fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimHandle").finish_non_exhaustive()
    }
}

impl SimHandle {
    /// Stop answering anything.
    pub fn set_silent(&self, on: bool) {
        self.core.faults.silent.store(on, Ordering::Relaxed);
    }
    /// Drop this fraction (0.0-1.0) of requests.
    pub fn set_drop_fraction(&self, fraction: f64) {
        let ppm = (fraction.clamp(0.0, 1.0) * 1_000_000.0) as u64;
        self.core.faults.drop_ppm.store(ppm, Ordering::Relaxed);
    }
    /// Answer every SET with resourceUnavailable.
    pub fn set_reject_sets(&self, on: bool) {
        self.core.faults.reject_sets.store(on, Ordering::Relaxed);
    }
    /// Delay every answer by `delay`.
    pub fn set_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.core.faults.delay_ms.store(ms, Ordering::Relaxed);
    }
    /// Events: power and VLAN membership changes.
    pub fn subscribe(&self) -> broadcast::Receiver<SimEvent> {
        self.core.events.subscribe()
    }
    /// SET requests received since start, each counted once whatever its varbinds
    /// (those refused by [`SimHandle::set_reject_sets`] are not counted).
    pub fn sets(&self) -> u64 {
        self.core.sets()
    }
    /// How many times a port that wanted power was refused it for the PoE budget.
    pub fn power_denials(&self) -> u64 {
        self.core.power_denials()
    }
    /// Lab API: the PSE's budget (pethMainPsePower), in watts.
    pub fn set_poe_budget(&self, watts: u32) -> Result<(), SimError> {
        self.core.replace(|st| st.budget_w = watts)
    }
    /// Lab API: what the device in `port` draws while powered, in milliwatts.
    pub fn set_device_draw(&self, port: u16, milliwatts: u32) -> Result<(), SimError> {
        self.core.replace(|st| {
            st.device_draw_mw.insert(port, milliwatts);
        })
    }
    /// Fault: `port`'s power keeps flowing after its PoE is turned off (detection stays
    /// deliveringPower), until the fault is cleared.
    pub fn set_stuck_on(&self, port: u16, stuck: bool) -> Result<(), SimError> {
        self.core.replace(|st| {
            if stuck {
                st.stuck_on.insert(port);
            } else {
                st.stuck_on.remove(&port);
            }
        })
    }
    /// How many times `port`'s PoE admin state changed since start.
    pub fn power_changes(&self, port: u16) -> u64 {
        self.core.power_changes(port)
    }
    /// Read requests (GET, GETNEXT, GETBULK) received since start, by the address of
    /// the manager that sent them; a request counts once whatever its varbinds.
    pub fn reads(&self) -> BTreeMap<IpAddr, u64> {
        self.core.reads()
    }
    /// A copy of the switch's committed state.
    pub fn state(&self) -> SimState {
        self.core.state()
    }
    /// Lab API: a MAC learned on `port` in filtering database `fdb_id`.
    pub fn inject_mac(&self, fdb_id: u32, mac: [u8; 6], port: u16) -> Result<(), SimError> {
        self.core.replace(|st| {
            st.fdb.retain(|f| !(f.fdb_id == fdb_id && f.mac == mac));
            st.fdb.push(FdbEntry { fdb_id, mac, port });
        })
    }
    /// Lab API: create (or rename) a VLAN with no members.
    pub fn add_vlan(&self, vlan: u16, name: &str) -> Result<(), SimError> {
        self.core.replace(|st| {
            st.vlans.entry(vlan).or_default().name = name.to_string();
        })
    }
    /// Lab API: whether a powered device is plugged into `port`.
    pub fn set_device_present(&self, port: u16, present: bool) -> Result<(), SimError> {
        self.core.replace(|st| {
            st.device_present.insert(port, present);
        })
    }
}

/// A virtual switch, loaded but not yet serving.
pub struct SimSwitch {
    opts: SimOptions,
    core: Arc<SimCore>,
}

impl SimSwitch {
    /// Validates options and loads the state file.
    pub fn new(opts: SimOptions) -> Result<Self, SimError> {
        if opts.ports == 0 || opts.ports > 4000 {
            return Err(SimError::Options(format!("ports must be 1-4000, got {}", opts.ports)));
        }
        let fresh = !opts.state_file.as_ref().is_some_and(|p| p.exists());
        let core = Arc::new(SimCore::load(opts.ports, opts.cisco, opts.state_file.clone())?);
        if fresh && !opts.rstp {
            core.replace(|st| st.rstp = false)?;
        }
        core.start_stp(opts.forward_delay);
        Ok(Self { opts, core })
    }

    /// The control handle.
    pub fn handle(&self) -> SimHandle {
        SimHandle { core: self.core.clone() }
    }

    async fn agent(&self) -> Result<Agent, SimError> {
        let err = |e: &dyn std::fmt::Display| SimError::Agent(e.to_string());
        let mut builder =
            Agent::builder().bind("127.0.0.1:0").community(self.opts.community.expose());
        for prefix in [&[1u32, 3, 6, 1, 2, 1][..], &[1, 3, 6, 1, 4, 1]] {
            let mib = mib::SimMib { core: self.core.clone(), prefix: Oid::from_slice(prefix) };
            builder = builder.handler(Oid::from_slice(prefix), Arc::new(mib));
        }
        if let Some(v3) = &self.opts.v3 {
            let engine = AuthoritativeEngine::install(b"bramble-sim".to_vec(), |_| {
                Ok::<(), std::convert::Infallible>(())
            })
            .map_err(|e| err(&e))?;
            builder = builder
                .authoritative_engine(engine)
                .usm_user(v3.user.clone(), |u| {
                    u.auth_priv(
                        AuthProtocol::Sha1,
                        v3.auth_pass.expose(),
                        PrivProtocol::Aes128,
                        v3.priv_pass.expose(),
                    )
                })
                .map_err(|e| err(&e))?;
        }
        builder.allow_all_access().build().await.map_err(|e| err(&e))
    }

    /// Serves SNMP on `socket` until `shutdown` resolves.
    pub async fn serve(
        self,
        socket: UdpSocket,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), SimError> {
        let agent = Arc::new(self.agent().await?);
        let agent_addr = agent.local_addr();
        let front = Arc::new(socket);
        tracing::info!(listen = ?front.local_addr().ok(), ports = self.opts.ports, v3 = self.opts.v3.is_some(), "virtual switch serving");
        let runner = agent.clone();
        let agent_task = tokio::spawn(async move { runner.run().await });
        let result = relay::run(self.core.clone(), front, agent_addr, shutdown).await;
        agent.cancel();
        let _ = agent_task.await;
        result.map_err(SimError::Socket)
    }
}

/// Convenience: load and serve in one call (for the `bramble switch-sim` CLI).
pub async fn serve(
    opts: SimOptions,
    socket: UdpSocket,
    shutdown: impl Future<Output = ()>,
) -> Result<(), SimError> {
    SimSwitch::new(opts)?.serve(socket, shutdown).await
}
