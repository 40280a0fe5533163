//! Webhook notifications against a real HTTP receiver on 127.0.0.1, on SQLite and
//! PostgreSQL. The receiver checks every signature itself with the `hmac` crate, so a
//! signing mistake in the notifier fails these tests.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use bramble::auth::Principal;
use bramble::db::events::{EventFilter, NewEvent};
use bramble::db::jobs::{CreateOutcome, NewJob};
use bramble::db::pis::NewPi;
use bramble::db::{Db, Order};
use bramble::ids::{CustomerId, TokenId};
use bramble::jobs::model::JobKind;
use bramble::lifecycle::PiState;
use bramble::model::{Event, Job};
use bramble::testing::test_databases;
use bramble::webhooks::{Notifier, RawWebhooks, WebhookConfig};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::net::TcpListener;

const SECRET: &str = "s3cret-shared-with-the-panel";

/// What the receiver answers to the next request; 200 once the script is used up.
#[derive(Debug, Clone, Copy)]
enum Reply {
    Status(u16),
    /// Never answer (the notifier's timeout must fire).
    Hang,
}

#[derive(Debug, Clone)]
struct Delivery {
    kind: String,
    delivery_id: String,
    timestamp: i64,
    content_type: String,
    signature_ok: bool,
    body: Value,
}

#[derive(Clone)]
struct Receiver {
    secret: Vec<u8>,
    script: Arc<Mutex<VecDeque<Reply>>>,
    got: Arc<Mutex<Vec<Delivery>>>,
}

impl Receiver {
    /// Listens on `listener` with the shared secret `secret` and the replies `script`.
    fn start(listener: TcpListener, secret: &str, script: &[Reply]) -> Receiver {
        let r = Receiver {
            secret: secret.as_bytes().to_vec(),
            script: Arc::new(Mutex::new(script.iter().copied().collect())),
            got: Arc::default(),
        };
        let app = Router::new().route("/hooks", post(receive)).with_state(r.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        r
    }

    fn deliveries(&self) -> Vec<Delivery> {
        self.got.lock().unwrap().clone()
    }
}

/// Verifies the signature as a control panel would, independently of the notifier's
/// own signing code, records the request and answers from the script.
async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |name: &str| {
        headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
    };
    let timestamp = header("x-bramble-timestamp");
    let mut mac = Hmac::<Sha256>::new_from_slice(&r.secret).unwrap();
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(&body);
    let signature_ok = header("x-bramble-signature")
        .strip_prefix("sha256=")
        .and_then(|h| hex::decode(h).ok())
        .is_some_and(|tag| mac.verify_slice(&tag).is_ok());
    r.got.lock().unwrap().push(Delivery {
        kind: header("x-bramble-event"),
        delivery_id: header("x-bramble-delivery"),
        timestamp: timestamp.parse().unwrap_or(0),
        content_type: header("content-type"),
        signature_ok,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    });
    if !signature_ok {
        return StatusCode::UNAUTHORIZED;
    }
    let reply = r.script.lock().unwrap().pop_front();
    match reply {
        Some(Reply::Status(code)) => StatusCode::from_u16(code).unwrap(),
        Some(Reply::Hang) => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            StatusCode::OK
        }
        None => StatusCode::OK,
    }
}

async fn listener() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    (l, addr)
}

/// A checked config for `addr` with short pauses, plus `extra` TOML lines.
fn config(addr: SocketAddr, extra: &str) -> WebhookConfig {
    let text = format!(
        "url = \"http://{addr}/hooks\"\nsecret = \"{SECRET}\"\ntimeout_ms = 400\nfirst_backoff_ms = 20\n{extra}"
    );
    let raw: RawWebhooks = toml::from_str(&text).unwrap();
    WebhookConfig::from_raw(raw, "test").unwrap()
}

/// A ready Pi and a queued reboot job on it, made through the `Db` API.
async fn job(db: &Db, customer: &str) -> Job {
    let new_pi = NewPi {
        serial: None,
        mac: None,
        model: "3b".into(),
        slot: None,
        owner: Some(CustomerId(customer.into())),
        state: PiState::Ready,
    };
    let pi = db.insert_pi(&new_pi, "test").await.unwrap();
    let new_job = NewJob {
        kind: JobKind::Reboot,
        pi: Some(pi.id),
        shelf: None,
        params: json!({}),
        idempotency_key: None,
    };
    match db
        .create_job(&new_job, &Principal::Operator { token: TokenId("tok-test".into()) })
        .await
        .unwrap()
    {
        CreateOutcome::Created(j) => j,
        other => panic!("job not created: {other:?}"),
    }
}

async fn events(db: &Db, prefix: &str) -> Vec<Event> {
    let f = EventFilter { kind_prefix: Some(prefix.into()), ..Default::default() };
    db.list_events(&f, None, Order::Asc, 100).await.unwrap().items
}

