//! Relays one HTTP request to ComfyUI and its response back, streaming both bodies.
//!
//! Neither body is ever held whole: the browser's body goes up as a stream (a 100 MB upload
//! costs a few buffers, not 100 MB), and ComfyUI's answer comes back chunk by chunk as the
//! browser reads it, so a slow phone slows the transfer rather than growing the relay's memory.

use axum::body::Body;
use axum::body::HttpBody as _;
use axum::extract::Request;
use axum::http::{Method, Response};

use crate::comfy::ComfyClient;
use crate::error::RelayError;
use crate::headers;

/// Forwards the request (method, headers, body) to ComfyUI's `path_and_query`, which the
/// route built from its matched parameters ([`crate::comfy_path`]), never the path as sent.
pub async fn forward(
    comfy: &ComfyClient,
    path_and_query: &str,
    request: Request,
) -> Result<Response<Body>, RelayError> {
    let (parts, body) = request.into_parts();
    // A GET carries no body; sending an empty chunked one would confuse some servers.
    let has_body = !(parts.method == Method::GET || parts.method == Method::HEAD)
        && body.size_hint().exact() != Some(0);
    let body = if has_body { body } else { Body::empty() };
    let response = comfy
        .forward(
            parts.method,
            path_and_query,
            headers::to_upstream(parts.headers),
            body,
        )
        .await?;
    let (parts, body) = response.into_parts();
    let mut answer = Response::new(body);
    *answer.status_mut() = parts.status;
    *answer.headers_mut() = headers::to_downstream(parts.headers);
    Ok(answer)
}
