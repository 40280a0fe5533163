//! Webhook notifications: every job event in the audit log is POSTed, signed with an
//! HMAC secret, to the control panel's URL.
//!
//! The notifier is a reader of the `events` table and nothing else: jobs only append
//! events (which they do anyway, for the audit log) and never wait for a notification.
//! It keeps its place in `webhook_cursor`, advancing it in the database after each
//! delivery, so a restarted controller resumes where it stopped (at-least-once).
//!
//! - [`config`]: the `[webhooks]` TOML section and its checked form.
//! - [`signature`]: the signature scheme, for the sender and for Rust receivers.
//! - [`policy`]: retry pauses and the event-log gap rule, as pure functions.
//! - [`store`]: the cursor and the `webhook.failed` audit record.
//! - [`notifier`]: the delivery loop.
//!
//! **Invariant:** the secret is only ever read by [`signature`]; it has no `Display`,
//! its `Debug` prints `<redacted>`, and no error or log line carries it.
//! **Invariant:** `webhook.*` events are never delivered, so a dead endpoint cannot
//! make the notifier notify about itself.

pub mod config;
pub mod notifier;
pub mod policy;
pub mod signature;
pub mod store;

pub use config::{KindFilter, RawWebhooks, WebhookConfig, WebhookSecret};
pub use notifier::{Notifier, Nudge};
pub use signature::{VerifyError, sign, verify};

use crate::db::DbError;

/// The actor named in audit events the notifier writes.
pub const ACTOR: &str = "webhooks";

/// The audit event recorded when a delivery is given up.
pub const FAILED_KIND: &str = "webhook.failed";

/// Header names of a delivery.
pub mod headers {
    pub const EVENT: &str = "X-Bramble-Event";
    pub const DELIVERY: &str = "X-Bramble-Delivery";
    pub const TIMESTAMP: &str = "X-Bramble-Timestamp";
    pub const SIGNATURE: &str = "X-Bramble-Signature";
}

/// Why a delivery pass stopped. A failing endpoint is not an error of the pass: it is
/// retried, then recorded as `webhook.failed`, and the pass moves on.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("webhook notifier cannot read or write the database")]
    Db(#[from] DbError),
    #[error("cannot encode the notification for event {event_id}")]
    Encode {
        event_id: i64,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot build the webhook HTTP client: {message}")]
    Client { message: String },
}

/// Why one attempt to deliver failed. Messages name no URL and no secret; they go into
/// logs and the `webhook.failed` audit event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryFailure {
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("no answer within {0} ms")]
    Timeout(u128),
    #[error("endpoint answered HTTP {0}")]
    Status(u16),
    #[error("request failed: {0}")]
    Request(String),
}

impl DeliveryFailure {
    /// Classifies a client error, dropping the URL it carries.
    pub(crate) fn from_reqwest(e: reqwest::Error, timeout: std::time::Duration) -> Self {
        let e = e.without_url();
        if e.is_timeout() {
            return DeliveryFailure::Timeout(timeout.as_millis());
        }
        let chain = bramble_report::chain(&e);
        if e.is_connect() {
            DeliveryFailure::Connect(chain)
        } else {
            DeliveryFailure::Request(chain)
        }
    }
}
