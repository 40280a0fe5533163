//! [`ConsoleReceiver`]: one receive task per storage interface, per-slot budgets and
//! bounded queues, and one flusher that hands batches to the [`ConsoleSink`].

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

use super::budget::Budget;
use super::lines::LineAssembler;
use super::{ConsoleCounters, ConsoleLine, ConsoleSink};
use crate::dhcp::SlotKey;
use crate::dhcp::socket::bind_to_device;

/// The default UDP port the controller receives netconsole on.
pub const DEFAULT_PORT: u16 = 6666;

/// How the receiver bounds each slot.
#[derive(Debug, Clone)]
pub struct ConsoleOptions {
    /// UDP port on every storage interface.
    pub port: u16,
    /// Bytes a second each slot may send, sustained.
    pub rate_bytes: u64,
    /// Bytes each slot may send at once (a kernel's boot burst).
    pub burst_bytes: u64,
    /// Bytes of lines each slot may have waiting for the sink.
    pub queue_bytes: usize,
    /// Longest line; a longer one is cut.
    pub max_line: usize,
    /// How often the flusher hands lines to the sink.
    pub flush_every: Duration,
    /// Most lines of one slot in one batch (the rest wait for the next).
    pub batch_per_slot: usize,
}

impl Default for ConsoleOptions {
    fn default() -> Self {
        ConsoleOptions {
            port: DEFAULT_PORT,
            rate_bytes: 16 << 10,
            burst_bytes: 256 << 10,
            queue_bytes: 256 << 10,
            max_line: 4096,
            flush_every: Duration::from_millis(200),
            batch_per_slot: 512,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("cannot receive console on interface {ifname}")]
    Bind {
        ifname: String,
        #[source]
        source: std::io::Error,
    },
}

/// One slot's receiving state.
struct SlotState {
    key: SlotKey,
    pi: Option<Ipv4Addr>,
    budget: Budget,
    assembler: LineAssembler,
    queue: VecDeque<ConsoleLine>,
    queued_bytes: usize,
}

struct Shared {
    opts: ConsoleOptions,
    counters: Arc<ConsoleCounters>,
    /// By interface name.
    slots: Mutex<HashMap<String, SlotState>>,
}

/// The running receiver. Dropping it stops its tasks and closes its sockets.
pub struct ConsoleReceiver {
    shared: Arc<Shared>,
    tasks: Mutex<HashMap<String, JoinHandle<()>>>,
    flusher: JoinHandle<()>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ConsoleReceiver {
    /// Starts the flusher; receives on no interface yet.
    pub fn start(opts: ConsoleOptions, sink: Arc<dyn ConsoleSink>) -> Self {
        let shared = Arc::new(Shared {
            opts,
            counters: Arc::new(ConsoleCounters::default()),
            slots: Mutex::new(HashMap::new()),
        });
        let flusher = tokio::spawn(flush_loop(shared.clone(), sink));
        ConsoleReceiver { shared, tasks: Mutex::new(HashMap::new()), flusher }
    }

    /// Receives on `ifname` for `slot`, accepting datagrams only from `pi` when given.
    pub fn add_interface(
        &self,
        ifname: &str,
        slot: SlotKey,
        pi: Option<Ipv4Addr>,
    ) -> Result<(), ConsoleError> {
        let o = &self.shared.opts;
        let socket = bind_to_device(ifname, o.port)
            .map_err(|source| ConsoleError::Bind { ifname: ifname.to_string(), source })?;
        let state = SlotState {
            key: slot,
            pi,
            budget: Budget::new(o.rate_bytes, o.burst_bytes, Instant::now()),
            assembler: LineAssembler::new(o.max_line),
            queue: VecDeque::new(),
            queued_bytes: 0,
        };
        lock(&self.shared.slots).insert(ifname.to_string(), state);
        let task = tokio::spawn(receive(self.shared.clone(), ifname.to_string(), socket));
        if let Some(old) = lock(&self.tasks).insert(ifname.to_string(), task) {
            old.abort();
        }
        tracing::info!(interface = %ifname, port = o.port, "console receiving on interface");
        Ok(())
    }

    /// Stops receiving on `ifname` (lines already queued are still stored).
    pub fn remove_interface(&self, ifname: &str) -> bool {
        if let Some(task) = lock(&self.tasks).remove(ifname) {
            task.abort();
        }
        // The state goes once the flusher has taken its queue.
        lock(&self.shared.slots).get_mut(ifname).is_some_and(|s| {
            s.pi = Some(Ipv4Addr::UNSPECIFIED);
            true
        })
    }

    pub fn interfaces(&self) -> Vec<String> {
        let mut v: Vec<String> = lock(&self.tasks).keys().cloned().collect();
        v.sort();
        v
    }

    pub fn counters(&self) -> Arc<ConsoleCounters> {
        self.shared.counters.clone()
    }
}

impl Drop for ConsoleReceiver {
    fn drop(&mut self) {
        for (_, t) in lock(&self.tasks).drain() {
            t.abort();
        }
        self.flusher.abort();
    }
}

async fn receive(shared: Arc<Shared>, ifname: String, socket: UdpSocket) {
    // Larger than netconsole's datagrams (at most ~1000 bytes); a longer one is cut.
    let mut buf = vec![0u8; 2048];
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(error) => {
                tracing::warn!(interface = %ifname, %error, "console receive failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        accept(&shared, &ifname, from.ip(), &buf[..n], Instant::now(), SystemTime::now());
    }
}

/// Charges a datagram to its slot and queues the lines it completes.
fn accept(shared: &Shared, ifname: &str, from: IpAddr, data: &[u8], now: Instant, at: SystemTime) {
    let c = &shared.counters;
    ConsoleCounters::bump(&c.datagrams, 1);
    ConsoleCounters::bump(&c.bytes, data.len() as u64);
    let mut slots = lock(&shared.slots);
    let Some(slot) = slots.get_mut(ifname) else { return };
    if slot.pi.is_some_and(|pi| IpAddr::V4(pi) != from) {
        ConsoleCounters::bump(&c.dropped_source, 1);
        return;
    }
    if !slot.budget.take(data.len(), now) {
        ConsoleCounters::bump(&c.dropped_rate, 1);
        return;
    }
    for bytes in slot.assembler.push(data, now) {
        enqueue(shared, slot, bytes, at);
    }
}

fn enqueue(shared: &Shared, slot: &mut SlotState, bytes: Vec<u8>, at: SystemTime) {
    let c = &shared.counters;
    if slot.queued_bytes + bytes.len() > shared.opts.queue_bytes {
        ConsoleCounters::bump(&c.dropped_queue, 1);
        return;
    }
    slot.queued_bytes += bytes.len();
    slot.queue.push_back(ConsoleLine { slot: slot.key.clone(), at, bytes });
    ConsoleCounters::bump(&c.lines_queued, 1);
}

/// Takes up to `batch_per_slot` lines of every slot (and tails older than a flush).
fn take_batch(shared: &Shared, now: Instant) -> Vec<ConsoleLine> {
    let cutoff = now.checked_sub(shared.opts.flush_every).unwrap_or(now);
    let mut slots = lock(&shared.slots);
    let mut batch = Vec::new();
    for slot in slots.values_mut() {
        if let Some(tail) = slot.assembler.take_stale(cutoff) {
            enqueue(shared, slot, tail, SystemTime::now());
        }
        let n = slot.queue.len().min(shared.opts.batch_per_slot);
        for line in slot.queue.drain(..n) {
            slot.queued_bytes -= line.bytes.len();
            batch.push(line);
        }
    }
    // Removed interfaces (marked with an unspecified Pi address) leave once drained.
    slots.retain(|_, s| !(s.pi == Some(Ipv4Addr::UNSPECIFIED) && s.queue.is_empty()));
    batch
}

async fn flush_loop(shared: Arc<Shared>, sink: Arc<dyn ConsoleSink>) {
    let mut tick = tokio::time::interval(shared.opts.flush_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let batch = take_batch(&shared, Instant::now());
        if batch.is_empty() {
            continue;
        }
        let n = batch.len() as u64;
        match sink.store(batch).await {
            Ok(()) => ConsoleCounters::bump(&shared.counters.lines_stored, n),
            Err(error) => {
                ConsoleCounters::bump(&shared.counters.dropped_sink, n);
                tracing::warn!(lines = n, %error, "could not store console lines");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(opts: ConsoleOptions) -> Shared {
        Shared { opts, counters: Arc::default(), slots: Mutex::new(HashMap::new()) }
    }

    fn slot(s: &Shared, ifname: &str, pi: Ipv4Addr, now: Instant) {
        let o = &s.opts;
        lock(&s.slots).insert(
            ifname.into(),
            SlotState {
                key: SlotKey(ifname.into()),
                pi: Some(pi),
                budget: Budget::new(o.rate_bytes, o.burst_bytes, now),
                assembler: LineAssembler::new(o.max_line),
                queue: VecDeque::new(),
                queued_bytes: 0,
            },
        );
    }

    #[test]
    fn a_noisy_slot_loses_only_its_own_lines_and_each_drop_is_counted() {
        let opts = ConsoleOptions {
            rate_bytes: 1000,
            burst_bytes: 4000,
            queue_bytes: 2000,
            batch_per_slot: 10,
            ..ConsoleOptions::default()
        };
        let s = shared(opts);
        let t0 = Instant::now();
        let (noisy, quiet) = (Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 6));
        slot(&s, "noisy", noisy, t0);
        slot(&s, "quiet", quiet, t0);
        let line = [b'x'; 99].iter().chain(b"\n").copied().collect::<Vec<u8>>();
        for _ in 0..100 {
            accept(&s, "noisy", noisy.into(), &line, t0, SystemTime::now());
        }
        accept(&s, "quiet", quiet.into(), b"hello\n", t0, SystemTime::now());
        // A datagram on the quiet slot's interface from another address is refused.
        accept(&s, "quiet", noisy.into(), b"spoof\n", t0, SystemTime::now());
        let c = &s.counters;
        let l = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
        // Budget 4000 bytes: 40 datagrams pass, 60 are over it; the queue holds 20 of them.
        assert_eq!(l(&c.dropped_rate), 60);
        assert_eq!(l(&c.dropped_queue), 20);
        assert_eq!(l(&c.dropped_source), 1);
        let batch = take_batch(&s, t0);
        let quiet_lines: Vec<_> =
            batch.iter().filter(|l| l.slot.0 == "quiet").map(|l| l.bytes.clone()).collect();
        assert_eq!(quiet_lines, vec![b"hello".to_vec()]);
        assert_eq!(batch.iter().filter(|l| l.slot.0 == "noisy").count(), 10, "per-slot cap");
        assert_eq!(take_batch(&s, t0).len(), 10, "the rest waits for the next batch");
    }

    #[test]
    fn an_unfinished_line_is_flushed_after_one_interval_and_a_removed_slot_leaves() {
        let s = shared(ConsoleOptions::default());
        let t0 = Instant::now();
        let pi = Ipv4Addr::new(10, 0, 0, 2);
        slot(&s, "a", pi, t0);
        accept(&s, "a", pi.into(), b"no newline", t0, SystemTime::now());
        assert!(take_batch(&s, t0).is_empty());
        let batch = take_batch(&s, t0 + s.opts.flush_every);
        assert_eq!(batch[0].bytes, b"no newline");
        lock(&s.slots).get_mut("a").expect("slot").pi = Some(Ipv4Addr::UNSPECIFIED);
        let _ = take_batch(&s, t0);
        assert!(lock(&s.slots).is_empty());
    }
}
