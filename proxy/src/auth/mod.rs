//! Who may use the relay.
//!
//! When the relay listens beyond loopback (unless the operator passes `--no-auth`), every
//! request to an API or ComfyUI route must come from a paired device or carry the access token:
//! - a browser pairs by opening the pairing link (`/pair?token=...`, printed with a QR code at
//!   start): it gets a device secret in an HttpOnly, SameSite=Strict cookie and is redirected to
//!   the clean URL; `comfy-relay devices` lists paired devices and revokes them;
//! - scripts send `Authorization: Bearer <token>`.
//!
//! Wrong tokens are answered ever more slowly. The app's own page and files stay public, so an
//! unpaired phone can say how to pair. Without pairing, every browser gets an anonymous device
//! secret on first contact, which still keeps devices' jobs apart.

pub mod paired;
pub mod throttle;
pub mod token;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::Json;
use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use shared::api::ErrorBody;

use crate::allowlist::is_comfyui_path;
use crate::clock::now_ms;
use crate::config::Config;
use crate::device::{DeviceId, DeviceSecret};
use crate::state::AppState;
use paired::{PairedDevice, PairedDevices};
use throttle::Throttle;
use token::Token;

/// The relay's gatekeeper.
pub struct Auth {
    /// Whether devices must pair.
    pub required: bool,
    /// The access token.
    pub token: Token,
    /// The paired devices.
    pub devices: PairedDevices,
    throttle: Throttle,
}

/// Who a request says it is.
enum Claim {
    /// A browser with a device secret.
    Device(DeviceSecret),
    /// A script with the right token.
    Script,
    /// A wrong token.
    BadToken,
    /// Nothing.
    Nobody,
}

fn claim(auth: &Auth, headers: &HeaderMap) -> Claim {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match bearer {
        Some(token) if auth.token.matches(token.trim()) => Claim::Script,
        Some(_) => Claim::BadToken,
        None => DeviceSecret::from_headers(headers).map_or(Claim::Nobody, Claim::Device),
    }
}

/// Whether a path needs a device: the API and ComfyUI's routes; not the app's page and files,
/// nor the ways in (`/pair`, `/link/...`, `/api/session`).
pub fn is_protected(path: &str) -> bool {
    let way_in = path == "/pair" || path.starts_with("/link/") || path == "/api/session";
    !way_in && (path.starts_with("/api/") || is_comfyui_path(path))
}

fn peer(request: &Request) -> IpAddr {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |info| info.0.ip())
}

fn unauthorized(error: &str) -> Response {
    let body = ErrorBody {
        error: error.to_owned(),
        detail: Some(serde_json::json!({ "pairing_required": true })),
    };
    (StatusCode::UNAUTHORIZED, Json(body)).into_response()
}

const NOT_PAIRED: &str = "This device is not paired with Comfy Relay. Open the pairing link \
                          printed where the relay runs, or scan its QR code.";
const UNPAIRED: &str = "This device was unpaired from Comfy Relay. Open the pairing link again \
                        to pair it.";
const WRONG_TOKEN: &str = "The access token is wrong.";

impl Auth {
    /// The gatekeeper for `config`: its token (created if needed) and paired devices.
    pub fn new(config: &Config) -> std::io::Result<Self> {
        Ok(Self {
            required: config.auth_required(),
            token: Token::load_or_create(&config.data_dir, config.token.as_deref())?,
            devices: PairedDevices::open(&config.data_dir)?,
            throttle: Throttle::default(),
        })
    }

    /// Whether `device` may still use the relay (it may have been revoked since it connected).
    pub fn still_allowed(&self, device: &DeviceId) -> bool {
        !self.required || *device == DeviceId::scripts() || self.devices.contains(device)
    }

    /// The path that pairs a browser: `/pair?token=...`.
    pub fn pairing_path(&self) -> String {
        format!("/pair?token={}", self.token.value())
    }
}

/// Middleware: finds the request's device and refuses protected routes to strangers.
pub async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let auth = &state.auth;
    let mut issued = None;
    match claim(auth, request.headers()) {
        Claim::Script => {
            request.extensions_mut().insert(DeviceId::scripts());
        }
        Claim::BadToken => {
            let ip = peer(&request);
            let wait = auth.throttle.fail(ip);
            tracing::warn!(%ip, "wrong access token; answering in {wait:?}");
            tokio::time::sleep(wait).await;
            return unauthorized(WRONG_TOKEN);
        }
        Claim::Device(secret) if !auth.required || auth.devices.contains(&secret.device()) => {
            request.extensions_mut().insert(secret.device());
            request.extensions_mut().insert(secret);
        }
        Claim::Device(_) if is_protected(request.uri().path()) => return unauthorized(UNPAIRED),
        Claim::Nobody if !auth.required => {
            let secret = DeviceSecret::generate();
            request.extensions_mut().insert(secret.device());
            request.extensions_mut().insert(secret.clone());
            issued = Some(secret);
        }
        Claim::Nobody if is_protected(request.uri().path()) => return unauthorized(NOT_PAIRED),
        Claim::Device(_) | Claim::Nobody => {}
    }
    let mut response = next.run(request).await;
    // A handler that chose the device itself (a device link) has the last word.
    let chosen = response.headers().contains_key(header::SET_COOKIE);
    if let Some(secret) = issued.filter(|_| !chosen) {
        response
            .headers_mut()
            .append(header::SET_COOKIE, secret.set_cookie());
    }
    response
}

