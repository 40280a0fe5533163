//! What each served interface is: a per-Pi storage /30 or a flat network with a pool and
//! reservations, validated when built.

use std::net::Ipv4Addr;
use std::time::Duration;

use super::types::{MacAddr, PiSerial, SlotKey};

/// A configuration that cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("interface name `{ifname}` is empty or longer than 15 bytes")]
    BadIfname { ifname: String },
    #[error("storage interface {ifname}: {controller} and {pi} are not .1 and .2 of one /30")]
    NotASlash30 { ifname: String, controller: Ipv4Addr, pi: Ipv4Addr },
    #[error("flat network on {ifname}: prefix /{prefix} is not between /8 and /30")]
    BadPrefix { ifname: String, prefix: u8 },
    #[error("flat network on {ifname}: {addr} ({what}) is outside {network}/{prefix}")]
    OutsideSubnet {
        ifname: String,
        what: &'static str,
        addr: Ipv4Addr,
        network: Ipv4Addr,
        prefix: u8,
    },
    #[error("flat network on {ifname}: pool {first}..={last} is empty")]
    EmptyPool { ifname: String, first: Ipv4Addr, last: Ipv4Addr },
}

/// One per-Pi storage network: whoever asks on `ifname` is the Pi in `slot` and gets
/// `pi_addr`, whatever its MAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageIface {
    pub ifname: String,
    pub controller_addr: Ipv4Addr,
    pub pi_addr: Ipv4Addr,
    pub tftp_server: Ipv4Addr,
    pub slot: SlotKey,
}

impl StorageIface {
    /// A storage /30 whose `.1` is `controller_addr`; the Pi gets `.2`.
    pub fn new(
        ifname: &str,
        controller_addr: Ipv4Addr,
        tftp_server: Ipv4Addr,
        slot: SlotKey,
    ) -> Result<Self, ConfigError> {
        check_ifname(ifname)?;
        let c = u32::from(controller_addr);
        let pi = Ipv4Addr::from(c.wrapping_add(1));
        if c & 3 != 1 {
            return Err(ConfigError::NotASlash30 {
                ifname: ifname.to_string(),
                controller: controller_addr,
                pi,
            });
        }
        Ok(StorageIface {
            ifname: ifname.to_string(),
            controller_addr,
            pi_addr: pi,
            tftp_server,
            slot,
        })
    }

    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::new(255, 255, 255, 252)
    }
}

/// Who a static reservation is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReservationKey {
    Mac(MacAddr),
    Serial(PiSerial),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reservation {
    pub key: ReservationKey,
    pub addr: Ipv4Addr,
}

/// A flat network on one interface: subnet, dynamic pool, reservations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlatNetwork {
    pub ifname: String,
    /// This server's address on the subnet (server identifier).
    pub server_addr: Ipv4Addr,
    pub network: Ipv4Addr,
    pub prefix: u8,
    /// Inclusive pool bounds; `None` serves reservations only.
    pub pool: Option<(Ipv4Addr, Ipv4Addr)>,
    pub router: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub tftp_server: Option<Ipv4Addr>,
    pub reservations: Vec<Reservation>,
    /// Report Pis without a reservation as sightings with `reserved: false` (the
    /// inventory records them as `new` Pis).
    pub discovery: bool,
    pub lease_time: Duration,
}

impl FlatNetwork {
    /// Checks that every address lies in the subnet and the pool is not empty.
    pub fn validate(self) -> Result<Self, ConfigError> {
        check_ifname(&self.ifname)?;
        if !(8..=30).contains(&self.prefix) {
            return Err(ConfigError::BadPrefix {
                ifname: self.ifname.clone(),
                prefix: self.prefix,
            });
        }
        let mut checks: Vec<(&'static str, Ipv4Addr)> = vec![("server", self.server_addr)];
        checks.extend(self.router.map(|r| ("router", r)));
        checks.extend(self.reservations.iter().map(|r| ("reservation", r.addr)));
        if let Some((first, last)) = self.pool {
            checks.push(("pool start", first));
            checks.push(("pool end", last));
            if u32::from(first) > u32::from(last) {
                return Err(ConfigError::EmptyPool { ifname: self.ifname.clone(), first, last });
            }
        }
        for (what, addr) in checks {
            if !self.contains(addr) {
                let (network, prefix) = (self.network, self.prefix);
                return Err(ConfigError::OutsideSubnet {
                    ifname: self.ifname.clone(),
                    what,
                    addr,
                    network,
                    prefix,
                });
            }
        }
        Ok(self)
    }

    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0))
    }

    /// True for a usable host address of the subnet (not network or broadcast).
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        let mask = u32::from(self.netmask());
        let a = u32::from(addr);
        a & mask == u32::from(self.network) & mask && a & !mask != 0 && a & !mask != !mask
    }

    pub fn in_pool(&self, addr: Ipv4Addr) -> bool {
        self.pool.is_some_and(|(first, last)| {
            (u32::from(first)..=u32::from(last)).contains(&u32::from(addr))
        })
    }

    /// The reserved address for a MAC, then for a serial.
    pub fn reservation_for(&self, mac: &MacAddr, serial: Option<PiSerial>) -> Option<Ipv4Addr> {
        let by =
            |key: ReservationKey| self.reservations.iter().find(|r| r.key == key).map(|r| r.addr);
        by(ReservationKey::Mac(*mac)).or_else(|| serial.and_then(|s| by(ReservationKey::Serial(s))))
    }

    /// True when `addr` is reserved for someone.
    pub fn is_reserved(&self, addr: Ipv4Addr) -> bool {
        self.reservations.iter().any(|r| r.addr == addr)
    }
}

