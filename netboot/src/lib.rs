//! Netbooting Raspberry Pis: a DHCPv4 server that answers the Pi boot ROMs (per-Pi
//! storage networks and flat networks at once) and a TFTP server that gives each Pi only
//! its own boot files.
//!
//! This crate knows nothing about databases or the HTTP API: what it needs from the
//! inventory it asks through traits the orchestrator implements, and what it observes
//! it reports as [`events::BootEvent`]s.

pub mod bootfiles;
pub mod console;
pub mod dhcp;
pub mod events;
pub mod hw;
pub mod tftp;