/// A name for a device, from its browser's `User-Agent`: "Chrome on Android".
pub fn describe_browser(user_agent: &str) -> String {
    let system = [
        ("Android", "Android"),
        ("iPhone", "iPhone"),
        ("iPad", "iPad"),
        ("Windows", "Windows"),
        ("Mac OS X", "Mac"),
        ("CrOS", "ChromeOS"),
        ("Linux", "Linux"),
    ]
    .iter()
    .find(|(marker, _)| user_agent.contains(marker))
    .map_or("an unknown system", |(_, name)| name);
    let browser = [
        ("Edg/", "Edge"),
        ("Firefox/", "Firefox"),
        ("SamsungBrowser/", "Samsung Internet"),
        ("Chrome/", "Chrome"),
        ("Safari/", "Safari"),
        ("curl/", "curl"),
    ]
    .iter()
    .find(|(marker, _)| user_agent.contains(marker))
    .map_or("A browser", |(_, name)| name);
    format!("{browser} on {system}")
}

/// The pairing link's query.
#[derive(Deserialize)]
pub struct PairQuery {
    token: Option<String>,
}

/// `GET /pair?token=...`: pairs this browser and opens the app at its clean URL.
pub async fn pair(
    State(state): State<AppState>,
    Query(query): Query<PairQuery>,
    request: Request,
) -> Response {
    let auth = &state.auth;
    let already = DeviceSecret::from_headers(request.headers())
        .is_some_and(|secret| auth.still_allowed(&secret.device()));
    if !auth.required || already {
        return Redirect::to("/").into_response();
    }
    let ip = peer(&request);
    if !query
        .token
        .as_deref()
        .is_some_and(|token| auth.token.matches(token))
    {
        let wait = auth.throttle.fail(ip);
        tracing::warn!(%ip, "a pairing link with a wrong token; answering in {wait:?}");
        tokio::time::sleep(wait).await;
        return (
            StatusCode::UNAUTHORIZED,
            "This pairing link is not valid. Use the one printed where Comfy Relay runs.",
        )
            .into_response();
    }
    auth.throttle.succeed(ip);
    let secret = DeviceSecret::generate();
    let user_agent = request
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let device = PairedDevice {
        id: secret.device().to_string(),
        name: describe_browser(user_agent),
        paired_at: now_ms(),
    };
    if let Err(error) = auth.devices.add(device.clone()) {
        tracing::error!(%error, "cannot save the paired device");
        let body = ErrorBody {
            error: "Comfy Relay could not save this device; see its log.".to_owned(),
            detail: None,
        };
        return (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response();
    }
    tracing::info!(device = %device.id, name = %device.name, "paired a device");
    let mut response = Redirect::to("/").into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, secret.set_cookie());
    response
}

/// `GET /api/session`: who this device is, or 401 with how to pair.
pub async fn session(
    State(state): State<AppState>,
    device: Option<axum::Extension<DeviceId>>,
) -> Response {
    match device {
        Some(axum::Extension(device)) => Json(serde_json::json!({
            "device": device.as_str(),
            "pairing_required": state.auth.required,
        }))
        .into_response(),
        None => unauthorized(NOT_PAIRED),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_app_and_the_ways_in_are_public_the_rest_is_protected() {
        for public in [
            "/",
            "/jobs/12",
            "/frontend-1a.wasm",
            "/style.css",
            "/pair",
            "/link/abc",
            "/api/session",
        ] {
            assert!(!is_protected(public), "{public}");
        }
        for protected in [
            "/api/jobs",
            "/api/events",
            "/prompt",
            "/api/prompt",
            "/ws",
            "/view",
            "/free",
            "/api/internal/logs",
        ] {
            assert!(is_protected(protected), "{protected}");
        }
    }

    #[test]
    fn browsers_get_readable_names() {
        let pixel = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Mobile Safari/537.36";
        assert_eq!(describe_browser(pixel), "Chrome on Android");
        let iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.0 Mobile/15E148 Safari/604.1";
        assert_eq!(describe_browser(iphone), "Safari on iPhone");
        assert_eq!(describe_browser(""), "A browser on an unknown system");
    }
}
