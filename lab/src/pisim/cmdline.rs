//! Parsing the parts of cmdline.txt the kernel needs to find an NFS root:
//! `root=/dev/nfs`, `nfsroot=[SERVER:]PATH[,OPTIONS]` and `ip=` (kernel
//! Documentation/admin-guide/nfs/nfsroot.rst).

use std::net::Ipv4Addr;

/// How the kernel would configure `eth0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IpConfig {
    /// `ip=dhcp` (or no `ip=`): keep the address DHCP gave.
    Dhcp,
    /// `ip=CLIENT:SERVER:GATEWAY:NETMASK:HOSTNAME:DEVICE:AUTOCONF`.
    Static { client: Ipv4Addr, server: Option<Ipv4Addr>, netmask: Option<Ipv4Addr> },
}

/// Where the root is and how the kernel reaches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootCmdline {
    /// The server named in `nfsroot=`, if it names one.
    pub nfs_server: Option<Ipv4Addr>,
    pub nfs_path: String,
    pub nfs_options: Vec<String>,
    pub ip: IpConfig,
}

impl BootCmdline {
    /// The NFS server: from `nfsroot=`, else the `ip=` server field, else `fallback`
    /// (the DHCP/TFTP server), as the kernel chooses it.
    pub fn root_server(&self, fallback: Ipv4Addr) -> Ipv4Addr {
        let from_ip = match &self.ip {
            IpConfig::Static { server, .. } => *server,
            IpConfig::Dhcp => None,
        };
        self.nfs_server.or(from_ip).unwrap_or(fallback)
    }
}

