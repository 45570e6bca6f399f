//! `comfy-relay`'s subcommands besides serving.

pub mod devices;
pub mod jobs;
pub mod run;

/// The UTC date of `ms` since the epoch, `2026-11-24`.
pub(crate) fn date(ms: u64) -> String {
    // Days since the epoch → a civil date (proleptic Gregorian), without a date crate.
    let days = i64::try_from(ms / 86_400_000).unwrap_or(0) + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// The UTC date and time of `ms` since the epoch, `2026-11-24 13:51`.
pub(crate) fn date_time(ms: u64) -> String {
    let minutes = ms / 60_000 % (24 * 60);
    format!("{} {:02}:{:02}", date(ms), minutes / 60, minutes % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_civil_dates() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(1_795_501_903_265), "2026-11-24");
        assert_eq!(date(951_782_400_000), "2000-02-29");
    }

    #[test]
    fn date_times_are_utc_minutes() {
        assert_eq!(date_time(1_795_501_903_265), "2026-11-24 06:31");
        assert_eq!(date_time(0), "1970-01-01 00:00");
    }
}
