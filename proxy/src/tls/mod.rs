//! HTTPS on the relay's one port: with a certificate the operator has (`--tls-cert`,
//! `--tls-key`, reloaded when the files change) or one from the relay's own authority
//! (`--tls local`, [`local_ca`]), issued at start for every LAN address and name of this
//! machine and again when they change or the certificate nears its end.
//!
//! Each connection's first byte says what it speaks (a TLS handshake starts with 22): TLS
//! connections get the app; plain HTTP ones get [`plain_router`], which redirects to HTTPS and
//! offers the authority's certificate with how to trust it, so a phone can get there first.
//! Cookies are marked `Secure` once TLS is on, so a browser never sends its device secret over
//! plain HTTP.

pub mod local_ca;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::AppState;
use crate::config::{Config, TlsMode};
use local_ca::LocalCa;

/// The first byte of a TLS connection: a handshake record.
pub const HANDSHAKE_RECORD: u8 = 0x16;
/// How often the certificate is checked (files changed, addresses changed, end near).
const CHECK_INTERVAL: Duration = Duration::from_secs(3600);
/// How long before its end a local certificate is issued again.
const RENEW_BEFORE: time::Duration = time::Duration::days(30);

/// The cryptography of every TLS connection the relay makes or takes: ring's.
#[expect(
    deprecated,
    reason = "ring lacks post-quantum key exchange; aws-lc-rs, which has it, would add a C \
              library build to every clean build"
)]
pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The relay's HTTPS: the acceptor, the certificate it presents now, and where that comes from.
pub struct Tls {
    acceptor: TlsAcceptor,
    current: Arc<CurrentCertificate>,
    source: Source,
}

enum Source {
    Files {
        cert: PathBuf,
        key: PathBuf,
        modified: Mutex<Option<SystemTime>>,
    },
    Local {
        ca: Box<LocalCa>,
        allowed_hosts: Vec<String>,
        issued: Mutex<Issuance>,
    },
}

/// What the local certificate was issued for, and when it ends.
#[derive(PartialEq, Eq)]
struct Issuance {
    names: Vec<String>,
    addresses: Vec<IpAddr>,
    expires: OffsetDateTime,
}

/// The certificate presented to every client, swapped when it is renewed.
#[derive(Debug)]
struct CurrentCertificate(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for CurrentCertificate {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.0
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
        )
    }
}

impl CurrentCertificate {
    fn set(&self, certified: CertifiedKey) {
        *self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(certified);
    }
}

fn certified(
    chain: Vec<CertificateDer<'static>>,
    key: &PrivateKeyDer<'_>,
) -> anyhow::Result<CertifiedKey> {
    let key = rustls::crypto::ring::sign::any_supported_type(key)
        .context("the private key is of a kind TLS cannot use")?;
    Ok(CertifiedKey::new(chain, key))
}

impl Tls {
    /// HTTPS as `config` asks for it, or `None` for plain HTTP.
    pub fn from_config(config: &Config) -> anyhow::Result<Option<Arc<Self>>> {
        let (source, first) = match (&config.tls_cert, &config.tls_key, config.tls) {
            (Some(cert), Some(key), _) => {
                let first = load_files(cert, key)?;
                let modified = Mutex::new(modified(cert, key));
                let (cert, key) = (cert.clone(), key.clone());
                (
                    Source::Files {
                        cert,
                        key,
                        modified,
                    },
                    first,
                )
            }
            (_, _, TlsMode::Local) => {
                let ca = Box::new(LocalCa::open_or_create(&config.data_dir.join("tls"))?);
                let issuance = Issuance::now(&config.allowed_hosts);
                let issued = ca.issue(
                    &issuance.names,
                    &issuance.addresses,
                    &machine_name(),
                    OffsetDateTime::now_utc(),
                )?;
                let first = certified(issued.chain, &issued.key)?;
                let issued = Mutex::new(Issuance {
                    expires: issued.expires,
                    ..issuance
                });
                let allowed_hosts = config.allowed_hosts.clone();
                let source = Source::Local {
                    ca,
                    allowed_hosts,
                    issued,
                };
                (source, first)
            }
            _ => return Ok(None),
        };
        let current = Arc::new(CurrentCertificate(RwLock::new(Arc::new(first))));
        let mut server = rustls::ServerConfig::builder_with_provider(crypto_provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Some(Arc::new(Self {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            current,
            source,
        })))
    }

