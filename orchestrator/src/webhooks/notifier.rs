//! The delivery loop: read events after the cursor, POST each matching one (with its job)
//! to the endpoint, retrying with backoff, and move the cursor after each.
//!
//! Events are handled strictly in id order, one at a time, so a receiver sees a job's
//! events in the order they happened. A delivery that keeps failing is given up after
//! `max_attempts` and recorded as `webhook.failed`; the queue then moves on.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::Notify;

use super::policy::{AfterFailure, RetryPolicy, may_pass};
use super::store::{CURSOR_NAME, advance_cursor, load_cursor, record_give_up};
use super::{DeliveryFailure, WebhookConfig, WebhookError, headers, sign};
use crate::db::events::EventFilter;
use crate::db::{Db, Order};
use crate::jobs::model::JobKind;
use crate::model::{Event, Job};
use crate::reload::LiveConfig;
use crate::time::now_millis;

/// Events read from the log per query.
const BATCH: usize = 100;

/// The JSON body of a delivery.
#[derive(Debug, Serialize)]
struct Payload<'a> {
    event: &'a Event,
    /// The job as `GET /v1/jobs/{id}` shows it now; absent for events without a job.
    #[serde(skip_serializing_if = "Option::is_none")]
    job: Option<&'a Job>,
}

/// How one event ended.
enum Outcome {
    /// `endpoint`: where the last attempt went, as logs show it.
    Delivered {
        attempts: u32,
        endpoint: String,
    },
    GaveUp {
        attempts: u32,
        failure: DeliveryFailure,
        endpoint: String,
    },
}

/// Wakes a running [`Notifier`] early, e.g. right after a job changed state.
#[derive(Debug, Clone)]
pub struct Nudge(Arc<Notify>);

impl Nudge {
    pub fn nudge(&self) {
        self.0.notify_one();
    }
}

/// Sends the event log to the configured endpoint.
pub struct Notifier {
    db: Db,
    /// Where deliveries go now; made again when the running `[webhooks]` changes.
    current: Mutex<Arc<Endpoint>>,
    /// In a controller: the running configuration, whose `[webhooks]` a reload may
    /// change (URL, secret, timings, kinds). Read before each pass and each attempt.
    live: Option<LiveConfig>,
    nudge: Arc<Notify>,
    executable: Arc<HashSet<JobKind>>,
    /// In a cluster: whether this controller still holds the `webhooks` lease. No event
    /// is sent once it reads false (see [`crate::cluster::Singleton`]).
    leader: Option<tokio::sync::watch::Receiver<bool>>,
}

/// The lease that makes one controller at a time deliver webhooks.
pub const LEASE: &str = "webhooks";

/// One configured endpoint: its settings, the HTTP client made for them and the URL as
/// logs show it.
struct Endpoint {
    cfg: WebhookConfig,
    client: Result<reqwest::Client, String>,
    endpoint: String,
}

impl Endpoint {
    fn new(cfg: WebhookConfig) -> Endpoint {
        // No redirects: a signed notification goes to the configured URL or nowhere.
        let client =
            cfg.tls.reqwest_builder().map_err(|e| bramble_report::chain(&e)).and_then(|b| {
                b.timeout(cfg.timeout)
                    .redirect(reqwest::redirect::Policy::none())
                    .user_agent(concat!("bramble-webhooks/", env!("CARGO_PKG_VERSION")))
                    .build()
                    .map_err(|e| bramble_report::chain(&e.without_url()))
            });
        let endpoint = cfg.endpoint();
        Endpoint { cfg, client, endpoint }
    }

    fn client(&self) -> Result<&reqwest::Client, WebhookError> {
        self.client.as_ref().map_err(|message| WebhookError::Client { message: message.clone() })
    }
}

impl Notifier {
    pub fn new(db: Db, cfg: WebhookConfig) -> Notifier {
        Notifier {
            db,
            current: Mutex::new(Arc::new(Endpoint::new(cfg))),
            live: None,
            nudge: Arc::new(Notify::new()),
            executable: Arc::default(),
            leader: None,
        }
    }

    /// Follows the running configuration's `[webhooks]` (a reload may change it).
    pub fn live(mut self, config: LiveConfig) -> Self {
        self.live = Some(config);
        self
    }

