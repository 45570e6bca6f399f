//! Notifications when a job ends, through each browser's push service (Web Push: RFC 8030,
//! messages encrypted per RFC 8291, the relay identified per RFC 8292), so a phone hears of it
//! with the app closed.
//!
//! - `GET /api/push` → the relay's public key and how many browsers the device subscribed
//! - `PUT /api/push/subscription` `PushSubscription.toJSON()` → subscribes this browser
//! - `DELETE /api/push/subscription` → forgets every subscription of the device
//! - `GET /api/jobs/{id}/notification` → what is pushed of the device's job that ended (the
//!   open app in the background shows it without a push; 404 for a job that tells nothing)
//!
//! A subscription names a URL the relay will post to, so it is checked as the door it is:
//! only `https` to a named host, and the sender resolves the name itself and connects only to
//! internet addresses (never loopback, private or link-local ones), so a paired device cannot
//! point the relay at ComfyUI or anything else on its network (`--push-allow-private` lifts
//! that for a push service on the LAN).
//! Subscriptions are removed with their device's pairing and when the push service answers
//! 404 or 410 (the browser unsubscribed).

mod encryption;
mod subscriptions;
mod vapid;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Extension, Json, Router};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use shared::api::{Job, PushInfo, PushMessage, PushSubscription};
use tokio::sync::{Semaphore, broadcast};
use tokio_util::sync::CancellationToken;

use crate::auth::Auth;
use crate::config::Config;
use crate::device::DeviceId;
use crate::error::ApiError;
use crate::state::AppState;
use subscriptions::{Subscription, Subscriptions};
use vapid::Vapid;

/// How long a push service may take to answer.
const SEND_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a push service keeps a message for a browser that is off.
const TTL_SECS: u32 = 24 * 3600;
/// Pushes under way at once.
const MAX_SENDING: usize = 8;
/// How often subscriptions of revoked devices are looked for.
const REVOCATION_CHECK: Duration = Duration::from_secs(10);
/// The largest subscription body read (a real one is about 400 bytes).
const MAX_SUBSCRIPTION_BYTES: usize = 8 * 1024;

/// The relay's notifications: its key, the subscriptions, and the client that posts to push
/// services.
pub struct Push {
    vapid: Vapid,
    subscriptions: Subscriptions,
    client: PushClient,
    sending: Semaphore,
}

impl Push {
    /// The key and subscriptions in the data directory's `push/`, and a client that trusts the
    /// public authorities (and `--push-ca`).
    pub fn new(config: &Config) -> anyhow::Result<Self> {
        let dir = config.data_dir.join("push");
        Ok(Self {
            vapid: Vapid::load_or_create(&dir, config.push_contact.clone())?,
            subscriptions: Subscriptions::open(&dir)?,
            client: PushClient::new(config)?,
            sending: Semaphore::new(MAX_SENDING),
        })
    }

    /// What `GET /api/push` tells `device`.
    fn info(&self, device: &DeviceId) -> PushInfo {
        PushInfo {
            public_key: self.vapid.public_key(),
            subscriptions: self.subscriptions.of(device).len(),
        }
    }

    /// Tells each browser `device` subscribed that `job` ended. Waits for none of them; a push
    /// still under way when `cancel` fires (the relay stops) is dropped.
    fn notify(
        self: &Arc<Self>,
        device: &DeviceId,
        job: &Job,
        tasks: &tokio_util::task::TaskTracker,
        cancel: &CancellationToken,
    ) {
        let Some(message) = message(job) else {
            return;
        };
        let plaintext = serde_json::to_vec(&message).expect("a push message serialises");
        for subscription in self.subscriptions.of(device) {
            let push = Arc::clone(self);
            let plaintext = plaintext.clone();
            let cancel = cancel.clone();
            tasks.spawn(async move {
                let sent = async {
                    if let Ok(_permit) = push.sending.acquire().await {
                        push.send(&subscription, &plaintext).await;
                    }
                };
                tokio::select! {
                    () = sent => {}
                    () = cancel.cancelled() => {}
                }
            });
        }
    }

