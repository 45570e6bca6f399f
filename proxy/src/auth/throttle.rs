//! Slowing down guesses: after a wrong token, an address is locked out for a while, each time
//! twice as long, and while it is locked out no token it sends is even checked.
//!
//! Answering each wrong attempt late would not do: a guesser sends its attempts in parallel,
//! and each would be checked at once. Checking and locking happen under one lock, so however
//! many attempts arrive together, one is checked and the rest are answered 429.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The first failure locks the address out this long; each further one twice as long.
const FIRST_DELAY: Duration = Duration::from_millis(250);
/// No lock-out lasts longer than this.
const MAX_DELAY: Duration = Duration::from_secs(8);
/// Failures are forgotten after this long without another.
const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
/// Addresses remembered at most (oldest dropped first), so a flood cannot grow memory.
const MAX_ADDRESSES: usize = 4096;

/// An address's consecutive failures and when its lock-out ends.
struct Failures {
    count: u32,
    locked_until: Instant,
}

/// Failed attempts per address.
#[derive(Default)]
pub struct Throttle {
    failures: Mutex<HashMap<IpAddr, Failures>>,
}

/// How long the `failures`-th consecutive failure locks its address out.
pub fn delay_after(failures: u32) -> Duration {
    FIRST_DELAY
        .saturating_mul(2u32.saturating_pow(failures.saturating_sub(1).min(16)))
        .min(MAX_DELAY)
}

impl Throttle {
    /// Runs `check` for an attempt from `ip`, unless `ip` is locked out: `Err` with the time
    /// left then. A failed check locks `ip` out; a successful one forgets its failures.
    pub fn attempt(&self, ip: IpAddr, check: impl FnOnce() -> bool) -> Result<bool, Duration> {
        let mut failures = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        if let Some(known) = failures.get(&ip)
            && known.locked_until > now
        {
            return Err(known.locked_until - now);
        }
        if check() {
            // Most of the time nobody has failed; an empty map's lookup hashes nothing, but its
            // removal would.
            if !failures.is_empty() {
                failures.remove(&ip);
            }
            return Ok(true);
        }
        failures.retain(|_, f| now.saturating_duration_since(f.locked_until) < FORGET_AFTER);
        if failures.len() >= MAX_ADDRESSES
            && let Some(oldest) = failures
                .iter()
                .min_by_key(|(_, f)| f.locked_until)
                .map(|(ip, _)| *ip)
        {
            failures.remove(&oldest);
        }
        let entry = failures.entry(ip).or_insert(Failures {
            count: 0,
            locked_until: now,
        });
        entry.count = entry.count.saturating_add(1);
        entry.locked_until = now + delay_after(entry.count);
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_locks_out_twice_as_long_up_to_eight_seconds() {
        let delays: Vec<u128> = (1..=7).map(|n| delay_after(n).as_millis()).collect();
        assert_eq!(delays, [250, 500, 1000, 2000, 4000, 8000, 8000]);
    }

    #[test]
    fn while_locked_out_nothing_is_checked_and_other_addresses_are_not_affected() {
        let throttle = Throttle::default();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        assert_eq!(throttle.attempt(a, || false), Ok(false));
        let mut checked = false;
        let locked = throttle.attempt(a, || {
            checked = true;
            true
        });
        assert!(locked.is_err_and(|left| left <= FIRST_DELAY));
        assert!(
            !checked,
            "a locked-out address's token is not even looked at"
        );
        assert_eq!(throttle.attempt(b, || true), Ok(true));
        std::thread::sleep(FIRST_DELAY);
        assert_eq!(throttle.attempt(a, || true), Ok(true));
        assert_eq!(throttle.attempt(a, || false), Ok(false));
        assert!(
            throttle
                .attempt(a, || true)
                .is_err_and(|left| left <= FIRST_DELAY)
        );
    }
}
