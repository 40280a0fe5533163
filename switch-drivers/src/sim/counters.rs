//! Read counters of the virtual switch: how many read requests (GET, GETNEXT, GETBULK)
//! each manager sent, counted once per request however many varbinds it carried, so a
//! test can tell one manager polling a switch from three.
//!
//! The agent sees every request from the relay's upstream socket for that manager, not
//! from the manager itself; the relay records which is which ([`ReadCounter::relayed`]).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};

/// Request ids remembered per upstream socket: enough for a manager's pipelined
/// requests, whose varbinds the agent may interleave.
const RECENT: usize = 64;

/// Read requests by manager address.
#[derive(Debug, Default)]
pub struct ReadCounter {
    by_manager: BTreeMap<IpAddr, u64>,
    /// Upstream (relay) socket → the manager it relays for.
    upstream: HashMap<SocketAddr, SocketAddr>,
    /// Request ids already counted, per upstream socket.
    recent: HashMap<SocketAddr, VecDeque<i32>>,
}

impl ReadCounter {
    /// The relay's socket `upstream` carries the requests of `manager`.
    pub fn relayed(&mut self, upstream: SocketAddr, manager: SocketAddr) {
        self.upstream.insert(upstream, manager);
    }

    /// The relay dropped its socket `upstream`.
    pub fn forget(&mut self, upstream: SocketAddr) {
        self.upstream.remove(&upstream);
        self.recent.remove(&upstream);
    }

    /// One varbind of read request `request_id`, as the agent saw it from `source`;
    /// counts the request the first time one of its varbinds is seen.
    pub fn varbind(&mut self, source: SocketAddr, request_id: i32) {
        let recent = self.recent.entry(source).or_default();
        if recent.contains(&request_id) {
            return;
        }
        if recent.len() == RECENT {
            recent.pop_front();
        }
        recent.push_back(request_id);
        let manager = self.upstream.get(&source).copied().unwrap_or(source);
        *self.by_manager.entry(manager.ip()).or_default() += 1;
    }

    /// Read requests so far, by manager address.
    pub fn by_manager(&self) -> BTreeMap<IpAddr, u64> {
        self.by_manager.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("address")
    }

    #[test]
    fn a_request_counts_once_for_the_manager_it_was_relayed_for() {
        let mut c = ReadCounter::default();
        let (up_a, up_b) = (addr("127.0.0.1:4001"), addr("127.0.0.1:4002"));
        c.relayed(up_a, addr("10.250.0.1:50000"));
        c.relayed(up_b, addr("10.250.0.2:50000"));
        for _ in 0..5 {
            c.varbind(up_a, 7);
        }
        c.varbind(up_b, 7);
        c.varbind(up_a, 8);
        c.varbind(up_a, 7);
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        assert_eq!(c.by_manager(), BTreeMap::from([(ip("10.250.0.1"), 2), (ip("10.250.0.2"), 1)]));
    }

    #[test]
    fn an_id_seen_long_ago_counts_again() {
        let mut c = ReadCounter::default();
        let up = addr("127.0.0.1:4001");
        for id in 0..=i32::try_from(RECENT).expect("small") {
            c.varbind(up, id);
        }
        c.varbind(up, 0);
        assert_eq!(c.by_manager().values().sum::<u64>(), RECENT as u64 + 2);
    }
}
