//! The one backoff schedule for retrying transient failures (warehouse connections and
//! per-file loads): exponential from 200 ms, doubling, capped at 10 s, plus up to 50%
//! jitter so that workers retrying together do not hit the server in step.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Delay before retry number `attempt` (1 for the first retry).
pub fn backoff(attempt: u32) -> Duration {
    let base = 200u64
        .saturating_mul(1 << attempt.saturating_sub(1).min(6))
        .min(10_000);
    // Jitter from the clock's sub-second part: no need for a random generator.
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let jitter = base / 2 * u64::from(nanos % 1000) / 1000;
    Duration::from_millis(base + jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_200_ms_and_caps_at_10_s() {
        for (attempt, base) in [(1, 200), (2, 400), (3, 800), (7, 10_000), (30, 10_000)] {
            let d = backoff(attempt).as_millis() as u64;
            assert!((base..=base + base / 2).contains(&d), "{attempt}: {d}");
        }
    }
}
