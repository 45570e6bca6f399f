//! A device can hand its identity to another browser (a laptop next to the phone) with a
//! short-lived one-time link: `POST /api/device/link` makes one, `GET /link/{code}` asks before
//! anything changes, `POST /link/{code}` takes the device over.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::{Extension, Json};
use shared::api::DeviceLink;

use crate::device::DeviceSecret;
use crate::error::ApiError;

/// How long a device link stays valid.
const LINK_LIFETIME: Duration = Duration::from_secs(600);

/// One-time codes that hand a device's secret to another browser.
#[derive(Default)]
pub struct DeviceLinks {
    codes: Mutex<HashMap<String, (DeviceSecret, Instant)>>,
}

impl DeviceLinks {
    /// A new code for the device holding `secret`, valid for ten minutes and one use.
    pub fn create(&self, secret: &DeviceSecret) -> String {
        let code = uuid::Uuid::new_v4().simple().to_string();
        let mut codes = self.codes.lock().expect("lock never poisoned");
        codes.retain(|_, (_, created)| created.elapsed() < LINK_LIFETIME);
        codes.insert(code.clone(), (secret.clone(), Instant::now()));
        code
    }

    /// The secret a code stands for, consuming the code.
    pub fn redeem(&self, code: &str) -> Option<DeviceSecret> {
        let mut codes = self.codes.lock().expect("lock never poisoned");
        let (secret, created) = codes.remove(code)?;
        (created.elapsed() < LINK_LIFETIME).then_some(secret)
    }
}

/// `POST /api/device/link`: a one-time link that opens the app as this device elsewhere.
pub async fn create_link(
    State(device_links): State<Arc<DeviceLinks>>,
    secret: Option<Extension<DeviceSecret>>,
) -> Response {
    let Some(Extension(secret)) = secret else {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            "Only a browser can create a device link.",
        )
        .into_response();
    };
    let code = device_links.create(&secret);
    Json(DeviceLink {
        path: format!("/link/{code}"),
        expires_in_secs: LINK_LIFETIME.as_secs(),
    })
    .into_response()
}

/// `GET /link/{code}`: asks to confirm. Opening a link changes nothing by itself: otherwise a
/// page elsewhere could navigate a browser to the attacker's own link and swap its identity
/// for the attacker's device (login CSRF). The confirming POST is same-origin only.
pub async fn confirm_link(Path(code): Path<String>) -> Response {
    let code: String = code
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(64)
        .collect();
    let page = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Comfy Relay: use another device's jobs</title>\
         <style>body{{font:16px system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem}}\
         button{{font-size:1rem;padding:.75rem 1.25rem}}</style></head><body>\
         <h1>Use another device's jobs here?</h1>\
         <p>This browser will become the device that made this link: it sees that device's jobs \
         and pictures, and stops being what it is now.</p>\
         <form method=\"post\" action=\"/link/{code}\">\
         <button type=\"submit\" data-testid=\"confirm-link\">Use them here</button></form>\
         </body></html>"
    );
    let mut response = Html(page).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `POST /link/{code}`: adopts the linked device and opens the app.
pub async fn follow_link(
    State(device_links): State<Arc<DeviceLinks>>,
    Path(code): Path<String>,
) -> Response {
    match device_links.redeem(&code) {
        Some(secret) => {
            let mut response = Redirect::to("/").into_response();
            response
                .headers_mut()
                .insert(header::SET_COOKIE, secret.set_cookie());
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
    fn a_link_code_works_once() {
        let links = DeviceLinks::default();
        let secret = DeviceSecret::generate();
        let code = links.create(&secret);
        assert_eq!(links.redeem(&code), Some(secret));
        assert_eq!(links.redeem(&code), None);
        assert_eq!(links.redeem("made-up"), None);
    }
}
