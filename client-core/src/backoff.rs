//! When to try reconnecting: exponential backoff with jitter, as a pure function.
//!
//! The caller supplies the jitter (a number in `[0, 1)` from its own randomness), so the
//! schedule is reproducible in tests. Jitter spreads reconnections of many browsers after a
//! relay restart instead of having them all arrive at once.

/// First retry delay.
pub const BASE_MS: u64 = 250;
/// Longest delay between attempts.
pub const CAP_MS: u64 = 8_000;

/// Delay before reconnection attempt number `attempt` (0 for the first retry), with
/// `jitter` in `[0, 1)` scaling the delay between 80% and 120% of its nominal value.
pub fn delay_ms(attempt: u32, jitter: f64) -> u64 {
    let nominal = BASE_MS.saturating_mul(1u64 << attempt.min(16)).min(CAP_MS);
    let jitter = if jitter.is_finite() {
        jitter.clamp(0.0, 1.0)
    } else {
        0.5
    };
    let factor = 0.8 + 0.4 * jitter;
    (nominal as f64 * factor).round() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_then_caps() {
        let nominal: Vec<u64> = (0..8).map(|a| delay_ms(a, 0.5)).collect();
        assert_eq!(nominal, vec![250, 500, 1000, 2000, 4000, 8000, 8000, 8000]);
        assert_eq!(delay_ms(u32::MAX, 0.5), CAP_MS);
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        assert_eq!(delay_ms(2, 0.0), 800);
        assert_eq!(delay_ms(2, 1.0), 1200);
        assert_eq!(delay_ms(2, f64::NAN), 1000);
    }
}
