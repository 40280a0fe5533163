//! The console without a BMC, controller side: `[console]` ([`config`]) and the storage
//! of what `bramble-netboot`'s console receiver hears ([`store`], the `ConsoleSink`).
//!
//! **A boot.** A Pi's console is kept per boot. A new boot starts with the first line
//! received after the Pi's timeline shows a new kernel read over TFTP (a `tftp.read` of
//! a `vmlinuz*`/`kernel*.img`/`Image` file newer than the one the current boot started
//! from); lines with no such read since (a Pi that kept running, or the first lines ever
//! seen) belong to the current boot, or start boot 1. Boots are numbered per Pi from 1
//! and never renumbered; the oldest are pruned beyond `keep_boots`. The read comes from
//! the shared database, so the definition holds whichever controller served the kernel.
//!
//! Each boot keeps at most `boot_bytes` of lines; later lines are counted as dropped.
//! A boot records the Pi's owner when it started, and a customer sees only boots
//! recorded for them (a Pi's next owner does not see its previous owner's consoles).

pub mod config;
pub mod store;

pub use config::ConsoleConfig;
pub use store::DbConsoleSink;

/// A console line made safe to show on a terminal or a page: printable text stays, ESC
/// becomes `␛` (so colour codes read as `␛[31m`), other C0 and C1 controls and DEL
/// become `\xNN`, bytes that are not UTF-8 `\xNN`, and characters that reorder text
/// (bidirectional overrides and isolates) `\u{NNNN}`. Tab stays a tab. The one rule
/// for the API's `shown`, the CLI and `/ui`.
pub fn shown(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\t' => out.push(c),
                '\u{1b}' => out.push('␛'),
                c if c.is_control() => {
                    let n = c as u32;
                    if n <= 0xff {
                        out.push_str(&format!("\\x{n:02x}"));
                    } else {
                        out.push_str(&format!("\\u{{{n:04x}}}"));
                    }
                }
                '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}' => {
                    out.push_str(&format!("\\u{{{:04x}}}", c as u32))
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}
