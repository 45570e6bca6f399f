//! The double's HTTP routes, each answering as the recorded ComfyUI did.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Map, Value, json};

use super::recorded::RECORDED;
use super::validate::{self, Schema};
use super::{Job, ReceivedRequest, Shared, StoredFile, guard, sockets};

/// Bodies the double keeps for tests (JSON and forms); larger ones are refused.
const RECORDED_BODY_LIMIT: usize = 4 * 1024 * 1024;

/// ComfyUI's routes, at `/` and again under `/api`.
pub fn router(shared: Arc<Shared>) -> Router {
    let upload_limit = usize::try_from(shared.options.max_upload_size).unwrap_or(usize::MAX);
    let routes = || {
        Router::new()
            .route("/system_stats", get(system_stats))
            .route("/features", get(features))
            .route(
                "/embeddings",
                get(|| async { recorded_json("get_embeddings") }),
            )
            .route(
                "/models/checkpoints",
                get(|| async { Json(json!([super::CHECKPOINT])) }),
            )
            .route("/prompt", get(queue_remaining).post(queue_prompt))
            .route("/queue", get(queue).post(edit_queue))
            .route("/history", get(history).post(edit_history))
            .route("/history/{prompt_id}", get(history_entry))
            .route("/interrupt", post(interrupt))
            .route("/object_info", get(object_info))
            .route("/object_info/{class}", get(object_info_class))
            .route(
                "/upload/image",
                // aiohttp's client_max_size: the whole body, framing included.
                post(upload_image).layer(DefaultBodyLimit::max(upload_limit)),
            )
            .route(
                "/upload/mask",
                post(upload_mask).layer(DefaultBodyLimit::max(upload_limit)),
            )
            .route("/view", get(view))
            .route("/ws", get(sockets::connect))
    };
    Router::new()
        .merge(routes())
        .nest("/api", routes())
        .fallback(|| async { (StatusCode::NOT_FOUND, "404: Not Found") })
        .layer(middleware::from_fn_with_state(
            shared.clone(),
            guard::origin_guard,
        ))
        .layer(middleware::from_fn_with_state(shared.clone(), record))
        .layer(middleware::from_fn_with_state(shared.clone(), stall))
        .with_state(shared)
}

fn recorded_json(exchange: &str) -> Json<Value> {
    Json(RECORDED.response_json(exchange))
}

/// Holds every request while the double is stalled.
async fn stall(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let mut stalled = shared.stalled.subscribe();
    let _ = stalled.wait_for(|stalled| !*stalled).await;
    next.run(request).await
}

/// Keeps every request (and small bodies) for tests, before anything else looks at it.
async fn record(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let is_upload = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/"));
    let (body, kept) = if is_upload {
        (body, Bytes::new())
    } else {
        match axum::body::to_bytes(body, RECORDED_BODY_LIMIT).await {
            Ok(bytes) => (Body::from(bytes.clone()), bytes),
            Err(_) => return StatusCode::PAYLOAD_TOO_LARGE.into_response(),
        }
    };
    shared.lock().requests.push(ReceivedRequest {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or_default().to_owned()))
            .collect(),
        body: kept,
    });
    next.run(Request::from_parts(parts, body)).await
}

async fn system_stats() -> Json<Value> {
    recorded_json("get_system_stats")
}

async fn features(State(shared): State<Arc<Shared>>) -> Json<Value> {
    let mut features = RECORDED.response_json("get_features");
    features["max_upload_size"] = json!(shared.options.max_upload_size);
    Json(features)
}

fn remaining(shared: &Shared) -> usize {
    let state = shared.lock();
    state.pending.len() + usize::from(state.running.is_some())
}

async fn queue_remaining(State(shared): State<Arc<Shared>>) -> Json<Value> {
    Json(json!({ "exec_info": { "queue_remaining": remaining(&shared) } }))
}

/// ComfyUI's answer to a body it cannot handle: a bare 500 (recorded for non-JSON bodies and
/// UI-format workflows).
fn server_error() -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        RECORDED.response_text("prompt_malformed_json"),
    )
        .into_response()
}

