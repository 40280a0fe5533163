//! Address planning for slots: a storage VLAN, a private /30 and a public IPv6 address
//! for each switch port of a shelf.
//!
//! [`allocate`] is pure: it is given what is already taken and returns a whole plan or
//! an error, never part of one. The database's unique constraints back it up against
//! two controllers planning at once.

use std::collections::HashSet;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::ops::RangeInclusive;

use ipnet::{Ipv4Net, Ipv6Net};
use serde::Serialize;

/// Where addresses come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressPools {
    /// Carved into /30s: network, `.1` controller, `.2` Pi, broadcast.
    pub storage_supernet: Ipv4Net,
    /// Storage VLAN ids to use (the public VLAN must lie outside).
    pub storage_vlans: RangeInclusive<u16>,
    /// The public IPv6 network every Pi gets one address of.
    pub public_prefix: Ipv6Net,
    /// Offset of the first Pi address inside `public_prefix`, so the low addresses stay
    /// free for routers.
    pub public_host_offset: u128,
}

/// The prefix length of a slot's storage network: a /30 of network, `.1` controller,
/// `.2` Pi, broadcast.
pub const STORAGE_PREFIX: u8 = 30;

/// The netmask of a slot's storage network (`255.255.255.252`).
pub fn storage_netmask() -> Ipv4Addr {
    Ipv4Addr::from(u32::MAX << (32 - u32::from(STORAGE_PREFIX)))
}

/// What one slot gets.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct SlotAddresses {
    pub vlan: u16,
    pub storage_net: Ipv4Net,
    pub public_ipv6: Ipv6Addr,
}

impl SlotAddresses {
    /// The fileserver/controller end of the /30 (`.1`).
    pub fn controller_ip(&self) -> Ipv4Addr {
        nth_host(self.storage_net, 1)
    }

    /// The Pi's end of the /30 (`.2`).
    pub fn pi_ip(&self) -> Ipv4Addr {
        nth_host(self.storage_net, 2)
    }
}

fn nth_host(net: Ipv4Net, n: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.network()) + n)
}

/// Everything already in use, from the inventory: the VLANs of one layer-2 domain (a
/// VLAN id only has to be unique where the same trunk carries it), every /30 and every
/// public address.
#[derive(Debug, Clone, Default)]
pub struct Taken {
    pub vlans: HashSet<u16>,
    pub storage_nets: HashSet<Ipv4Net>,
    pub public_ipv6: HashSet<Ipv6Addr>,
}

impl Taken {
    pub fn add(&mut self, s: &SlotAddresses) {
        self.vlans.insert(s.vlan);
        self.add_addresses(s.storage_net, s.public_ipv6);
    }

