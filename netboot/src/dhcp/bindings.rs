//! The in-memory table of who holds which address, per interface, and address choice.
//! Pure data structure: the engine drives it, the store makes it durable.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::SystemTime;

use super::config::FlatNetwork;
use super::store::Lease;
use super::types::{ClientKey, PiSerial};

/// One client's hold on an address. `committed` once the store has it durably; an
/// uncommitted binding is an offer (or an ACK in flight) that expires on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub addr: Ipv4Addr,
    pub expires: SystemTime,
    pub committed: bool,
}

/// Bindings keyed on (interface, MAC), with the reverse index per (interface, address).
#[derive(Debug, Default)]
pub struct Bindings {
    by_key: HashMap<ClientKey, Binding>,
    by_addr: HashMap<(String, Ipv4Addr), ClientKey>,
    declined: HashMap<(String, Ipv4Addr), SystemTime>,
    /// Next pool offset to try, per interface, so allocation is not a full scan.
    cursor: HashMap<String, u32>,
}

impl Bindings {
    pub fn get(&self, key: &ClientKey) -> Option<&Binding> {
        self.by_key.get(key)
    }

    /// The client holding `addr` on `ifname`, if its binding has not expired.
    pub fn holder(&self, ifname: &str, addr: Ipv4Addr, now: SystemTime) -> Option<&ClientKey> {
        let key = self.by_addr.get(&(ifname.to_string(), addr))?;
        self.by_key.get(key).filter(|b| b.expires > now).map(|_| key)
    }

    /// Gives `addr` to `key`, taking it from any previous holder (whose binding must have
    /// expired, or who is being replaced in a storage slot) and freeing `key`'s old one.
    /// Returns the previous holder when it was another client.
    pub fn bind(&mut self, key: &ClientKey, binding: Binding) -> Option<ClientKey> {
        let addr_key = (key.interface.clone(), binding.addr);
        let previous = self.by_addr.insert(addr_key, key.clone()).filter(|k| k != key);
        if let Some(prev) = &previous {
            self.by_key.remove(prev);
        }
        if let Some(old) = self.by_key.insert(key.clone(), binding.clone())
            && old.addr != binding.addr
        {
            self.by_addr.remove(&(key.interface.clone(), old.addr));
        }
        previous
    }

    /// Marks a binding durable once its lease is stored (if it still matches).
    pub fn confirm(&mut self, lease: &Lease) {
        if let Some(b) = self.by_key.get_mut(&lease.key).filter(|b| b.addr == lease.addr) {
            b.committed = true;
            b.expires = lease.expires_at;
        }
    }

    pub fn remove(&mut self, key: &ClientKey) -> Option<Binding> {
        let binding = self.by_key.remove(key)?;
        self.by_addr.remove(&(key.interface.clone(), binding.addr));
        Some(binding)
    }

    pub fn decline(&mut self, ifname: &str, addr: Ipv4Addr, until: SystemTime) {
        self.declined.insert((ifname.to_string(), addr), until);
        if let Some(key) = self.by_addr.get(&(ifname.to_string(), addr)).cloned() {
            self.remove(&key);
        }
    }

    /// Forgets everything about an interface that is no longer served.
    pub fn remove_interface(&mut self, ifname: &str) {
        self.by_key.retain(|k, _| k.interface != ifname);
        self.by_addr.retain(|(i, _), _| i != ifname);
        self.declined.retain(|(i, _), _| i != ifname);
        self.cursor.remove(ifname);
    }

    /// Restores committed leases (at startup); expired ones are skipped.
    pub fn restore(&mut self, leases: &[Lease], now: SystemTime) {
        for lease in leases.iter().filter(|l| l.expires_at > now) {
            let binding = Binding { addr: lease.addr, expires: lease.expires_at, committed: true };
            self.bind(&lease.key, binding);
        }
    }

    /// Whether `key` may take `addr` on a flat network now.
    pub fn is_free_for(
        &self,
        net: &FlatNetwork,
        key: &ClientKey,
        addr: Ipv4Addr,
        now: SystemTime,
    ) -> bool {
        let declined =
            self.declined.get(&(net.ifname.clone(), addr)).is_some_and(|until| *until > now);
        let taken = self.holder(&net.ifname, addr, now).is_some_and(|k| k != key);
        net.contains(addr)
            && !declined
            && !taken
            && !net.is_reserved(addr)
            && addr != net.server_addr
            && Some(addr) != net.router
    }

    /// The address a flat-network client should get: its reservation, its current
    /// binding, the address it asks for (if free and in the pool), or the next free one.
    pub fn choose_flat(
        &mut self,
        net: &FlatNetwork,
        key: &ClientKey,
        serial: Option<PiSerial>,
        hint: Option<Ipv4Addr>,
        now: SystemTime,
    ) -> Option<Ipv4Addr> {
        if let Some(reserved) = net.reservation_for(&key.mac, serial) {
            return Some(reserved);
        }
        if let Some(b) = self.by_key.get(key) {
            let current = b.addr;
            if net.in_pool(current) && self.is_free_for(net, key, current, now) {
                return Some(current);
            }
        }
        if let Some(h) = hint.filter(|h| net.in_pool(*h) && self.is_free_for(net, key, *h, now)) {
            return Some(h);
        }
        self.next_free(net, key, now)
    }

    fn next_free(
        &mut self,
        net: &FlatNetwork,
        key: &ClientKey,
        now: SystemTime,
    ) -> Option<Ipv4Addr> {
        let (first, last) = net.pool?;
        let (first, last) = (u32::from(first), u32::from(last));
        let size = last.checked_sub(first)?.checked_add(1)?;
        let start = self.cursor.get(&net.ifname).copied().unwrap_or(0) % size;
        for step in 0..size {
            let offset = (start + step) % size;
            let addr = Ipv4Addr::from(first + offset);
            if self.is_free_for(net, key, addr, now) {
                self.cursor.insert(net.ifname.clone(), (offset + 1) % size);
                return Some(addr);
            }
        }
        None
    }
}
