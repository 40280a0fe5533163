//! Why a boot attempt stopped where it did: a pure classifier of one attempt's
//! timeline (the `dhcp.*` and `tftp.*` events after the job's `power.on`, the console
//! lines of the boot, how the job's wait ended and what the switch port reads) into a
//! [`Diagnosis`]: the stage reached, a kind, a sentence for the customer (no internals:
//! no switch, port, or other Pi's address) and one for the operator (everything).
//!
//! The job (`jobs::hardware::await_boot`) gathers the inputs and stores the result; this
//! module does no I/O. `metrics.rs` counts diagnoses and times the boot phases.

pub mod metrics;
#[cfg(test)]
mod tests;
mod timeline;

use std::net::SocketAddr;
use std::time::Duration;

use bramble_switch::PortPower;
use bramble_switch::model::DetectionStatus;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ids::{CustomerId, JobId};
pub use timeline::{Seen, Wire, is_kernel_file};

/// How far a boot attempt got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BootPhase {
    /// Powered on; no DHCP from the Pi.
    PowerOn,
    /// The boot ROM sent DHCP; no TFTP followed.
    Dhcp,
    /// TFTP started; the kernel was not fetched.
    Tftp,
    /// The kernel was fetched; its root was not mounted.
    Kernel,
    /// The root was mounted; SSH did not answer.
    System,
    /// Booted (kernel fetched, and SSH answering where the image runs sshd).
    Booted,
}

/// What the timeline says about a boot attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DiagnosisKind {
    Booted,
    /// No DHCP after power-on: power, cable or spanning tree.
    NoDhcp,
    /// DHCP seen, but the controller sent no offer.
    NoOffer,
    /// An offer was sent, and no TFTP followed: the boot ROM rejected it.
    OfferRejected,
    /// TFTP stopped at a file the image does not have.
    TftpFileMissing,
    /// TFTP stopped at a transfer that timed out or never finished.
    TftpTimeout,
    /// TFTP stopped at a file the server refused for another reason.
    TftpRefused,
    /// TFTP stopped after a complete transfer: nothing else was asked for.
    TftpStopped,
    /// The kernel was fetched; the root was not mounted (or nothing says it was).
    NoRoot,
    /// The root was mounted; SSH never answered.
    NoSsh,
}

impl DiagnosisKind {
    pub const ALL: [DiagnosisKind; 10] = [
        DiagnosisKind::Booted,
        DiagnosisKind::NoDhcp,
        DiagnosisKind::NoOffer,
        DiagnosisKind::OfferRejected,
        DiagnosisKind::TftpFileMissing,
        DiagnosisKind::TftpTimeout,
        DiagnosisKind::TftpRefused,
        DiagnosisKind::TftpStopped,
        DiagnosisKind::NoRoot,
        DiagnosisKind::NoSsh,
    ];

    /// The stable name (metrics label, API value).
    pub fn as_str(self) -> &'static str {
        match self {
            DiagnosisKind::Booted => "booted",
            DiagnosisKind::NoDhcp => "no_dhcp",
            DiagnosisKind::NoOffer => "no_offer",
            DiagnosisKind::OfferRejected => "offer_rejected",
            DiagnosisKind::TftpFileMissing => "tftp_file_missing",
            DiagnosisKind::TftpTimeout => "tftp_timeout",
            DiagnosisKind::TftpRefused => "tftp_refused",
            DiagnosisKind::TftpStopped => "tftp_stopped",
            DiagnosisKind::NoRoot => "no_root",
            DiagnosisKind::NoSsh => "no_ssh",
        }
    }

    /// The stage a boot of this kind stopped at.
    pub fn phase(self) -> BootPhase {
        match self {
            DiagnosisKind::Booted => BootPhase::Booted,
            DiagnosisKind::NoDhcp => BootPhase::PowerOn,
            DiagnosisKind::NoOffer | DiagnosisKind::OfferRejected => BootPhase::Dhcp,
            DiagnosisKind::TftpFileMissing
            | DiagnosisKind::TftpTimeout
            | DiagnosisKind::TftpRefused
            | DiagnosisKind::TftpStopped => BootPhase::Tftp,
            DiagnosisKind::NoRoot => BootPhase::Kernel,
            DiagnosisKind::NoSsh => BootPhase::System,
        }
    }
}

