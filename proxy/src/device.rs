//! Telling devices apart: every browser gets a random device id in an HttpOnly cookie, and jobs
//! belong to the device that queued them. A device can hand its identity to another (a laptop
//! next to the phone) with a short-lived one-time link.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Json};

use crate::state::AppState;

/// The cookie holding the device id.
pub const COOKIE: &str = "comfy_relay_device";
/// How long a device link stays valid.
const LINK_LIFETIME: Duration = Duration::from_secs(600);
/// A year and a bit: browsers cap cookie lifetimes at 400 days.
const COOKIE_MAX_AGE_SECS: u64 = 400 * 24 * 3600;

/// A device: 128 random bits, as 32 lowercase hex digits. Knowing it is owning its jobs, so it
/// only ever travels in an HttpOnly cookie or a one-time link.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct DeviceId(Arc<str>);

impl DeviceId {
    /// A new random id.
    pub fn generate() -> Self {
        Self(uuid::Uuid::new_v4().simple().to_string().into())
    }

    /// Reads an id, refusing anything that is not 32 lowercase hex digits.
    pub fn parse(text: &str) -> Option<Self> {
        (text.len() == 32
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        .then(|| Self(text.into()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A short form safe to log and show: the first 8 digits.
    pub fn short(&self) -> &str {
        &self.0[..8]
    }
}

impl fmt::Debug for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceId({}…)", self.short())
    }
}

/// The value of cookie `name` in a request's headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

fn set_cookie(device: &DeviceId) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={COOKIE_MAX_AGE_SECS}",
        device.as_str()
    ))
    .expect("hex digits make a valid header")
}

/// Middleware: finds the request's device (issuing a new one when it has none) and puts it in
/// the request's extensions for handlers.
pub async fn identify(mut request: Request, next: Next) -> Response {
    let known = cookie(request.headers(), COOKIE).and_then(DeviceId::parse);
    let fresh = known.is_none();
    let device = known.unwrap_or_else(DeviceId::generate);
    request.extensions_mut().insert(device.clone());
    let mut response = next.run(request).await;
    // A handler that chose the device itself (a device link) has the last word.
    let chosen = response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .any(|value| {
            value
                .as_bytes()
                .starts_with(format!("{COOKIE}=").as_bytes())
        });
    if fresh && !chosen {
        response
            .headers_mut()
            .append(header::SET_COOKIE, set_cookie(&device));
    }
    response
}

/// One-time codes that hand a device's identity to another browser.
#[derive(Default)]
pub struct DeviceLinks {
    codes: Mutex<HashMap<String, (DeviceId, Instant)>>,
}

impl DeviceLinks {
    /// A new code for `device`, valid for ten minutes and one use.
    pub fn create(&self, device: &DeviceId) -> String {
        let code = uuid::Uuid::new_v4().simple().to_string();
        let mut codes = self.codes.lock().expect("lock never poisoned");
        codes.retain(|_, (_, created)| created.elapsed() < LINK_LIFETIME);
        codes.insert(code.clone(), (device.clone(), Instant::now()));
        code
    }

    /// The device a code stands for, consuming the code.
    pub fn redeem(&self, code: &str) -> Option<DeviceId> {
        let mut codes = self.codes.lock().expect("lock never poisoned");
        let (device, created) = codes.remove(code)?;
        (created.elapsed() < LINK_LIFETIME).then_some(device)
    }
}

/// `POST /api/device/link`: a one-time link that opens the app as this device elsewhere.
pub async fn create_link(
    State(state): State<AppState>,
    Extension(device): Extension<DeviceId>,
) -> Json<serde_json::Value> {
    let code = state.device_links.create(&device);
    Json(serde_json::json!({
        "path": format!("/link/{code}"),
        "expires_in_secs": LINK_LIFETIME.as_secs(),
    }))
}

/// `GET /link/{code}`: adopts the linked device and opens the app.
pub async fn follow_link(State(state): State<AppState>, Path(code): Path<String>) -> Response {
    match state.device_links.redeem(&code) {
        Some(device) => {
            let mut response = Redirect::to("/").into_response();
            response
                .headers_mut()
                .insert(header::SET_COOKIE, set_cookie(&device));
            response
        }
        None => (
            StatusCode::GONE,
            "This link has expired or was already used. Create a new one on your other device.",
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_32_lowercase_hex_digits_are_a_device_id() {
        let id = DeviceId::generate();
        assert_eq!(DeviceId::parse(id.as_str()), Some(id));
        assert!(DeviceId::parse("0123456789ABCDEF0123456789abcdef").is_none());
        assert!(DeviceId::parse("../../etc").is_none());
        assert!(DeviceId::parse("").is_none());
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; comfy_relay_device=abc; b=2"),
        );
        assert_eq!(cookie(&headers, COOKIE), Some("abc"));
        assert_eq!(cookie(&headers, "missing"), None);
    }

    #[test]
    fn a_link_code_works_once() {
        let links = DeviceLinks::default();
        let device = DeviceId::generate();
        let code = links.create(&device);
        assert_eq!(links.redeem(&code), Some(device));
        assert_eq!(links.redeem(&code), None);
        assert_eq!(links.redeem("made-up"), None);
    }
}
