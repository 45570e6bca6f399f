//! `GET /api/health`: whether the relay and its ComfyUI servers answer, for scripts and
//! monitoring (the Python executor's `/system_stats` check), and for the app's servers view.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use shared::api::Health;

use crate::state::AppState;

/// `GET /api/health`: 200 when a ComfyUI server answers now, else 503. The body says which
/// part is down; the top-level `comfyui_*` fields describe the first server, `backends` every
/// one (its GPU, and the relay's jobs it runs and has waiting).
pub async fn health(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let jobs = &state.jobs;
    let asked = jobs.backends().iter().map(|backend| {
        let (running, waiting) = jobs.registry.load_of(backend.index);
        backend.health(&state.http, running, waiting)
    });
    let backends = futures_util::future::join_all(asked).await;
    let first = &backends[0];
    let health = Health {
        ok: backends.iter().any(|backend| backend.up),
        relay_version: env!("CARGO_PKG_VERSION").to_owned(),
        comfyui_url: first.url.clone(),
        comfyui_version: first.version.clone(),
        comfyui_error: first.error.clone(),
        events_connected: jobs.comfyui_connected(),
        backends,
    };
    let status = if health.ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(health))
}