/// Milliseconds from power-on to each milestone the attempt reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Phases {
    /// To the first DHCP DISCOVER (or REQUEST).
    pub discover_ms: Option<i64>,
    /// To the first kernel read over TFTP.
    pub kernel_ms: Option<i64>,
    /// To SSH answering (images with sshd) or the kernel read (images without).
    pub booted_ms: Option<i64>,
}

/// The port's PoE as read when the attempt was diagnosed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PoeReading {
    pub admin_enabled: bool,
    /// `disabled`, `searching`, `delivering_power`, `fault`, `test`, `other_fault`.
    pub detection: String,
    pub draw_mw: Option<u32>,
}

impl From<&PortPower> for PoeReading {
    fn from(p: &PortPower) -> Self {
        PoeReading {
            admin_enabled: p.admin_enabled,
            detection: detection_name(p.detection).to_string(),
            draw_mw: p.draw_mw,
        }
    }
}

fn detection_name(d: DetectionStatus) -> &'static str {
    match d {
        DetectionStatus::Disabled => "disabled",
        DetectionStatus::Searching => "searching",
        DetectionStatus::DeliveringPower => "delivering_power",
        DetectionStatus::Fault => "fault",
        DetectionStatus::Test => "test",
        DetectionStatus::OtherFault => "other_fault",
    }
}

/// How the job's wait for the boot ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// No DHCP answer and kernel read within the boot timeout.
    TimedOut { waited: Duration, power_cycled: bool },
    /// The kernel was read and the image runs no sshd: nothing more to wait for.
    KernelRead,
    /// SSH answered at `at` (Unix ms).
    SshAnswered { at: i64 },
    /// SSH did not answer on `address` within `waited`; the wait began at `kernel_at`
    /// (Unix ms; the kernel read's time when the timeline lacks it).
    NoSsh { address: SocketAddr, waited: Duration, kernel_at: i64 },
}

/// One boot attempt, as the job saw it.
#[derive(Debug, Clone)]
pub struct Attempt<'a> {
    /// The Pi, for the console and rescue routes named to its customer.
    pub pi: &'a str,
    /// When the job's (last) power-on was recorded, Unix ms.
    pub powered_at: i64,
    /// The boot timeline after that power-on, oldest first.
    pub events: &'a [Seen],
    /// The Pi's model in the inventory (`3b`, `3b+`, `4b`, `5`, `unknown`).
    pub model: &'a str,
    /// The switch port, for the operator.
    pub port: u16,
    /// The port's PoE read at diagnosis time (`None`: not read, or the read failed).
    pub poe: Option<PoeReading>,
    /// The console lines of the boot this attempt started (shown safely), oldest first.
    pub console: &'a [String],
    pub ending: Ending,
}

/// Why (and where) a boot attempt stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnosis {
    pub kind: DiagnosisKind,
    /// The TFTP file the boot stopped at, for the TFTP kinds.
    pub file: Option<String>,
    pub phases: Phases,
    pub customer: String,
    pub operator: String,
}

impl Diagnosis {
    pub fn phase(&self) -> BootPhase {
        self.kind.phase()
    }
}

