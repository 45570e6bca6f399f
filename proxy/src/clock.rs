//! Wall-clock times as the API reports them: milliseconds since the Unix epoch.

use std::time::{SystemTime, UNIX_EPOCH};

/// `time` in milliseconds since the epoch (0 before it).
pub fn epoch_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Now, in milliseconds since the epoch.
pub fn now_ms() -> u64 {
    epoch_ms(SystemTime::now())
}
