//! The DHCP state machine as a pure function of (served interfaces, bindings, packet,
//! time): it decides what to answer and what must be stored first, and does no I/O.
//! The server runs it under a lock and carries out the [`Action`]; tests and the fuzz
//! target call [`Engine::handle`] directly.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::time::{Duration, SystemTime};

use dhcproto::v4::MessageType;

use super::bindings::{Binding, Bindings};
use super::config::{FlatNetwork, ServerOptions, StorageIface};
use super::counters::DropReason;
use super::packet::{self, ReplyParams, Request};
use super::pi::{self, PiIdentity};
use super::store::{Decline, Lease, Sighting};
use super::types::{ClientKey, PiSerial};
use crate::events::{BootStage, ClientRef};

/// How one served interface is configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    Storage(StorageIface),
    Flat(FlatNetwork),
}

/// A reply ready to send, and the timeline stage it stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub kind: MessageType,
    pub bytes: Vec<u8>,
    pub dest: SocketAddrV4,
    pub delay: Duration,
    pub stage: BootStage,
}

/// What the server must do for one packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Drop(DropReason),
    Reply(Reply),
    /// Store the lease durably, then (and only then) send the reply.
    CommitThenReply {
        lease: Lease,
        reply: Reply,
    },
    Release {
        key: ClientKey,
        addr: Ipv4Addr,
    },
    Decline(Decline),
}

/// The decision for one packet, with what to report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub action: Action,
    /// The client and the stage of the request itself (DISCOVER seen, ...), when the
    /// packet parsed.
    pub seen: Option<(ClientRef, BootStage)>,
    /// A client to record in the inventory (first sighting, or its serial changed).
    pub sighting: Option<Sighting>,
    /// The message type of a parsed request, for counters.
    pub request: Option<MessageType>,
}

impl Outcome {
    fn dropped(reason: DropReason) -> Self {
        Outcome { action: Action::Drop(reason), seen: None, sighting: None, request: None }
    }
}

/// Bound on remembered sightings, so a MAC flood cannot grow memory without limit.
const MAX_SEEN: usize = 65_536;

/// All DHCP server state.
#[derive(Debug, Default)]
pub struct Engine {
    opts: ServerOptions,
    ifaces: HashMap<String, Role>,
    bindings: Bindings,
    seen: HashMap<ClientKey, Option<PiSerial>>,
}

/// Per-packet context shared by the message handlers.
struct Ctx<'a> {
    role: &'a Role,
    key: ClientKey,
    id: PiIdentity,
    now: SystemTime,
}

impl Engine {
    pub fn new(opts: ServerOptions) -> Self {
        Engine { opts, ..Engine::default() }
    }

    pub fn options(&self) -> &ServerOptions {
        &self.opts
    }

    pub fn set_interface(&mut self, role: Role) {
        let name = match &role {
            Role::Storage(s) => s.ifname.clone(),
            Role::Flat(f) => f.ifname.clone(),
        };
        self.ifaces.insert(name, role);
    }

    pub fn remove_interface(&mut self, ifname: &str) -> bool {
        self.bindings.remove_interface(ifname);
        self.seen.retain(|k, _| k.interface != ifname);
        self.ifaces.remove(ifname).is_some()
    }

    pub fn interface(&self, ifname: &str) -> Option<&Role> {
        self.ifaces.get(ifname)
    }

    pub fn restore(&mut self, leases: &[Lease], now: SystemTime) {
        self.bindings.restore(leases, now);
    }

    /// The lease is durable: make the binding last its full time.
    pub fn confirm(&mut self, lease: &Lease) {
        self.bindings.confirm(lease);
    }

    pub fn binding(&self, key: &ClientKey) -> Option<&Binding> {
        self.bindings.get(key)
    }

    /// Decides what to do with one datagram that arrived on `ifname`.
    pub fn handle(&mut self, ifname: &str, bytes: &[u8], now: SystemTime) -> Outcome {
        let Some(role) = self.ifaces.get(ifname).cloned() else {
            return Outcome::dropped(DropReason::UnknownInterface);
        };
        let req = match packet::parse(bytes) {
            Ok(req) => req,
            Err(reason) => return Outcome::dropped(reason),
        };
        if req.giaddr != Ipv4Addr::UNSPECIFIED && !serves_relay(&role, req.giaddr) {
            return Outcome::dropped(DropReason::Relayed);
        }
        let ctx = Ctx {
            role: &role,
            key: ClientKey { interface: ifname.to_string(), mac: req.mac },
            id: pi::identify(&req.mac, req.option97.as_deref()),
            now,
        };
        let client = ClientRef {
            interface: Some(ifname.to_string()),
            mac: Some(req.mac.to_string()),
            serial: ctx.id.serial,
            addr: (req.ciaddr != Ipv4Addr::UNSPECIFIED).then_some(IpAddr::V4(req.ciaddr)),
        };
        let (stage, action) = match req.kind {
            MessageType::Discover => {
                (BootStage::DhcpDiscover { model: ctx.id.model }, self.discover(&ctx, &req))
            }
            MessageType::Request => (BootStage::DhcpRequest, self.request(&ctx, &req)),
            MessageType::Inform => (BootStage::DhcpInform, self.inform(&ctx, &req)),
            MessageType::Release => (BootStage::DhcpRelease, self.release(&ctx, &req)),
            _ => (BootStage::DhcpDecline, self.decline(&ctx, &req)),
        };
        let sighting = self.sighting(&ctx);
        Outcome { action, seen: Some((client, stage)), sighting, request: Some(req.kind) }
    }