/// Server-wide timing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerOptions {
    /// Lease time on storage interfaces (the address never changes, so long).
    pub storage_lease_time: Duration,
    /// How long an offered but not yet requested address stays held for the client.
    pub offer_hold: Duration,
    /// Delay before answering a PXE ROM (dnsmasq's dhcp-reply-delay): the Pi 3B ROM can
    /// miss replies that come too fast. Not applied to other clients.
    pub pxe_reply_delay: Duration,
    /// How long a declined flat address is kept out of the pool.
    pub decline_hold: Duration,
    /// UDP port to listen on (67 in production; tests may choose another).
    pub server_port: u16,
    /// UDP port replies go to (68).
    pub client_port: u16,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            storage_lease_time: Duration::from_secs(24 * 3600),
            offer_hold: Duration::from_secs(60),
            pxe_reply_delay: Duration::ZERO,
            decline_hold: Duration::from_secs(600),
            server_port: 67,
            client_port: 68,
        }
    }
}

fn check_ifname(ifname: &str) -> Result<(), ConfigError> {
    if ifname.is_empty() || ifname.len() > 15 || ifname.contains(['/', ' ', '\0']) {
        return Err(ConfigError::BadIfname { ifname: ifname.to_string() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat() -> FlatNetwork {
        FlatNetwork {
            ifname: "dh0".into(),
            server_addr: Ipv4Addr::new(10, 101, 200, 1),
            network: Ipv4Addr::new(10, 101, 200, 0),
            prefix: 24,
            pool: Some((Ipv4Addr::new(10, 101, 200, 100), Ipv4Addr::new(10, 101, 200, 199))),
            router: Some(Ipv4Addr::new(10, 101, 200, 1)),
            dns: vec![],
            tftp_server: None,
            reservations: vec![],
            discovery: false,
            lease_time: Duration::from_secs(3600),
        }
    }

    #[test]
    fn storage_requires_dot_one_of_a_slash30() {
        let slot = SlotKey("s".into());
        let s = StorageIface::new(
            "dh0",
            Ipv4Addr::new(10, 101, 3, 1),
            Ipv4Addr::new(10, 101, 3, 1),
            slot.clone(),
        )
        .unwrap();
        assert_eq!(s.pi_addr, Ipv4Addr::new(10, 101, 3, 2));
        assert!(
            StorageIface::new(
                "dh0",
                Ipv4Addr::new(10, 101, 3, 2),
                Ipv4Addr::LOCALHOST,
                slot.clone()
            )
            .is_err()
        );
        assert!(
            StorageIface::new(
                "much-too-long-name",
                Ipv4Addr::new(10, 101, 3, 1),
                Ipv4Addr::LOCALHOST,
                slot
            )
            .is_err()
        );
    }

    #[test]
    fn flat_validation_catches_bad_addresses() {
        assert!(flat().validate().is_ok());
        let mut f = flat();
        f.pool = Some((Ipv4Addr::new(10, 101, 200, 100), Ipv4Addr::new(10, 101, 201, 1)));
        assert!(matches!(f.validate(), Err(ConfigError::OutsideSubnet { what: "pool end", .. })));
        let mut f = flat();
        f.pool = Some((Ipv4Addr::new(10, 101, 200, 150), Ipv4Addr::new(10, 101, 200, 100)));
        assert!(matches!(f.validate(), Err(ConfigError::EmptyPool { .. })));
        assert!(!flat().contains(Ipv4Addr::new(10, 101, 200, 255)));
        assert_eq!(flat().netmask(), Ipv4Addr::new(255, 255, 255, 0));
    }
}