    /// What takes a TLS connection's handshake.
    pub fn acceptor(&self) -> TlsAcceptor {
        self.acceptor.clone()
    }

    /// The relay's own authority's certificate (DER), with `--tls local`.
    pub fn authority(&self) -> Option<&CertificateDer<'static>> {
        match &self.source {
            Source::Local { ca, .. } => Some(ca.certificate()),
            Source::Files { .. } => None,
        }
    }

    /// Checks the certificate every [`CHECK_INTERVAL`] until `shutdown`: reloads changed files,
    /// or issues a local one again when the addresses changed or its end is near.
    pub async fn keep_current(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(CHECK_INTERVAL) => {}
            }
            if let Err(error) = self.renew(OffsetDateTime::now_utc()) {
                tracing::warn!("cannot renew the HTTPS certificate: {error:#}");
            }
        }
    }

    /// Replaces the certificate if it is out of date at `now`; whether it did.
    fn renew(&self, now: OffsetDateTime) -> anyhow::Result<bool> {
        match &self.source {
            Source::Files {
                cert,
                key,
                modified: seen,
            } => {
                let now_modified = modified(cert, key);
                let mut seen = seen
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if *seen == now_modified {
                    return Ok(false);
                }
                self.current.set(load_files(cert, key)?);
                *seen = now_modified;
                tracing::info!("loaded the changed HTTPS certificate");
            }
            Source::Local {
                ca,
                allowed_hosts,
                issued,
            } => {
                let wanted = Issuance::now(allowed_hosts);
                let mut issued = issued
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let same_names =
                    issued.names == wanted.names && issued.addresses == wanted.addresses;
                if same_names && issued.expires - now > RENEW_BEFORE {
                    return Ok(false);
                }
                let fresh = ca.issue(&wanted.names, &wanted.addresses, &machine_name(), now)?;
                self.current.set(certified(fresh.chain, &fresh.key)?);
                *issued = Issuance {
                    expires: fresh.expires,
                    ..wanted
                };
                tracing::info!("issued a new HTTPS certificate from the local authority");
            }
        }
        Ok(true)
    }
}

impl Issuance {
    /// The names and addresses this machine has now; the end is set once issued.
    fn now(allowed_hosts: &[String]) -> Self {
        let machine = machine_name().to_ascii_lowercase();
        let mut names = vec!["localhost".to_owned()];
        if !machine.is_empty() {
            if !machine.ends_with(".local") {
                names.push(format!("{machine}.local"));
            }
            names.push(machine);
        }
        names.extend(allowed_hosts.iter().map(|h| h.to_ascii_lowercase()));
        let mut addresses = crate::banner::interface_addresses();
        addresses.extend([
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ]);
        addresses.sort();
        addresses.dedup();
        Self {
            names,
            addresses,
            expires: OffsetDateTime::UNIX_EPOCH,
        }
    }
}

fn machine_name() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

fn modified(cert: &PathBuf, key: &PathBuf) -> Option<SystemTime> {
    let time = |path: &PathBuf| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    time(cert).max(time(key))
}

fn load_files(cert: &PathBuf, key: &PathBuf) -> anyhow::Result<CertifiedKey> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .with_context(|| format!("cannot read the certificates in {}", cert.display()))?;
    if chain.is_empty() {
        anyhow::bail!("{} holds no certificate", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("cannot read the private key in {}", key.display()))?;
    certified(chain, &key)
}

/// Marks every cookie of `response` `Secure`, so that browsers send it over HTTPS only.
pub fn secure_cookies(response: &mut Response) {
    let headers = response.headers_mut();
    let marked: Vec<HeaderValue> = headers
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|cookie| match cookie.to_str() {
            Ok(text) if !text.contains("; Secure") => {
                HeaderValue::from_str(&format!("{text}; Secure")).unwrap_or_else(|_| cookie.clone())
            }
            _ => cookie.clone(),
        })
        .collect();
    if marked.is_empty() {
        return;
    }
    headers.remove(header::SET_COOKIE);
    for cookie in marked {
        headers.append(header::SET_COOKIE, cookie);
    }
}

/// The routes that offer the local authority's certificate, over HTTPS and plain HTTP alike.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/tls", get(authority_page))
        .route("/tls/ca.crt", get(authority_certificate))
}

/// What a plain HTTP connection gets once TLS is on: the authority's certificate and how to
/// trust it, and for everything else a redirect to the same place over HTTPS.
pub fn plain_router() -> Router<AppState> {
    routes().fallback(to_https)
}

