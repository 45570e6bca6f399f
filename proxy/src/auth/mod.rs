//! Who may use the relay.
//!
//! When the relay listens beyond loopback (unless the operator passes `--no-auth`), every
//! request to an API or ComfyUI route must come from a paired device or carry the access token:
//! - a browser pairs by opening the pairing link (`/pair?token=...`, printed with a QR code at
//!   start): it gets a device secret in an HttpOnly, SameSite=Strict cookie and is redirected to
//!   the clean URL; `comfy-relay devices` lists paired devices and revokes them;
//! - scripts send `Authorization: Bearer <token>`.
//!
//! After a wrong token an address is locked out for ever longer (429, nothing checked), however
//! many attempts it sends at once. The app's own page and files stay public, so an unpaired
//! phone can say how to pair. Without pairing, every browser gets an anonymous device
//! secret on first contact, which still keeps devices' jobs apart.

pub mod paired;
pub mod throttle;
pub mod token;

use std::convert::Infallible;
use std::future::Ready;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Json;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use futures_util::future::Either;
use serde::Deserialize;
use shared::api::{ErrorDetail, Session};

use crate::clock::now_ms;
use crate::config::Config;
use crate::device::{DeviceId, DeviceSecret};
use crate::error::ApiError;
use crate::server::ConnectionSlot;
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
enum Claim<'a> {
    /// A browser with a device secret.
    Device(DeviceSecret),
    /// A script with a token, right or wrong.
    Token(&'a str),
    /// Nothing.
    Nobody,
}

fn claim(headers: &HeaderMap) -> Claim<'_> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match bearer {
        Some(token) => Claim::Token(token),
        None => DeviceSecret::from_headers(headers).map_or(Claim::Nobody, Claim::Device),
    }
}

/// Whether a request comes from a browser: every current browser sends `Sec-Fetch-Mode`.
fn headers_of_a_browser(headers: &HeaderMap) -> bool {
    headers.contains_key("sec-fetch-mode")
}

fn peer(request: &Request) -> IpAddr {
    crate::server::peer(request).map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |addr| addr.ip())
}

fn unauthorized(error: &str) -> Response {
    ApiError::new(StatusCode::UNAUTHORIZED, error)
        .with_detail(ErrorDetail {
            pairing_required: true,
            ..ErrorDetail::default()
        })
        .into_response()
}

fn locked_out(wait: Duration) -> Response {
    let seconds = wait.as_secs_f64().ceil().max(1.0);
    let mut response = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        format!(
            "Too many wrong tokens from this address: the next attempt is checked in {seconds} s."
        ),
    )
    .into_response();
    response.headers_mut().insert(
        header::RETRY_AFTER,
        header::HeaderValue::from(seconds as u64),
    );
    response
}

const NOT_PAIRED: &str = "This device is not paired with Comfy Relay. Open the pairing link \
                          printed where the relay runs, or scan its QR code.";
const UNPAIRED: &str = "This device was unpaired from Comfy Relay. Open the pairing link again \
                        to pair it.";
const WRONG_TOKEN: &str = "The access token is wrong.";

/// A request's cookie named a device that is not (or no longer) paired.
#[derive(Clone, Copy)]
struct Unpaired;

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

    /// Checks a token from `ip`, unless that address is locked out by earlier wrong ones.
    fn check_token(&self, ip: IpAddr, token: &str) -> Result<bool, Duration> {
        self.throttle.attempt(ip, || self.token.matches(token))
    }
}

