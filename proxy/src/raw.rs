//! ComfyUI's queue, history, files and interrupt as raw clients (ComfyUI's own frontend, the
//! CLI, scripts) use them, scoped to the device asking.
//!
//! ComfyUI shows everyone everything: every prompt in its queue and history (with the client id
//! whose socket gets its events), every file by name, and lets anyone delete or interrupt
//! anyone's prompt. Through the relay a device sees and touches only the prompts it queued (as
//! jobs or raw, [`crate::jobs::Jobs::owner_of`]) and the files they made or it uploaded; what
//! is not its own answers as ComfyUI answers for what does not exist, or 403 where it acts.
//! The relay's own client id is taken out of every answer.

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures_util::{StreamExt, stream};
use serde::Deserialize;
use serde_json::{Map, Value};
use shared::comfy::{ImageRef, InterruptRequest, NodeOutput, QueueEdit};

use crate::comfy_path::{self, Segment};
use crate::device::DeviceId;
use crate::error::{ApiError, RelayError};
use crate::http_relay;
use crate::limits::read_capped;
use crate::state::AppState;

/// The largest queue or history edit read: a list of prompt ids.
const MAX_EDIT_BYTES: usize = 64 * 1024;
/// History entries fetched from ComfyUI at once for one listing.
const HISTORY_FETCHES: usize = 8;
/// The most history entries one listing returns when the client does not say.
const DEFAULT_HISTORY_ITEMS: usize = 200;

/// Whether a `[number, id, graph, extra_data, outputs]` item belongs to `device`; if so, the
/// relay's client id is taken out of it.
fn own_item(state: &AppState, device: &DeviceId, item: &mut Value) -> bool {
    let Some(fields) = item.as_array_mut() else {
        return false;
    };
    let owned = fields
        .get(1)
        .and_then(Value::as_str)
        .is_some_and(|id| state.jobs.owner_of(id).as_ref() == Some(device));
    if owned && let Some(extra_data) = fields.get_mut(3) {
        state.jobs.hide_client_id(extra_data);
    }
    owned
}

/// `GET /queue`: the device's own running and pending prompts.
pub async fn queue(
    State(state): State<AppState>,
    Extension(device): Extension<DeviceId>,
) -> Result<Json<Value>, RelayError> {
    let mut queue: Value = state.jobs.comfy().get_json("/queue").await?;
    for key in ["queue_running", "queue_pending"] {
        if let Some(items) = queue.get_mut(key).and_then(Value::as_array_mut) {
            items.retain_mut(|item| own_item(&state, &device, item));
        }
    }
    Ok(Json(queue))
}

/// The device's own prompts an edit names: those of `delete` that are its own, or with `clear`
/// all of its own. Read from the request (its device and body) as the edit handlers' argument.
pub(crate) struct OwnEdit(Vec<String>);

impl axum::extract::FromRequest<AppState> for OwnEdit {
    type Rejection = Response;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Response> {
        let Some(device) = request.extensions().get::<DeviceId>().cloned() else {
            return Err(StatusCode::UNAUTHORIZED.into_response());
        };
        let body = read_capped(request.into_body(), MAX_EDIT_BYTES)
            .await
            .map_err(IntoResponse::into_response)?;
        let edit: QueueEdit = if body.is_empty() {
            QueueEdit::default()
        } else {
            serde_json::from_slice(&body).map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "The body is not {{\"delete\": [prompt ids]}} or {{\"clear\": true}}: {e}."
                    ),
                )
                .into_response()
            })?
        };
        if edit.clear {
            return Ok(Self(state.jobs.prompts_of(&device)));
        }
        let owned = |id: &String| state.jobs.owner_of(id).as_ref() == Some(&device);
        Ok(Self(edit.delete.into_iter().filter(owned).collect()))
    }
}

