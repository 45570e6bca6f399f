//! `POST /prompt` as relayed for other clients: checked before ComfyUI sees it.
//!
//! ComfyUI answers a body that is not JSON, and a UI-format workflow, with a bare 500, and some
//! bad values only fail deep inside a run. The relay reads the (bounded) body and answers those
//! itself: 400 for malformed JSON, 422 for a workflow that is not API format or has values
//! outside a node's range or list, naming each input. A good body goes on with one change: its
//! `client_id` becomes the device's own ([`DeviceId::comfy_client_id`]), the id the device's
//! raw socket has, so its events reach that socket and no other.
//!
//! Only the workflow is parsed into a tree; the rest of the body (`extra_data` with the editor's
//! whole graph, say) is kept as the text it came as, and a body whose parse would cost far more
//! memory than its text is refused first ([`crate::limits::check_json_shape`]).
//!
//! Raw prompts count towards the device's cap on waiting jobs (429 past it): the relay reads
//! ComfyUI's small answer for the prompt id and remembers who sent it
//! ([`crate::jobs::relayed`]).

use std::collections::BTreeMap;

use axum::Extension;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::value::RawValue;
use shared::api::ErrorDetail;
use shared::comfy::PromptAccepted;
use shared::workflow::Workflow;

use crate::device::DeviceId;
use crate::error::{ApiError, RelayError};
use crate::http_relay;
use crate::limits::{check_json_shape, read_capped};
use crate::state::AppState;

/// The largest prompt body read: a workflow is JSON text; a few megabytes are already huge.
pub const MAX_PROMPT_BYTES: usize = 16 * 1024 * 1024;
/// The largest answer to a `POST /prompt` read: `{prompt_id, number, node_errors}`.
const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// A raw prompt body: its fields as the text they came as.
type Fields = BTreeMap<String, Box<RawValue>>;

/// Checks a `POST /prompt` body and returns it as it goes to ComfyUI, for `device`.
async fn check(state: &AppState, device: &DeviceId, body: &[u8]) -> Result<Vec<u8>, Response> {
    if state.library.locked() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "This relay only runs saved workflows: queue them with POST /api/jobs \
             {\"workflow_name\", \"values\"}.",
        )
        .into_response());
    }
    check_json_shape(body).map_err(|e| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()).into_response()
    })?;
    let mut fields: Fields = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("The body is not valid JSON: {e}."),
        )
        .into_response()
    })?;
    let Some(prompt) = fields.get("prompt") else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "The body has no \"prompt\": send {\"prompt\": <API-format workflow>}.",
        )
        .into_response());
    };
    let workflow = Workflow::parse(prompt.get()).map_err(|e| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()).into_response()
    })?;
    let problems = state
        .first_backend()
        .object_info
        .check(&workflow)
        .await
        .map_err(IntoResponse::into_response)?;
    drop(workflow);
    if !problems.is_empty() {
        let summary: Vec<String> = problems
            .iter()
            .map(|p| match &p.input {
                Some(input) => format!("node {} input \"{input}\": {}", p.node_id, p.message),
                None => format!("node {}: {}", p.node_id, p.message),
            })
            .collect();
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("ComfyUI would refuse this workflow: {}", summary.join("; ")),
        )
        .with_detail(ErrorDetail {
            problems,
            ..ErrorDetail::default()
        })
        .into_response());
    }
    let chosen = fields
        .get("client_id")
        .and_then(|id| serde_json::from_str::<String>(id.get()).ok());
    if let Some(chosen) = chosen {
        let own = serde_json::to_string(&device.comfy_client_id(Some(&chosen)))
            .expect("a string serialises");
        fields.insert(
            "client_id".to_owned(),
            RawValue::from_string(own).expect("a serialised string is JSON"),
        );
    } else {
        fields.remove("client_id");
    }
    Ok(serde_json::to_vec(&fields).expect("raw JSON fields serialise"))
}

/// `POST /prompt` (and `/api/prompt`).
pub async fn queue(
    State(state): State<AppState>,
    Extension(device): Extension<DeviceId>,
    request: Request,
) -> Response {
    let (mut parts, body) = request.into_parts();
    let body = match read_capped(body, MAX_PROMPT_BYTES).await {
        Ok(body) => body,
        Err(error) => return error.into_response(),
    };
    let body = match check(&state, &device, &body).await {
        Ok(body) => body,
        Err(answer) => return answer,
    };
    if let Err(refused) = state.jobs.admit(&device).await {
        return refused.into_response();
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    let request = Request::from_parts(parts, Body::from(body));
    let answer = match http_relay::forward(state.jobs.comfy(), "/prompt", request).await {
        Ok(answer) if answer.status().is_success() => answer,
        other => return other.into_response(),
    };
    let (parts, body) = answer.into_parts();
    let Ok(body) = axum::body::to_bytes(body, MAX_ANSWER_BYTES).await else {
        return RelayError::Failed {
            url: state
                .first_backend()
                .upstream
                .url_for("/prompt")
                .to_string(),
            detail: "its answer to a queued prompt was cut off or too large".to_owned(),
        }
        .into_response();
    };
    if let Ok(accepted) = serde_json::from_slice::<PromptAccepted>(&body) {
        state.jobs.relayed.add(device, accepted.prompt_id);
    }
    Response::from_parts(parts, Body::from(body))
}