async fn queue_prompt(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return server_error();
    };
    let Some(prompt) = request.get("prompt") else {
        return (
            StatusCode::BAD_REQUEST,
            recorded_json("prompt_no_prompt_key"),
        )
            .into_response();
    };
    // ComfyUI indexes every node's `class_type`; anything else makes it raise (a 500).
    let Some(prompt) = prompt.as_object().filter(|nodes| {
        nodes
            .values()
            .all(|node| node.get("class_type").is_some_and(Value::is_string))
    }) else {
        return server_error();
    };
    let input_files = shared.input_files();
    let object_info = shared.object_info();
    let outputs = match validate::validate(
        prompt,
        &Schema {
            object_info: &object_info,
            input_files: &input_files,
        },
    ) {
        Ok(outputs) => outputs,
        Err(refusal) => return (StatusCode::BAD_REQUEST, Json(refusal)).into_response(),
    };
    let client_id = request["client_id"].as_str().map(str::to_owned);
    let mut extra_data = request
        .get("extra_data")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if let Some(client_id) = &client_id {
        extra_data.insert("client_id".into(), json!(client_id));
    }
    // `server.py`: `prompt_id = str(json_data.get("prompt_id", uuid.uuid4()))`.
    let prompt_id = match request.get("prompt_id") {
        Some(Value::String(id)) if !shared.options.ignore_prompt_id => id.clone(),
        Some(other) if !shared.options.ignore_prompt_id => other.to_string(),
        _ => uuid::Uuid::new_v4().to_string(),
    };
    let number = {
        let mut state = shared.lock();
        let number = state.next_number;
        state.next_number += 1;
        let job = Job {
            prompt_id: prompt_id.clone(),
            number,
            prompt: prompt.clone(),
            extra_data: Value::Object(extra_data),
            outputs,
            client_id,
        };
        if request["front"] == true {
            state.pending.push_front(job);
        } else {
            state.pending.push_back(job);
        }
        state.accepted.push(request.clone());
        number
    };
    shared.wake_runner.notify_one();
    Json(json!({ "prompt_id": prompt_id, "number": number, "node_errors": {} })).into_response()
}

async fn queue(State(shared): State<Arc<Shared>>) -> Json<Value> {
    let state = shared.lock();
    let running: Vec<Value> = state.running.iter().map(|r| r.job.queue_item()).collect();
    let pending: Vec<Value> = state.pending.iter().map(Job::queue_item).collect();
    Json(json!({ "queue_running": running, "queue_pending": pending }))
}

async fn edit_queue(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap_or_default();
    let mut state = shared.lock();
    if request["clear"] == true {
        state.pending.clear();
    }
    if let Some(ids) = request["delete"].as_array() {
        state
            .pending
            .retain(|job| !ids.iter().any(|id| id.as_str() == Some(&job.prompt_id)));
    }
    StatusCode::OK.into_response()
}

async fn history(State(shared): State<Arc<Shared>>) -> Json<Value> {
    Json(Value::Object(shared.lock().history.clone()))
}

async fn history_entry(
    State(shared): State<Arc<Shared>>,
    Path(prompt_id): Path<String>,
) -> Json<Value> {
    let state = shared.lock();
    let mut found = Map::new();
    if let Some(entry) = state.history.get(&prompt_id) {
        found.insert(prompt_id, entry.clone());
    }
    Json(Value::Object(found))
}

async fn edit_history(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap_or_default();
    let mut state = shared.lock();
    if request["clear"] == true {
        state.history.clear();
    }
    if let Some(ids) = request["delete"].as_array() {
        for id in ids.iter().filter_map(Value::as_str) {
            state.history.remove(id);
        }
    }
    StatusCode::OK.into_response()
}

/// `{}` interrupts whatever runs; `{prompt_id}` only that prompt, if it is the one running.
async fn interrupt(State(shared): State<Arc<Shared>>, body: Bytes) -> StatusCode {
    let request: Value = serde_json::from_slice(&body).unwrap_or_default();
    let target = request["prompt_id"].as_str();
    let mut state = shared.lock();
    if let Some(running) = state.running.as_mut()
        && target.is_none_or(|id| id == running.job.prompt_id)
    {
        running.interrupt = true;
        shared.wake_interrupt.notify_one();
    }
    StatusCode::OK
}

async fn object_info(State(shared): State<Arc<Shared>>) -> Json<Value> {
    Json(Value::Object(shared.object_info()))
}

async fn object_info_class(
    State(shared): State<Arc<Shared>>,
    Path(class): Path<String>,
) -> Json<Value> {
    let mut info = shared.object_info();
    let mut found = Map::new();
    if let Some(schema) = info.remove(&class) {
        found.insert(class, schema);
    }
    Json(Value::Object(found))
}

fn too_large(shared: &Shared) -> Response {
    (
        StatusCode::PAYLOAD_TOO_LARGE,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!(
            "Maximum request body size {} exceeded.",
            shared.options.max_upload_size
        ),
    )
        .into_response()
}

/// Whether a subfolder stays inside the type's directory.
fn stays_inside(subfolder: &str) -> bool {
    let mut depth = 0i32;
    for part in subfolder.split(['/', '\\']) {
        match part {
            "" | "." => {}
            ".." => depth -= 1,
            _ => depth += 1,
        }
        if depth < 0 {
            return false;
        }
    }
    !subfolder.starts_with('/')
}

/// `name.ext` → `name (1).ext`, `name (2).ext`, ...
fn numbered(name: &str, n: u32) -> String {
    match name.rsplit_once('.') {
        Some((stem, ext)) => format!("{stem} ({n}).{ext}"),
        None => format!("{name} ({n})"),
    }
}

