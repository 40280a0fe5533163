//! `GET /v1/pis/{id}/console`: a Pi's netconsole output, per boot (see `crate::console`),
//! as JSON, or followed as server-sent events. Follow mode polls the database, so any
//! controller answers it whichever controller receives the Pi's console.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::extract::{Caller, Params};
use super::{ApiError, AppState};
use crate::auth::Principal;
use crate::db::console::{ConsoleBoot, StoredLine};
use crate::ids::PiId;

/// How often follow mode looks for new lines.
pub const FOLLOW_POLL: Duration = Duration::from_millis(500);
/// Lines per answer (and per follow poll) when `limit` is not given.
const DEFAULT_LIMIT: usize = 1000;
const MAX_LIMIT: usize = 10_000;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ConsoleQuery {
    /// A boot number from `boots` (default: the latest boot).
    boot: Option<i64>,
    /// Only lines with an id above this (the `next_after` of a previous answer).
    after: Option<i64>,
    /// Lines per answer, 1-10000 (default 1000).
    limit: Option<usize>,
    /// Stream new lines as server-sent events (as does `Accept: text/event-stream`).
    follow: Option<bool>,
}

/// One console line. `text` is the bytes decoded as UTF-8, invalid sequences replaced
/// by U+FFFD; when that is not exact, `raw_hex` holds the bytes as received. `shown` is
/// the line to display ([`shown`]): every control character visible, none interpreted.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConsoleLineView {
    /// Increasing: the cursor for `after` and the SSE event id.
    pub id: i64,
    /// When the controller received it (ms since the epoch).
    pub at: i64,
    pub text: String,
    /// For display: ESC as `␛`, other control characters, invalid bytes and
    /// bidirectional overrides as `\xNN` / `\u{NNNN}`; print it as text, never as markup.
    pub shown: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_hex: Option<String>,
}

pub use crate::console::shown;

impl From<StoredLine> for ConsoleLineView {
    fn from(l: StoredLine) -> Self {
        let shown = shown(&l.bytes);
        let (text, raw_hex) = match String::from_utf8(l.bytes) {
            Ok(text) => (text, None),
            Err(e) => {
                let bytes = e.into_bytes();
                (String::from_utf8_lossy(&bytes).into_owned(), Some(hex::encode(&bytes)))
            }
        };
        ConsoleLineView { id: l.id, at: l.at, text, shown, raw_hex }
    }
}

/// A boot's lines and the boots there are.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Console {
    #[schema(value_type = String)]
    pub pi: PiId,
    /// The boot shown; `null` when the Pi has sent nothing yet.
    pub boot: Option<ConsoleBoot>,
    /// Every kept boot the caller may see, oldest first.
    pub boots: Vec<ConsoleBoot>,
    pub lines: Vec<ConsoleLineView>,
    /// The `after` that continues from here (the last line's id, or the given `after`).
    pub next_after: i64,
    /// More lines of this boot follow `next_after` already.
    pub more: bool,
}

fn wants_stream(q: &ConsoleQuery, headers: &HeaderMap) -> bool {
    q.follow.unwrap_or(false)
        || headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/event-stream"))
}

/// The boot `wanted` among `boots` (the latest when `None`); a number not kept is a 404.
fn pick(
    boots: &[ConsoleBoot],
    wanted: Option<i64>,
    pi: &str,
) -> Result<Option<ConsoleBoot>, ApiError> {
    match wanted {
        None => Ok(boots.last().cloned()),
        Some(n) => boots
            .iter()
            .find(|b| b.boot == n)
            .cloned()
            .map(Some)
            .ok_or_else(|| ApiError::not_found(format!("boot {n} of Pi {pi}"))),
    }
}

#[utoipa::path(get, path = "/v1/pis/{id}/console", tag = "pis", params(("id" = String, Path), ConsoleQuery),
    responses(
        (status = 200, description = "The boot's lines as JSON, or with `follow=true` / `Accept: text/event-stream` a stream of server-sent events: `line` (data: a ConsoleLineView, id: its id) and `boot` (data: a ConsoleBoot, when a newer boot starts)", body = Console),
        (status = 400, body = super::Problem), (status = 404, body = super::Problem)),
    security(("bearer" = [])))]