    fn discover(&mut self, ctx: &Ctx<'_>, req: &Request) -> Action {
        let Some(addr) = self.choose(ctx, req.requested) else {
            return Action::Drop(DropReason::NoAddress);
        };
        let reply = self.reply(ctx, req, MessageType::Offer, addr, None);
        // A Pi boot ROM never sends REQUEST: it boots from the OFFER, so the offer is the
        // binding and must be stored like an ACK.
        if req.pxe && ctx.id.model.is_some() {
            return self.commit(ctx, addr, reply);
        }
        let already = self
            .bindings
            .get(&ctx.key)
            .is_some_and(|b| b.committed && b.addr == addr && b.expires > ctx.now);
        if !already {
            self.hold(ctx, addr);
        }
        Action::Reply(reply)
    }

    fn request(&mut self, ctx: &Ctx<'_>, req: &Request) -> Action {
        let asked = match (req.server_id, req.requested) {
            // SELECTING: the client picked a server.
            (Some(sid), _) if sid != server_id(ctx.role) => {
                if self.bindings.get(&ctx.key).is_some_and(|b| !b.committed) {
                    self.bindings.remove(&ctx.key);
                }
                return Action::Drop(DropReason::NotForUs);
            }
            (Some(_), Some(r)) => r,
            (Some(_), None) if req.ciaddr != Ipv4Addr::UNSPECIFIED => req.ciaddr,
            // INIT-REBOOT: no server id, requested address.
            (None, Some(r)) => r,
            // RENEWING / REBINDING: ciaddr only.
            (None, None) if req.ciaddr != Ipv4Addr::UNSPECIFIED => req.ciaddr,
            _ => return Action::Drop(DropReason::Malformed),
        };
        if !on_network(ctx.role, asked) {
            return Action::Reply(self.nak(ctx, req, "address not on this network"));
        }
        match self.choose(ctx, Some(asked)) {
            Some(addr) if addr == asked => {
                let reply = self.reply(ctx, req, MessageType::Ack, addr, None);
                self.commit(ctx, addr, reply)
            }
            _ => Action::Reply(self.nak(ctx, req, "address not available to this client")),
        }
    }

    fn inform(&mut self, ctx: &Ctx<'_>, req: &Request) -> Action {
        let reply = self.reply(ctx, req, MessageType::Ack, Ipv4Addr::UNSPECIFIED, None);
        Action::Reply(Reply { stage: BootStage::DhcpAck { yiaddr: req.ciaddr }, ..reply })
    }

    fn release(&mut self, ctx: &Ctx<'_>, req: &Request) -> Action {
        if req.server_id.is_some_and(|sid| sid != server_id(ctx.role)) {
            return Action::Drop(DropReason::NotForUs);
        }
        match self.bindings.get(&ctx.key) {
            Some(b) if b.addr == req.ciaddr => {
                self.bindings.remove(&ctx.key);
                Action::Release { key: ctx.key.clone(), addr: req.ciaddr }
            }
            _ => Action::Drop(DropReason::NotForUs),
        }
    }

    fn decline(&mut self, ctx: &Ctx<'_>, req: &Request) -> Action {
        let Some(addr) =
            req.requested.filter(|a| self.bindings.get(&ctx.key).is_some_and(|b| b.addr == *a))
        else {
            return Action::Drop(DropReason::NotForUs);
        };
        tracing::warn!(interface = %ctx.key.interface, mac = %ctx.key.mac, %addr, "client declined address: in use by another host");
        self.bindings.decline(&ctx.key.interface, addr, ctx.now + self.opts.decline_hold);
        Action::Decline(Decline { key: ctx.key.clone(), addr, at: ctx.now })
    }

    /// The address this client gets here, if any.
    fn choose(&mut self, ctx: &Ctx<'_>, hint: Option<Ipv4Addr>) -> Option<Ipv4Addr> {
        match ctx.role {
            Role::Storage(s) => Some(s.pi_addr),
            Role::Flat(net) => {
                self.bindings.choose_flat(net, &ctx.key, ctx.id.serial, hint, ctx.now)
            }
        }
    }

