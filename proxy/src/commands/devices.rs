//! `comfy-relay devices`: lists paired devices, or revokes one.

use std::io::Write;
use std::path::Path;

use super::date;
use crate::auth::paired::PairedDevices;
use crate::config::DevicesAction;

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
