//! Slowing down guesses: every failed token attempt from an address waits longer than the last.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The first failure waits this long; each further one twice as long.
const FIRST_DELAY: Duration = Duration::from_millis(250);
/// No failure waits longer than this.
const MAX_DELAY: Duration = Duration::from_secs(8);
/// Failures are forgotten after this long without another.
const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
/// Addresses remembered at most (oldest dropped first), so a flood cannot grow memory.
const MAX_ADDRESSES: usize = 4096;

/// Failed attempts per address.
#[derive(Default)]
pub struct Throttle {
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

/// How long the `failures`-th consecutive failure waits.
pub fn delay_after(failures: u32) -> Duration {
    FIRST_DELAY
        .saturating_mul(2u32.saturating_pow(failures.saturating_sub(1).min(16)))
        .min(MAX_DELAY)
}

impl Throttle {
    /// Records a failure from `ip` and returns how long to wait before answering it.
    pub fn fail(&self, ip: IpAddr) -> Duration {
        let mut failures = self.failures.lock().expect("lock never poisoned");
        failures.retain(|_, (_, last)| last.elapsed() < FORGET_AFTER);
        if failures.len() >= MAX_ADDRESSES
            && let Some(oldest) = failures
                .iter()
                .min_by_key(|(_, (_, last))| *last)
                .map(|(ip, _)| *ip)
        {
            failures.remove(&oldest);
        }
        let entry = failures.entry(ip).or_insert((0, Instant::now()));
        entry.0 = entry.0.saturating_add(1);
        entry.1 = Instant::now();
        delay_after(entry.0)
    }

    /// Forgets `ip`'s failures after it got in.
    pub fn succeed(&self, ip: IpAddr) {
        self.failures
            .lock()
            .expect("lock never poisoned")
            .remove(&ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_waits_twice_as_long_up_to_eight_seconds() {
        let delays: Vec<u128> = (1..=7).map(|n| delay_after(n).as_millis()).collect();
        assert_eq!(delays, [250, 500, 1000, 2000, 4000, 8000, 8000]);
    }

    #[test]
    fn success_resets_and_addresses_are_counted_apart() {
        let throttle = Throttle::default();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        throttle.fail(a);
        assert_eq!(throttle.fail(a), Duration::from_millis(500));
        assert_eq!(throttle.fail(b), Duration::from_millis(250));
        throttle.succeed(a);
        assert_eq!(throttle.fail(a), Duration::from_millis(250));
    }
}
