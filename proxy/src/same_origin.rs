//! Same-origin only: the relay refuses what another web site makes a browser send it.
//!
//! - A state-changing request (anything but GET, HEAD, OPTIONS) or a WebSocket upgrade whose
//!   `Origin` names another host, or that the browser marks `Sec-Fetch-Site: cross-site`, is
//!   refused: a page elsewhere must not queue, upload or cancel with the phone's cookie (CSRF).
//! - A request whose `Host` is a name the relay does not answer to is refused: a site that
//!   re-points its own DNS name at the relay (DNS rebinding) would otherwise be same-origin.
//!   IP addresses, `localhost`, this machine's name (and `.local`) and `--allowed-host` names
//!   are accepted.
//!
//! The relay's own requests to ComfyUI are unaffected: they carry ComfyUI's origin, not these.

use std::net::IpAddr;

use axum::extract::Request;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// The host names the relay answers to.
#[derive(Debug, Clone)]
pub struct HostNames {
    names: Vec<String>,
}

/// The host part of a `Host` or origin authority, without port or brackets.
fn host_of(authority: &str) -> &str {
    let authority = authority.trim();
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or_default();
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    }
}

impl HostNames {
    /// `localhost`, this machine's name and `name.local`, and the operator's extra names.
    pub fn new(extra: &[String]) -> Self {
        let machine = gethostname::gethostname()
            .to_string_lossy()
            .to_ascii_lowercase();
        let mut names = vec!["localhost".to_owned()];
        if !machine.is_empty() {
            names.push(format!("{machine}.local"));
            names.push(machine);
        }
        names.extend(extra.iter().map(|name| host_of(name).to_ascii_lowercase()));
        Self { names }
    }

    /// Whether a `Host` header names this relay (names compare without regard to case).
    pub fn accepts(&self, host: &str) -> bool {
        let host = host_of(host);
        host.parse::<IpAddr>().is_ok()
            || self
                .names
                .iter()
                .any(|name| name.eq_ignore_ascii_case(host))
    }
}

fn refuse(message: &str) -> Response {
    ApiError::new(StatusCode::FORBIDDEN, message).into_response()
}

/// Why a request must be refused, if it must.
pub fn check(names: &HostNames, method: &Method, headers: &HeaderMap) -> Option<&'static str> {
    let header = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let host = header(header::HOST).unwrap_or_default();
    if !names.accepts(host) {
        return Some(
            "Comfy Relay does not answer to this host name. The operator can add it with \
             --allowed-host.",
        );
    }
    let upgrade = headers.contains_key(header::UPGRADE);
    let changes_state = !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    if !(changes_state || upgrade) {
        return None;
    }
    if headers
        .get("sec-fetch-site")
        .is_some_and(|site| site.as_bytes() == b"cross-site")
    {
        return Some("Requests from another web site are refused.");
    }
    let foreign = header(header::ORIGIN).is_some_and(|origin| {
        let authority = origin.split_once("://").map_or("", |(_, rest)| rest);
        // `null` and the like are foreign too: only our own origin may change things.
        authority.is_empty() || !authority.eq_ignore_ascii_case(host.trim())
    });
    foreign.then_some("Requests from another web site are refused.")
}

/// Refuses a cross-site or misaddressed request: the answer to send instead, logged.
pub fn refusal(host_names: &HostNames, request: &Request) -> Option<Response> {
    let message = check(host_names, request.method(), request.headers())?;
    tracing::warn!(
        method = %request.method(),
        path = request.uri().path(),
        origin = ?request.headers().get(header::ORIGIN),
        host = ?request.headers().get(header::HOST),
        "{message}"
    );
    Some(refuse(message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(n, v)| {
                (
                    header::HeaderName::from_static(n),
                    HeaderValue::from_static(v),
                )
            })
            .collect()
    }

    fn names() -> HostNames {
        HostNames::new(&["comfy.example.org".to_owned()])
    }

    #[test]
    fn the_apps_own_requests_pass() {
        let own = headers(&[
            ("host", "192.168.1.20:8189"),
            ("origin", "http://192.168.1.20:8189"),
            ("sec-fetch-site", "same-origin"),
        ]);
        assert_eq!(check(&names(), &Method::POST, &own), None);
        let script = headers(&[("host", "127.0.0.1:8189")]);
        assert_eq!(check(&names(), &Method::POST, &script), None);
        let named = headers(&[
            ("host", "comfy.example.org"),
            ("origin", "https://comfy.example.org"),
        ]);
        assert_eq!(check(&names(), &Method::POST, &named), None);
    }

    #[test]
    fn another_sites_writes_and_sockets_are_refused_but_its_reads_are_not_a_concern() {
        let evil = headers(&[
            ("host", "192.168.1.20:8189"),
            ("origin", "http://evil.example"),
        ]);
        assert!(check(&names(), &Method::POST, &evil).is_some());
        let upgrade = headers(&[
            ("host", "192.168.1.20:8189"),
            ("origin", "http://evil.example"),
            ("upgrade", "websocket"),
        ]);
        assert!(check(&names(), &Method::GET, &upgrade).is_some());
        let cross = headers(&[
            ("host", "192.168.1.20:8189"),
            ("sec-fetch-site", "cross-site"),
        ]);
        assert!(check(&names(), &Method::DELETE, &cross).is_some());
        let null = headers(&[("host", "192.168.1.20:8189"), ("origin", "null")]);
        assert!(check(&names(), &Method::POST, &null).is_some());
        let image = headers(&[
            ("host", "192.168.1.20:8189"),
            ("sec-fetch-site", "cross-site"),
        ]);
        assert_eq!(check(&names(), &Method::GET, &image), None);
    }

    #[test]
    fn a_rebound_dns_name_is_refused_even_for_reads() {
        let rebound = headers(&[
            ("host", "attacker.example:8189"),
            ("origin", "http://attacker.example:8189"),
        ]);
        assert!(check(&names(), &Method::GET, &rebound).is_some());
        assert!(names().accepts("[::1]:8189"));
        assert!(names().accepts("localhost"));
    }
}