    /// Posts one encrypted message; forgets the subscription when the service says it is gone.
    async fn send(&self, subscription: &Subscription, plaintext: &[u8]) {
        let short = subscription.endpoint.chars().take(60).collect::<String>();
        let body = match subscription
            .keys()
            .map_err(anyhow::Error::from)
            .and_then(|(public, auth)| Ok(encryption::encrypt(plaintext, &public, &auth)?))
        {
            Ok(body) => body,
            Err(error) => {
                tracing::warn!(endpoint = %short, %error, "a push message could not be encrypted");
                return;
            }
        };
        let Ok(url) = url::Url::parse(&subscription.endpoint) else {
            return;
        };
        let audience = url.origin().ascii_serialization();
        let request = axum::http::Request::builder()
            .header(header::AUTHORIZATION, self.vapid.authorization(&audience))
            .header(header::CONTENT_ENCODING, "aes128gcm")
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .header("TTL", TTL_SECS)
            .header("Urgency", "normal");
        let answer = self.client.post(&url, request, body).await;
        match answer {
            Ok(status) if status.is_success() => {
                tracing::debug!(endpoint = %short, "pushed");
            }
            Ok(StatusCode::NOT_FOUND | StatusCode::GONE) => {
                let endpoint = &subscription.endpoint;
                self.subscriptions.remove(|s| &s.endpoint == endpoint);
                tracing::info!(endpoint = %short, "the browser unsubscribed: forgot it");
            }
            Ok(status @ (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN)) => {
                tracing::warn!(
                    endpoint = %short,
                    %status,
                    contact = %self.vapid.contact(),
                    "the push service refused the relay's claim: check --push-contact (Apple \
                     takes only a mailto: or https: address on a public domain)"
                );
            }
            Ok(status) => {
                tracing::warn!(endpoint = %short, %status, "the push service refused a message");
            }
            Err(error) => {
                tracing::warn!(endpoint = %short, %error, "a push failed");
            }
        }
    }

    /// Forgets the subscriptions of devices `auth` no longer allows.
    fn forget_revoked(&self, auth: &Auth) {
        let removed = self.subscriptions.remove(|s| {
            DeviceId::parse(&s.device).is_none_or(|device| !auth.still_allowed(&device))
        });
        if removed > 0 {
            tracing::info!(removed, "forgot the push subscriptions of revoked devices");
        }
    }
}

/// Pushes every job end it hears of to its device's browsers, and forgets revoked devices'
/// subscriptions, until `cancel`.
pub async fn deliver(
    push: Arc<Push>,
    mut ended: broadcast::Receiver<(DeviceId, Job)>,
    auth: Arc<Auth>,
    tasks: tokio_util::task::TaskTracker,
    cancel: CancellationToken,
) {
    let mut revocations = tokio::time::interval(REVOCATION_CHECK);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = revocations.tick() => push.forget_revoked(&auth),
            end = ended.recv() => match end {
                Ok((device, job)) if auth.still_allowed(&device) => {
                    push.notify(&device, &job, &tasks, &cancel);
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "job ends came faster than they were pushed");
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}

/// The notification for a job that ended, within one push record: without its picture if
/// that makes it too long.
fn message(job: &Job) -> Option<PushMessage> {
    let mut message = PushMessage::ended(job)?;
    let fits = |m: &PushMessage| {
        serde_json::to_vec(m).map_or(0, |json| json.len()) <= encryption::MAX_PLAINTEXT
    };
    if !fits(&message) {
        message.image = None;
    }
    Some(message)
}

/// Posts to push services over HTTPS with the public authorities (and `--push-ca`), to public
/// addresses only: a push is rare, so each has a connection of its own.
struct PushClient {
    tls: tokio_rustls::TlsConnector,
    allow_private: bool,
}

/// Why a push did not reach its service.
#[derive(Debug, thiserror::Error)]
enum SendError {
    #[error("{0} has no public address (push services are on the internet)")]
    NoPublicAddress(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Http(#[from] hyper::Error),
    #[error("no answer within {} s", SEND_TIMEOUT.as_secs())]
    Timeout,
}

impl PushClient {
    fn new(config: &Config) -> anyhow::Result<Self> {
        let mut roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        if let Some(path) = &config.push_ca {
            for certificate in CertificateDer::pem_file_iter(path)
                .with_context(|| format!("cannot read --push-ca {}", path.display()))?
            {
                roots
                    .add(certificate.with_context(|| format!("--push-ca {}", path.display()))?)
                    .with_context(|| {
                        format!("--push-ca {} holds a bad certificate", path.display())
                    })?;
            }
        }
        let mut tls = rustls::ClientConfig::builder_with_provider(crate::tls::crypto_provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            tls: tokio_rustls::TlsConnector::from(Arc::new(tls)),
            allow_private: config.push_allow_private,
        })
    }

    /// Posts `request` with `body` to `url` (an `https` URL on a named host); the service's
    /// status.
    async fn post(
        &self,
        url: &url::Url,
        request: axum::http::request::Builder,
        body: Vec<u8>,
    ) -> Result<StatusCode, SendError> {
        tokio::time::timeout(SEND_TIMEOUT, self.post_now(url, request, body))
            .await
            .map_err(|_| SendError::Timeout)?
    }

    async fn post_now(
        &self,
        url: &url::Url,
        request: axum::http::request::Builder,
        body: Vec<u8>,
    ) -> Result<StatusCode, SendError> {
        let invalid = |e: &dyn std::fmt::Display| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string())
        };
        let host = url.host_str().unwrap_or_default().to_owned();
        let port = url.port_or_known_default().unwrap_or(443);
        let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
            .await?
            .filter(|address| self.allow_private || is_public(address.ip()))
            .collect();
        if addresses.is_empty() {
            return Err(SendError::NoPublicAddress(host));
        }
        let tcp = tokio::net::TcpStream::connect(addresses.as_slice()).await?;
        let name =
            rustls::pki_types::ServerName::try_from(host.clone()).map_err(|e| invalid(&e))?;
        let tls = self.tls.connect(name, tcp).await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await?;
        let connection = tokio::spawn(connection);
        let target = match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        };
        let authority = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host,
        };
        let request = request
            .method(axum::http::Method::POST)
            .uri(target)
            .header(header::HOST, authority)
            .body(http_body_util::Full::new(Bytes::from(body)))
            .map_err(|e| invalid(&e))?;
        let status = sender.send_request(request).await?.status();
        connection.abort();
        Ok(status)
    }
}