    /// The endpoint as configured now.
    fn current(&self) -> Arc<Endpoint> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let config = self.live.as_ref().map(LiveConfig::get);
        if let Some(cfg) = config.as_ref().and_then(|c| c.webhooks.as_ref())
            && *cfg != current.cfg
        {
            let next = Endpoint::new(cfg.clone());
            tracing::info!(from = %current.endpoint, to = %next.endpoint, "webhook settings changed");
            *current = Arc::new(next);
        }
        current.clone()
    }

    /// Sends only while `held` reads true: the lease of the cluster's one notifier.
    pub fn while_leader(mut self, held: tokio::sync::watch::Receiver<bool>) -> Self {
        self.leader = Some(held);
        self
    }

    fn leads(&self) -> bool {
        self.leader.as_ref().is_none_or(|held| *held.borrow())
    }

    /// The job kinds this controller runs, so a job's `executable` flag in the payload
    /// matches what the API shows (pass `AppState::executable`).
    pub fn with_executable(mut self, kinds: Arc<HashSet<JobKind>>) -> Self {
        self.executable = kinds;
        self
    }

    /// A handle that wakes the loop before its next poll.
    pub fn nudger(&self) -> Nudge {
        Nudge(self.nudge.clone())
    }

    /// Delivers until `shutdown` resolves: a pass over new events every poll interval,
    /// or at once when nudged. Stopping mid-delivery is safe: the cursor has not moved,
    /// so that event is sent again next time.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        tracing::info!(endpoint = %self.current().endpoint, "webhook notifier started");
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                result = self.deliver_pending() => {
                    if let Err(e) = result {
                        tracing::error!(endpoint = %self.current().endpoint, error = %bramble_report::chain(&e), "webhook pass failed");
                    }
                }
            }
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep(self.current().cfg.poll_interval) => {}
                _ = self.nudge.notified() => {}
            }
        }
        tracing::info!(endpoint = %self.current().endpoint, "webhook notifier stopped");
    }

    /// Handles every event after the cursor (except one after a still-fresh hole in the
    /// ids, see [`may_pass`]) and returns how many were delivered.
    pub async fn deliver_pending(&self) -> Result<usize, WebhookError> {
        let ep = self.current();
        ep.client()?;
        let mut handled = load_cursor(&self.db, CURSOR_NAME).await?;
        let mut saved = handled;
        let mut delivered = 0;
        'pages: loop {
            let page = self
                .db
                .list_events(&EventFilter::default(), Some(handled), Order::Asc, BATCH)
                .await?;
            let last_page = page.next_cursor.is_none();
            for event in &page.items {
                if !may_pass(handled, event.id, event.at, now_millis(), ep.cfg.gap_grace) {
                    tracing::debug!(
                        after = handled,
                        next = event.id,
                        "waiting for a hole in the event ids to fill"
                    );
                    break 'pages;
                }
                if !self.leads() {
                    tracing::info!(event_id = event.id, "webhook lease lost; delivery stops here");
                    break 'pages;
                }
                if ep.cfg.kinds.matches(&event.kind) {
                    match self.deliver(event).await? {
                        Outcome::Delivered { attempts, endpoint } => {
                            advance_cursor(&self.db, CURSOR_NAME, event.id).await?;
                            tracing::info!(event_id = event.id, kind = %event.kind, attempts, %endpoint, "webhook delivered");
                            delivered += 1;
                        }
                        Outcome::GaveUp { attempts, failure, endpoint } => {
                            record_give_up(
                                &self.db,
                                CURSOR_NAME,
                                event,
                                attempts,
                                &failure,
                                &endpoint,
                            )
                            .await?;
                            tracing::error!(event_id = event.id, kind = %event.kind, attempts, %endpoint,
                                error = %failure, "webhook given up; recorded as webhook.failed");
                        }
                    }
                    saved = event.id;
                }
                handled = event.id;
            }
            if last_page || page.items.is_empty() {
                break;
            }
        }
        if handled > saved {
            // Only non-matching events since the last delivery: remember we read them.
            advance_cursor(&self.db, CURSOR_NAME, handled).await?;
        }
        Ok(delivered)
    }

    /// Sends one event, retrying as the policy says.
    async fn deliver(&self, event: &Event) -> Result<Outcome, WebhookError> {
        let job = match &event.job {
            Some(id) => self.db.get_job(id).await?.map(|mut j| {
                j.executable = self.executable.contains(&j.kind);
                j
            }),
            None => None,
        };
        let body = serde_json::to_vec(&Payload { event, job: job.as_ref() })
            .map_err(|source| WebhookError::Encode { event_id: event.id, source })?;
        let mut attempt = 1;
        loop {
            // Each attempt goes where the configuration says now: a reload that fixed the
            // URL of a dead endpoint takes effect at the next retry.
            let ep = self.current();
            let endpoint = ep.endpoint.clone();
            let failure = match self.post(&ep, event, &body).await? {
                Ok(()) => return Ok(Outcome::Delivered { attempts: attempt, endpoint }),
                Err(f) => f,
            };
            let policy = RetryPolicy {
                max_attempts: ep.cfg.max_attempts,
                first_pause: ep.cfg.first_backoff,
            };
            match policy.after_failure(attempt) {
                AfterFailure::GiveUp => {
                    return Ok(Outcome::GaveUp { attempts: attempt, failure, endpoint });
                }
                AfterFailure::RetryAfter(pause) => {
                    tracing::warn!(event_id = event.id, kind = %event.kind, attempt, pause_ms = pause.as_millis() as u64,
                        %endpoint, error = %failure, "webhook delivery failed; will retry");
                    tokio::time::sleep(pause).await;
                    attempt += 1;
                }
            }
        }
    }

    /// One attempt to `ep`, signed with a fresh timestamp.
    async fn post(
        &self,
        ep: &Endpoint,
        event: &Event,
        body: &[u8],
    ) -> Result<Result<(), DeliveryFailure>, WebhookError> {
        let client = ep.client()?;
        let timestamp = now_millis() / 1000;
        let signature = sign(&ep.cfg.secret, timestamp, body);
        let sent = client
            .post(ep.cfg.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(headers::EVENT, event.kind.as_str())
            .header(headers::DELIVERY, event.id.to_string())
            .header(headers::TIMESTAMP, timestamp.to_string())
            .header(headers::SIGNATURE, signature)
            .body(body.to_vec())
            .send()
            .await;
        let status = match sent {
            Ok(response) => response.status(),
            Err(e) => return Ok(Err(DeliveryFailure::from_reqwest(e, ep.cfg.timeout))),
        };
        Ok(if status.is_success() { Ok(()) } else { Err(DeliveryFailure::Status(status.as_u16())) })
    }
}
