//! The jobs API and the devices' event socket.
//!
//! - `POST /api/jobs` `{workflow, values}` → 201 with the job
//! - `GET /api/jobs` → this device's jobs, newest first
//! - `GET /api/jobs/history?before&limit&state&workflow&text` → a page of every job it kept
//! - `GET /api/jobs/{id}[?wait=SECONDS]` (a long poll until it ends), `GET /api/jobs/{id}/preview`,
//!   `GET /api/jobs/{id}/workflow` (the API-format workflow it ran, for Remix)
//! - `POST /api/jobs/{id}/cancel`, `POST /api/jobs/{id}/requeue`, `POST /api/interrupt` (the
//!   device's running job), `POST /api/jobs/{id}/move`, `POST /api/jobs/{id}/star`
//! - `DELETE /api/jobs/{id}` (a finished job)
//! - `GET /api/events` (WebSocket): a snapshot of the device's jobs, then every change;
//!   previews as binary frames.

use std::sync::Arc;
use std::time::Duration;

use super::hub::Notice;
use super::{Jobs, JobsError};
use crate::device::DeviceId;
use crate::device_sockets::SocketToken;
use crate::error::ApiError;
use crate::server::ConnectionSlot;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing;
use axum::{Extension, Json, Router};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use shared::api::{
    ErrorDetail, Event, HistoryPage, HistoryQuery, Job, JobRequest, MoveJob, StarJob,
};
use shared::comfy::BinaryFrame;
use shared::workflow::Workflow;

/// The jobs API and its event socket.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/jobs", routing::get(list).post(submit))
        .route("/api/jobs/{id}", routing::get(get).delete(delete))
        .route("/api/jobs/history", routing::get(history))
        .route("/api/jobs/{id}/preview", routing::get(preview))
        .route("/api/jobs/{id}/workflow", routing::get(workflow))
        .route("/api/jobs/{id}/cancel", routing::post(cancel))
        .route("/api/jobs/{id}/requeue", routing::post(requeue))
        .route("/api/jobs/{id}/move", routing::post(move_job))
        .route("/api/jobs/{id}/star", routing::post(star))
        .route("/api/interrupt", routing::post(interrupt))
        .route("/api/events", routing::get(events))
}

/// The longest a `GET /api/jobs/{id}?wait=` waits.
pub const MAX_WAIT: Duration = Duration::from_secs(600);
/// How often an idle event socket is pinged, so a phone that froze its socket is noticed.
const PING_EVERY: Duration = Duration::from_secs(25);
/// Devices send next to nothing on the event socket: a small read buffer keeps an idle socket
/// cheap (the library's default is 128 KiB, allocated up front).
const EVENTS_READ_BUFFER: usize = 4 * 1024;

impl IntoResponse for JobsError {
    fn into_response(self) -> Response {
        match self {
            Self::Upstream(error) => return error.into_response(),
            Self::Library(error) => return error.into_response(),
            _ => {}
        }
        let (status, detail) = match &self {
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, None),
            Self::NotApiWorkflow(_) => (StatusCode::UNPROCESSABLE_ENTITY, None),
            Self::BadInput(_, problems) | Self::Rejected(problems, _) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                Some(ErrorDetail {
                    problems: problems.clone(),
                    ..ErrorDetail::default()
                }),
            ),
            Self::ComfyUi { .. } => (StatusCode::BAD_GATEWAY, None),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, None),
            Self::NotYours(_) => (StatusCode::FORBIDDEN, None),
            Self::Finished(_) | Self::Unfinished(_) | Self::NothingRunning | Self::NotHeld(_) => {
                (StatusCode::CONFLICT, None)
            }
            Self::TooManyWaiting(_) => (StatusCode::TOO_MANY_REQUESTS, None),
            Self::Locked => (StatusCode::FORBIDDEN, None),
            Self::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, None),
            Self::Upstream(_) | Self::Library(_) => unreachable!("answered above"),
        };
        ApiError::new(status, self.to_string())
            .with_detail(detail)
            .into_response()
    }
}

/// A request body read as `T`, after the size-and-depth check every JSON body gets; a body
/// that fails either is a 400 saying why.
fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, JobsError> {
    crate::limits::check_json_shape(body).map_err(|e| JobsError::BadRequest(e.to_string()))?;
    serde_json::from_slice(body).map_err(|e| JobsError::BadRequest(e.to_string()))
}

