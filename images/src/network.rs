//! The Pi's public network configuration (eth0.<public vlan>, IPv6 only), rendered in
//! the format its release uses. eth0 itself is left alone: the kernel configured it
//! from `ip=` for the NFS root and taking it down would hang the Pi.

use std::net::Ipv6Addr;

use crate::recipe::NetworkStyle;

/// The public interface settings of one Pi slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicNetwork {
    pub vlan: u16,
    pub address: Ipv6Addr,
    pub prefix_len: u8,
    pub gateway: Ipv6Addr,
}

impl PublicNetwork {
    pub fn interface(&self) -> String {
        format!("eth0.{}", self.vlan)
    }
}

/// Files (path relative to the root, contents) for the given style.
pub fn render(style: NetworkStyle, net: &PublicNetwork) -> Vec<(String, String)> {
    match style {
        NetworkStyle::Ifupdown => vec![("etc/network/interfaces".into(), render_ifupdown(net))],
        NetworkStyle::SystemdNetworkd => render_networkd(net),
    }
}

/// `/etc/network/interfaces` for ifupdown with the `vlan` package.
pub fn render_ifupdown(net: &PublicNetwork) -> String {
    let ifname = net.interface();
    format!(
        "# Written by Bramble.\n\
         auto lo\n\
         iface lo inet loopback\n\
         \n\
         # eth0 carries the NFS root and was configured by the kernel (ip=); leave it.\n\
         iface eth0 inet manual\n\
         \n\
         auto {ifname}\n\
         iface {ifname} inet6 static\n\
         \x20   vlan-raw-device eth0\n\
         \x20   address {}\n\
         \x20   netmask {}\n\
         \x20   gateway {}\n\
         \x20   accept_ra 0\n",
        net.address, net.prefix_len, net.gateway
    )
}

/// systemd-networkd units: eth0 kept as configured, a VLAN netdev and its network.
pub fn render_networkd(net: &PublicNetwork) -> Vec<(String, String)> {
    let ifname = net.interface();
    let eth0 = format!(
        "# Written by Bramble. eth0 carries the NFS root (kernel ip=); keep it as it is.\n\
         [Match]\nName=eth0\n\n[Network]\nDHCP=no\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n\
         KeepConfiguration=yes\nVLAN={ifname}\n"
    );
    let netdev = format!(
        "# Written by Bramble.\n[NetDev]\nName={ifname}\nKind=vlan\n\n[VLAN]\nId={}\n",
        net.vlan
    );
    let network = format!(
        "# Written by Bramble.\n[Match]\nName={ifname}\n\n[Network]\nAddress={}/{}\nGateway={}\nIPv6AcceptRA=no\n",
        net.address, net.prefix_len, net.gateway
    );
    vec![
        ("etc/systemd/network/10-eth0.network".into(), eth0),
        (format!("etc/systemd/network/20-{ifname}.netdev"), netdev),
        (format!("etc/systemd/network/20-{ifname}.network"), network),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net() -> PublicNetwork {
        PublicNetwork {
            vlan: 131,
            address: "2a00:1098:0:84:1000:1::2".parse().expect("addr"),
            prefix_len: 64,
            gateway: "2a00:1098:0:84::1".parse().expect("gw"),
        }
    }

    #[test]
    fn ifupdown_stanza_for_the_public_vlan() {
        let text = render_ifupdown(&net());
        assert!(
            text.contains(
                "auto eth0.131\niface eth0.131 inet6 static\n    vlan-raw-device eth0\n    \
            address 2a00:1098:0:84:1000:1:0:2\n    netmask 64\n    gateway 2a00:1098:0:84::1\n"
            ),
            "{text}"
        );
        assert!(!text.contains("auto eth0\n"));
    }

    #[test]
    fn networkd_units_for_the_public_vlan() {
        let files = render(NetworkStyle::SystemdNetworkd, &net());
        let names: Vec<_> = files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "etc/systemd/network/10-eth0.network",
                "etc/systemd/network/20-eth0.131.netdev",
                "etc/systemd/network/20-eth0.131.network"
            ]
        );
        assert!(
            files[0].1.contains("VLAN=eth0.131") && files[0].1.contains("KeepConfiguration=yes")
        );
        assert!(files[1].1.contains("Kind=vlan\n\n[VLAN]\nId=131\n"));
        assert!(
            files[2]
                .1
                .contains("Address=2a00:1098:0:84:1000:1:0:2/64\nGateway=2a00:1098:0:84::1\n")
        );
    }
}