/// A Pi's last boot attempt as stored on the Pi (`pis.last_boot`) and shown by
/// `GET /v1/pis/{id}` and the shelf status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LastBoot {
    /// When it was diagnosed, Unix ms.
    pub at: i64,
    /// The job whose boot it was.
    pub job: Option<JobId>,
    pub stage: BootPhase,
    pub diagnosis: DiagnosisKind,
    /// The TFTP file the boot stopped at (TFTP diagnoses).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// What the Pi's customer is told.
    pub customer_message: String,
    /// The details, for operators (absent for customers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator_message: Option<String>,
    /// The port's PoE at diagnosis time (absent for customers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poe: Option<PoeReading>,
    pub phases: Phases,
    /// The Pi's owner when it was diagnosed: a customer sees only their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<CustomerId>,
}

impl LastBoot {
    pub fn new(
        d: &Diagnosis,
        at: i64,
        job: &JobId,
        poe: Option<PoeReading>,
        owner: Option<CustomerId>,
    ) -> Self {
        LastBoot {
            at,
            job: Some(job.clone()),
            stage: d.phase(),
            diagnosis: d.kind,
            file: d.file.clone(),
            customer_message: d.customer.clone(),
            operator_message: Some(d.operator.clone()),
            poe,
            phases: d.phases,
            owner,
        }
    }

    /// What `customer` may see of it: nothing from a previous owner's time, and no
    /// operator details.
    pub fn for_customer(self, customer: &CustomerId) -> Option<LastBoot> {
        (self.owner.as_ref() == Some(customer)).then_some(LastBoot {
            operator_message: None,
            poe: None,
            ..self
        })
    }

    pub fn failed(&self) -> bool {
        self.diagnosis != DiagnosisKind::Booted
    }
}

/// Console lines quoted in a diagnosis.
pub const CONSOLE_QUOTE: usize = 3;

/// Classifies one boot attempt.
pub fn diagnose(a: &Attempt<'_>) -> Diagnosis {
    let facts = timeline::Facts::of(a.events);
    let at = |t: Option<i64>| t.map(|t| (t - a.powered_at).max(0));
    let mut phases = Phases {
        discover_ms: at(facts.first_dhcp),
        kernel_ms: at(facts.first_kernel),
        booted_ms: None,
    };
    let (kind, file, operator, customer) = match &a.ending {
        Ending::SshAnswered { at: when } => {
            phases.booted_ms = Some((when - a.powered_at).max(0));
            (DiagnosisKind::Booted, None, "SSH answered".to_string(), booted_text())
        }
        Ending::KernelRead => {
            phases.booted_ms = phases.kernel_ms;
            (
                DiagnosisKind::Booted,
                None,
                "kernel read (the image runs no sshd)".to_string(),
                booted_text(),
            )
        }
        Ending::NoSsh { address, waited, kernel_at } => {
            // When the timeline shows the kernel read, that time; else when the wait began.
            let read_at = facts.first_kernel.unwrap_or(*kernel_at);
            after_kernel(a, *address, *waited, read_at)
        }
        Ending::TimedOut { waited, power_cycled } => {
            let within = format!(
                "within {} s of power-on{}",
                waited.as_secs(),
                if *power_cycled { " (power-cycled once)" } else { "" }
            );
            before_kernel(a, &facts, &within)
        }
    };
    let operator = format!("{}: {operator}", kind.as_str());
    Diagnosis { kind, file, phases, customer, operator }
}

fn booted_text() -> String {
    "The Pi booted.".to_string()
}

type Verdict = (DiagnosisKind, Option<String>, String, String);

