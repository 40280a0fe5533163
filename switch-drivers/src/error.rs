//! Typed errors of the switch drivers: every variant names the switch, and where it
//! applies the port and the SNMP object, never a credential.

use std::net::SocketAddr;
use std::time::Duration;

/// Errors returned by [`crate::SwitchDriver`] implementations and the SNMP session.
#[derive(Debug, thiserror::Error)]
pub enum SwitchError {
    /// No answer within the configured timeout after every retry.
    #[error(
        "switch {switch}: no answer to {operation} on {oid} after {attempts} attempts ({timeout:?} each)"
    )]
    Timeout {
        switch: SocketAddr,
        operation: &'static str,
        oid: String,
        attempts: u32,
        timeout: Duration,
    },
    /// The agent answered with an SNMP error status.
    #[error("switch {switch}: {operation} failed with {status} on {oid}{}", port_suffix(*port))]
    Snmp {
        switch: SocketAddr,
        operation: &'static str,
        status: String,
        oid: String,
        port: Option<u16>,
    },
    /// The agent refused the SNMPv3 credentials: it answered with a USM Report
    /// (unknown user, wrong digest, i.e. wrong authentication password or protocol,
    /// unsupported security level), or its answer failed our authentication check.
    /// `detail` names the report, never a secret. A v2c agent ignores a wrong community
    /// and net-snmp drops a request it cannot decrypt (wrong privacy password or
    /// protocol): both end as [`SwitchError::Timeout`].
    #[error("switch {switch}: {operation} refused the credentials: {detail}")]
    Auth { switch: SocketAddr, operation: &'static str, detail: String },
    /// Talking to the agent failed for another reason (socket, USM, decode).
    #[error("switch {switch}: {operation} on {oid} failed: {detail}")]
    Transport { switch: SocketAddr, operation: &'static str, oid: String, detail: String },
    /// The agent answered with something that does not fit the MIB.
    #[error("switch {switch}: unexpected value for {oid}: {detail}")]
    BadValue { switch: SocketAddr, oid: String, detail: String },
    /// The request names a port the switch does not have.
    #[error("switch {switch}: no such port {port} (switch has {ports} bridge ports)")]
    NoSuchPort { switch: SocketAddr, port: u16, ports: u16 },
    /// The request names an invalid VLAN id.
    #[error("switch {switch}: invalid VLAN id {vlan}")]
    InvalidVlan { switch: SocketAddr, vlan: u16 },
    /// After a SET was acknowledged, reading back did not show the intended state.
    #[error(
        "switch {switch}: read-back after {operation} does not match: {mismatches} difference(s), first: {first}"
    )]
    VerifyFailed { switch: SocketAddr, operation: &'static str, mismatches: usize, first: String },
    /// sysObjectID names a vendor no driver supports.
    #[error("switch {switch}: no driver for sysObjectID {sys_object_id}")]
    Unsupported { switch: SocketAddr, sys_object_id: String },
    /// A PoE change refused by the caller's policy before any SET was sent (Bramble:
    /// a port that is not a Pi's slot).
    #[error("switch {switch}: PoE change on port(s) {ports:?} refused before any SET: {reason}")]
    PowerRefused { switch: SocketAddr, ports: Vec<u16>, reason: String },
    /// The driver configuration is invalid (before any packet is sent).
    #[error("switch {switch}: invalid configuration: {detail}")]
    Config { switch: SocketAddr, detail: String },
}

fn port_suffix(port: Option<u16>) -> String {
    port.map(|p| format!(" (port {p})")).unwrap_or_default()
}

impl SwitchError {
    /// Attaches a port number to an SNMP error that lacks one.
    pub fn with_port(self, port: u16) -> Self {
        match self {
            SwitchError::Snmp { switch, operation, status, oid, port: None } => {
                SwitchError::Snmp { switch, operation, status, oid, port: Some(port) }
            }
            other => other,
        }
    }
}

/// Errors of the virtual switch server.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("reading simulator state {path}")]
    ReadState {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("parsing simulator state {path}")]
    ParseState {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("writing simulator state {path}")]
    WriteState {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid simulator options: {0}")]
    Options(String),
    #[error("simulator socket")]
    Socket(#[source] std::io::Error),
    #[error("starting the SNMP agent: {0}")]
    Agent(String),
}
