//! Every open socket of every device, so that a revoked device loses all of them at once.
//!
//! `comfy-relay devices revoke` runs as another process and edits the devices file; the relay
//! looks at it every [`REVOCATION_CHECK`] and closes the sockets (raw `/ws` relays and
//! `/api/events`) of every device no longer paired.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::auth::Auth;
use crate::device::DeviceId;

/// How often the relay checks for revoked devices.
pub const REVOCATION_CHECK: Duration = Duration::from_secs(1);

/// What a socket watches: cancelled at shutdown or when its device is revoked. Held for as long
/// as the socket is open.
#[derive(Clone)]
pub struct SocketToken {
    token: CancellationToken,
    _open: Arc<()>,
}

impl SocketToken {
    /// Resolves when the socket must close.
    pub async fn cancelled(&self) {
        self.token.cancelled().await;
    }
}

/// The devices with open sockets.
pub struct DeviceSockets {
    shutdown: CancellationToken,
    devices: Mutex<HashMap<DeviceId, (CancellationToken, Arc<()>)>>,
}

impl DeviceSockets {
    /// No sockets yet; every socket also closes when `shutdown` is cancelled.
    pub fn new(shutdown: CancellationToken) -> Self {
        Self {
            shutdown,
            devices: Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<DeviceId, (CancellationToken, Arc<()>)>> {
        self.devices
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The token for a new socket of `device`.
    pub fn token_for(&self, device: &DeviceId) -> SocketToken {
        let mut devices = self.lock();
        let (token, open) = devices
            .entry(device.clone())
            .or_insert_with(|| (self.shutdown.child_token(), Arc::new(())));
        SocketToken {
            token: token.clone(),
            _open: open.clone(),
        }
    }

    /// Closes every socket of each device `auth` no longer allows, and forgets devices whose
    /// sockets have all closed. Returns the devices cut off.
    pub fn close_revoked(&self, auth: &Auth) -> Vec<DeviceId> {
        let mut devices = self.lock();
        devices.retain(|_, (_, open)| Arc::strong_count(open) > 1);
        let revoked: Vec<DeviceId> = devices
            .keys()
            .filter(|device| !auth.still_allowed(device))
            .cloned()
            .collect();
        for device in &revoked {
            if let Some((token, _)) = devices.remove(device) {
                token.cancel();
            }
        }
        revoked
    }
}

/// Checks for revoked devices every [`REVOCATION_CHECK`] until `cancel`.
pub async fn close_revoked(
    sockets: Arc<DeviceSockets>,
    auth: Arc<Auth>,
    cancel: CancellationToken,
) {
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(REVOCATION_CHECK) => {}
        }
        for device in sockets.close_revoked(&auth) {
            tracing::info!(
                device = device.short(),
                "closed the sockets of a revoked device"
            );
        }
    }
}
