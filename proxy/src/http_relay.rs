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
/// The request and the answer are changed in place rather than rebuilt.
pub async fn forward(
    comfy: &ComfyClient,
    path_and_query: &str,
    mut request: Request,
) -> Result<Response<Body>, RelayError> {
    // A GET carries no body; sending an empty chunked one would confuse some servers.
    let method = request.method();
    let has_body = !(method == Method::GET || method == Method::HEAD)
        && request.body().size_hint().exact() != Some(0);
    if !has_body {
        *request.body_mut() = Body::empty();
    }
    headers::strip_for_upstream(request.headers_mut());
    let mut answer = comfy.forward(path_and_query, request).await?;
    headers::strip_for_downstream(answer.headers_mut());
    Ok(answer)
}