async fn upload_image(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Response {
    upload(&shared, &headers, multipart, false).await
}

/// ComfyUI's `/upload/mask`: an upload whose `original_ref` (JSON) names the picture under the
/// mask, opened where `folder_paths.annotated_filepath` says (a `[output]` mark in its name
/// wins over its `type`, which defaults to `output`). ComfyUI saves the picture with the mask
/// as its alpha channel; the double keeps the mask's bytes, and the reference in
/// [`State::mask_originals`].
async fn upload_mask(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Response {
    upload(&shared, &headers, multipart, true).await
}

/// The file a reference opens, as ComfyUI's `folder_paths.annotated_filepath` reads its name.
fn opened(filename: &str, kind: &str) -> (String, String) {
    for (mark, folder) in [
        ("[output]", "output"),
        ("[input]", "input"),
        ("[temp]", "temp"),
    ] {
        if filename.ends_with(mark) {
            let keep = filename.chars().count().saturating_sub(mark.len() + 1);
            return (filename.chars().take(keep).collect(), folder.to_owned());
        }
    }
    (filename.to_owned(), kind.to_owned())
}

async fn upload(
    shared: &Shared,
    headers: &HeaderMap,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
    mask: bool,
) -> Response {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > shared.options.max_upload_size) {
        return too_large(shared);
    }
    let Ok(mut multipart) = multipart else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let (mut image, mut kind, mut subfolder, mut overwrite) =
        (None, "input".to_owned(), String::new(), false);
    let mut original = None;
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(error) if error.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                return too_large(shared);
            }
            Err(_) => return StatusCode::BAD_REQUEST.into_response(),
        };
        let name = field.name().unwrap_or_default().to_owned();
        let filename = field.file_name().map(str::to_owned);
        let Ok(bytes) = field.bytes().await else {
            return too_large(shared);
        };
        let text = || String::from_utf8_lossy(&bytes).into_owned();
        match name.as_str() {
            "image" => image = filename.map(|f| (f, bytes.clone())),
            "type" => kind = text(),
            "subfolder" => subfolder = text(),
            "overwrite" => overwrite = text() == "true",
            "original_ref" if mask => original = serde_json::from_slice::<Value>(&bytes).ok(),
            _ => {}
        }
    }
    let Some((filename, bytes)) = image else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    if !stays_inside(&subfolder) || !matches!(kind.as_str(), "input" | "temp" | "output") {
        return StatusCode::BAD_REQUEST.into_response();
    }
    if mask {
        // ComfyUI fails (500) when it cannot open the original; it stores nothing then.
        let Some(original) = original else {
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        };
        let stated =
            |key: &str, default: &str| original[key].as_str().unwrap_or(default).to_owned();
        let (name, folder) = opened(&stated("filename", ""), &stated("type", "output"));
        let sub = stated("subfolder", "");
        let mut state = shared.lock();
        let exists = state
            .files
            .iter()
            .any(|f| f.kind == folder && f.subfolder == sub && f.name == name);
        if !exists {
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
        state.mask_originals.push(original);
    }
    // Recorded: ComfyUI keeps `../` in the name, quoted (`..%2F..%2Fevil.png`).
    let filename = filename.replace('/', "%2F");
    let mut state = shared.lock();
    let same_place =
        |f: &StoredFile, name: &str| f.kind == kind && f.subfolder == subfolder && f.name == name;
    let mut stored_name = filename.clone();
    if !overwrite {
        let mut n = 0;
        while let Some(existing) = state.files.iter().find(|f| same_place(f, &stored_name)) {
            if existing.bytes == bytes {
                break;
            }
            n += 1;
            stored_name = numbered(&filename, n);
        }
    }
    state.files.retain(|f| !same_place(f, &stored_name));
    state.files.push(StoredFile {
        kind: kind.clone(),
        subfolder: subfolder.clone(),
        name: stored_name.clone(),
        bytes,
    });
    Json(json!({ "name": stored_name, "subfolder": subfolder, "type": kind })).into_response()
}

async fn view(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let stated = query.get("type").map_or("output", String::as_str);
    let (filename, kind) = opened(query.get("filename").map_or("", String::as_str), stated);
    if filename.is_empty() || filename.starts_with('/') || filename.contains("..") {
        return StatusCode::BAD_REQUEST.into_response();
    }
    let subfolder = query.get("subfolder").cloned().unwrap_or_default();
    let file = shared
        .lock()
        .files
        .iter()
        .find(|f| f.kind == kind && f.subfolder == subfolder && f.name == filename)
        .cloned();
    let Some(file) = file else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let content_type = match filename.rsplit_once('.').map(|(_, ext)| ext.to_lowercase()) {
        Some(ext) if ext == "png" => "image/png",
        Some(ext) if ext == "jpg" || ext == "jpeg" => "image/jpeg",
        Some(ext) if ext == "webp" => "image/webp",
        Some(ext) if ext == "gif" => "image/gif",
        // As ComfyUI 0.3.64 served its video and audio outputs (`fixtures/comfyui/outputs/`).
        Some(ext) if ext == "mp4" => "video/mp4",
        Some(ext) if ext == "webm" => "video/webm",
        Some(ext) if ext == "flac" => "audio/flac",
        Some(ext) if ext == "mp3" => "audio/mpeg",
        Some(ext) if ext == "opus" => "audio/ogg",
        _ => "application/octet-stream",
    };
    (
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("filename=\"{filename}\""),
            ),
        ],
        file.bytes,
    )
        .into_response()
}