#[tokio::test]
async fn job_events_arrive_signed_with_the_job() {
    for tdb in test_databases().await {
        let db = Db::connect(&tdb.url).await.unwrap();
        let (l, addr) = listener().await;
        let rx = Receiver::start(l, SECRET, &[]);
        let notifier = Notifier::new(db.clone(), config(addr, ""));
        let j = job(&db, "ann").await;
        // `pi.registered` is in the log too, but only job events are sent by default.
        assert_eq!(notifier.deliver_pending().await.unwrap(), 1, "{}", tdb.label);
        assert_eq!(notifier.deliver_pending().await.unwrap(), 0, "nothing new");
        let got = rx.deliveries();
        let d = &got[0];
        assert!(d.signature_ok, "{}: {d:?}", tdb.label);
        assert_eq!((d.kind.as_str(), d.content_type.as_str()), ("job.created", "application/json"));
        assert_eq!(d.delivery_id, d.body["event"]["id"].to_string());
        assert!(
            (d.timestamp - bramble::time::now_millis() / 1000).abs() < 60,
            "timestamp {}",
            d.timestamp
        );
        assert_eq!(d.body["event"]["kind"], "job.created");
        assert_eq!(d.body["event"]["pi"], json!(j.pi));
        assert_eq!(d.body["job"]["id"], j.id.as_str());
        assert_eq!(
            (&d.body["job"]["kind"], &d.body["job"]["state"]),
            (&json!("reboot"), &json!("queued"))
        );

        db.cancel_job(&j.id, &Principal::Operator { token: TokenId("tok-test".into()) })
            .await
            .unwrap();
        assert_eq!(notifier.deliver_pending().await.unwrap(), 1);
        let got = rx.deliveries();
        assert_eq!(got.len(), 2);
        assert_eq!(
            (got[1].kind.as_str(), &got[1].body["job"]["state"]),
            ("job.cancelled", &json!("cancelled"))
        );
        assert!(got[1].signature_ok);
        db.close().await;
        tdb.drop().await;
    }
}

#[tokio::test]
async fn a_failing_receiver_gets_the_event_once_it_recovers() {
    for tdb in test_databases().await {
        let db = Db::connect(&tdb.url).await.unwrap();
        let (l, addr) = listener().await;
        // Two errors and a hang (the 400 ms timeout fires), then a 200.
        let rx = Receiver::start(l, SECRET, &[Reply::Status(500), Reply::Status(503), Reply::Hang]);
        let notifier = Notifier::new(db.clone(), config(addr, ""));
        job(&db, "ann").await;
        assert_eq!(notifier.deliver_pending().await.unwrap(), 1, "{}", tdb.label);
        let got = rx.deliveries();
        assert_eq!(got.len(), 4, "three failures, then the delivery: {got:?}");
        assert!(got.iter().all(|d| d.signature_ok
            && d.kind == "job.created"
            && d.delivery_id == got[0].delivery_id));
        assert!(
            events(&db, "webhook.").await.is_empty(),
            "a delivery that succeeded is no failure"
        );
        assert_eq!(notifier.deliver_pending().await.unwrap(), 0, "delivered once");
        db.close().await;
        tdb.drop().await;
    }
}

#[tokio::test]
async fn a_dead_receiver_is_recorded_and_the_queue_moves_on() {
    for tdb in test_databases().await {
        let db = Db::connect(&tdb.url).await.unwrap();
        // Take a free port and close it: nothing listens there for the first event.
        let (l, addr) = listener().await;
        drop(l);
        let notifier = Notifier::new(db.clone(), config(addr, "max_attempts = 3"));
        let first = job(&db, "ann").await;
        assert_eq!(notifier.deliver_pending().await.unwrap(), 0, "{}", tdb.label);
        let created = events(&db, "job.created").await;
        let failed = events(&db, "webhook.").await;
        assert_eq!(failed.len(), 1, "{failed:?}");
        let f = &failed[0];
        assert_eq!((f.kind.as_str(), f.actor.as_str()), ("webhook.failed", "webhooks"));
        assert_eq!(f.data["event_id"], created[0].id);
        assert_eq!(f.data["attempts"], 3);
        assert_eq!(f.job.as_ref(), Some(&first.id));
        assert!(f.message.contains("cannot connect"), "{}", f.message);
        assert!(!format!("{f:?}").contains(SECRET));

        // The endpoint comes back; the next event goes out, the given-up one does not,
        // and neither does the webhook.failed record.
        let rx = Receiver::start(TcpListener::bind(addr).await.unwrap(), SECRET, &[]);
        job(&db, "ben").await;
        assert_eq!(notifier.deliver_pending().await.unwrap(), 1);
        let got = rx.deliveries();
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].body["event"]["id"], events(&db, "job.created").await[1].id);
        db.close().await;
        tdb.drop().await;
    }
}

