//! A boot attempt's timeline read back from its events (`dhcp.*`, `tftp.*` rows as
//! netboot's `DbEventSink` writes them) and the facts the classifier decides on. Pure.

use serde_json::Value;

/// One boot-timeline event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// Unix ms.
    pub at: i64,
    pub what: Wire,
}

/// What the DHCP or TFTP server saw or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wire {
    /// DISCOVER (or REQUEST) from the Pi; `model` as its boot ROM identified itself.
    Dhcp {
        model: Option<String>,
    },
    /// OFFER or ACK sent, with the option codes and next server (siaddr) it carried.
    Answer {
        kind: &'static str,
        options: Vec<u8>,
        next_server: Option<String>,
    },
    TftpRead {
        file: String,
    },
    /// Complete, or ended by the client after the size (normal for firmware).
    TftpDone {
        file: String,
    },
    TftpError {
        file: String,
        reason: String,
    },
    Other,
}

impl Seen {
    /// Reads one event row (`kind`, `data` as stored).
    pub fn from_event(at: i64, kind: &str, data: &Value) -> Seen {
        let stage = &data["stage"];
        let text = |k: &str| stage[k].as_str().map(str::to_string);
        let file = || text("file").unwrap_or_default();
        let what = match kind {
            "dhcp.discover" | "dhcp.request" => Wire::Dhcp { model: text("model") },
            "dhcp.offer" | "dhcp.ack" => Wire::Answer {
                kind: if kind == "dhcp.offer" { "OFFER" } else { "ACK" },
                options: stage["options"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|o| o.as_u64())
                            .filter_map(|o| u8::try_from(o).ok())
                            .collect()
                    })
                    .unwrap_or_default(),
                next_server: text("next_server"),
            },
            "tftp.read" => Wire::TftpRead { file: file() },
            "tftp.complete" | "tftp.early_terminate" => Wire::TftpDone { file: file() },
            "tftp.error" => {
                Wire::TftpError { file: file(), reason: text("reason").unwrap_or_default() }
            }
            _ => Wire::Other,
        };
        Seen { at, what }
    }
}

/// A kernel image by its TFTP name (`kernel*.img`, `Image`, `vmlinuz*`, under any
/// directory): the one rule for "the Pi read its kernel".
pub fn is_kernel_file(file: &str) -> bool {
    let name = file.rsplit('/').next().unwrap_or(file);
    (name.starts_with("kernel") && name.ends_with(".img"))
        || name == "Image"
        || name.starts_with("vmlinuz")
}

/// A TFTP refusal for a file that does not exist (netboot's `Refusal::name()`).
pub fn is_not_found(reason: &str) -> bool {
    matches!(reason, "not_found" | "not_a_file")
}

/// A TFTP transfer that ran out of retries (netboot's `Outcome::TimedOut` reason).
pub fn is_timeout(reason: &str) -> bool {
    reason.starts_with("no acknowledgement")
}

/// Files the firmware asks for whether or not they exist: a miss of one of these is not
/// where a boot stopped while a later request failed too.
fn optional(file: &str) -> bool {
    let name = file.rsplit('/').next().unwrap_or(file);
    file.contains("overlays/")
        || matches!(
            name,
            "autoboot.txt"
                | "config.txt"
                | "recovery.elf"
                | "recover4.elf"
                | "pieeprom.sig"
                | "pieeprom.upd"
                | "dt-blob.bin"
                | "bootcfg.txt"
        )
}

/// The answer the Pi got (the last one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    pub kind: &'static str,
    pub options: Vec<u8>,
    pub next_server: Option<String>,
}

impl Offer {
    pub fn options_text(&self) -> String {
        if self.options.is_empty() {
            return "not recorded".to_string();
        }
        self.options.iter().map(u8::to_string).collect::<Vec<_>>().join(",")
    }
}

/// Where TFTP stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// A request failed; `also`: files that failed after it.
    Error { file: String, reason: String, also: Vec<String> },
    /// A transfer started and never ended.
    Unfinished { file: String },
    /// The last transfer completed and nothing else was asked for.
    After { file: String },
}

/// What the classifier needs from a timeline.
#[derive(Debug, Default)]
pub struct Facts {
    pub first_dhcp: Option<i64>,
    pub first_kernel: Option<i64>,
    pub rom_model: Option<String>,
    pub offer: Option<Offer>,
    /// TFTP events in order.
    pub tftp: Vec<Wire>,
}

impl Facts {
    pub fn of(events: &[Seen]) -> Facts {
        let mut f = Facts::default();
        for e in events {
            match &e.what {
                Wire::Dhcp { model } => {
                    f.first_dhcp.get_or_insert(e.at);
                    if model.is_some() {
                        f.rom_model = model.clone();
                    }
                }
                Wire::Answer { kind, options, next_server } => {
                    f.offer = Some(Offer {
                        kind,
                        options: options.clone(),
                        next_server: next_server.clone(),
                    });
                }
                Wire::TftpRead { file }
                | Wire::TftpDone { file }
                | Wire::TftpError { file, .. } => {
                    if is_kernel_file(file) && !matches!(e.what, Wire::TftpError { .. }) {
                        f.first_kernel.get_or_insert(e.at);
                    }
                    f.tftp.push(e.what.clone());
                }
                Wire::Other => {}
            }
        }
        f
    }

    /// Where TFTP stopped: among the requests after the last completed transfer, the
    /// first failed one that is not an optional probe (else the first failed one), an
    /// unfinished transfer, or else the last completed transfer itself.
    pub fn tftp_stop(&self) -> Stop {
        let last_done = self.tftp.iter().rposition(|w| matches!(w, Wire::TftpDone { .. }));
        let tail = &self.tftp[last_done.map_or(0, |i| i + 1)..];
        let errors: Vec<(&String, &String)> = tail
            .iter()
            .filter_map(|w| match w {
                Wire::TftpError { file, reason } => Some((file, reason)),
                _ => None,
            })
            .collect();
        let chosen = errors
            .iter()
            .position(|(file, _)| !optional(file))
            .or_else(|| (!errors.is_empty()).then_some(0));
        if let Some(i) = chosen {
            let (file, reason) = errors[i];
            let also = errors[i + 1..].iter().map(|(f, _)| (*f).clone()).collect();
            return Stop::Error { file: file.clone(), reason: reason.clone(), also };
        }
        if let Some(Wire::TftpRead { file }) =
            tail.iter().rev().find(|w| matches!(w, Wire::TftpRead { .. }))
        {
            return Stop::Unfinished { file: file.clone() };
        }
        match last_done.map(|i| &self.tftp[i]) {
            Some(Wire::TftpDone { file }) => Stop::After { file: file.clone() },
            _ => Stop::Unfinished { file: String::new() },
        }
    }
}

/// Whether the console shows the root mounted: the initramfs's `bramble: NFS root ...
/// mounted` line, or systemd (which runs from the root).
pub fn root_mounted(console: &[String]) -> bool {
    console
        .iter()
        .any(|l| (l.contains("NFS root") && l.contains("mounted")) || l.contains("systemd[1]:"))
}

/// Console lines that say why a root did not mount.
pub fn root_errors(console: &[String]) -> Vec<String> {
    const SIGNS: [&str; 10] = [
        "VFS: Unable to mount root",
        "Kernel panic",
        "not responding",
        "mount call failed",
        "Retrying nfsmount",
        "nfsmount:",
        "ALERT!",
        "Dropping to a shell",
        "Permission denied",
        "No such file or directory",
    ];
    console.iter().filter(|l| SIGNS.iter().any(|s| l.contains(s))).cloned().collect()
}
