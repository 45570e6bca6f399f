//! Every open socket of every device, so that a revoked device loses all of them at once, and
//! no device holds more than its share: each socket is a connection, and a paired device that
//! opened a thousand would leave none for the rest of the team.
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
    per_device: usize,
    devices: Mutex<HashMap<DeviceId, (CancellationToken, Arc<()>)>>,
}

/// A device already has as many sockets open as it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "This device has {0} sockets open already, as many as it may; close a tab or another \
     client first."
)]
pub struct TooManySockets(pub usize);

impl axum::response::IntoResponse for TooManySockets {
    fn into_response(self) -> axum::response::Response {
        crate::error::ApiError::new(axum::http::StatusCode::TOO_MANY_REQUESTS, self.to_string())
            .into_response()
    }
}

impl DeviceSockets {
    /// No sockets yet; every socket also closes when `shutdown` is cancelled; a device may hold
    /// `per_device` at once.
    pub fn new(shutdown: CancellationToken, per_device: usize) -> Self {
        Self {
            shutdown,
            per_device,
            devices: Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<DeviceId, (CancellationToken, Arc<()>)>> {
        self.devices
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The token for a new socket of `device`, unless it holds as many as it may.
    pub fn token_for(&self, device: &DeviceId) -> Result<SocketToken, TooManySockets> {
        let mut devices = self.lock();
        let (token, open) = devices
            .entry(device.clone())
            .or_insert_with(|| (self.shutdown.child_token(), Arc::new(())));
        // The map holds one reference; each open socket another.
        if Arc::strong_count(open) > self.per_device {
            return Err(TooManySockets(self.per_device));
        }
        Ok(SocketToken {
            token: token.clone(),
            _open: open.clone(),
        })
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
