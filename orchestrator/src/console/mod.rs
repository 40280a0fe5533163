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
