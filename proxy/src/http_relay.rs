//! Relays one HTTP request to ComfyUI and its response back, streaming both bodies.
//!
//! Neither body is ever held whole: the browser's body goes up as a stream (a 100 MB upload
//! costs a few buffers, not 100 MB), and ComfyUI's answer comes back chunk by chunk as the
//! browser reads it, so a slow phone slows the transfer rather than growing the relay's memory.

use axum::body::Body;
use axum::body::HttpBody as _;
use axum::extract::{Request, State};
use axum::http::{Method, Response};
use futures_util::TryStreamExt;

use crate::error::RelayError;
use crate::headers;
use crate::state::AppState;

/// Forwards the request as it came (method, path under `/` or `/api`, query, body).
pub async fn relay(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response<Body>, RelayError> {
    let (parts, body) = request.into_parts();
    let path_and_query = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let url = state.upstream.url_for(path_and_query);

    let mut upstream_request = state
        .http
        .request(parts.method.clone(), url.clone())
        .headers(headers::to_upstream(&parts.headers));
    // A GET carries no body; sending an empty chunked one would confuse some servers.
    let has_body = !(parts.method == Method::GET || parts.method == Method::HEAD)
        && body.size_hint().exact() != Some(0);
    if has_body {
        upstream_request =
            upstream_request.body(reqwest::Body::wrap_stream(body.into_data_stream()));
    }

    let timeout = state.upstream_timeout;
    let response = match tokio::time::timeout(timeout, upstream_request.send()).await {
        Ok(result) => result.map_err(|e| RelayError::from_upstream(&url, e, timeout.as_secs()))?,
        Err(_elapsed) => {
            return Err(RelayError::UpstreamTimeout {
                url: url.to_string(),
                seconds: timeout.as_secs(),
            });
        }
    };

    let mut builder = Response::builder().status(response.status());
    if let Some(headers) = builder.headers_mut() {
        *headers = headers::to_downstream(response.headers());
    }
    let stream = response.bytes_stream().map_err(axum::Error::new);
    Ok(builder
        .body(Body::from_stream(stream))
        .expect("status and headers come from a valid response"))
}
