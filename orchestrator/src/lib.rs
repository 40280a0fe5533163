//! Bramble's controller: the inventory, the HTTP API, the job engine and the CLI.
//!
//! The orchestrator owns the database and decides; the sibling crates do the talking:
//! `bramble-netboot` (DHCP, TFTP), `bramble-switch` (SNMP), `bramble-images` (roots and
//! exports). See ARCHITECTURE.md for the map.

pub mod alloc;
pub mod api;
pub mod auth;
pub mod bootplan;
pub mod catalogue;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod console;
pub mod db;
pub mod diagnosis;
pub mod doctor;
pub mod exports;
pub mod fabric;
pub mod hardware;
pub mod ids;
pub mod jobs;
pub mod lab;
pub mod lifecycle;
pub mod links;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod netboot;
pub mod poe;
pub mod reconciler;
pub mod reload;
pub mod retention;
pub mod secret;
pub mod server;
pub mod snapshots;
pub mod testing;
pub mod time;
pub mod tls;
pub mod validate;
pub mod webhooks;