/// Finds the request's device (a paired cookie, the token, or without pairing a new anonymous
/// device) and records it in the request; answers a wrong token. It refuses nothing else: which
/// routes need a device is the router's shape ([`RequireDevice`]). A device secret issued here
/// is returned, for [`hand_out`] to set on the answer.
pub fn identify(auth: &Auth, request: &mut Request) -> Result<Option<DeviceSecret>, Box<Response>> {
    let mut issued = None;
    let mut verified = false;
    match claim(request.headers()) {
        Claim::Token(token) => match auth.check_token(peer(request), token.trim()) {
            Ok(true) => {
                request.extensions_mut().insert(DeviceId::scripts());
                verified = true;
            }
            Ok(false) => {
                tracing::warn!(ip = %peer(request), "wrong access token");
                return Err(Box::new(unauthorized(WRONG_TOKEN)));
            }
            Err(wait) => return Err(Box::new(locked_out(wait))),
        },
        Claim::Device(secret) if !auth.required || auth.devices.contains(&secret.device()) => {
            request.extensions_mut().insert(secret.device());
            request.extensions_mut().insert(secret);
            verified = true;
        }
        Claim::Device(_) => {
            request.extensions_mut().insert(Unpaired);
        }
        // Without pairing, a browser becomes a device of its own on first contact. A client
        // that sends no cookie and is no browser (a script, `comfy-relay run`) keeps none, so
        // it is the scripts' device every time: its socket and its prompts stay one client.
        Claim::Nobody if !auth.required && headers_of_a_browser(request.headers()) => {
            let secret = DeviceSecret::generate();
            request.extensions_mut().insert(secret.device());
            request.extensions_mut().insert(secret.clone());
            issued = Some(secret);
        }
        Claim::Nobody if !auth.required => {
            request.extensions_mut().insert(DeviceId::scripts());
        }
        Claim::Nobody => {}
    }
    // Without pairing everyone may use the relay: a connection that carried a whole request
    // is no longer a half-open one.
    let verified = verified || !auth.required;
    if verified && let Some(slot) = request.extensions().get::<Arc<ConnectionSlot>>() {
        slot.authenticated();
    }
    Ok(issued)
}

/// Sets the cookie of a device secret [`identify`] issued, unless the handler chose the device
/// itself (a device link), which has the last word.
pub fn hand_out(issued: Option<DeviceSecret>, response: &mut Response) {
    let chosen = response.headers().contains_key(header::SET_COOKIE);
    if let Some(secret) = issued.filter(|_| !chosen) {
        response
            .headers_mut()
            .append(header::SET_COOKIE, secret.set_cookie());
    }
}

/// Route layer of the protected router: 401, with how to pair, for a request without a device.
#[derive(Clone, Copy)]
pub(crate) struct RequireDevice;

impl<S> tower::Layer<S> for RequireDevice {
    type Service = DeviceRequired<S>;

    fn layer(&self, route: S) -> DeviceRequired<S> {
        DeviceRequired(route)
    }
}

/// A route behind [`RequireDevice`].
#[derive(Clone)]
pub(crate) struct DeviceRequired<S>(S);

impl<S> tower::Service<Request> for DeviceRequired<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<S::Future, Ready<Result<Response, Infallible>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let extensions = request.extensions();
        if extensions.get::<DeviceId>().is_some() {
            return Either::Left(self.0.call(request));
        }
        let why = if extensions.get::<Unpaired>().is_some() {
            UNPAIRED
        } else {
            NOT_PAIRED
        };
        Either::Right(std::future::ready(Ok(unauthorized(why))))
    }
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
    State(auth): State<Arc<Auth>>,
    Query(query): Query<PairQuery>,
    request: Request,
) -> Response {
    let already = DeviceSecret::from_headers(request.headers())
        .is_some_and(|secret| auth.still_allowed(&secret.device()));
    if !auth.required || already {
        return Redirect::to("/").into_response();
    }
    let ip = peer(&request);
    match auth.check_token(ip, query.token.as_deref().unwrap_or_default()) {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(%ip, "a pairing link with a wrong token");
            return (
                StatusCode::UNAUTHORIZED,
                "This pairing link is not valid. Use the one printed where Comfy Relay runs.",
            )
                .into_response();
        }
        Err(wait) => return locked_out(wait),
    }
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
        return ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Comfy Relay could not save this device; see its log.",
        )
        .into_response();
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
    State(auth): State<Arc<Auth>>,
    device: Option<axum::Extension<DeviceId>>,
) -> Response {
    match device {
        Some(axum::Extension(device)) => Json(Session {
            device: device.as_str().to_owned(),
            pairing_required: auth.required,
        })
        .into_response(),
        None => unauthorized(NOT_PAIRED),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn browsers_get_readable_names() {
        let pixel = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Mobile Safari/537.36";
        assert_eq!(describe_browser(pixel), "Chrome on Android");
        let iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.0 Mobile/15E148 Safari/604.1";
        assert_eq!(describe_browser(iphone), "Safari on iPhone");
        assert_eq!(describe_browser(""), "A browser on an unknown system");
    }
}
