//! Telling devices apart. Every browser holds a random secret in an HttpOnly cookie; its device
//! id, which owns its jobs and is safe to show and log, is derived from that secret. Scripts
//! using the access token share one device of their own. ([`crate::device_links`] hands an
//! identity to another browser.)

use std::fmt;
use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue, header};
use sha2::{Digest, Sha256};

/// The cookie holding the device secret.
pub const COOKIE: &str = "comfy_relay_device";
/// Browsers cap cookie lifetimes at 400 days.
const COOKIE_MAX_AGE_SECS: u64 = 400 * 24 * 3600;

fn is_hex(text: &str, len: usize) -> bool {
    text.len() == len
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A device's secret: 128 random bits as 32 lowercase hex digits. Whoever holds it is the
/// device, so it only travels in an HttpOnly cookie or a one-time link, and is never stored.
#[derive(Clone, PartialEq, Eq)]
pub struct DeviceSecret(Arc<str>);

impl DeviceSecret {
    /// A new random secret.
    pub fn generate() -> Self {
        Self(uuid::Uuid::new_v4().simple().to_string().into())
    }

    /// Reads a secret, refusing anything that is not 32 lowercase hex digits.
    pub fn parse(text: &str) -> Option<Self> {
        is_hex(text, 32).then(|| Self(text.into()))
    }

    /// The device this secret is.
    pub fn device(&self) -> DeviceId {
        let digest = Sha256::digest(self.0.as_bytes());
        let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        DeviceId(hex.into())
    }

    /// The `Set-Cookie` header that gives a browser this secret.
    pub fn set_cookie(&self) -> HeaderValue {
        HeaderValue::from_str(&format!(
            "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={COOKIE_MAX_AGE_SECS}",
            self.0
        ))
        .expect("hex digits make a valid header")
    }

    /// The secret from a request's cookie, if it carries a well-formed one.
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        cookie(headers, COOKIE).and_then(Self::parse)
    }
}

impl fmt::Debug for DeviceSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DeviceSecret(…)")
    }
}

/// A device as jobs and logs know it: 16 hex digits derived from its secret, or `scripts` for
/// everything using the access token.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct DeviceId(Arc<str>);

impl DeviceId {
    /// The device of every script that authenticates with the access token.
    pub fn scripts() -> Self {
        static SCRIPTS: std::sync::LazyLock<DeviceId> =
            std::sync::LazyLock::new(|| DeviceId("scripts".into()));
        SCRIPTS.clone()
    }

    /// Reads an id as stored.
    pub fn parse(text: &str) -> Option<Self> {
        (is_hex(text, 16) || text == "scripts").then(|| Self(text.into()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The ComfyUI client id a raw client of this device gets for the one it chose: the
    /// device's id, a dash, and 32 hex digits. An id already in the device's form is kept (a
    /// client reuses the `sid` ComfyUI announced); any other is hashed into it; none gets a
    /// random one. No device can so name another's socket, nor the relay's (plain hex).
    pub fn comfy_client_id(&self, chosen: Option<&str>) -> String {
        let prefix = format!("{}-", self.0);
        match chosen.map(str::trim).filter(|id| !id.is_empty()) {
            Some(id)
                if id
                    .strip_prefix(&prefix)
                    .is_some_and(|rest| is_hex(rest, 32)) =>
            {
                id.to_owned()
            }
            Some(id) => {
                let digest = Sha256::digest(id.as_bytes());
                let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
                format!("{prefix}{hex}")
            }
            None => format!("{prefix}{}", uuid::Uuid::new_v4().simple()),
        }
    }

    /// A short form for logs: the first 8 characters.
    pub fn short(&self) -> &str {
        &self.0[..self.0.len().min(8)]
    }
}

impl fmt::Debug for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceId({})", self.0)
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_32_lowercase_hex_digits_are_a_secret() {
        let secret = DeviceSecret::generate();
        assert_eq!(DeviceSecret::parse(&secret.0), Some(secret));
        assert!(DeviceSecret::parse("0123456789ABCDEF0123456789abcdef").is_none());
        assert!(DeviceSecret::parse("../../etc").is_none());
        assert!(DeviceSecret::parse("").is_none());
    }

    #[test]
    fn a_secret_always_makes_the_same_device_and_the_device_does_not_reveal_it() {
        let secret = DeviceSecret::parse("0123456789abcdef0123456789abcdef").unwrap();
        let device = secret.device();
        assert_eq!(device, secret.device());
        assert_eq!(device.as_str().len(), 16);
        assert!(!secret.0.contains(device.as_str()));
        assert_eq!(DeviceId::parse(device.as_str()), Some(device));
    }

    #[test]
    fn raw_clients_get_client_ids_of_their_own_device_only() {
        let phone = DeviceId::parse("0123456789abcdef").unwrap();
        let laptop = DeviceId::parse("fedcba9876543210").unwrap();
        let chosen = phone.comfy_client_id(Some("my-tab"));
        assert!(chosen.starts_with("0123456789abcdef-"), "{chosen}");
        assert_eq!(phone.comfy_client_id(Some("my-tab")), chosen);
        assert_eq!(
            phone.comfy_client_id(Some(&chosen)),
            chosen,
            "kept as announced"
        );
        assert_ne!(laptop.comfy_client_id(Some(&chosen)), chosen);
        let relays = "0123456789abcdef0123456789abcdef";
        assert_ne!(phone.comfy_client_id(Some(relays)), relays);
        let fresh = phone.comfy_client_id(None);
        assert_ne!(fresh, phone.comfy_client_id(None));
        assert_eq!(phone.comfy_client_id(Some(&fresh)), fresh);
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
}
