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
    let request_path = request.uri().path().to_owned();
    let request_path = request_path.as_str();
    let is_file = Path::new(request_path).extension().is_some();
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
    let cache = if !is_file {
        // The page names the hashed assets of the current build: always revalidate it.
        Some("no-cache")
    } else if is_hashed(request_path) && response.status().is_success() {
        // A hashed name never changes content: phones keep it for good.
        Some("public, max-age=31536000, immutable")
    } else {
        None
    };
    if let Some(cache) = cache {
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    }
    response
}

/// Whether a file name carries trunk's content hash: `frontend-0123456789abcdef.js`.
pub fn is_hashed(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or_default();
    let stem = name.split('.').next().unwrap_or_default();
    stem.rsplit_once('-').is_some_and(|(_, hash)| {
        // wasm-bindgen's module is `name-HASH_bg.wasm`.
        let hash = hash.strip_suffix("_bg").unwrap_or(hash);
        hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trunks_hashed_names_are_recognised() {
        assert!(is_hashed("/frontend-325dc21cf3ee4bf0_bg.wasm"));
        assert!(is_hashed("/frontend-325dc21cf3ee4bf0.js"));
        assert!(is_hashed("/style-7689b8ab4578dfd5.css"));
        assert!(!is_hashed("/index.html"));
        assert!(!is_hashed("/my-photo.png"));
    }
}
