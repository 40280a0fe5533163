//! What the CLI prints on stdout: plain-text tables, JSON, lines. Every write is
//! fallible, so a reader that went away (`bramble pi list | head`) ends the command
//! quietly instead of panicking as `println!` does.

use std::fmt::Display;
use std::io::{self, Write};

use serde::Serialize;

/// Stdout could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write to stdout")]
pub struct StdoutError(#[source] io::Error);

impl StdoutError {
    /// The reader closed its end of the pipe, as `head` does once it has its lines: the
    /// command should end quietly, like `ls | head`.
    pub fn reader_gone(&self) -> bool {
        self.0.kind() == io::ErrorKind::BrokenPipe
    }
}

/// Writes `text` to stdout as it is and flushes.
pub fn print(text: impl Display) -> Result<(), StdoutError> {
    let mut out = io::stdout().lock();
    write!(out, "{text}").and_then(|()| out.flush()).map_err(StdoutError)
}

/// Writes `text` and a newline to stdout.
pub fn line(text: impl Display) -> Result<(), StdoutError> {
    print(format_args!("{text}\n"))
}

/// Prints rows under headers with columns padded to the widest cell.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> Result<(), StdoutError> {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let render = |cells: &[String]| {
        let padded: Vec<String> =
            cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut text = render(&headers.iter().map(|h| h.to_uppercase()).collect::<Vec<_>>());
    for r in rows {
        text.push_str(&render(r));
    }
    print(text)
}

/// A value as a table cell, `-` when absent.
pub fn cell<T: Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// A size in bytes as a table shows it: MiB with one decimal (`645.9 MiB`), `-` if unknown.
pub fn size_cell(bytes: Option<i64>) -> String {
    bytes.map_or_else(|| "-".to_string(), |b| format!("{:.1} MiB", b as f64 / 1_048_576.0))
}

/// Pretty-printed JSON, objects with their keys sorted (as the CLI has always shown
/// them).
pub fn json(v: &impl Serialize) -> Result<(), StdoutError> {
    let value = serde_json::to_value(v).unwrap_or_default();
    line(serde_json::to_string_pretty(&value).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_show_in_mib() {
        assert_eq!(super::size_cell(Some(677_235_320)), "645.9 MiB");
        assert_eq!(super::size_cell(None), "-");
    }
}
