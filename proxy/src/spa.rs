//! Serves the built web app: its files, and `index.html` for the app's own deep links.

use std::path::Path;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use tower::ServiceExt;
use tower_http::services::{ServeDir, ServeFile};

use crate::state::AppState;

/// Everything that is not an API route: files from the static dir (brotli or gzip variants when
/// the browser accepts them), `index.html` for extension-less paths so deep links and reloads
/// land in the app, and a plain 404 for a missing file.
pub async fn serve(State(state): State<AppState>, request: Request) -> Response {
    let files = ServeDir::new(&state.static_dir)
        .precompressed_br()
        .precompressed_gzip();
    let is_file = Path::new(request.uri().path()).extension().is_some();
    let result = if is_file {
        files
            .oneshot(request)
            .await
            .map(IntoResponse::into_response)
    } else {
        let index = ServeFile::new(state.static_dir.join("index.html"));
        files
            .fallback(index)
            .oneshot(request)
            .await
            .map(IntoResponse::into_response)
    };
    let mut response = match result {
        Ok(response) => response,
        Err(never) => match never {},
    };
    if !is_file {
        // The page names the hashed assets of the current build: always revalidate it.
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    response
}