/// `POST /queue {delete | clear}`: takes the device's own waiting prompts off ComfyUI's queue
/// (`clear` takes all of them, never anyone else's); the jobs among them end as cancelled.
pub async fn edit_queue(
    State(state): State<AppState>,
    Extension(device): Extension<DeviceId>,
    OwnEdit(ids): OwnEdit,
) -> Response {
    let (jobs, raw): (Vec<String>, Vec<String>) = ids
        .into_iter()
        .partition(|id| state.jobs.registry.owner(id).is_some());
    if !raw.is_empty() {
        let raw: Vec<&str> = raw.iter().map(String::as_str).collect();
        if let Err(error) = state.jobs.comfy().delete_pending(&raw).await {
            return error.into_response();
        }
    }
    for id in jobs {
        // The job's own cancel: it may have started meanwhile, or ended.
        if let Err(error) = state.jobs.cancel(&device, &id).await {
            tracing::debug!(job = %id, %error, "not taken off the queue");
        }
    }
    StatusCode::OK.into_response()
}

/// `POST /history {delete | clear}`: forgets the device's own finished prompts in ComfyUI's
/// history, never anyone else's.
pub async fn edit_history(State(state): State<AppState>, OwnEdit(ids): OwnEdit) -> Response {
    if ids.is_empty() {
        return StatusCode::OK.into_response();
    }
    match state.jobs.comfy().delete_history(&ids).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(error) => error.into_response(),
    }
}

/// Notes the files of a device's own history entry as its own, and hides the relay's id.
fn own_entry(state: &AppState, device: &DeviceId, entry: &mut Value) {
    if let Some(prompt) = entry.get_mut("prompt") {
        own_item(state, device, prompt);
    }
    let outputs = entry.get("outputs").and_then(Value::as_object);
    for output in outputs.into_iter().flat_map(Map::values) {
        if let Ok(output) = serde_json::from_value::<NodeOutput>(output.clone()) {
            state.jobs.files.grant_output(device, &output);
        }
    }
}

/// One of the device's prompts as `/history/{id}` has it, or `None`.
async fn own_history(
    state: &AppState,
    device: &DeviceId,
    id: &str,
) -> Result<Option<(String, Value)>, RelayError> {
    // The relay's own records hold only ComfyUI's prompt ids; anything else is no entry.
    let Ok(segment) = Segment::parse(id) else {
        return Ok(None);
    };
    let mut found: Map<String, Value> = state
        .jobs
        .comfy()
        .get_json(&comfy_path::path("/history", &[&segment]))
        .await?;
    Ok(found.remove(id).map(|mut entry| {
        own_entry(state, device, &mut entry);
        (id.to_owned(), entry)
    }))
}

/// `GET /history/{id}`: the entry when the prompt is the device's, else `{}` as for a prompt
/// ComfyUI does not know.
pub async fn history_entry(
    State(state): State<AppState>,
    Extension(device): Extension<DeviceId>,
    Path(id): Path<String>,
) -> Response {
    if let Err(why) = Segment::parse(&id) {
        return comfy_path::refusal("prompt id", &id, why).into_response();
    }
    if state.jobs.owner_of(&id).as_ref() != Some(&device) {
        return Json(Map::new()).into_response();
    }
    match own_history(&state, &device, &id).await {
        Ok(entry) => Json(entry.into_iter().collect::<Map<String, Value>>()).into_response(),
        Err(error) => error.into_response(),
    }
}

/// `GET /history`'s query, as ComfyUI reads it.
#[derive(Debug, Deserialize)]
pub struct HistoryQuery {
    max_items: Option<usize>,
    offset: Option<usize>,
}

/// `GET /history?max_items&offset`: the device's own prompts in ComfyUI's history. The window
/// (`max_items` from `offset`, or without it the newest `max_items`, 200 if unsaid) is taken
/// from the device's prompts before anything is fetched, so a listing costs at most that many
/// requests to ComfyUI; prompts not in its history (still waiting, or forgotten) are left out.
pub async fn history(
    State(state): State<AppState>,
    Extension(device): Extension<DeviceId>,
    Query(query): Query<HistoryQuery>,
) -> Response {
    let ids = state.jobs.prompts_of(&device);
    let max = query.max_items.unwrap_or(DEFAULT_HISTORY_ITEMS);
    let start = query
        .offset
        .unwrap_or_else(|| ids.len().saturating_sub(max))
        .min(ids.len());
    let window = ids.into_iter().skip(start).take(max);
    let found: Vec<Result<Option<(String, Value)>, RelayError>> = stream::iter(window)
        .map(|id| {
            let (state, device) = (&state, &device);
            async move { own_history(state, device, &id).await }
        })
        .buffer_unordered(HISTORY_FETCHES)
        .collect()
        .await;
    let mut entries = Map::new();
    for result in found {
        match result {
            Ok(Some((id, entry))) => {
                entries.insert(id, entry);
            }
            Ok(None) => {}
            Err(error) => return error.into_response(),
        }
    }
    Json(entries).into_response()
}

