//! A webhook receiver for end-to-end tests: an HTTP server on the machine's loopback
//! that answers every delivery with 200 after a short hold, and records each one: the
//! event id in the delivery header and in the body, when it arrived, and whether another
//! delivery of the same event was in flight at the time (two senders at once).

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use bramble::webhooks::headers;
use serde_json::Value;
use tokio::sync::oneshot;

/// How long the receiver holds each delivery before answering: long enough that two
/// senders of one event would overlap.
const HOLD: Duration = Duration::from_millis(40);

/// One delivery as received.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The delivery header (`None` when missing).
    pub header_id: Option<String>,
    /// `event.id` of the body.
    pub body_id: Option<String>,
    pub kind: Option<String>,
    pub at: Instant,
}

#[derive(Debug, Default)]
struct Record {
    deliveries: Vec<Delivery>,
    in_flight: HashMap<String, u32>,
    /// Event ids received while a delivery of the same event was still in flight.
    overlapping: Vec<String>,
}

/// The running receiver; stops when dropped.
pub struct Receiver {
    pub addr: SocketAddr,
    record: Arc<Mutex<Record>>,
    _stop: oneshot::Sender<()>,
}

impl Receiver {
    /// Serves on `127.0.0.1:<free port>`.
    pub async fn start() -> anyhow::Result<Receiver> {
        let record = Arc::new(Mutex::new(Record::default()));
        let app = Router::new().route("/hooks", post(deliver)).with_state(record.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
                eprintln!("webhook receiver stopped: {e}");
            }
        });
        Ok(Receiver { addr, record, _stop: stop })
    }

    /// The URL to configure as `[webhooks] url`.
    pub fn url(&self) -> String {
        format!("http://{}/hooks", self.addr)
    }

    /// Every delivery so far, in arrival order.
    pub fn deliveries(&self) -> Vec<Delivery> {
        lock(&self.record).deliveries.clone()
    }

    /// Event ids delivered while another delivery of the same event was in flight.
    pub fn overlapping(&self) -> Vec<String> {
        lock(&self.record).overlapping.clone()
    }

    /// The event ids received (from the delivery header).
    pub fn ids(&self) -> BTreeSet<String> {
        lock(&self.record).deliveries.iter().filter_map(|d| d.header_id.clone()).collect()
    }
}

fn lock(m: &Mutex<Record>) -> MutexGuard<'_, Record> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// An event id as text, whether JSON has it as a number or a string.
pub fn id_text(v: &Value) -> Option<String> {
    match v {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

async fn deliver(
    State(record): State<Arc<Mutex<Record>>>,
    request: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let header_id =
        request.get(headers::DELIVERY).and_then(|v| v.to_str().ok()).map(str::to_string);
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let body_id = id_text(&parsed["event"]["id"]);
    let kind = parsed["event"]["kind"].as_str().map(str::to_string);
    let key = header_id.clone().or(body_id.clone()).unwrap_or_default();
    {
        let mut r = lock(&record);
        let n = r.in_flight.entry(key.clone()).or_default();
        *n += 1;
        if *n > 1 {
            r.overlapping.push(key.clone());
        }
        r.deliveries.push(Delivery { header_id, body_id, kind, at: Instant::now() });
    }
    tokio::time::sleep(HOLD).await;
    if let Some(n) = lock(&record).in_flight.get_mut(&key) {
        *n -= 1;
    }
    StatusCode::OK
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn send(url: &str, id: u64) -> u16 {
        let body = serde_json::json!({ "event": { "id": id, "kind": "job.created" } });
        let req = bramble::tls::client::http().post(url).header(headers::DELIVERY, id.to_string());
        req.json(&body).send().await.expect("delivery").status().as_u16()
    }

    #[tokio::test]
    async fn two_deliveries_of_one_event_at_once_are_caught_one_after_the_other_are_not() {
        let r = Receiver::start().await.expect("receiver");
        let url = r.url();
        assert_eq!(send(&url, 1).await, 200);
        assert_eq!(send(&url, 1).await, 200);
        assert!(r.overlapping().is_empty(), "{:?}", r.overlapping());
        let (a, b) = tokio::join!(send(&url, 2), send(&url, 2));
        assert_eq!((a, b), (200, 200));
        assert_eq!(r.overlapping(), vec!["2".to_string()]);
        let d = r.deliveries();
        assert_eq!(d.len(), 4);
        assert!(d.iter().all(|d| d.header_id == d.body_id && d.header_id.is_some()), "{d:?}");
    }
}
