//! How every Bramble crate writes an error for a log line or an event: the error and its
//! sources on one line, each cause once.
//!
//! It is a crate of its own so that the orchestrator and the library crates (which must
//! not depend on each other) share one formatter with one behaviour.

use std::error::Error;

/// `error` followed by its sources, joined by `": "`. A source whose text is already in
/// the line (an error that prints its cause in its own message) is not repeated, so both
/// error styles read the same.
pub fn chain(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::chain;

    #[derive(Debug, thiserror::Error)]
    #[error("disk on fire")]
    struct Root;

    /// Names its cause only through `source()`, as the house style asks.
    #[derive(Debug, thiserror::Error)]
    #[error("cannot read {0}")]
    struct Quiet(&'static str, #[source] Root);

    /// Prints its cause in its own message as well (as some dependencies' errors do).
    #[derive(Debug, thiserror::Error)]
    #[error("cannot read {0}: {1}")]
    struct Loud(&'static str, #[source] Root);

    #[derive(Debug, thiserror::Error)]
    #[error("step {0} failed")]
    struct Outer(u32, #[source] Box<dyn std::error::Error + Send + Sync>);

    #[test]
    fn joins_sources_and_prints_each_cause_once() {
        let cases: Vec<(Box<dyn std::error::Error>, &str)> = vec![
            (Box::new(Root), "disk on fire"),
            (Box::new(Quiet("/boot", Root)), "cannot read /boot: disk on fire"),
            (Box::new(Loud("/boot", Root)), "cannot read /boot: disk on fire"),
            (
                Box::new(Outer(3, Box::new(Quiet("/boot", Root)))),
                "step 3 failed: cannot read /boot: disk on fire",
            ),
            (
                Box::new(Outer(3, Box::new(Loud("/boot", Root)))),
                "step 3 failed: cannot read /boot: disk on fire",
            ),
        ];
        for (error, want) in cases {
            assert_eq!(chain(error.as_ref()), want);
        }
    }
}
