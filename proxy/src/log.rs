//! What the relay logs about a request: never a secret, at any level.
//!
//! A request's query can hold the access token (`/pair?token=`), and a device link's path is
//! the one-time code that hands a device over; headers hold cookies and bearer tokens. The
//! request span records the method and the path only, with a link's code replaced.

use axum::extract::Request;
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
