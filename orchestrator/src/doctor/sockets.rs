//! Who holds a port: the socket inodes bound to it in `/proc/net/{udp,tcp}{,6}` (of the
//! network namespace doctor runs in), then the processes whose `/proc/PID/fd` point at
//! them. Parsing is pure; [`holders`] reads `/proc`.

use std::collections::HashSet;
use std::path::Path;

use super::rules::{Holder, PortFacts, Proto};

/// TCP state LISTEN in `/proc/net/tcp`.
const TCP_LISTEN: &str = "0A";

/// The inodes of sockets bound to `port` in one `/proc/net/{udp,tcp}` table: for TCP
/// only listening sockets (connections from a client port do not hold it).
pub fn inodes(table: &str, proto: Proto, port: u16) -> Vec<u64> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let local = f.get(1)?;
            let state = f.get(3)?;
            let inode: u64 = f.get(9)?.parse().ok()?;
            let p = u16::from_str_radix(local.rsplit(':').next()?, 16).ok()?;
            let bound = p == port && (proto == Proto::Udp || *state == TCP_LISTEN);
            bound.then_some(inode)
        })
        .collect()
}

/// A process's command as a person names it: the program and its subcommand
/// (`bramble serve`, `dnsmasq`), from its NUL-separated `cmdline`.
pub fn command(cmdline: &[u8], comm: &str) -> String {
    let mut args = cmdline.split(|b| *b == 0).filter(|a| !a.is_empty());
    let Some(program) = args.next() else { return comm.trim().to_string() };
    let program = String::from_utf8_lossy(program);
    let name = program.rsplit('/').next().unwrap_or(&program).to_string();
    match args.next().map(|a| String::from_utf8_lossy(a)) {
        Some(sub) if !sub.starts_with('-') && !sub.contains('/') && sub.len() <= 20 => {
            format!("{name} {sub}")
        }
        _ => name,
    }
}

/// What holds `proto` `port` in this network namespace.
pub fn holders(proto: Proto, port: u16) -> PortFacts {
    let tables = match proto {
        Proto::Udp => ["/proc/net/udp", "/proc/net/udp6"],
        Proto::Tcp => ["/proc/net/tcp", "/proc/net/tcp6"],
    };
    let mut wanted = HashSet::new();
    for t in tables {
        match std::fs::read_to_string(t) {
            Ok(text) => wanted.extend(inodes(&text, proto, port).into_iter().filter(|i| *i != 0)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return PortFacts::Unknown(format!("{t}: {e}")),
        }
    }
    if wanted.is_empty() {
        return PortFacts::Free;
    }
    let me = exe(Path::new("/proc/self"));
    let mut found = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return PortFacts::Held(found);
    };
    for entry in procs.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let dir = entry.path();
        if !holds(&dir, &wanted) {
            continue;
        }
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        let cmdline = std::fs::read(dir.join("cmdline")).unwrap_or_default();
        let ours = me.is_some() && exe(&dir) == me;
        found.push(Holder { pid, command: command(&cmdline, &comm), ours });
    }
    found.sort_by_key(|h| (h.ours, h.pid));
    PortFacts::Held(found)
}

/// Whether any open file of the process in `dir` is one of the `wanted` sockets.
fn holds(dir: &Path, wanted: &HashSet<u64>) -> bool {
    let Ok(fds) = std::fs::read_dir(dir.join("fd")) else { return false };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path())
            .ok()
            .and_then(|l| socket_inode(&l.to_string_lossy()))
            .is_some_and(|i| wanted.contains(&i))
    })
}

/// `socket:[12345]` → 12345.
pub fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
}

/// The executable of a process, without the ` (deleted)` an upgrade leaves.
fn exe(dir: &Path) -> Option<String> {
    let link = std::fs::read_link(dir.join("exe")).ok()?;
    let text = link.to_string_lossy();
    Some(text.strip_suffix(" (deleted)").unwrap_or(&text).to_string())
}