async fn to_https(request: Request) -> Response {
    let Some(host) = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
    else {
        return (StatusCode::BAD_REQUEST, "This request names no host.").into_response();
    };
    let path = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
    match format!("https://{host}{path}").parse::<Uri>() {
        Ok(uri) => Redirect::permanent(&uri.to_string()).into_response(),
        Err(_) => (
            StatusCode::BAD_REQUEST,
            "This request's address is malformed.",
        )
            .into_response(),
    }
}

async fn authority_certificate(State(state): State<AppState>) -> Response {
    let Some(certificate) = state.tls.as_ref().and_then(|tls| tls.authority()) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    (
        [
            (header::CONTENT_TYPE, "application/x-x509-ca-cert"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"comfy-relay-ca.crt\"",
            ),
        ],
        certificate.to_vec(),
    )
        .into_response()
}

async fn authority_page(State(state): State<AppState>, request: Request) -> Response {
    let Some(certificate) = state.tls.as_ref().and_then(|tls| tls.authority()) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let fingerprint = Sha256::digest(certificate.as_ref())
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":");
    // The gate let only this relay's own names through; escaped all the same.
    let host: String = host
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
        .collect();
    Html(format!(
        include_str!("authority_page.html"),
        host = host,
        fingerprint = fingerprint
    ))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    fn tls(args: &[&str], data_dir: &std::path::Path) -> Arc<Tls> {
        let data_dir = format!("--data-dir={}", data_dir.display());
        let head = ["comfy-relay", data_dir.as_str()];
        Tls::from_config(&Config::parse_from(head.iter().chain(args)))
            .unwrap()
            .unwrap()
    }

    fn presented(tls: &Tls) -> CertificateDer<'static> {
        tls.current.0.read().unwrap().cert[0].clone()
    }

    #[test]
    fn a_local_certificate_is_issued_again_only_when_its_end_is_near() {
        let dir = tempfile::tempdir().unwrap();
        let tls = tls(&["--tls=local"], dir.path());
        let now = OffsetDateTime::now_utc();
        assert!(!tls.renew(now).unwrap());
        let first = presented(&tls);
        assert!(!tls.renew(now + time::Duration::days(300)).unwrap());
        assert!(tls.renew(now + time::Duration::days(380)).unwrap());
        assert_ne!(presented(&tls), first);
        assert!(tls.authority().is_some());
    }

    #[test]
    fn operator_files_are_read_and_read_again_when_they_change() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let write = || {
            let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
            std::fs::write(&cert, made.cert.pem()).unwrap();
            std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
        };
        write();
        let tls = tls(
            &[
                &format!("--tls-cert={}", cert.display()),
                &format!("--tls-key={}", key.display()),
            ],
            dir.path(),
        );
        let first = presented(&tls);
        assert!(!tls.renew(OffsetDateTime::now_utc()).unwrap());
        assert!(tls.authority().is_none());
        std::thread::sleep(Duration::from_millis(20));
        write();
        assert!(tls.renew(OffsetDateTime::now_utc()).unwrap());
        assert_ne!(presented(&tls), first);
        // A broken file is refused and the certificate in use stays.
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&key, "not a key").unwrap();
        let before = presented(&tls);
        assert!(tls.renew(OffsetDateTime::now_utc()).is_err());
        assert_eq!(presented(&tls), before);
    }

    #[test]
    fn a_missing_or_empty_certificate_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert, "").unwrap();
        let args = [
            "comfy-relay".to_owned(),
            format!("--tls-cert={}", cert.display()),
            format!("--tls-key={}", key.display()),
        ];
        let error = Tls::from_config(&Config::parse_from(args)).err().unwrap();
        assert!(
            format!("{error:#}").contains("holds no certificate"),
            "{error:#}"
        );
    }

    #[test]
    fn every_cookie_is_marked_secure_once() {
        let mut response = Response::new(axum::body::Body::empty());
        let headers = response.headers_mut();
        headers.append(
            header::SET_COOKIE,
            HeaderValue::from_static("a=1; Path=/; HttpOnly"),
        );
        headers.append(header::SET_COOKIE, HeaderValue::from_static("b=2; Secure"));
        secure_cookies(&mut response);
        let cookies: Vec<&str> = response
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|c| c.to_str().unwrap())
            .collect();
        assert_eq!(cookies, ["a=1; Path=/; HttpOnly; Secure", "b=2; Secure"]);
    }
}