/// The wait for DHCP and a kernel read ran out.
fn before_kernel(a: &Attempt<'_>, f: &timeline::Facts, within: &str) -> Verdict {
    let support = "Support has been told.";
    if f.first_dhcp.is_none() && f.tftp.is_empty() {
        let poe = match &a.poe {
            Some(p) => poe_text(p),
            None => "PoE state unknown (the switch could not be read)".to_string(),
        };
        let operator = format!(
            "no DHCP from the Pi {within}; port {} {poe}: {}",
            a.port,
            power_hint(a.poe.as_ref())
        );
        let customer = format!(
            "The Pi did not start: it never asked the network for its boot files {within}. \
             Power, cabling or the network may be at fault. {support}"
        );
        return (DiagnosisKind::NoDhcp, None, operator, customer);
    }
    if f.tftp.is_empty() {
        let rom = f.rom_model.as_deref().unwrap_or("not told");
        if let Some(offer) = &f.offer {
            let operator = format!(
                "DHCP DISCOVER seen (boot ROM model {rom}, inventory model {}), {} sent \
                 with options {} and next server {}, but no TFTP request followed {within}: \
                 the boot ROM rejected the offer",
                a.model,
                offer.kind,
                offer.options_text(),
                offer.next_server.as_deref().unwrap_or("none"),
            );
            let customer = format!(
                "The Pi's boot firmware asked for network boot but did not accept the \
                 answer {within}. {support}"
            );
            return (DiagnosisKind::OfferRejected, None, operator, customer);
        }
        let operator = format!(
            "DHCP DISCOVER seen (boot ROM model {rom}, inventory model {}) but no OFFER was \
             sent {within}: check the controller's DHCP (dropped packets, lease store)",
            a.model
        );
        let customer =
            format!("The Pi asked for network boot but was not answered {within}. {support}");
        return (DiagnosisKind::NoOffer, None, operator, customer);
    }
    if f.first_kernel.is_some() {
        // A kernel read without a DHCP answer on record: events were lost.
        let operator = format!(
            "kernel read over TFTP but no DHCP answer recorded {within} (boot events dropped?)"
        );
        let customer = format!("The Pi did not finish starting {within}. {support}");
        return (DiagnosisKind::NoRoot, None, operator, customer);
    }
    tftp_stop(a, f, within)
}

/// TFTP began and the kernel was never fetched: where did it stop?
fn tftp_stop(a: &Attempt<'_>, f: &timeline::Facts, within: &str) -> Verdict {
    let stop = f.tftp_stop();
    let name = |file: &str| file.rsplit('/').next().unwrap_or(file).to_string();
    let model = a.model;
    match stop {
        timeline::Stop::Error { file, reason, also } => {
            let base = name(&file);
            let tried = if also.is_empty() {
                String::new()
            } else {
                format!(" (then also tried {})", also.join(", "))
            };
            let (kind, why, customer) = if timeline::is_not_found(&reason) {
                (
                    DiagnosisKind::TftpFileMissing,
                    "missing from the Pi's boot files".to_string(),
                    format!(
                        "The Pi's boot stopped: the file {base} is missing from its system's \
                         boot files. Reinstalling the Pi restores them."
                    ),
                )
            } else if timeline::is_timeout(&reason) {
                (
                    DiagnosisKind::TftpTimeout,
                    format!("the transfer timed out ({reason})"),
                    format!(
                        "The Pi's boot stopped while loading {base} over the network (the \
                         transfer timed out). Support has been told."
                    ),
                )
            } else {
                (
                    DiagnosisKind::TftpRefused,
                    format!("refused: {reason}"),
                    format!(
                        "The Pi's boot stopped: its boot file {base} could not be served. \
                         Support has been told."
                    ),
                )
            };
            let operator = format!(
                "TFTP stopped at {file}{tried}: {why}; no kernel read {within} (model {model})"
            );
            (kind, Some(file), operator, customer)
        }
        timeline::Stop::Unfinished { file } => {
            let base = name(&file);
            let operator = format!(
                "TFTP stopped at {file}: the transfer started and never finished {within} \
                 (model {model})"
            );
            let customer = format!(
                "The Pi's boot stopped while loading {base} over the network (the transfer \
                 timed out). Support has been told."
            );
            (DiagnosisKind::TftpTimeout, Some(file), operator, customer)
        }
        timeline::Stop::After { file } => {
            let base = name(&file);
            let operator = format!(
                "TFTP stopped after {file} was sent: the Pi asked for nothing more and read \
                 no kernel {within} (model {model}; a damaged file, or config.txt names a \
                 kernel the firmware cannot use)"
            );
            let customer = format!(
                "The Pi's boot stopped after loading {base}; its boot files may be damaged. \
                 Reinstalling the Pi restores them."
            );
            (DiagnosisKind::TftpStopped, Some(file), operator, customer)
        }
    }
}