/// What is wrong with a cmdline.txt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CmdlineError {
    #[error("cmdline.txt is not UTF-8")]
    NotText,
    #[error("root is {found:?}, not /dev/nfs")]
    NotNfsRoot { found: Option<String> },
    #[error("no nfsroot=")]
    MissingNfsroot,
    #[error("nfsroot path {path:?} is not absolute")]
    RelativePath { path: String },
    #[error("nfsroot lacks option {option} (Bramble always sets vers=3,tcp)")]
    MissingOption { option: &'static str },
    #[error("ip= field {field} is not an IPv4 address: {value:?}")]
    BadIp { field: &'static str, value: String },
}

/// Parses cmdline.txt bytes; requires `vers=3` and `tcp` on the NFS root.
pub fn parse_cmdline(bytes: &[u8]) -> Result<BootCmdline, CmdlineError> {
    let text = std::str::from_utf8(bytes).map_err(|_| CmdlineError::NotText)?;
    let arg = |key: &str| text.split_whitespace().rev().find_map(|w| w.strip_prefix(key));
    let root = arg("root=");
    if root != Some("/dev/nfs") {
        return Err(CmdlineError::NotNfsRoot { found: root.map(str::to_string) });
    }
    let nfsroot = arg("nfsroot=").ok_or(CmdlineError::MissingNfsroot)?;
    let (location, options) = nfsroot.split_once(',').unwrap_or((nfsroot, ""));
    let (nfs_server, nfs_path) = match location.split_once(':') {
        Some((server, path)) => (Some(parse_ip("nfsroot server", server)?), path),
        None => (None, location),
    };
    if !nfs_path.starts_with('/') {
        return Err(CmdlineError::RelativePath { path: nfs_path.to_string() });
    }
    let nfs_options: Vec<String> =
        options.split(',').filter(|o| !o.is_empty()).map(str::to_string).collect();
    for (option, accepted) in
        [("vers=3", &["vers=3", "nfsvers=3", "v3"][..]), ("tcp", &["tcp", "proto=tcp"])]
    {
        if !nfs_options.iter().any(|o| accepted.contains(&o.as_str())) {
            return Err(CmdlineError::MissingOption { option });
        }
    }
    let ip = match arg("ip=") {
        None | Some("dhcp" | "on" | "any" | "bootp") => IpConfig::Dhcp,
        Some(spec) => parse_ip_spec(spec)?,
    };
    Ok(BootCmdline { nfs_server, nfs_path: nfs_path.to_string(), nfs_options, ip })
}

fn parse_ip_spec(spec: &str) -> Result<IpConfig, CmdlineError> {
    let mut fields = spec.split(':');
    let mut next = |name| -> Result<Option<Ipv4Addr>, CmdlineError> {
        match fields.next() {
            None | Some("") => Ok(None),
            Some(v) => parse_ip(name, v).map(Some),
        }
    };
    let client = next("client")?;
    let server = next("server")?;
    let _gateway = next("gateway")?;
    let netmask = next("netmask")?;
    match client {
        Some(client) => Ok(IpConfig::Static { client, server, netmask }),
        None => Ok(IpConfig::Dhcp),
    }
}

fn parse_ip(field: &'static str, value: &str) -> Result<Ipv4Addr, CmdlineError> {
    value.parse().map_err(|_| CmdlineError::BadIp { field, value: value.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DESIGN_LINE: &str = "dwc_otg.lpm_enable=0 console=ttyAMA0,115200 console=tty1 root=/dev/nfs rootfstype=nfs ip=10.46.189.2::10.46.189.1:255.255.255.252::eth0:off nfsroot=10.46.189.1:/export/10.46.189.2,vers=3,tcp elevator=deadline fsck.repair=yes rootwait\n";

    #[test]
    fn parses_the_production_boot_line() {
        let c = parse_cmdline(DESIGN_LINE.as_bytes()).expect("valid");
        assert_eq!(c.nfs_server, Some(Ipv4Addr::new(10, 46, 189, 1)));
        assert_eq!(c.nfs_path, "/export/10.46.189.2");
        assert_eq!(c.nfs_options, ["vers=3", "tcp"]);
        assert_eq!(
            c.ip,
            IpConfig::Static {
                client: Ipv4Addr::new(10, 46, 189, 2),
                server: None,
                netmask: Some(Ipv4Addr::new(255, 255, 255, 252)),
            }
        );
    }

    #[test]
    fn server_falls_back_to_ip_then_dhcp() {
        let line = "root=/dev/nfs nfsroot=/r,vers=3,tcp ip=10.0.0.2:10.0.0.9::255.0.0.0::eth0:off";
        let c = parse_cmdline(line.as_bytes()).expect("valid");
        assert_eq!(c.root_server(Ipv4Addr::new(1, 1, 1, 1)), Ipv4Addr::new(10, 0, 0, 9));
        let c = parse_cmdline(b"root=/dev/nfs nfsroot=/r,vers=3,tcp ip=dhcp").expect("valid");
        assert_eq!(c.ip, IpConfig::Dhcp);
        assert_eq!(c.root_server(Ipv4Addr::new(1, 1, 1, 1)), Ipv4Addr::new(1, 1, 1, 1));
    }

    #[test]
    fn rejects_what_would_not_boot() {
        let cases: &[(&str, CmdlineError)] = &[
            (
                "root=/dev/mmcblk0p2",
                CmdlineError::NotNfsRoot { found: Some("/dev/mmcblk0p2".into()) },
            ),
            ("root=/dev/nfs", CmdlineError::MissingNfsroot),
            (
                "root=/dev/nfs nfsroot=10.0.0.1:/r,tcp",
                CmdlineError::MissingOption { option: "vers=3" },
            ),
            (
                "root=/dev/nfs nfsroot=10.0.0.1:/r,vers=3",
                CmdlineError::MissingOption { option: "tcp" },
            ),
            (
                "root=/dev/nfs nfsroot=10.0.0.1:r,vers=3,tcp",
                CmdlineError::RelativePath { path: "r".into() },
            ),
            (
                "root=/dev/nfs nfsroot=/r,vers=3,tcp ip=10.0.0.300::::",
                CmdlineError::BadIp { field: "client", value: "10.0.0.300".into() },
            ),
        ];
        for (line, want) in cases {
            assert_eq!(parse_cmdline(line.as_bytes()).as_ref(), Err(want), "{line}");
        }
        assert_eq!(parse_cmdline(&[0xff, 0xfe]), Err(CmdlineError::NotText));
    }
}
