//! The browsers each device subscribed, kept in the data directory's `push/subscriptions.json`
//! (readable by the relay's user only) so that notifications outlive a restart.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use shared::api::PushSubscription;
use url::{Host, Url};

use super::encryption::{self, AUTH_SECRET_LEN, PUBLIC_KEY_LEN};
use crate::device::DeviceId;

/// The file in the data directory's `push/`.
const FILE: &str = "subscriptions.json";
/// The most browsers one device keeps subscribed; a new one replaces its oldest.
const MAX_PER_DEVICE: usize = 4;
/// The longest endpoint accepted (real ones are under 500 characters).
const MAX_ENDPOINT_LEN: usize = 2048;

/// Why a subscription was refused.
#[derive(Debug, thiserror::Error)]
pub enum SubscriptionError {
    /// The endpoint is not a push service's URL the relay will post to.
    #[error("the endpoint {0}")]
    Endpoint(&'static str),
    /// A key is not what a browser makes.
    #[error("keys.{0} is not {1} bytes of base64url")]
    Key(&'static str, usize),
    /// The P-256 key is not a point on the curve.
    #[error("keys.p256dh is not a P-256 public key")]
    Curve,
}

/// One browser's subscription, checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    /// The device it notifies.
    pub device: String,
    /// The push service's URL for the browser.
    pub endpoint: String,
    /// The browser's public key, base64url.
    pub p256dh: String,
    /// The authentication secret, base64url.
    pub auth: String,
}

impl Subscription {
    /// Checks what a browser sent for `device`: an `https` endpoint on a named host (never an
    /// address: the relay's own network is not a push service) and the keys a browser makes.
    pub fn check(device: &DeviceId, sent: PushSubscription) -> Result<Self, SubscriptionError> {
        if sent.endpoint.len() > MAX_ENDPOINT_LEN {
            return Err(SubscriptionError::Endpoint("is too long"));
        }
        let url =
            Url::parse(&sent.endpoint).map_err(|_| SubscriptionError::Endpoint("is not a URL"))?;
        if url.scheme() != "https" {
            return Err(SubscriptionError::Endpoint("is not an https URL"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(SubscriptionError::Endpoint("carries a user name"));
        }
        if !matches!(url.host(), Some(Host::Domain(_))) {
            return Err(SubscriptionError::Endpoint(
                "is not on a named host (push services have names, not addresses)",
            ));
        }
        let subscription = Self {
            device: device.as_str().to_owned(),
            endpoint: url.into(),
            p256dh: sent.keys.p256dh.trim_end_matches('=').to_owned(),
            auth: sent.keys.auth.trim_end_matches('=').to_owned(),
        };
        let (public, auth) = subscription.keys()?;
        // A trial message: a key off the curve is refused now, not at every job's end.
        encryption::encrypt(b"", &public, &auth).map_err(|_| SubscriptionError::Curve)?;
        Ok(subscription)
    }

    /// The browser's public key and authentication secret, decoded.
    pub fn keys(&self) -> Result<([u8; PUBLIC_KEY_LEN], [u8; AUTH_SECRET_LEN]), SubscriptionError> {
        Ok((
            decode_key(&self.p256dh, "p256dh")?,
            decode_key(&self.auth, "auth")?,
        ))
    }
}

/// The `N` bytes of base64url `text`, the key called `name`.
fn decode_key<const N: usize>(
    text: &str,
    name: &'static str,
) -> Result<[u8; N], SubscriptionError> {
    URL_SAFE_NO_PAD
        .decode(text)
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or(SubscriptionError::Key(name, N))
}

/// The stored file.
#[derive(Default, Serialize, Deserialize)]
struct File {
    subscriptions: Vec<Subscription>,
}

/// Every device's subscriptions.
pub struct Subscriptions {
    path: PathBuf,
    kept: Mutex<Vec<Subscription>>,
}

impl Subscriptions {
    /// Reads the file in `dir` (none yet is no subscriptions).
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join(FILE);
        let kept = match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice::<File>(&bytes)
                    .map_err(|e| {
                        anyhow::anyhow!(
                            "{} cannot be read ({e}): move it away to start with no \
                             notification subscriptions",
                            path.display()
                        )
                    })?
                    .subscriptions
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(error) => anyhow::bail!("cannot read {}: {error}", path.display()),
        };
        Ok(Self {
            path,
            kept: Mutex::new(kept),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Subscription>> {
        self.kept
            .lock()
            .expect("the subscriptions' lock is never poisoned")
    }

    fn save(&self, kept: &[Subscription]) -> std::io::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let json = serde_json::to_vec_pretty(&File {
            subscriptions: kept.to_vec(),
        })
        .map_err(std::io::Error::other)?;
        crate::auth::token::write_private(&self.path, &json)
    }

    /// Keeps `subscription` (again, if its endpoint was known: a browser's keys can change);
    /// a device's oldest goes past [`MAX_PER_DEVICE`].
    pub fn add(&self, subscription: Subscription) -> std::io::Result<()> {
        let mut kept = self.lock();
        kept.retain(|s| s.endpoint != subscription.endpoint);
        let device = subscription.device.clone();
        kept.push(subscription);
        let of_device = kept.iter().filter(|s| s.device == device).count();
        if of_device > MAX_PER_DEVICE {
            let oldest = kept
                .iter()
                .position(|s| s.device == device)
                .expect("the device has some");
            kept.remove(oldest);
        }
        self.save(&kept)
    }

    /// A device's subscriptions.
    pub fn of(&self, device: &DeviceId) -> Vec<Subscription> {
        self.lock()
            .iter()
            .filter(|s| s.device == device.as_str())
            .cloned()
            .collect()
    }

    /// Forgets every subscription `drop` picks; returns how many went.
    pub fn remove(&self, drop: impl Fn(&Subscription) -> bool) -> usize {
        let mut kept = self.lock();
        let before = kept.len();
        kept.retain(|s| !drop(s));
        let removed = before - kept.len();
        if removed > 0
            && let Err(error) = self.save(&kept)
        {
            tracing::error!(%error, "the removal of push subscriptions was not kept");
        }
        removed
    }
}
