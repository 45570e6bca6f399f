//! A Web Push service double: a real HTTPS server on loopback (its certificate from an authority
//! of its own, for the relay's `--push-ca`) that keeps every message posted to it, checks the
//! sender's signed VAPID claim, and answers `/push/gone...` with 410 as a service does for a
//! browser that unsubscribed. [`Browser`] holds a subscription's keys and reads messages with
//! its own RFC 8291 decryption (RustCrypto, independent of the relay's ring-based code).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aes_gcm::aead::{Aead as _, KeyInit as _};
use aes_gcm::{Aes128Gcm, Nonce};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hkdf::Hkdf;
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::elliptic_curve::sec1::ToEncodedPoint as _;
use p256::{PublicKey, SecretKey};
use rand_core::{OsRng, RngCore as _};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::Value;
use sha2::Sha256;
use shared::api::{PushKeys, PushSubscription};
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// One message as the service received it.
#[derive(Debug, Clone)]
pub struct Received {
    /// The subscription's name: the last part of its endpoint's path.
    pub name: String,
    /// The request's headers.
    pub headers: HeaderMap,
    /// The encrypted body.
    pub body: Bytes,
    /// The sender's VAPID claims, once its signature checked out against the key it named.
    pub claims: Value,
    /// The key the sender named (`k=`), base64url.
    pub sender_key: String,
}

#[derive(Default)]
struct Inbox {
    received: Mutex<Vec<Received>>,
    arrived: Notify,
    origin: String,
}

/// The running double.
pub struct PushService {
    inbox: Arc<Inbox>,
    port: u16,
    ca: tempfile::NamedTempFile,
}

impl PushService {
    /// Starts the double on an ephemeral loopback port, for the name `localhost`.
    pub async fn start() -> Self {
        let ca_key = rcgen::KeyPair::generate().expect("a key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::new()).expect("params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).expect("a CA");
        let key = rcgen::KeyPair::generate().expect("a key");
        let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
        let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
        let leaf = params.signed_by(&key, &issuer).expect("a certificate");
        let ca_file = tempfile::NamedTempFile::new().expect("a temporary file");
        std::fs::write(ca_file.path(), ca.pem()).expect("the CA written");

        #[expect(deprecated, reason = "the provider the relay uses")]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(leaf.der().to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .expect("a server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));

        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let port = listener.local_addr().expect("an address").port();
        let inbox = Arc::new(Inbox {
            origin: format!("https://localhost:{port}"),
            ..Inbox::default()
        });
        let app = Router::new()
            .route("/push/{name}", post(receive))
            .with_state(inbox.clone());
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, app) = (acceptor.clone(), app.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper_util::service::TowerToHyperService::new(app);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Self {
            inbox,
            port,
            ca: ca_file,
        }
    }

    /// The authority (PEM file) its certificate comes from: the relay's `--push-ca`.
    pub fn ca_path(&self) -> &std::path::Path {
        self.ca.path()
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The endpoint of a subscription called `name` (one starting `gone` is answered 410).
    pub fn endpoint(&self, name: &str) -> String {
        format!("https://localhost:{}/push/{name}", self.port)
    }

    /// Every message received so far.
    pub fn received(&self) -> Vec<Received> {
        self.inbox
            .received
            .lock()
            .expect("the inbox lock is never poisoned")
            .clone()
    }

    /// Waits until `count` messages have come, or `limit` passes; returns what came.
    pub async fn wait_for(&self, count: usize, limit: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let arrived = self.inbox.arrived.notified();
            let received = self.received();
            if received.len() >= count {
                return received;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                return self.received();
            }
        }
    }
}

/// `POST /push/{name}`: checks the sender's claim, keeps the message, answers as a push service.
async fn receive(
    State(inbox): State<Arc<Inbox>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let Some((claims, sender_key)) = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(verify_vapid)
    else {
        return StatusCode::UNAUTHORIZED;
    };
    if claims["aud"] != inbox.origin.as_str() {
        return StatusCode::FORBIDDEN;
    }
    let status = if name.starts_with("gone") {
        StatusCode::GONE
    } else {
        StatusCode::CREATED
    };
    inbox
        .received
        .lock()
        .expect("the inbox lock is never poisoned")
        .push(Received {
            name,
            headers,
            body,
            claims,
            sender_key,
        });
    inbox.arrived.notify_waiters();
    status
}

