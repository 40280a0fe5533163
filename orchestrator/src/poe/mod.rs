//! PoE that cannot hurt: the rules every power change obeys, in one place each.
//!
//! - [`guard`]: power is changed only on a port that is an enrolled slot of the switch
//!   (never a trunk, an uplink or a port outside every shelf); every driver the
//!   [`crate::fabric::Fabric`] hands out is wrapped in [`guard::PoeGuard`], which refuses
//!   such a request before any SET.
//! - [`limit`]: `[power]`, how many power cycles a Pi may have in a window; the API
//!   answers 429 past it, counting the Pi's jobs in the database.
//! - [`draw`]: the worst-case draw of each Pi model, and [`draw::next_wave`], how many
//!   ports fit in what is left of a switch's PoE budget.
//!
//! Confirmation by the PSE's detection status is `jobs::hardware::power_matches`.

pub mod draw;
pub mod guard;
pub mod limit;
