//! The devices paired with the relay, kept in `devices.json` in the data directory.
//!
//! `comfy-relay devices revoke` edits the same file; the running relay notices the change (it
//! looks at the file's modification time on each check) and the revoked device is refused from
//! its next request on.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::token::write_private;
use crate::device::DeviceId;

/// One paired device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairedDevice {
    /// Its id (derived from the secret it holds; the secret itself is never stored).
    pub id: String,
    /// A name from its browser, for people ("Chrome on Android").
    pub name: String,
    /// When it paired, in milliseconds since the epoch.
    pub paired_at: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    devices: Vec<PairedDevice>,
}

/// The paired devices, reloaded when the file changes.
pub struct PairedDevices {
    path: PathBuf,
    state: Mutex<(Option<SystemTime>, Vec<PairedDevice>)>,
}

/// Why a device could not be revoked.
#[derive(Debug, thiserror::Error)]
pub enum RevokeError {
    /// No id starts with what was given.
    #[error("no paired device has an id starting with \"{0}\"")]
    NotFound(String),
    /// Several ids start with it.
    #[error("several paired devices have an id starting with \"{0}\"; give more of it")]
    Ambiguous(String),
    /// The file could not be written.
    #[error(transparent)]
    Io(#[from] io::Error),
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn read(path: &Path) -> io::Result<Vec<PairedDevice>> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str::<File>(&text)
            .map(|file| file.devices)
            .map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: {e}", path.display()),
                )
            }),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(error) => Err(error),
    }
}

impl PairedDevices {
    /// The devices listed in `data_dir/devices.json` (none if it does not exist yet).
    pub fn open(data_dir: &Path) -> io::Result<Self> {
        let path = data_dir.join("devices.json");
        let devices = read(&path)?;
        Ok(Self {
            state: Mutex::new((modified(&path), devices)),
            path,
        })
    }

    fn current(&self) -> std::sync::MutexGuard<'_, (Option<SystemTime>, Vec<PairedDevice>)> {
        let mut state = self.state.lock().expect("lock never poisoned");
        let now = modified(&self.path);
        if now != state.0 {
            match read(&self.path) {
                Ok(devices) => *state = (now, devices),
                Err(error) => {
                    tracing::error!(%error, "cannot reload paired devices; keeping the old list")
                }
            }
        }
        state
    }

    /// Whether `device` is paired.
    pub fn contains(&self, device: &DeviceId) -> bool {
        self.current().1.iter().any(|d| d.id == device.as_str())
    }

    /// Every paired device, oldest first.
    pub fn list(&self) -> Vec<PairedDevice> {
        self.current().1.clone()
    }

    fn save(&self, state: &mut (Option<SystemTime>, Vec<PairedDevice>)) -> io::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let json = serde_json::to_vec_pretty(&File {
            devices: state.1.clone(),
        })
        .map_err(io::Error::other)?;
        write_private(&self.path, &json)?;
        state.0 = modified(&self.path);
        Ok(())
    }

    /// Pairs a device.
    pub fn add(&self, device: PairedDevice) -> io::Result<()> {
        let mut state = self.current();
        state.1.retain(|d| d.id != device.id);
        state.1.push(device);
        self.save(&mut state)
    }

    /// Unpairs the one device whose id starts with `prefix`.
    pub fn revoke(&self, prefix: &str) -> Result<PairedDevice, RevokeError> {
        let mut state = self.current();
        let matching: Vec<usize> = (0..state.1.len())
            .filter(|i| !prefix.is_empty() && state.1[*i].id.starts_with(prefix))
            .collect();
        let index = match matching.as_slice() {
            [] => return Err(RevokeError::NotFound(prefix.to_owned())),
            [one] => *one,
            _ => return Err(RevokeError::Ambiguous(prefix.to_owned())),
        };
        let removed = state.1.remove(index);
        self.save(&mut state)?;
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(id: &str) -> PairedDevice {
        PairedDevice {
            id: id.to_owned(),
            name: "Firefox on Linux".to_owned(),
            paired_at: 1,
        }
    }

    #[test]
    fn a_revocation_written_by_another_process_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let relay = PairedDevices::open(dir.path()).unwrap();
        relay.add(device("aaaa000000000001")).unwrap();
        let id = DeviceId::parse("aaaa000000000001").unwrap();
        assert!(relay.contains(&id));

        // `comfy-relay devices revoke` runs as another process on the same file.
        std::thread::sleep(std::time::Duration::from_millis(20));
        let cli = PairedDevices::open(dir.path()).unwrap();
        assert_eq!(cli.revoke("aaaa").unwrap().id, "aaaa000000000001");
        assert!(!relay.contains(&id));
    }

    #[test]
    fn revoking_needs_an_unambiguous_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let devices = PairedDevices::open(dir.path()).unwrap();
        devices.add(device("ab00000000000001")).unwrap();
        devices.add(device("ab00000000000002")).unwrap();
        assert!(matches!(
            devices.revoke("ab"),
            Err(RevokeError::Ambiguous(_))
        ));
        assert!(matches!(
            devices.revoke("cd"),
            Err(RevokeError::NotFound(_))
        ));
        assert!(matches!(devices.revoke(""), Err(RevokeError::NotFound(_))));
        assert_eq!(
            devices.revoke("ab00000000000002").unwrap().id,
            "ab00000000000002"
        );
        assert_eq!(devices.list().len(), 1);
    }
}