/// The kernel was read and SSH never answered: was the root mounted?
fn after_kernel(a: &Attempt<'_>, address: SocketAddr, waited: Duration, kernel_at: i64) -> Verdict {
    let kernel_at = crate::time::rfc3339(kernel_at);
    let secs = waited.as_secs();
    let console_hint = format!(
        "Its console (GET /v1/pis/{pi}/console) shows how far it got; rescue mode \
         (POST /v1/pis/{pi}/rescue) lets you repair it.",
        pi = a.pi
    );
    if timeline::root_mounted(a.console) {
        let operator = format!(
            "boot stopped after the kernel: DHCP answered, kernel read over TFTP (seen at \
             {kernel_at}), root mounted, no SSH on {address} within {secs} s; {}",
            quote(a.console, None)
        );
        let customer = format!(
            "The Pi started its kernel (read at {kernel_at}) but its system did not answer \
             SSH on {address} within {secs} s: the system on it may be misconfigured. \
             {console_hint}"
        );
        return (DiagnosisKind::NoSsh, None, operator, customer);
    }
    let errors = timeline::root_errors(a.console);
    let operator = format!(
        "boot stopped after the kernel: DHCP answered, kernel read over TFTP (seen at \
         {kernel_at}), no root mount seen and no SSH on {address} within {secs} s; check \
         the Pi's NFS export; {}",
        quote(a.console, (!errors.is_empty()).then_some(&errors))
    );
    let customer = format!(
        "The Pi started its kernel (read at {kernel_at}) but did not mount its system over \
         the network within {secs} s. {console_hint}"
    );
    (DiagnosisKind::NoRoot, None, operator, customer)
}

/// The console quote of an operator message: the error lines when there are some, else
/// the last lines.
fn quote(console: &[String], errors: Option<&Vec<String>>) -> String {
    if let Some(errors) = errors {
        let tail: Vec<&str> =
            errors.iter().rev().take(CONSOLE_QUOTE).rev().map(String::as_str).collect();
        return format!("console errors: {}", tail.join(" | "));
    }
    if console.is_empty() {
        return "no console lines from this boot".to_string();
    }
    let tail: Vec<&str> =
        console.iter().rev().take(CONSOLE_QUOTE).rev().map(String::as_str).collect();
    format!("last console lines: {}", tail.join(" | "))
}

fn poe_text(p: &PoeReading) -> String {
    let draw =
        p.draw_mw.map_or_else(|| "draw not reported".to_string(), |mw| format!("draw {mw} mW"));
    format!(
        "PoE admin {}, detection {}, {draw}",
        if p.admin_enabled { "on" } else { "off" },
        p.detection
    )
}

/// What to check for a silent Pi, from what the port reads.
fn power_hint(p: Option<&PoeReading>) -> &'static str {
    match p {
        None => "check the switch, then the Pi's power and cable",
        Some(p) if !p.admin_enabled => "the port is not powered",
        Some(p) if p.detection == "delivering_power" && p.draw_mw != Some(0) => {
            "the Pi has power but its DHCP did not reach the controller: check the cable's \
             data pairs, the storage VLAN and spanning tree on the port (a port still \
             listening/learning drops the boot ROM's DISCOVERs), and the Pi's boot order"
        }
        Some(p) if p.detection == "fault" || p.detection == "other_fault" => {
            "the switch reports a PoE fault: check the cable and the Pi's PoE HAT"
        }
        Some(_) => {
            "no powered device detected: the Pi is absent, unseated or dead, or the cable \
             or PoE HAT is faulty"
        }
    }
}