pub async fn get(
    State(st): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
    Params(q): Params<ConsoleQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let pi = super::pis::visible_pi(&st, &who, &id).await?.id;
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid("limit", format!("must be 1 to {MAX_LIMIT}")));
    }
    if let Some(b) = q.boot.filter(|b| *b < 1) {
        return Err(ApiError::invalid(
            "boot",
            format!("must be a boot number (1 or more), got {b}"),
        ));
    }
    let boots = st.db.console_boots(&pi, who.customer()).await?;
    let boot = pick(&boots, q.boot, &id)?;
    let after = q.after.unwrap_or(0);
    if wants_stream(&q, &headers) {
        return Ok(follow(st, who, pi, boot, q.boot.is_none(), after, limit).into_response());
    }
    let mut lines = match &boot {
        Some(b) => st.db.console_lines(b, after, limit as i64 + 1).await?,
        None => Vec::new(),
    };
    let more = lines.len() > limit;
    lines.truncate(limit);
    let next_after = lines.last().map_or(after, |l| l.id);
    let lines = lines.into_iter().map(ConsoleLineView::from).collect();
    Ok(Json(Console { pi, boot, boots, lines, next_after, more }).into_response())
}

/// Where a follower is.
struct Follow {
    st: AppState,
    who: Principal,
    pi: PiId,
    boot: Option<ConsoleBoot>,
    /// Follow into newer boots (no `boot` was asked for).
    latest: bool,
    after: i64,
    limit: usize,
    pending: std::collections::VecDeque<SseEvent>,
    first: bool,
}

impl Follow {
    /// The next events: the boot's lines after the cursor, then (when following the
    /// latest) a newer boot's announcement; waits a poll period when there is nothing.
    async fn poll(&mut self) -> Result<(), crate::db::DbError> {
        if !self.first {
            tokio::time::sleep(FOLLOW_POLL).await;
        }
        self.first = false;
        if let Some(b) = &self.boot {
            for l in self.st.db.console_lines(b, self.after, self.limit as i64).await? {
                self.after = l.id;
                let view = ConsoleLineView::from(l);
                let data = serde_json::to_string(&view).unwrap_or_default();
                self.pending.push_back(
                    SseEvent::default().event("line").id(view.id.to_string()).data(data),
                );
            }
        }
        if self.latest && self.pending.is_empty() {
            let boots = self.st.db.console_boots(&self.pi, self.who.customer()).await?;
            if let Some(newest) = boots.last()
                && self.boot.as_ref().is_none_or(|b| newest.boot > b.boot)
            {
                let data = serde_json::to_string(newest).unwrap_or_default();
                self.pending.push_back(SseEvent::default().event("boot").data(data));
                self.boot = Some(newest.clone());
                self.after = 0;
            }
        }
        Ok(())
    }
}

fn follow(
    st: AppState,
    who: Principal,
    pi: PiId,
    boot: Option<ConsoleBoot>,
    latest: bool,
    after: i64,
    limit: usize,
) -> Sse<impl futures_util::Stream<Item = Result<SseEvent, Infallible>>> {
    let state = Follow {
        st,
        who,
        pi,
        boot,
        latest,
        after,
        limit,
        pending: Default::default(),
        first: true,
    };
    let stream = futures_util::stream::unfold(state, |mut f| async move {
        loop {
            if let Some(ev) = f.pending.pop_front() {
                return Some((Ok(ev), f));
            }
            if let Err(error) = f.poll().await {
                // A database hiccup: say so and keep following.
                tracing::warn!(error = %bramble_report::chain(&error), "console follow poll failed");
                f.pending.push_back(SseEvent::default().comment("database unavailable; retrying"));
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_makes_every_control_visible_and_keeps_text() {
        assert_eq!(shown(b"[    0.000000] Linux version 6.1"), "[    0.000000] Linux version 6.1");
        assert_eq!(shown(b"\x1b[31mred\x1b[0m"), "␛[31mred␛[0m");
        assert_eq!(shown(b"a\rb\x00c\x07\x7f\td"), "a\\x0db\\x00c\\x07\\x7f\td");
        assert_eq!(shown(b"bad \xff\xfe end"), "bad \\xff\\xfe end");
        assert_eq!(shown("C1 \u{9b}31m".as_bytes()), "C1 \\x9b31m");
        assert_eq!(shown("\u{202e}txt.exe".as_bytes()), "\\u{202e}txt.exe");
        assert_eq!(shown("héllo ünïcode".as_bytes()), "héllo ünïcode");
        assert_eq!(
            shown("<script>&amp;".as_bytes()),
            "<script>&amp;",
            "markup is text, escaped by the page"
        );
    }

    #[test]
    fn invalid_utf8_keeps_its_bytes_beside_the_lossy_text() {
        let ok =
            ConsoleLineView::from(StoredLine { id: 1, at: 2, bytes: b"plain \x1b[0m".to_vec() });
        assert_eq!((ok.text.as_str(), ok.raw_hex), ("plain \x1b[0m", None));
        let bad = ConsoleLineView::from(StoredLine { id: 1, at: 2, bytes: b"a\xffb".to_vec() });
        assert_eq!(bad.text, "a\u{fffd}b");
        assert_eq!(bad.raw_hex.as_deref(), Some("61ff62"));
    }
}
