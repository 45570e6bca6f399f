//! When to try reconnecting a dropped socket: exponential backoff with jitter.

use std::time::Duration;

/// The first retry comes after about this long.
const FIRST: Duration = Duration::from_millis(500);
/// Retries never wait longer than this.
const CEILING: Duration = Duration::from_secs(30);

/// The wait before reconnect attempt `attempt` (0 for the first retry), given a uniform
/// `random` number in `[0, 1)`. The base doubles each attempt up to the ceiling, and the wait
/// lies between half the base and the whole of it ("equal jitter"), so a roomful of phones that
/// lost the same Wi-Fi do not all come back in the same millisecond.
pub fn reconnect_delay(attempt: u32, random: f64) -> Duration {
    let base = FIRST
        .saturating_mul(2u32.saturating_pow(attempt.min(16)))
        .min(CEILING);
    let jitter = random.clamp(0.0, 1.0);
    base.mul_f64(0.5 + 0.5 * jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_base_doubles_from_half_a_second() {
        let bases: Vec<_> = (0..5)
            .map(|a| reconnect_delay(a, 1.0).as_millis())
            .collect();
        assert_eq!(bases, [500, 1000, 2000, 4000, 8000]);
    }

    #[test]
    fn jitter_keeps_the_wait_between_half_and_all_of_the_base() {
        assert_eq!(reconnect_delay(2, 0.0), Duration::from_millis(1000));
        assert_eq!(reconnect_delay(2, 0.5), Duration::from_millis(1500));
        assert_eq!(reconnect_delay(2, 0.999_999).as_millis(), 1999);
    }

    #[test]
    fn the_wait_never_exceeds_thirty_seconds_however_many_attempts() {
        assert_eq!(reconnect_delay(10, 1.0), CEILING);
        assert_eq!(reconnect_delay(u32::MAX, 1.0), CEILING);
        assert_eq!(reconnect_delay(u32::MAX, 0.0), CEILING / 2);
    }

    #[test]
    fn out_of_range_randomness_is_clamped() {
        assert_eq!(reconnect_delay(0, -3.0), Duration::from_millis(250));
        assert_eq!(reconnect_delay(0, 7.0), Duration::from_millis(500));
    }
}
