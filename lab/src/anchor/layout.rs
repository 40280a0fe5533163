//! What an operator without Bramble writes by hand for a shelf, as pure functions:
//! the /30 of each slot, dnsmasq's DHCP-only arguments, the tftpd-hpa command line,
//! the ganesha EXPORT blocks and each Pi's cmdline.txt.

use std::net::Ipv4Addr;
use std::path::Path;

use crate::pisim::{Mac, PiModel, Serial};

/// Most Pis one anchor shelf holds (a production shelf).
pub const MAX_PIS: usize = 96;

/// One slot of the shelf: which board sits there and its storage /30.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotPlan {
    pub index: usize,
    pub model: PiModel,
    pub serial: Serial,
    /// The server's address on the /30 (DHCP, TFTP and NFS for this Pi).
    pub server: Ipv4Addr,
    /// The address the Pi is given.
    pub pi: Ipv4Addr,
    /// The server-side interface in the anchor's namespace.
    pub server_if: String,
}

impl SlotPlan {
    /// Slot `index` (0-based, below [`MAX_PIS`]): 10.107.(index / 64).(4 * (index % 64))/30,
    /// server `.1`, Pi `.2` of the block.
    pub fn new(index: usize, model: PiModel, serial: Serial) -> SlotPlan {
        let third = (index / 64) as u8;
        let base = ((index % 64) * 4) as u8;
        SlotPlan {
            index,
            model,
            serial,
            server: Ipv4Addr::new(10, 107, third, base + 1),
            pi: Ipv4Addr::new(10, 107, third, base + 2),
            server_if: format!("pi{index}"),
        }
    }

    pub fn mac(&self) -> Mac {
        Mac::for_board(self.model, self.serial)
    }

    pub fn hostname(&self) -> String {
        format!("anchor-{}", self.serial)
    }

    /// The customer key the Pi's root must hold.
    pub fn key(&self) -> String {
        format!("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBS{} customer@{}", self.serial, self.serial)
    }
}

/// 3B, 3B+, 4, 3B, ... with serials `0x0b57_0000 + index`.
pub fn mixed_shelf(pis: usize) -> Vec<(PiModel, Serial)> {
    shelf_of(pis, &[PiModel::Pi3B, PiModel::Pi3BPlus, PiModel::Pi4])
}

/// The four boot ROMs in turn (3B, 3B+, 4, 5, ...), as Bramble's lab mixes them.
pub const WITH_PI5: [PiModel; 4] = [PiModel::Pi3B, PiModel::Pi3BPlus, PiModel::Pi4, PiModel::Pi5];

/// `models` in turn with serials `0x0b57_0000 + index` (an empty list means 3B only).
pub fn shelf_of(pis: usize, models: &[PiModel]) -> Vec<(PiModel, Serial)> {
    let pick = |i: usize| models.get(i % models.len().max(1)).copied().unwrap_or(PiModel::Pi3B);
    (0..pis).map(|i| (pick(i), Serial(0x0b57_0000 + i as u32))).collect()
}