/// Whether `ip` is on the internet: not this machine or its networks (the ranges the local
/// authority certifies), nor an address no service has.
fn is_public(ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    !(crate::tls::local_ca::is_private(ip)
        || ip.is_unspecified()
        || ip.is_multicast()
        || matches!(ip, IpAddr::V4(v4) if v4.is_broadcast() || v4.is_documentation()))
}

/// The notification routes.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/push", get(info))
        .route(
            "/api/push/subscription",
            put(subscribe)
                .layer(DefaultBodyLimit::max(MAX_SUBSCRIPTION_BYTES))
                .delete(unsubscribe),
        )
        .route("/api/jobs/{id}/notification", get(notification))
}

/// `GET /api/jobs/{id}/notification`.
async fn notification(
    State(state): State<AppState>,
    Extension(device): Extension<DeviceId>,
    Path(id): Path<String>,
) -> Result<Json<PushMessage>, Response> {
    let job = state
        .jobs
        .get(&device, &id)
        .map_err(IntoResponse::into_response)?;
    message(&job).map(Json).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("job {id} has not ended, or was cancelled: nothing to tell"),
        )
        .into_response()
    })
}

/// `GET /api/push`.
async fn info(
    State(push): State<Arc<Push>>,
    Extension(device): Extension<DeviceId>,
) -> Json<PushInfo> {
    Json(push.info(&device))
}

/// `PUT /api/push/subscription`.
async fn subscribe(
    State(push): State<Arc<Push>>,
    Extension(device): Extension<DeviceId>,
    body: Bytes,
) -> Result<Json<PushInfo>, ApiError> {
    let bad = |message: String| ApiError::new(StatusCode::BAD_REQUEST, message);
    crate::limits::check_json_shape(&body).map_err(|e| bad(e.to_string()))?;
    let sent: PushSubscription = serde_json::from_slice(&body).map_err(|e| bad(e.to_string()))?;
    let subscription = Subscription::check(&device, sent)
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
    push.subscriptions.add(subscription).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the subscription could not be kept: {e}"),
        )
    })?;
    tracing::info!(
        device = device.short(),
        "a browser subscribed to notifications"
    );
    Ok(Json(push.info(&device)))
}

/// `DELETE /api/push/subscription`.
async fn unsubscribe(
    State(push): State<Arc<Push>>,
    Extension(device): Extension<DeviceId>,
) -> Json<PushInfo> {
    push.subscriptions.remove(|s| s.device == device.as_str());
    Json(push.info(&device))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_always_fits_one_push_record() {
        let long: Job = serde_json::from_value(serde_json::json!({
            "id": "j1", "number": 1, "workflow_name": "w".repeat(1000), "state": "failed",
            "progress": 1.0, "nodes": [], "has_preview": false, "created_at": 0,
            "outputs": [{ "image": { "filename": "x".repeat(5000), "type": "output" } }],
            "error": { "message": "é".repeat(10_000), "node_type": "N".repeat(1000) },
        }))
        .unwrap();
        let message = message(&long).unwrap();
        assert!(serde_json::to_vec(&message).unwrap().len() <= encryption::MAX_PLAINTEXT);
        assert_eq!(message.body.chars().count(), 200);
        assert_eq!(message.image, None, "a picture too long to fit is left out");
    }

    #[test]
    fn only_internet_addresses_are_public() {
        let cases = [
            ("127.0.0.1", false),
            ("10.1.2.3", false),
            ("172.16.0.1", false),
            ("192.168.1.20", false),
            ("169.254.169.254", false),
            ("100.100.1.1", false),
            ("0.0.0.0", false),
            ("::1", false),
            ("fd00::1", false),
            ("fe80::1", false),
            ("::ffff:192.168.1.1", false),
            ("142.250.185.10", true),
            ("2a00:1450:4001:82b::200a", true),
            ("::ffff:142.250.185.10", true),
        ];
        for (ip, public) in cases {
            assert_eq!(is_public(ip.parse().unwrap()), public, "{ip}");
        }
    }
}