    /// A slot's addresses without its VLAN (a slot of another layer-2 domain).
    pub fn add_addresses(&mut self, storage_net: Ipv4Net, public_ipv6: Ipv6Addr) {
        self.storage_nets.insert(storage_net);
        self.public_ipv6.insert(public_ipv6);
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocError {
    #[error("not enough free {resource}: {needed} needed, {available} available")]
    Exhausted { resource: &'static str, needed: usize, available: usize },
}

/// Plans `count` slots from `pools`, avoiding everything in `taken`. Lowest free values
/// first, so plans are deterministic.
pub fn allocate(
    pools: &AddressPools,
    taken: &Taken,
    count: usize,
) -> Result<Vec<SlotAddresses>, AllocError> {
    let vlans: Vec<u16> =
        pools.storage_vlans.clone().filter(|v| !taken.vlans.contains(v)).take(count).collect();
    check("storage VLANs", count, vlans.len(), || {
        pools.storage_vlans.clone().filter(|v| !taken.vlans.contains(v)).count()
    })?;

    let free_nets = || {
        pools
            .storage_supernet
            .subnets(STORAGE_PREFIX)
            .into_iter()
            .flatten()
            .filter(|n| !taken.storage_nets.contains(n))
    };
    let nets: Vec<Ipv4Net> = free_nets().take(count).collect();
    check("storage /30 networks", count, nets.len(), || free_nets().count())?;

    let hosts = public_host_count(pools);
    let free_v6 = || {
        let base = u128::from(pools.public_prefix.network()) + pools.public_host_offset;
        (0..hosts).map(move |i| Ipv6Addr::from(base + i)).filter(|a| !taken.public_ipv6.contains(a))
    };
    let v6: Vec<Ipv6Addr> = free_v6().take(count).collect();
    check("public IPv6 addresses", count, v6.len(), || free_v6().count())?;

    Ok(vlans
        .into_iter()
        .zip(nets)
        .zip(v6)
        .map(|((vlan, storage_net), public_ipv6)| SlotAddresses { vlan, storage_net, public_ipv6 })
        .collect())
}

/// How many addresses of the prefix lie at or after the offset (capped: nobody racks
/// more than a few million Pis behind one controller).
fn public_host_count(pools: &AddressPools) -> u128 {
    let host_bits = 128 - u32::from(pools.public_prefix.prefix_len());
    let size = if host_bits >= 127 { u128::MAX } else { 1u128 << host_bits };
    size.saturating_sub(pools.public_host_offset).min(1 << 24)
}

fn check(
    resource: &'static str,
    needed: usize,
    got: usize,
    available: impl FnOnce() -> usize,
) -> Result<(), AllocError> {
    if got < needed {
        return Err(AllocError::Exhausted { resource, needed, available: available() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pools(supernet: &str, vlans: RangeInclusive<u16>, prefix: &str) -> AddressPools {
        AddressPools {
            storage_supernet: supernet.parse().unwrap(),
            storage_vlans: vlans,
            public_prefix: prefix.parse().unwrap(),
            public_host_offset: 0x1000_0000_0000_0002,
        }
    }

    #[test]
    fn the_first_slot_matches_the_documented_layout() {
        let p = pools("10.46.189.0/24", 10..=20, "2a00:1098:0:84::/64");
        let s = &allocate(&p, &Taken::default(), 1).unwrap()[0];
        assert_eq!(s.vlan, 10);
        assert_eq!(s.storage_net.to_string(), "10.46.189.0/30");
        assert_eq!(s.controller_ip().to_string(), "10.46.189.1");
        assert_eq!(s.pi_ip().to_string(), "10.46.189.2");
        assert_eq!(storage_netmask().to_string(), "255.255.255.252");
        assert_eq!(s.public_ipv6.to_string(), "2a00:1098:0:84:1000::2");
    }

    #[test]
    fn exhaustion_names_the_resource_and_allocates_nothing() {
        let p = pools("10.0.0.0/28", 100..=199, "2001:db8::/64");
        let err = allocate(&p, &Taken::default(), 5).unwrap_err();
        assert_eq!(
            err,
            AllocError::Exhausted { resource: "storage /30 networks", needed: 5, available: 4 }
        );
        let p = pools("10.0.0.0/16", 100..=101, "2001:db8::/64");
        let err = allocate(&p, &Taken::default(), 3).unwrap_err();
        assert!(err.to_string().contains("storage VLANs: 3 needed, 2 available"), "{err}");
    }

    proptest! {
        #[test]
        fn plans_never_collide_with_each_other_or_with_what_is_taken(
            taken_vlans in proptest::collection::hash_set(100u16..260, 0..80),
            taken_nets in proptest::collection::hash_set(0u32..64, 0..40),
            taken_v6 in proptest::collection::hash_set(0u128..300, 0..100),
            count in 0usize..120,
        ) {
            let p = pools("10.46.0.0/24", 100..=259, "2001:db8:0:84::/64");
            let base = u128::from(p.public_prefix.network()) + p.public_host_offset;
            let taken = Taken {
                vlans: taken_vlans,
                storage_nets: taken_nets
                    .iter()
                    .map(|i| Ipv4Net::new(Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 46, 0, 0)) + i * 4), 30).unwrap())
                    .collect(),
                public_ipv6: taken_v6.iter().map(|i| Ipv6Addr::from(base + i)).collect(),
            };

            match allocate(&p, &taken, count) {
                Ok(plan) => {
                    prop_assert_eq!(plan.len(), count);
                    let mut seen = taken.clone();
                    for s in &plan {
                        prop_assert!(p.storage_vlans.contains(&s.vlan));
                        prop_assert!(p.storage_supernet.contains(&s.storage_net));
                        prop_assert_eq!(s.storage_net.prefix_len(), 30);
                        prop_assert!(p.public_prefix.contains(&s.public_ipv6));
                        prop_assert!(!seen.vlans.contains(&s.vlan));
                        prop_assert!(!seen.storage_nets.contains(&s.storage_net));
                        prop_assert!(!seen.public_ipv6.contains(&s.public_ipv6));
                        seen.add(s);
                    }
                }
                Err(AllocError::Exhausted { needed, available, .. }) => {
                    prop_assert_eq!(needed, count);
                    prop_assert!(available < count);
                    // Only the /30s or VLANs can run out with these pools.
                    prop_assert!(count > 64 - taken.storage_nets.len() || count > 160 - taken.vlans.len());
                }
            }
        }
    }
}
