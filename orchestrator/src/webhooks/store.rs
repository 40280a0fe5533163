//! What the notifier keeps in the database: its cursor in `webhook_cursor` (the id of
//! the last event it is done with) and the `webhook.failed` audit events.
//!
//! **Invariant:** the cursor only moves forward; the upsert refuses to lower it, so a
//! slow second notifier on the same database cannot make the first resend old events.

use serde_json::json;

use super::{ACTOR, DeliveryFailure, FAILED_KIND};
use crate::db::events::NewEvent;
use crate::db::{Db, DbError, get_i64};
use crate::model::Event;
use crate::time::now_millis;

/// The cursor row of the configured endpoint.
pub const CURSOR_NAME: &str = "default";

const ADVANCE: &str = "INSERT INTO webhook_cursor (name, last_event_id, updated_at) VALUES ($1, $2, $3) \
    ON CONFLICT (name) DO UPDATE SET last_event_id = excluded.last_event_id, updated_at = excluded.updated_at \
    WHERE webhook_cursor.last_event_id < excluded.last_event_id";

/// The id of the last event handled; 0 (the start of the log) if none ever was.
pub async fn load_cursor(db: &Db, name: &str) -> Result<i64, DbError> {
    let row = db
        .q("SELECT last_event_id FROM webhook_cursor WHERE name = $1")
        .bind(name.to_string())
        .fetch_optional(db.pool())
        .await?;
    row.map(|r| get_i64(&r, "last_event_id")).transpose().map(|id| id.unwrap_or(0))
}

/// Records that every event up to `event_id` is handled.
pub async fn advance_cursor(db: &Db, name: &str, event_id: i64) -> Result<(), DbError> {
    db.q(ADVANCE)
        .bind(name.to_string())
        .bind(event_id)
        .bind(now_millis())
        .execute(db.pool())
        .await?;
    Ok(())
}

/// Gives up on `event`: appends its `webhook.failed` audit event and moves the cursor
/// past it, in one transaction so a crash cannot do one without the other.
pub async fn record_give_up(
    db: &Db,
    name: &str,
    event: &Event,
    attempts: u32,
    failure: &DeliveryFailure,
    endpoint: &str,
) -> Result<(), DbError> {
    let message = format!(
        "webhook for event {} ({}) not delivered after {attempts} attempts: {failure}",
        event.id, event.kind
    );
    let mut audit = NewEvent::new(FAILED_KIND, ACTOR, message).data(json!({
        "event_id": event.id,
        "event_kind": event.kind,
        "attempts": attempts,
        "error": failure.to_string(),
        "endpoint": endpoint,
    }));
    // Linked to the job so operators find it from the job; not to the Pi or customer,
    // whose timelines customers read: a control panel outage is the operator's concern.
    audit.job = event.job.clone();
    let mut tx = db.begin_write().await?;
    db.append_event_with(&mut *tx, &audit).await?;
    db.q(ADVANCE)
        .bind(name.to_string())
        .bind(event.id)
        .bind(now_millis())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}
