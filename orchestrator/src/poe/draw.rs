//! What a Pi draws from PoE at worst, per model: the one table power-on waves are sized
//! by.
//!
//! Source, and why these are estimates: the Raspberry Pi documentation's power-supply
//! table (raspberrypi.com/documentation/computers/raspberry-pi.html, "Power supply")
//! gives per model the recommended supply current and the maximum total current of USB
//! peripherals: 3B 2.5 A / 1.2 A, 3B+ 2.5 A / 1.2 A, 4B 3.0 A / 1.2 A, 5 5.0 A / 1.6 A.
//! A netbooted Pi here has no USB peripherals, so its worst case is taken as the
//! difference at 5.1 V: 6.6 W, 6.6 W, 9.2 W and 17.3 W, rounded up. These were not
//! measured on boards; a PoE HAT's conversion loss (a few percent) is inside the
//! rounding. A port whose Pi has not been seen yet may hold any model, so it counts at
//! the worst of the table.

/// Worst-case draw of a model (`3b`, `3b+`, `4b`, `5`, as `Pi::model` names them), in
/// milliwatts; unknown models count at [`WORST_MW`].
pub fn worst_case_mw(model: &str) -> u32 {
    match model {
        "3b" | "3b+" => 6_700,
        "4b" => 9_200,
        "5" => 17_400,
        _ => WORST_MW,
    }
}

/// The largest figure of the table: what an unknown port is counted at.
pub const WORST_MW: u32 = 17_400;

/// The next power-on wave: from `pending` (port, expected draw in mW) in order, as many
/// as fit together in `available_mw`, at most `max` ports. Empty when not even the
/// first fits.
pub fn next_wave(pending: &[(u16, u32)], available_mw: u64, max: usize) -> Vec<u16> {
    let mut left = available_mw;
    let mut wave = Vec::new();
    for &(port, draw) in pending {
        if wave.len() >= max || u64::from(draw) > left {
            break;
        }
        left -= u64::from(draw);
        wave.push(port);
    }
    wave
}

/// What the budget has left for a new wave, in mW: the PSE's power less its measured
/// consumption, less what the ports powered by the previous wave may still add before
/// they reach their worst case (`recent`: expected and measured draw per port).
pub fn available_mw(power_w: u32, consumption_w: u32, recent: &[(u32, u32)]) -> u64 {
    let headroom: u64 = recent
        .iter()
        .map(|&(expected, measured)| u64::from(expected.saturating_sub(measured)))
        .sum();
    (u64::from(power_w.saturating_sub(consumption_w)) * 1000).saturating_sub(headroom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wave_takes_ports_in_order_while_they_fit() {
        let pending = [(1, 6_700), (2, 9_200), (3, 6_700), (4, 6_700)];
        assert_eq!(next_wave(&pending, 22_600, 10), [1, 2, 3]);
        assert_eq!(next_wave(&pending, 22_599, 10), [1, 2]);
        assert_eq!(next_wave(&pending, 100_000, 2), [1, 2]);
        assert!(next_wave(&pending, 6_699, 10).is_empty());
    }

    #[test]
    fn ports_still_rising_are_reserved_and_unknown_ports_count_at_the_worst() {
        assert_eq!(available_mw(100, 40, &[]), 60_000);
        // One port drawing 2 W of its 9.2 W worst case: 7.2 W held back.
        assert_eq!(available_mw(100, 40, &[(9_200, 2_000), (6_700, 6_900)]), 52_800);
        assert_eq!(available_mw(10, 40, &[]), 0);
        assert_eq!(worst_case_mw("unknown"), WORST_MW);
        assert!(["3b", "3b+", "4b", "5"].iter().all(|m| worst_case_mw(m) <= WORST_MW));
    }
}
