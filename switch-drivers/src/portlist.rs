//! Q-BRIDGE-MIB PortList encoding: a bitmap where the first octet holds ports 1-8 and
//! the most significant bit is the lowest port (port 1 = 0x80).

use std::collections::BTreeSet;

/// Encodes a set of 1-based port numbers into a PortList of `ports` ports.
/// Ports outside `1..=ports` are ignored.
pub fn encode(members: &BTreeSet<u16>, ports: u16) -> Vec<u8> {
    let mut out = vec![0u8; usize::from(ports).div_ceil(8)];
    for &p in members {
        if p == 0 || p > ports {
            continue;
        }
        let bit = usize::from(p - 1);
        out[bit / 8] |= 0x80 >> (bit % 8);
    }
    out
}

/// Decodes a PortList into 1-based port numbers. Extra trailing bytes are accepted.
pub fn decode(bytes: &[u8]) -> BTreeSet<u16> {
    let mut set = BTreeSet::new();
    for (i, byte) in bytes.iter().enumerate() {
        for b in 0..8u16 {
            if byte & (0x80 >> b) != 0
                && let Ok(i) = u16::try_from(i)
            {
                set.insert(i.saturating_mul(8).saturating_add(b + 1));
            }
        }
    }
    set
}

/// Cisco vlanTrunkPortVlansEnabled: a 128-octet bitmap of VLANs 0-1023, MSB first.
pub fn encode_vlan_bitmap(vlans: &BTreeSet<u16>) -> Vec<u8> {
    let mut out = vec![0u8; 128];
    for &v in vlans.iter().filter(|v| **v < 1024) {
        out[usize::from(v) / 8] |= 0x80 >> (v % 8);
    }
    out
}

/// Decodes a Cisco VLAN bitmap (bit 0 = VLAN 0).
pub fn decode_vlan_bitmap(bytes: &[u8]) -> BTreeSet<u16> {
    decode(bytes).into_iter().map(|p| p - 1).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_one_is_the_high_bit_of_the_first_octet() {
        let set: BTreeSet<u16> = [1, 8, 9, 97].into_iter().collect();
        let bytes = encode(&set, 97);
        assert_eq!(bytes.len(), 13);
        assert_eq!(bytes[0], 0x81);
        assert_eq!(bytes[1], 0x80);
        assert_eq!(bytes[12], 0x80);
        assert_eq!(decode(&bytes), set);
    }

    #[test]
    fn out_of_range_ports_are_dropped_and_garbage_decodes() {
        let set: BTreeSet<u16> = [0, 5, 200].into_iter().collect();
        assert_eq!(decode(&encode(&set, 8)), [5].into_iter().collect());
        assert_eq!(decode(&[0xff; 2]).len(), 16);
        assert!(decode(&[]).is_empty());
    }

    #[test]
    fn vlan_bitmap_round_trips() {
        let set: BTreeSet<u16> = [1, 10, 131, 1023].into_iter().collect();
        let bytes = encode_vlan_bitmap(&set);
        assert_eq!(bytes[0], 0x40);
        assert_eq!(decode_vlan_bitmap(&bytes), set);
    }
}
