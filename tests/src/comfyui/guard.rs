//! ComfyUI's origin guard, as its `create_origin_only_middleware` does it (recorded in
//! `http/origin_mismatch_*.json` and `ws_origin_mismatch.json`): when `Host` is a loopback
//! address and an `Origin` is sent whose host differs, the answer is 403 with an empty body,
//! for any method and for the WebSocket upgrade. Newer ComfyUI also refuses
//! `Sec-Fetch-Site: cross-site`.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::Shared;

/// Splits `host[:port]` (or `[v6]:port`) into a lower-case host name and an optional port.
fn split_host_port(authority: &str) -> (String, Option<&str>) {
    let authority = authority.trim();
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']').unwrap_or((rest, ""));
        return (host.to_lowercase(), after.strip_prefix(':'));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => (host.to_lowercase(), Some(port)),
        _ => (authority.to_lowercase(), None),
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Whether ComfyUI's guard refuses a request with these `Host` and `Origin` values.
pub fn refuses(host: &str, origin: &str) -> bool {
    let origin_netloc = origin
        .split_once("://")
        .map_or("", |(_, rest)| rest.split('/').next().unwrap_or_default())
        .to_lowercase();
    let (host_name, host_port) = split_host_port(host);
    let (origin_name, origin_port) = split_host_port(&origin_netloc);
    if !is_loopback(&host_name) || origin_netloc.is_empty() {
        return false;
    }
    // Like ComfyUI: compare with ports only when both sides carry one.
    let host_side = if origin_port.is_none() {
        host_name.clone()
    } else {
        host.trim().to_lowercase()
    };
    let origin_side = if host_port.is_none() {
        origin_name
    } else {
        origin_netloc.clone()
    };
    !host_side.is_empty() && !origin_side.is_empty() && host_side != origin_side
}

fn refused(shared: &Shared, headers: &axum::http::HeaderMap) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let (Some(host), Some(origin)) = (header("host"), header("origin"))
        && refuses(host, origin)
    {
        return true;
    }
    shared.options.reject_cross_site && header("sec-fetch-site") == Some("cross-site")
}

/// The middleware.
pub async fn origin_guard(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    if refused(&shared, request.headers()) {
        return StatusCode::FORBIDDEN.into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lan_origin_against_a_loopback_host_is_refused_as_recorded() {
        assert!(refuses("127.0.0.1:8188", "http://192.168.1.20:8080"));
        assert!(refuses("localhost:8188", "http://evil.example"));
    }

    #[test]
    fn a_matching_origin_passes_as_recorded() {
        assert!(!refuses("127.0.0.1:8188", "http://127.0.0.1:8188"));
        assert!(!refuses("127.0.0.1:8188", "http://127.0.0.1"));
    }

    #[test]
    fn a_non_loopback_host_is_not_guarded() {
        assert!(!refuses("192.168.1.5:8188", "http://192.168.1.20:8080"));
    }

    #[test]
    fn a_different_port_on_the_same_host_is_refused() {
        assert!(refuses("127.0.0.1:8188", "http://127.0.0.1:8189"));
    }
}
