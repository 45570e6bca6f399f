//! `GET /api/health`: whether the relay and ComfyUI answer, for scripts and monitoring (the
//! Python executor's `/system_stats` check).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use crate::state::AppState;
use crate::upstream::Reachability;

/// The relay's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    /// Whether ComfyUI answers, so jobs can run.
    pub ok: bool,
    /// This relay's version.
    pub relay_version: String,
    /// ComfyUI's base URL.
    pub comfyui_url: String,
    /// ComfyUI's version, when it answers and says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comfyui_version: Option<String>,
    /// Why ComfyUI does not answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comfyui_error: Option<String>,
    /// Whether the relay's own socket to ComfyUI is up (jobs' progress flows).
    pub events_connected: bool,
}

/// `GET /api/health`: 200 when ComfyUI answers now, else 503; the body says which part is down.
pub async fn health(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let (reachability, _) = state.upstream.check(&state.http).await;
    let (comfyui_version, comfyui_error) = match reachability {
        Reachability::Up { version } => (version, None),
        Reachability::Down { reason } => (None, Some(reason)),
        Reachability::Unknown => (None, Some("not checked yet".to_owned())),
    };
    let health = Health {
        ok: comfyui_error.is_none(),
        relay_version: env!("CARGO_PKG_VERSION").to_owned(),
        comfyui_url: state.upstream.base().to_string(),
        comfyui_version,
        comfyui_error,
        events_connected: state.jobs.comfyui_connected(),
    };
    let status = if health.ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(health))
}