/// `GET /view`'s query, as ComfyUI reads it.
#[derive(Debug, Deserialize)]
pub struct ViewQuery {
    filename: String,
    #[serde(default)]
    subfolder: String,
    #[serde(rename = "type", default = "output")]
    kind: String,
    preview: Option<String>,
    channel: Option<String>,
    /// The relay's job that made the file, as the app names it: the file is read from that
    /// job's server. Not ComfyUI's; never sent to it.
    job: Option<String>,
}

fn output() -> String {
    "output".to_owned()
}

/// Whether `device` may have ComfyUI open `file` for it (`/view`, the picture under a mask): a
/// file its prompts made or it uploaded, or from the input folder one a saved workflow names,
/// or any with `--share-inputs`. Judged on the file ComfyUI will really open, whatever folder
/// the reference states.
pub(crate) fn may_open(state: &AppState, device: &DeviceId, file: ImageRef) -> bool {
    let file = file.as_comfyui_opens();
    // The library is read only for an input picture the device was not given.
    state.jobs.may_view(device, &file)
        || (file.kind == "input"
            && (state.share_inputs || state.library.names_value(&file.load_image_value())))
}

/// `GET /view`: a file the device may open ([`may_open`]).
pub async fn view(
    State(state): State<AppState>,
    Extension(device): Extension<DeviceId>,
    Query(query): Query<ViewQuery>,
    request: Request,
) -> Response {
    let file = ImageRef {
        filename: query.filename.clone(),
        subfolder: query.subfolder.clone(),
        kind: query.kind.clone(),
    };
    if !may_open(&state, &device, file.clone()) {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "This device may only view files its own jobs made or it uploaded; \"{}\" is not one.",
                query.filename.chars().take(120).collect::<String>()
            ),
        )
        .into_response();
    }
    let mut target = url::Url::parse("http://comfyui/view").expect("a valid URL");
    {
        let mut pairs = target.query_pairs_mut();
        pairs
            .append_pair("filename", &query.filename)
            .append_pair("subfolder", &query.subfolder)
            .append_pair("type", &query.kind);
        if let Some(preview) = &query.preview {
            pairs.append_pair("preview", preview);
        }
        if let Some(channel) = &query.channel {
            pairs.append_pair("channel", channel);
        }
    }
    let target = format!("/view?{}", target.query().unwrap_or_default());
    let (parts, _) = request.into_parts();
    let request = Request::from_parts(parts, Body::empty());
    // An output is on the server whose job made it.
    let comfy = state
        .jobs
        .comfy_for(&device, &file.as_comfyui_opens(), query.job.as_deref());
    http_relay::forward(comfy, &target, request)
        .await
        .into_response()
}

/// `POST /interrupt [{prompt_id}]`: stops the named prompt, or the running one, only when it is
/// the device's.
pub async fn interrupt(
    State(state): State<AppState>,
    Extension(device): Extension<DeviceId>,
    request: Request,
) -> Response {
    let body = match read_capped(request.into_body(), MAX_EDIT_BYTES).await {
        Ok(body) => body,
        Err(error) => return error.into_response(),
    };
    let named = serde_json::from_slice::<InterruptRequest>(&body)
        .ok()
        .and_then(|target| target.prompt_id);
    let target = match named {
        Some(id) => Some(id),
        None => match state.jobs.comfy().queue().await {
            Ok(queue) => queue
                .queue_running
                .first()
                .map(|item| item.prompt_id().to_owned()),
            Err(error) => return error.into_response(),
        },
    };
    let Some(target) = target else {
        // Nothing runs: ComfyUI would do nothing either.
        return StatusCode::OK.into_response();
    };
    if state.jobs.owner_of(&target).as_ref() != Some(&device) {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "The prompt running now was not queued by this device; only its own can be interrupted.",
        )
        .into_response();
    }
    match state.jobs.comfy().interrupt(&target).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(error) => error.into_response(),
    }
}
