//! The notifier's decisions as pure functions: when to retry a failed delivery, and
//! when an event may be delivered past a hole in the event ids.
//!
//! **Invariant:** nothing here does I/O or reads the clock; callers pass `now`.

use std::time::Duration;

/// The longest pause between two attempts, however many have failed.
pub const MAX_PAUSE: Duration = Duration::from_secs(300);

/// How often, and how patiently, one event is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub first_pause: Duration,
}

/// What to do after attempt number `attempt` (counting from 1) failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    RetryAfter(Duration),
    GiveUp,
}

impl RetryPolicy {
    /// Exponential backoff: `first_pause`, then twice that, and so on, capped at
    /// [`MAX_PAUSE`]; give up once `max_attempts` attempts have failed.
    pub fn after_failure(&self, attempt: u32) -> AfterFailure {
        if attempt >= self.max_attempts {
            return AfterFailure::GiveUp;
        }
        let factor = 1u32.checked_shl(attempt.saturating_sub(1)).unwrap_or(u32::MAX);
        AfterFailure::RetryAfter(self.first_pause.saturating_mul(factor).min(MAX_PAUSE))
    }
}

/// Whether the event `id`, written at `at_ms`, may be handled when the last handled
/// event is `last_id`.
///
/// Event ids come from a sequence and are taken when a row is inserted, not when its
/// transaction commits: on PostgreSQL event 11 can be visible while event 10's
/// transaction is still open. Moving the cursor past 11 then would lose 10 forever. So
/// an event after a hole waits until it is `grace` old; by then the hole is either
/// filled or was a rolled-back insert that never will be.
pub fn may_pass(last_id: i64, id: i64, at_ms: i64, now_ms: i64, grace: Duration) -> bool {
    id == last_id.saturating_add(1) || now_ms.saturating_sub(at_ms) >= grace.as_millis() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_until_the_last_attempt() {
        let p = RetryPolicy { max_attempts: 5, first_pause: Duration::from_secs(1) };
        let got: Vec<AfterFailure> = (1..=5).map(|a| p.after_failure(a)).collect();
        let secs = |s| AfterFailure::RetryAfter(Duration::from_secs(s));
        assert_eq!(got, [secs(1), secs(2), secs(4), secs(8), AfterFailure::GiveUp]);
    }

    #[test]
    fn pauses_are_capped_and_one_attempt_means_no_retry() {
        let p = RetryPolicy { max_attempts: 100, first_pause: Duration::from_secs(10) };
        assert_eq!(p.after_failure(60), AfterFailure::RetryAfter(MAX_PAUSE));
        let once = RetryPolicy { max_attempts: 1, first_pause: Duration::from_secs(1) };
        assert_eq!(once.after_failure(1), AfterFailure::GiveUp);
    }

    #[test]
    fn holes_in_the_ids_are_waited_on_for_the_grace_period() {
        let grace = Duration::from_secs(10);
        let cases = [
            // (last, id, written at, now, may pass)
            (9, 10, 0, 0, true),
            (9, 11, 1_000, 5_000, false),
            (9, 11, 1_000, 11_000, true),
            (0, 1, 0, 0, true),
            (0, 7, 0, 60_000, true),
        ];
        for (last, id, at, now, want) in cases {
            assert_eq!(
                may_pass(last, id, at, now, grace),
                want,
                "last {last} id {id} at {at} now {now}"
            );
        }
    }
}
