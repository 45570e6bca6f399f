//! `POST /prompt` as relayed for other clients: checked before ComfyUI sees it.
//!
//! ComfyUI answers a body that is not JSON, and a UI-format workflow, with a bare 500, and some
//! bad values only fail deep inside a run. The relay reads the (bounded) body and answers those
//! itself: 400 for malformed JSON, 422 for a workflow that is not API format or has values
//! outside a node's range or list, naming each input. A good body goes on unchanged.
//!
//! Raw prompts count towards the device's cap on waiting jobs (429 past it): the relay reads
//! ComfyUI's small answer for the prompt id and remembers it while it waits
//! ([`crate::jobs::relayed`]).

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::Value;
use shared::api::ErrorBody;
use shared::comfy::PromptAccepted;
use shared::workflow::Workflow;

use crate::device::DeviceId;
use crate::error::RelayError;
use crate::http_relay;
use crate::state::AppState;

/// The largest prompt body read: a workflow is JSON text; a megabyte is already huge.
pub const MAX_PROMPT_BYTES: usize = 16 * 1024 * 1024;

fn refuse(status: StatusCode, error: String, detail: Option<Value>) -> Response {
    (status, Json(ErrorBody { error, detail })).into_response()
}

/// Checks a `POST /prompt` body; `Ok` with the body to forward, or the answer to give.
pub async fn check(state: &AppState, body: &Bytes) -> Result<(), Response> {
    if state.library.locked() {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "This relay only runs saved workflows: queue them with POST /api/jobs \
             {\"workflow_name\", \"values\"}."
                .to_owned(),
            None,
        ));
    }
    let request: Value = serde_json::from_slice(body).map_err(|e| {
        refuse(
            StatusCode::BAD_REQUEST,
            format!("The body is not valid JSON: {e}."),
            None,
        )
    })?;
    let Some(prompt) = request.get("prompt") else {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "The body has no \"prompt\": send {\"prompt\": <API-format workflow>}.".to_owned(),
            None,
        ));
    };
    let workflow = Workflow::from_value(prompt.clone())
        .map_err(|e| refuse(StatusCode::UNPROCESSABLE_ENTITY, e.to_string(), None))?;
    let problems = state
        .object_info
        .check(&workflow)
        .await
        .map_err(IntoResponse::into_response)?;
    if problems.is_empty() {
        return Ok(());
    }
    let summary: Vec<String> = problems
        .iter()
        .map(|p| match &p.input {
            Some(input) => format!("node {} input \"{input}\": {}", p.node_id, p.message),
            None => format!("node {}: {}", p.node_id, p.message),
        })
        .collect();
    Err(refuse(
        StatusCode::UNPROCESSABLE_ENTITY,
        format!("ComfyUI would refuse this workflow: {}", summary.join("; ")),
        Some(serde_json::json!({ "problems": problems })),
    ))
}

/// The largest answer to a `POST /prompt` read: `{prompt_id, number, node_errors}`.
const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// `POST /prompt` (and `/api/prompt`).
pub async fn queue(
    State(state): State<AppState>,
    Extension(device): Extension<DeviceId>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, MAX_PROMPT_BYTES).await {
        Ok(body) => body,
        Err(_) => {
            return refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "The body is larger than {} MB.",
                    MAX_PROMPT_BYTES / 1024 / 1024
                ),
                None,
            );
        }
    };
    if let Err(answer) = check(&state, &body).await {
        return answer;
    }
    if let Err(refused) = state.jobs.admit(&device).await {
        return refused.into_response();
    }
    let request = Request::from_parts(parts, Body::from(body));
    let answer = match http_relay::relay(State(state.clone()), request).await {
        Ok(answer) if answer.status().is_success() => answer,
        other => return other.into_response(),
    };
    let (parts, body) = answer.into_parts();
    let Ok(body) = axum::body::to_bytes(body, MAX_ANSWER_BYTES).await else {
        return RelayError::UpstreamFailed {
            url: state.upstream.url_for("/prompt").to_string(),
            detail: "its answer to a queued prompt was cut off or too large".to_owned(),
        }
        .into_response();
    };
    if let Ok(accepted) = serde_json::from_slice::<PromptAccepted>(&body) {
        state.jobs.relayed.add(device, accepted.prompt_id);
    }
    Response::from_parts(parts, Body::from(body))
}