/// `POST /api/jobs`.
pub async fn submit(
    State(state): State<AppState>,
    Extension(device): Extension<DeviceId>,
    body: Bytes,
) -> Result<(StatusCode, Json<Job>), JobsError> {
    let request: JobRequest = json_body(&body)?;
    let workflow = match (request.workflow, &request.workflow_name) {
        (Some(_), Some(_)) => {
            return Err(JobsError::BadRequest(
                "send either \"workflow\" or \"workflow_name\", not both".to_owned(),
            ));
        }
        (None, None) => {
            return Err(JobsError::BadRequest(
                "send a \"workflow\", or the \"workflow_name\" of a saved one".to_owned(),
            ));
        }
        (None, Some(name)) => state.library.get(name)?,
        (Some(_), None) if state.library.locked() => return Err(JobsError::Locked),
        (Some(graph), None) => Workflow::from_value(graph).map_err(JobsError::NotApiWorkflow)?,
    };
    let prompt = state.jobs.prepare(workflow, &request.values).await?;
    let job = state
        .jobs
        .submit(device, prompt, request.workflow_name)
        .await?;
    Ok((StatusCode::CREATED, Json(job)))
}

/// `GET /api/jobs`.
pub async fn list(
    State(state): State<AppState>,
    Extension(device): Extension<DeviceId>,
) -> Json<Vec<Job>> {
    Json(state.jobs.registry.list(&device))
}

/// `GET /api/jobs/history?before&limit&state&workflow&text`: a page of every job the device queued.
pub async fn history(
    State(state): State<AppState>,
    Extension(device): Extension<DeviceId>,
    Query(query): Query<HistoryQuery>,
) -> Result<Json<HistoryPage>, JobsError> {
    state.jobs.history(&device, &query).map(Json)
}

/// `GET /api/jobs/{id}` query.
#[derive(Deserialize)]
pub struct JobQuery {
    /// Answer once the job has ended, or after this many seconds (at most [`MAX_WAIT`]).
    wait: Option<f64>,
}

/// `GET /api/jobs/{id}[?wait=SECONDS]`: the job now, or once it has ended (a long poll).
pub async fn get(
    State(state): State<AppState>,
    Extension(device): Extension<DeviceId>,
    Path(id): Path<String>,
    Query(query): Query<JobQuery>,
) -> Result<Json<Job>, JobsError> {
    let Some(wait) = query.wait.filter(|w| w.is_finite() && *w > 0.0) else {
        return state.jobs.get(&device, &id).map(Json);
    };
    let timeout = Duration::from_secs_f64(wait).min(MAX_WAIT);
    tokio::select! {
        job = state.jobs.wait(&device, &id, timeout) => job.map(Json),
        // A long poll must not hold up the relay's shutdown.
        () = state.shutdown.cancelled() => state.jobs.get(&device, &id).map(Json),
    }
}

/// `GET /api/jobs/{id}/workflow`: the API-format workflow the job ran, its values as sent.
pub async fn workflow(
    State(state): State<AppState>,
    Extension(device): Extension<DeviceId>,
    Path(id): Path<String>,
) -> Result<Json<Workflow>, JobsError> {
    state.jobs.workflow(&device, &id).map(Json)
}

/// `POST /api/interrupt`: interrupts the device's job that is running now.
pub async fn interrupt(
    State(state): State<AppState>,
    Extension(device): Extension<DeviceId>,
) -> Result<Json<Job>, JobsError> {
    state.jobs.interrupt_running(&device).await.map(Json)
}

