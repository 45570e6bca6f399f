//! `comfy-relay devices`: lists paired devices, or revokes one.

use std::io::Write;
use std::path::Path;

use crate::auth::paired::PairedDevices;
use crate::config::DevicesAction;

fn date(ms: u64) -> String {
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

/// Runs `comfy-relay devices [list | revoke ID]` on the devices kept in `data_dir`, writing to
/// `out`.
pub fn run(
    data_dir: &Path,
    action: Option<DevicesAction>,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let devices = PairedDevices::open(data_dir)?;
    match action.unwrap_or(DevicesAction::List) {
        DevicesAction::List => {
            let list = devices.list();
            if list.is_empty() {
                writeln!(
                    out,
                    "No device is paired yet (data directory: {}).",
                    data_dir.display()
                )?;
            }
            for device in list {
                writeln!(
                    out,
                    "{}  {}  paired {}",
                    device.id,
                    device.name,
                    date(device.paired_at)
                )?;
            }
        }
        DevicesAction::Revoke { id } => {
            let revoked = devices.revoke(&id)?;
            writeln!(
                out,
                "Revoked {} ({}). It is refused from its next request on.",
                revoked.id, revoked.name
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::paired::PairedDevice;

    #[test]
    fn dates_are_civil_dates() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(1_795_501_903_265), "2026-11-24");
        assert_eq!(date(951_782_400_000), "2000-02-29");
    }

    #[test]
    fn list_then_revoke_then_list_again() {
        let dir = tempfile::tempdir().unwrap();
        let devices = PairedDevices::open(dir.path()).unwrap();
        devices
            .add(PairedDevice {
                id: "0123456789abcdef".into(),
                name: "Chrome on Android".into(),
                paired_at: 1_795_501_903_265,
            })
            .unwrap();
        let mut out = Vec::new();
        run(dir.path(), None, &mut out).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out),
            "0123456789abcdef  Chrome on Android  paired 2026-11-24\n"
        );
        out.clear();
        run(
            dir.path(),
            Some(DevicesAction::Revoke { id: "0123".into() }),
            &mut out,
        )
        .unwrap();
        assert!(String::from_utf8_lossy(&out).starts_with("Revoked 0123456789abcdef"));
        out.clear();
        run(dir.path(), Some(DevicesAction::List), &mut out).unwrap();
        assert!(String::from_utf8_lossy(&out).starts_with("No device is paired yet"));
        assert!(
            run(
                dir.path(),
                Some(DevicesAction::Revoke { id: "ffff".into() }),
                &mut out
            )
            .is_err()
        );
    }
}