    /// Holds `addr` for the client while an offer or an ACK is in flight.
    fn hold(&mut self, ctx: &Ctx<'_>, addr: Ipv4Addr) {
        let committed = self.bindings.get(&ctx.key).is_some_and(|b| b.committed && b.addr == addr);
        let expires = match self.bindings.get(&ctx.key) {
            Some(b) if committed => b.expires.max(ctx.now + self.opts.offer_hold),
            _ => ctx.now + self.opts.offer_hold,
        };
        if let Some(previous) = self.bindings.bind(&ctx.key, Binding { addr, expires, committed }) {
            tracing::warn!(interface = %ctx.key.interface, %addr, old_mac = %previous.mac, new_mac = %ctx.key.mac,
                "address taken over by another client (replaced Pi in a storage slot?)");
        }
    }

    fn commit(&mut self, ctx: &Ctx<'_>, addr: Ipv4Addr, reply: Reply) -> Action {
        self.hold(ctx, addr);
        let (lease_time, slot) = match ctx.role {
            Role::Storage(s) => (self.opts.storage_lease_time, Some(s.slot.clone())),
            Role::Flat(f) => (f.lease_time, None),
        };
        let lease = Lease {
            key: ctx.key.clone(),
            addr,
            expires_at: ctx.now + lease_time,
            serial: ctx.id.serial,
            slot,
        };
        Action::CommitThenReply { lease, reply }
    }

    fn nak(&self, ctx: &Ctx<'_>, req: &Request, reason: &str) -> Reply {
        self.reply(ctx, req, MessageType::Nak, Ipv4Addr::UNSPECIFIED, Some(reason.to_string()))
    }

    fn reply(
        &self,
        ctx: &Ctx<'_>,
        req: &Request,
        kind: MessageType,
        yiaddr: Ipv4Addr,
        message: Option<String>,
    ) -> Reply {
        let inform = req.kind == MessageType::Inform;
        let params = match ctx.role {
            Role::Storage(s) => ReplyParams {
                server_id: s.controller_addr,
                netmask: Some(s.netmask()),
                router: Some(s.controller_addr),
                dns: vec![],
                lease_time: (!inform).then_some(self.opts.storage_lease_time),
                tftp_server: Some(s.tftp_server),
                message,
            },
            Role::Flat(f) => ReplyParams {
                server_id: f.server_addr,
                netmask: Some(f.netmask()),
                router: f.router,
                dns: f.dns.clone(),
                lease_time: (!inform).then_some(f.lease_time),
                tftp_server: f.tftp_server,
                message,
            },
        };
        let bytes = packet::encode_reply(req, kind, yiaddr, &params);
        let stage = match kind {
            MessageType::Offer => BootStage::DhcpOffer {
                yiaddr,
                options: packet::option_codes(&bytes),
                next_server: params.tftp_server,
            },
            MessageType::Nak => {
                BootStage::DhcpNak { reason: params.message.clone().unwrap_or_default() }
            }
            _ => BootStage::DhcpAck { yiaddr },
        };
        Reply {
            kind,
            bytes,
            dest: packet::destination(req, kind, self.opts.server_port, self.opts.client_port),
            delay: if req.pxe { self.opts.pxe_reply_delay } else { Duration::ZERO },
            stage,
        }
    }

    /// A sighting for every client on a storage interface and every Pi on a flat network
    /// (reserved, or any in discovery mode), once per (interface, MAC, serial).
    fn sighting(&mut self, ctx: &Ctx<'_>) -> Option<Sighting> {
        let (slot, reserved) = match ctx.role {
            Role::Storage(s) => (Some(s.slot.clone()), true),
            Role::Flat(f) => {
                let reserved = f.reservation_for(&ctx.key.mac, ctx.id.serial).is_some();
                if ctx.id.model.is_none() || !(reserved || f.discovery) {
                    return None;
                }
                (None, reserved)
            }
        };
        if self.seen.get(&ctx.key) == Some(&ctx.id.serial) {
            return None;
        }
        if self.seen.len() >= MAX_SEEN {
            self.seen.clear();
        }
        self.seen.insert(ctx.key.clone(), ctx.id.serial);
        Some(Sighting {
            interface: ctx.key.interface.clone(),
            slot,
            mac: ctx.key.mac,
            serial: ctx.id.serial,
            model: ctx.id.model,
            reserved,
            at: ctx.now,
        })
    }
}

fn server_id(role: &Role) -> Ipv4Addr {
    match role {
        Role::Storage(s) => s.controller_addr,
        Role::Flat(f) => f.server_addr,
    }
}

/// Relays are served only on flat networks, and only from an address of that network
/// (a relay agent on the same link); storage slots never see relayed traffic.
fn serves_relay(role: &Role, giaddr: Ipv4Addr) -> bool {
    matches!(role, Role::Flat(f) if f.contains(giaddr))
}

fn on_network(role: &Role, addr: Ipv4Addr) -> bool {
    match role {
        Role::Storage(s) => addr == s.pi_addr,
        Role::Flat(f) => f.contains(addr),
    }
}