/// `GET /api/jobs/{id}/preview`: the latest preview image.
pub async fn preview(
    State(state): State<AppState>,
    Extension(device): Extension<DeviceId>,
    Path(id): Path<String>,
) -> Result<Response, JobsError> {
    let not_found = || JobsError::NotFound(id.clone());
    let (owner, frame) = state
        .jobs
        .registry
        .latest_preview(&id)
        .ok_or_else(not_found)?;
    if owner != device {
        return Err(not_found());
    }
    let Ok(BinaryFrame::Preview(preview)) = BinaryFrame::parse(&frame) else {
        return Err(not_found());
    };
    let mime = preview.mime.unwrap_or_else(|| "image/jpeg".to_owned());
    let start = frame.len() - preview.image.len();
    Ok((
        [
            (header::CONTENT_TYPE, mime),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        frame.slice(start..),
    )
        .into_response())
}

/// `POST /api/jobs/{id}/cancel`.
pub async fn cancel(
    State(state): State<AppState>,
    Extension(device): Extension<DeviceId>,
    Path(id): Path<String>,
) -> Result<Json<Job>, JobsError> {
    state.jobs.cancel(&device, &id).await.map(Json)
}

/// `POST /api/jobs/{id}/requeue`.
pub async fn requeue(
    State(state): State<AppState>,
    Extension(device): Extension<DeviceId>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Job>), JobsError> {
    let job = state.jobs.requeue(&device, &id).await?;
    Ok((StatusCode::CREATED, Json(job)))
}

/// `POST /api/jobs/{id}/move`: `{position}` among the device's held jobs.
pub async fn move_job(
    State(state): State<AppState>,
    Extension(device): Extension<DeviceId>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Job>, JobsError> {
    let request: MoveJob = json_body(&body)?;
    state
        .jobs
        .move_job(&device, &id, request.position)
        .map(Json)
}

/// `POST /api/jobs/{id}/star`: `{starred}`.
pub async fn star(
    State(state): State<AppState>,
    Extension(device): Extension<DeviceId>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Job>, JobsError> {
    let request: StarJob = json_body(&body)?;
    state.jobs.star(&device, &id, request.starred).map(Json)
}

/// `DELETE /api/jobs/{id}`: forgets a finished job; 204.
pub async fn delete(
    State(state): State<AppState>,
    Extension(device): Extension<DeviceId>,
    Path(id): Path<String>,
) -> Result<StatusCode, JobsError> {
    state.jobs.delete(&device, &id)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/events`.
pub async fn events(
    State(state): State<AppState>,
    Extension(device): Extension<DeviceId>,
    slot: Option<Extension<Arc<ConnectionSlot>>>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let jobs = state.jobs.clone();
    // Closed at shutdown, or when the device is revoked.
    let closed = match state.sockets.token_for(&device) {
        Ok(closed) => closed,
        Err(too_many) => return too_many.into_response(),
    };
    let tasks = state.tasks.clone();
    let slot = slot.map(|Extension(slot)| slot);
    upgrade
        .read_buffer_size(EVENTS_READ_BUFFER)
        // Each send is awaited anyway: write it out at once rather than collecting 128 KiB.
        .write_buffer_size(0)
        .on_upgrade(move |socket| {
            tasks.track_future(async move {
                serve_events(jobs, device, socket, closed).await;
                // The connection's slot stays taken while the socket is open.
                drop(slot);
            })
        })
}

fn text(bytes: Bytes) -> Message {
    // The registry serialises events with serde_json: always UTF-8.
    Message::Text(bytes.try_into().expect("serialised events are UTF-8"))
}

fn event(event: &Event) -> Message {
    text(Bytes::from(
        serde_json::to_vec(event).expect("events serialise"),
    ))
}

/// Sends the device's jobs, then every change, until the socket closes or the relay stops.
async fn serve_events(jobs: Arc<Jobs>, device: DeviceId, socket: WebSocket, closed: SocketToken) {
    // Subscribe before the snapshot, so nothing that changes in between is missed.
    let subscription = jobs.hub.subscribe(device.clone());
    let mailbox = &subscription.mailbox;
    let (mut tx, mut rx) = socket.split();
    let snapshot = Event::Snapshot {
        jobs: jobs.registry.list(&device),
        comfyui_connected: jobs.comfyui_connected(),
    };
    if tx.send(event(&snapshot)).await.is_err() {
        return;
    }
    for frame in jobs.registry.previews(&device) {
        if tx.send(Message::Binary(frame)).await.is_err() {
            return;
        }
    }
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.reset();
    loop {
        // One notice at a time: while a send waits on a slow reader, later changes keep
        // coalescing in the mailbox instead of piling up here.
        let Some(notice) = mailbox.pop() else {
            tokio::select! {
                () = mailbox.ready.notified() => continue,
                incoming = rx.next() => match incoming {
                    Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                    Some(Ok(_)) => continue,
                },
                _ = ping.tick() => {
                    if tx.send(Message::Ping(Bytes::new())).await.is_err() {
                        return;
                    }
                    continue;
                }
                () = closed.cancelled() => {
                    let close = CloseFrame {
                        code: 1001,
                        reason: "Comfy Relay is shutting down, or this device was unpaired".into(),
                    };
                    let _ = tx.send(Message::Close(Some(close))).await;
                    return;
                }
            }
        };
        let message = match notice {
            Notice::Comfyui(connected) => event(&Event::Comfyui { connected }),
            Notice::Removed(id) => event(&Event::Removed { id }),
            // The job's state now, whatever changed since the notice was posted.
            Notice::Changed(id) => match jobs.registry.event_json(&id) {
                Some(json) => text(json),
                None => continue,
            },
            Notice::Preview(frame) => Message::Binary(frame),
        };
        tokio::select! {
            sent = tx.send(message) => if sent.is_err() { return },
            () = closed.cancelled() => return,
        }
    }
}