#[tokio::test]
async fn a_restarted_notifier_resumes_after_the_last_delivery() {
    for tdb in test_databases().await {
        let db = Db::connect(&tdb.url).await.unwrap();
        let (l, addr) = listener().await;
        let rx = Receiver::start(l, SECRET, &[]);
        job(&db, "ann").await;
        assert_eq!(
            Notifier::new(db.clone(), config(addr, "")).deliver_pending().await.unwrap(),
            1,
            "{}",
            tdb.label
        );
        db.close().await;

        // A new process: a fresh pool and a fresh notifier, same database.
        let db = Db::connect(&tdb.url).await.unwrap();
        let notifier = Notifier::new(db.clone(), config(addr, ""));
        assert_eq!(notifier.deliver_pending().await.unwrap(), 0, "already delivered");
        job(&db, "ben").await;
        assert_eq!(notifier.deliver_pending().await.unwrap(), 1);
        let ids: Vec<i64> =
            rx.deliveries().iter().map(|d| d.delivery_id.parse().unwrap()).collect();
        assert!(ids.len() == 2 && ids[0] < ids[1], "{ids:?}");
        db.close().await;
        tdb.drop().await;
    }
}

#[tokio::test]
async fn a_receiver_with_another_secret_refuses_the_delivery() {
    for tdb in test_databases().await {
        let db = Db::connect(&tdb.url).await.unwrap();
        let (l, addr) = listener().await;
        let rx = Receiver::start(l, "a-different-secret-entirely", &[]);
        let notifier = Notifier::new(db.clone(), config(addr, "max_attempts = 1"));
        job(&db, "ann").await;
        assert_eq!(notifier.deliver_pending().await.unwrap(), 0, "{}", tdb.label);
        let got = rx.deliveries();
        assert_eq!(got.len(), 1);
        assert!(!got[0].signature_ok, "the receiver's check must be able to fail");
        let failed = events(&db, "webhook.failed").await;
        assert!(failed.len() == 1 && failed[0].message.contains("HTTP 401"), "{failed:?}");
        db.close().await;
        tdb.drop().await;
    }
}

#[tokio::test]
async fn an_event_committed_late_is_not_skipped() {
    for tdb in test_databases().await {
        if tdb.label == "sqlite" {
            // SQLite has one writer at a time, so ids always commit in order there.
            tdb.drop().await;
            continue;
        }
        let db = Db::connect(&tdb.url).await.unwrap();
        let (l, addr) = listener().await;
        let rx = Receiver::start(l, SECRET, &[]);
        let mut cfg = config(addr, "");
        cfg.gap_grace = Duration::from_millis(300);
        let notifier = Notifier::new(db.clone(), cfg);
        let event = |n: &str| NewEvent::new("job.step", "test", n.to_string());

        // Event "a" takes its id first but commits after "b".
        let mut tx = db.pool().begin().await.unwrap();
        db.append_event_with(&mut *tx, &event("a")).await.unwrap();
        db.append_event(&event("b")).await.unwrap();
        assert_eq!(notifier.deliver_pending().await.unwrap(), 0, "b waits while a's id is a hole");
        tx.commit().await.unwrap();
        assert_eq!(notifier.deliver_pending().await.unwrap(), 2);
        let order: Vec<Value> =
            rx.deliveries().iter().map(|d| d.body["event"]["message"].clone()).collect();
        assert_eq!(order, [json!("a"), json!("b")]);

        // A hole that never fills (a rolled-back insert) is passed once the grace is over.
        let mut tx = db.pool().begin().await.unwrap();
        db.append_event_with(&mut *tx, &event("c")).await.unwrap();
        db.append_event(&event("d")).await.unwrap();
        tx.rollback().await.unwrap();
        assert_eq!(notifier.deliver_pending().await.unwrap(), 0);
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert_eq!(notifier.deliver_pending().await.unwrap(), 1);
        assert_eq!(rx.deliveries()[2].body["event"]["message"], "d");
        db.close().await;
        tdb.drop().await;
    }
}

#[tokio::test]
async fn the_running_notifier_delivers_when_nudged_and_stops_on_shutdown() {
    for tdb in test_databases().await {
        let db = Db::connect(&tdb.url).await.unwrap();
        let (l, addr) = listener().await;
        let rx = Receiver::start(l, SECRET, &[]);
        let mut cfg = config(addr, "");
        // Far beyond the test's patience: only the first pass and the nudge can deliver.
        cfg.poll_interval = Duration::from_secs(600);
        let notifier = Notifier::new(db.clone(), cfg);
        let nudge = notifier.nudger();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        job(&db, "ann").await;
        let task = tokio::spawn(notifier.run(async move {
            let _ = stopped.await;
        }));
        wait_for_deliveries(&rx, 1).await;
        job(&db, "ben").await;
        nudge.nudge();
        wait_for_deliveries(&rx, 2).await;
        let got = rx.deliveries();
        assert_eq!(got.len(), 2, "{}: {got:?}", tdb.label);
        assert!(got.iter().all(|d| d.signature_ok && d.kind == "job.created"), "{got:?}");
        let _ = stop.send(());
        tokio::time::timeout(Duration::from_secs(2), task)
            .await
            .expect("run returns on shutdown")
            .unwrap();
        db.close().await;
        tdb.drop().await;
    }
}

async fn wait_for_deliveries(rx: &Receiver, n: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while rx.deliveries().len() < n && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
