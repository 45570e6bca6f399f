//! What the relay logs about a request: never a secret, at any level.
//!
//! A request's query can hold the access token (`/pair?token=`), and a device link's path is
//! the one-time code that hands a device over; headers hold cookies and bearer tokens. The
//! request span records the method and the path only, with a link's code replaced.

use std::time::Duration;

use axum::extract::Request;
use axum::response::Response;
use tracing::Span;

/// The path as it may be logged: `/link/{code}` without its code.
pub fn loggable_path(path: &str) -> &str {
    if path.starts_with("/link/") {
        "/link/…"
    } else {
        path
    }
}

/// The span of one request: its method and loggable path, no query, no headers.
pub fn request_span(request: &Request) -> Span {
    tracing::debug_span!(
        "request",
        method = %request.method(),
        path = loggable_path(request.uri().path()),
    )
}

/// Logs an answer inside its request's span: its status and how long it took to start, at
/// debug level; server errors (ComfyUI down, stalled, refusing) at warn.
pub fn answered(response: &Response, took: Duration) {
    let (status, micros) = (response.status().as_u16(), took.as_micros());
    if response.status().is_server_error() {
        tracing::warn!(status, micros, "answered with a server error");
    } else {
        tracing::debug!(status, micros, "answered");
    }
}