/// Checks `vapid t=JWT, k=KEY` (RFC 8292): an ES256 token signed by KEY. Returns its claims and
/// KEY.
fn verify_vapid(header: &str) -> Option<(Value, String)> {
    let rest = header.strip_prefix("vapid ")?;
    let mut token = None;
    let mut key = None;
    for part in rest.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => token = Some(value),
            Some(("k", value)) => key = Some(value),
            _ => {}
        }
    }
    let (token, key) = (token?, key?);
    let (signed, signature) = token.rsplit_once('.')?;
    let verifying = VerifyingKey::from_sec1_bytes(&URL_SAFE_NO_PAD.decode(key).ok()?).ok()?;
    let signature = Signature::from_slice(&URL_SAFE_NO_PAD.decode(signature).ok()?).ok()?;
    verifying.verify(signed.as_bytes(), &signature).ok()?;
    let (header, claims) = signed.split_once('.')?;
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?;
    if header["alg"] != "ES256" {
        return None;
    }
    let claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).ok()?).ok()?;
    Some((claims, key.to_owned()))
}

/// A browser's side of a subscription: its private key and authentication secret.
pub struct Browser {
    secret: SecretKey,
    auth: [u8; 16],
}

impl Browser {
    /// A browser with new keys, as `PushManager.subscribe` makes them.
    pub fn new() -> Self {
        let mut auth = [0; 16];
        OsRng.fill_bytes(&mut auth);
        Self {
            secret: SecretKey::random(&mut OsRng),
            auth,
        }
    }

    /// A browser with the given private key (32 bytes) and secret, base64url.
    pub fn from_keys(private: &str, auth: &str) -> Self {
        Self {
            secret: SecretKey::from_slice(&URL_SAFE_NO_PAD.decode(private).expect("base64url"))
                .expect("a P-256 private key"),
            auth: URL_SAFE_NO_PAD
                .decode(auth)
                .expect("base64url")
                .try_into()
                .expect("16 bytes"),
        }
    }

    /// Its subscription to `endpoint`, as `PushSubscription.toJSON()` gives it.
    pub fn subscription(&self, endpoint: &str) -> PushSubscription {
        PushSubscription {
            endpoint: endpoint.to_owned(),
            keys: PushKeys {
                p256dh: URL_SAFE_NO_PAD.encode(self.public_key()),
                auth: URL_SAFE_NO_PAD.encode(self.auth),
            },
        }
    }

    fn public_key(&self) -> Vec<u8> {
        self.secret
            .public_key()
            .to_encoded_point(false)
            .as_bytes()
            .to_vec()
    }

    /// Reads an `aes128gcm` message (RFC 8291, RFC 8188): the plain text, or why not.
    pub fn decrypt(&self, body: &[u8]) -> Result<Vec<u8>, String> {
        let salt = body.get(..16).ok_or("no salt")?;
        let record_size = u32::from_be_bytes(
            body.get(16..20)
                .ok_or("no record size")?
                .try_into()
                .map_err(|_| "record size")?,
        );
        let id_len = usize::from(*body.get(20).ok_or("no key id length")?);
        let sender = body.get(21..21 + id_len).ok_or("no key id")?;
        let ciphertext = &body[21 + id_len..];
        if ciphertext.len() > record_size as usize {
            return Err(format!(
                "{} bytes in one record of {record_size}",
                ciphertext.len()
            ));
        }
        let sender = PublicKey::from_sec1_bytes(sender).map_err(|e| format!("sender key: {e}"))?;
        let shared =
            p256::ecdh::diffie_hellman(self.secret.to_nonzero_scalar(), sender.as_affine());
        let mut key_info = b"WebPush: info\0".to_vec();
        key_info.extend_from_slice(&self.public_key());
        key_info.extend_from_slice(sender.to_encoded_point(false).as_bytes());
        let mut ikm = [0; 32];
        Hkdf::<Sha256>::new(Some(&self.auth), shared.raw_secret_bytes())
            .expand(&key_info, &mut ikm)
            .map_err(|e| e.to_string())?;
        let content = Hkdf::<Sha256>::new(Some(salt), &ikm);
        let (mut key, mut nonce) = ([0; 16], [0; 12]);
        content
            .expand(b"Content-Encoding: aes128gcm\0", &mut key)
            .map_err(|e| e.to_string())?;
        content
            .expand(b"Content-Encoding: nonce\0", &mut nonce)
            .map_err(|e| e.to_string())?;
        let mut plain = Aes128Gcm::new(&key.into())
            .decrypt(Nonce::from_slice(&nonce), ciphertext)
            .map_err(|_| "the record does not decrypt".to_owned())?;
        // Padding, then the last record's delimiter 2.
        while plain.last() == Some(&0) {
            plain.pop();
        }
        if plain.pop() != Some(2) {
            return Err("no last-record delimiter".to_owned());
        }
        Ok(plain)
    }
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}
