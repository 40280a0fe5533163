//! The netboot servers' counters as Prometheus samples, computed at scrape time from the
//! atomics the servers and the event sink bump.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bramble_netboot::dhcp::Counters;
use bramble_netboot::tftp::TftpMetrics;

use super::events::SinkCounters;
use crate::metrics::{Collector, Sample};

pub struct NetbootCollector {
    pub dhcp: Arc<Counters>,
    pub tftp: Arc<TftpMetrics>,
    pub events: Arc<SinkCounters>,
}

impl Collector for NetbootCollector {
    fn describe(&self) -> Vec<(&'static str, &'static str, &'static str)> {
        vec![
            ("bramble_dhcp_received_total", "counter", "DHCP packets received, by message type"),
            ("bramble_dhcp_replies_total", "counter", "DHCP replies sent, by message type"),
            (
                "bramble_dhcp_dropped_total",
                "counter",
                "DHCP packets dropped or left unanswered, by reason",
            ),
            (
                "bramble_dhcp_lease_commits_total",
                "counter",
                "Lease batches made durable, and leases in them",
            ),
            ("bramble_tftp_transfers_total", "counter", "TFTP transfers, by outcome"),
            ("bramble_tftp_refused_total", "counter", "TFTP requests refused, by reason"),
            ("bramble_tftp_bytes_sent_total", "counter", "File bytes sent over TFTP"),
            ("bramble_tftp_retransmits_total", "counter", "TFTP blocks sent again after a timeout"),
            (
                "bramble_boot_events_total",
                "counter",
                "Boot timeline events, by what became of them",
            ),
        ]
    }

    fn collect(&self) -> Vec<Sample> {
        let mut out = Vec::new();
        let d = self.dhcp.snapshot();
        let rx = "bramble_dhcp_received_total";
        out.push(Sample::new(rx, d.received as f64).label("type", "any"));
        for (t, n) in [
            ("discover", d.discovers),
            ("request", d.requests),
            ("inform", d.informs),
            ("release", d.releases),
            ("decline", d.declines),
        ] {
            out.push(Sample::new(rx, n as f64).label("type", t));
        }
        for (t, n) in [("offer", d.offers), ("ack", d.acks), ("nak", d.naks)] {
            out.push(Sample::new("bramble_dhcp_replies_total", n as f64).label("type", t));
        }
        for (reason, n) in &d.dropped {
            out.push(
                Sample::new("bramble_dhcp_dropped_total", *n as f64).label("reason", reason.name()),
            );
        }
        out.push(
            Sample::new("bramble_dhcp_lease_commits_total", d.store_batches as f64)
                .label("unit", "batches"),
        );
        out.push(
            Sample::new("bramble_dhcp_lease_commits_total", d.store_leases as f64)
                .label("unit", "leases"),
        );

        let t = self.tftp.snapshot();
        let tr = "bramble_tftp_transfers_total";
        for (o, n) in [
            ("started", t.transfers_started),
            ("completed", t.transfers_completed),
            ("early_terminate", t.early_terminations),
            ("failed", t.transfers_failed),
        ] {
            out.push(Sample::new(tr, n as f64).label("outcome", o));
        }
        for (reason, n) in &t.refused {
            out.push(
                Sample::new("bramble_tftp_refused_total", *n as f64).label("reason", reason.name()),
            );
        }
        out.push(Sample::new("bramble_tftp_bytes_sent_total", t.bytes_sent as f64));
        out.push(Sample::new("bramble_tftp_retransmits_total", t.retransmits as f64));

        let e = &self.events;
        for (o, c) in [
            ("queued", &e.queued),
            ("written", &e.written),
            ("dropped", &e.dropped),
            ("unmatched", &e.unmatched),
            ("write_failed", &e.write_failures),
        ] {
            out.push(
                Sample::new("bramble_boot_events_total", c.load(Ordering::Relaxed) as f64)
                    .label("outcome", o),
            );
        }
        out
    }
}

/// The console receiver's and its store's counters.
pub struct ConsoleCollector {
    pub receiver: Arc<bramble_netboot::console::ConsoleCounters>,
    pub store: Arc<crate::console::store::StoreCounters>,
}

impl Collector for ConsoleCollector {
    fn describe(&self) -> Vec<(&'static str, &'static str, &'static str)> {
        vec![
            ("bramble_console_received_total", "counter", "Console datagrams and bytes received"),
            ("bramble_console_lines_total", "counter", "Console lines, by what became of them"),
            (
                "bramble_console_dropped_total",
                "counter",
                "Console datagrams or lines dropped, by reason",
            ),
            ("bramble_console_boots_total", "counter", "Console boots started and pruned"),
        ]
    }

    fn collect(&self) -> Vec<Sample> {
        let l = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed) as f64;
        let (r, s) = (&self.receiver, &self.store);
        let mut out = vec![
            Sample::new("bramble_console_received_total", l(&r.datagrams))
                .label("unit", "datagrams"),
            Sample::new("bramble_console_received_total", l(&r.bytes)).label("unit", "bytes"),
            Sample::new("bramble_console_lines_total", l(&r.lines_queued))
                .label("outcome", "queued"),
            Sample::new("bramble_console_lines_total", l(&r.lines_stored))
                .label("outcome", "handed_to_store"),
            Sample::new("bramble_console_boots_total", l(&s.boots_started))
                .label("event", "started"),
            Sample::new("bramble_console_boots_total", l(&s.boots_pruned)).label("event", "pruned"),
        ];
        for (reason, n) in r.dropped() {
            out.push(
                Sample::new("bramble_console_dropped_total", n as f64).label("reason", reason),
            );
        }
        out.push(
            Sample::new("bramble_console_dropped_total", l(&s.unmatched)).label("reason", "no_pi"),
        );
        out.push(
            Sample::new("bramble_console_dropped_total", l(&s.over_boot_limit))
                .label("reason", "boot_full"),
        );
        out
    }
}