/// dnsmasq serving DHCP only (no DNS, no TFTP): one static reservation per Pi keyed on
/// its MAC, option 66 = the /30's server, the PXE menu that puts "Raspberry Pi Boot"
/// in option 43, and the reply delay operators add for the Pi 3B ROM.
pub fn dnsmasq_args(slots: &[SlotPlan], lease_file: &Path, reply_delay_secs: u32) -> Vec<String> {
    let mut args: Vec<String> = [
        "--no-daemon",
        "--conf-file=/dev/null",
        "--port=0",
        "--bind-interfaces",
        "--user=root",
        "--log-dhcp",
        "--dhcp-authoritative",
        // argv, not a config file: no quotes (dnsmasq would keep them); the three
        // trailing spaces are what the Pi 3B ROM needs.
        "--pxe-service=0,Raspberry Pi Boot   ",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(format!("--dhcp-leasefile={}", lease_file.display()));
    if reply_delay_secs > 0 {
        args.push(format!("--dhcp-reply-delay={reply_delay_secs}"));
    }
    for s in slots {
        let tag = format!("p{}", s.index);
        args.push(format!("--interface={}", s.server_if));
        args.push(format!("--dhcp-range=set:{tag},{},static,255.255.255.252,1h", s.pi));
        args.push(format!("--dhcp-host={},{}", s.mac(), s.pi));
        args.push(format!("--dhcp-option=tag:{tag},66,{}", s.server));
    }
    args
}

/// `in.tftpd` in the foreground on every address of the anchor's namespace, chrooted
/// to `root`, read-only.
pub fn tftpd_args(root: &Path) -> Vec<String> {
    vec![
        "--foreground".into(),
        "--address".into(),
        "0.0.0.0:69".into(),
        "--secure".into(),
        "--user".into(),
        "root".into(),
        root.display().to_string(),
    ]
}

/// One EXPORT per Pi: its own root, NFSv3+4 over TCP, only its address may mount.
pub fn render_exports(slots: &[SlotPlan], root_of: impl Fn(&SlotPlan) -> String) -> String {
    let mut out = String::from("# Written by hand (bramble-lab anchor): one export per Pi.\n");
    for s in slots {
        let path = root_of(s);
        out.push_str(&format!(
            "EXPORT {{\n\
             \x20   Export_Id = {id};\n\
             \x20   Path = \"{path}\";\n\
             \x20   Pseudo = \"{path}\";\n\
             \x20   Protocols = 3, 4;\n\
             \x20   Transports = TCP;\n\
             \x20   SecType = sys;\n\
             \x20   Squash = No_Root_Squash;\n\
             \x20   FSAL {{ Name = VFS; }}\n\
             \x20   CLIENT {{ Clients = {pi}; Access_Type = RW; }}\n\
             }}\n",
            id = s.index + 1,
            pi = s.pi,
        ));
    }
    out
}

/// The boot line for a Pi whose root is exported at `root_path`.
pub fn cmdline(slot: &SlotPlan, root_path: &str) -> String {
    format!(
        "console=serial0,115200 console=tty1 root=/dev/nfs rootfstype=nfs \
         ip={pi}::{srv}:255.255.255.252::eth0:off nfsroot={srv}:{root_path},vers=3,tcp \
         elevator=deadline fsck.repair=yes rootwait\n",
        pi = slot.pi,
        srv = slot.server,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pisim::parse_cmdline;

    #[test]
    fn slots_get_disjoint_slash30s_inside_10_107() {
        let slots: Vec<SlotPlan> = mixed_shelf(MAX_PIS)
            .into_iter()
            .enumerate()
            .map(|(i, (m, s))| SlotPlan::new(i, m, s))
            .collect();
        assert_eq!(slots[0].server, Ipv4Addr::new(10, 107, 0, 1));
        assert_eq!(slots[0].pi, Ipv4Addr::new(10, 107, 0, 2));
        assert_eq!(slots[63].pi, Ipv4Addr::new(10, 107, 0, 254));
        assert_eq!(slots[64].server, Ipv4Addr::new(10, 107, 1, 1));
        let mut pis: Vec<Ipv4Addr> = slots.iter().map(|s| s.pi).collect();
        pis.sort();
        pis.dedup();
        assert_eq!(pis.len(), MAX_PIS);
        assert_eq!(slots[95].model, PiModel::Pi4);
    }

    #[test]
    fn dnsmasq_reserves_each_mac_and_serves_no_tftp() {
        let slot = SlotPlan::new(5, PiModel::Pi3B, Serial(0x0b57_0005));
        let args = dnsmasq_args(std::slice::from_ref(&slot), Path::new("/l"), 1);
        assert!(
            args.contains(&"--dhcp-host=b8:27:eb:57:00:05,10.107.0.22".to_string()),
            "{args:?}"
        );
        assert!(args.contains(&"--dhcp-option=tag:p5,66,10.107.0.21".to_string()));
        assert!(args.contains(&"--dhcp-reply-delay=1".to_string()));
        assert!(!args.iter().any(|a| a.contains("tftp")));
        assert!(args.contains(&"--pxe-service=0,Raspberry Pi Boot   ".to_string()));
        assert!(!dnsmasq_args(&[slot], Path::new("/l"), 0).iter().any(|a| a.contains("delay")));
    }

    #[test]
    fn the_cmdline_parses_as_the_simulator_reads_it() {
        let slot = SlotPlan::new(1, PiModel::Pi4, Serial(7));
        let parsed = parse_cmdline(cmdline(&slot, "/r/00000007").as_bytes()).expect("parses");
        assert_eq!(parsed.nfs_server, Some(slot.server));
        assert_eq!(parsed.nfs_path, "/r/00000007");
    }

    #[test]
    fn exports_name_each_pi_once() {
        let slots =
            [SlotPlan::new(0, PiModel::Pi3B, Serial(1)), SlotPlan::new(1, PiModel::Pi4, Serial(2))];
        let text = render_exports(&slots, |s| format!("/roots/{}", s.serial));
        assert_eq!(text.matches("EXPORT {").count(), 2);
        assert!(text.contains("Export_Id = 2;") && text.contains("Clients = 10.107.0.6;"));
        assert!(text.contains("Path = \"/roots/00000001\";"));
    }
}
