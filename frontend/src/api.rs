//! Every HTTP call the app makes, to the relay that served it.

use std::collections::BTreeMap;
use std::fmt;

use gloo_net::http::{Request, RequestBuilder, Response};
use serde::de::DeserializeOwned;
use shared::api::{
    DeviceLink, ErrorBody, HistoryPage, HistoryQuery, InputEdit, InputProblem, Job, JobRequest,
    MoveJob, Rename, SavedWorkflow, StarJob, WorkflowList,
};
use shared::comfy::FeatureFlags;
use shared::schema::NodeSchema;
use shared::workflow::Workflow;
use wasm_bindgen::JsValue;

/// Why a call did not give the answer hoped for, in words for the person holding the phone.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiError {
    /// The relay answered with an error of its own (it always explains).
    Relay {
        /// HTTP status.
        status: u16,
        /// What it said.
        body: ErrorBody,
    },
    /// Another status, with whatever text came with it.
    Status {
        /// HTTP status.
        status: u16,
        /// The body, if any.
        text: String,
    },
    /// No answer at all: the relay is unreachable or the network is down.
    Network(String),
}

impl ApiError {
    /// The per-input problems the relay listed, if any.
    pub fn problems(&self) -> Vec<InputProblem> {
        match self {
            Self::Relay { body, .. } => body
                .detail
                .as_ref()
                .map(|detail| detail.problems.clone())
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Relay { body, .. } => f.write_str(&body.error),
            Self::Status { status, text } if text.is_empty() => {
                write!(f, "The request failed with status {status}.")
            }
            Self::Status { status, text } => {
                write!(f, "The request failed with status {status}: {text}")
            }
            Self::Network(detail) => write!(f, "Cannot reach Comfy Relay ({detail})."),
        }
    }
}

/// Reads an error answer: the relay's JSON, or whatever text came.
pub fn error_from_text(status: u16, text: String) -> ApiError {
    match serde_json::from_str::<ErrorBody>(&text) {
        Ok(body) => ApiError::Relay { status, body },
        Err(_) => ApiError::Status { status, text },
    }
}

async fn error_from(response: Response) -> ApiError {
    let status = response.status();
    error_from_text(status, response.text().await.unwrap_or_default())
}

fn network(error: gloo_net::Error) -> ApiError {
    ApiError::Network(error.to_string())
}

async fn send(request: Result<Request, gloo_net::Error>) -> Result<Response, ApiError> {
    let response = request.map_err(network)?.send().await.map_err(network)?;
    if response.ok() {
        Ok(response)
    } else {
        Err(error_from(response).await)
    }
}

/// The body of a successful answer. Not generic, so the async plumbing exists once in the
/// bundle; only the JSON reading is per type.
async fn body(request: Result<Request, gloo_net::Error>) -> Result<String, ApiError> {
    send(request).await?.text().await.map_err(network)
}

async fn call<T: DeserializeOwned>(
    request: Result<Request, gloo_net::Error>,
) -> Result<T, ApiError> {
    let text = body(request).await?;
    serde_json::from_str(&text).map_err(|e| ApiError::Network(format!("unexpected answer: {e}")))
}

fn post(path: &str) -> RequestBuilder {
    Request::post(path)
}

/// A path segment, percent-encoded.
fn segment(text: &str) -> String {
    js_sys::encode_uri_component(text).into()
}

/// The saved workflows.
pub async fn workflows() -> Result<WorkflowList, ApiError> {
    call(Request::get("/api/workflows").build()).await
}

/// One saved workflow.
pub async fn workflow(name: &str) -> Result<Workflow, ApiError> {
    call(Request::get(&format!("/api/workflows/{}", segment(name))).build()).await
}

/// The API-format workflow job `id` ran, its values as they were sent.
pub async fn job_workflow(id: &str) -> Result<Workflow, ApiError> {
    call(Request::get(&format!("/api/jobs/{}/workflow", segment(id))).build()).await
}

/// Saves a workflow under `name` (replacing one of that name): `body` is API-format JSON, a
/// workflow saved from ComfyUI's editor, or a picture ComfyUI made (a `File`); the relay
/// converts the last two.
pub async fn save_workflow(name: &str, body: JsValue) -> Result<SavedWorkflow, ApiError> {
    let request = Request::put(&format!("/api/workflows/{}", segment(name))).body(body);
    call(request).await
}

/// Renames a saved workflow.
pub async fn rename_workflow(name: &str, to: &str) -> Result<SavedWorkflow, ApiError> {
    call(
        post(&format!("/api/workflows/{}/rename", segment(name)))
            .json(&Rename { to: to.to_owned() }),
    )
    .await
}

/// Deletes a saved workflow.
pub async fn delete_workflow(name: &str) -> Result<(), ApiError> {
    send(Request::delete(&format!("/api/workflows/{}", segment(name))).build())
        .await
        .map(drop)
}

/// The schemas of the node classes a workflow uses (ComfyUI's `/object_info`, kept by the relay).
pub async fn schemas(workflow: &Workflow) -> Result<BTreeMap<String, NodeSchema>, ApiError> {
    let classes = workflow.classes();
    let path = format!("/api/object_info?classes={}", segment(&classes.join(",")));
    let info: serde_json::Map<String, serde_json::Value> =
        call(Request::get(&path).build()).await?;
    Ok(NodeSchema::parse_all(&info))
}

/// What ComfyUI supports, its upload limit among it.
pub async fn features() -> Result<FeatureFlags, ApiError> {
    call(Request::get("/api/features").build()).await
}

/// Queues a saved workflow with `values` changed, for this device.
pub async fn submit_job(workflow_name: &str, values: Vec<InputEdit>) -> Result<Job, ApiError> {
    let request = JobRequest {
        workflow: None,
        workflow_name: Some(workflow_name.to_owned()),
        values,
    };
    call(post("/api/jobs").json(&request)).await
}

/// Cancels a job: interrupts it if it runs, takes it off the queue if it waits.
pub async fn cancel_job(id: &str) -> Result<Job, ApiError> {
    call(post(&format!("/api/jobs/{id}/cancel")).build()).await
}

/// Moves a job the relay still holds to `position` among this device's waiting jobs (0: next).
pub async fn move_job(id: &str, position: u32) -> Result<Job, ApiError> {
    call(post(&format!("/api/jobs/{id}/move")).json(&MoveJob { position })).await
}

/// Queues a finished (or lost) job again.
pub async fn requeue_job(id: &str) -> Result<Job, ApiError> {
    call(post(&format!("/api/jobs/{id}/requeue")).build()).await
}

/// A page of every job of this device the relay keeps.
pub async fn history(query: &HistoryQuery) -> Result<HistoryPage, ApiError> {
    call(Request::get(&format!("/api/jobs/history?{}", query.query_string())).build()).await
}

/// Stars or unstars a job.
pub async fn star_job(id: &str, starred: bool) -> Result<Job, ApiError> {
    call(post(&format!("/api/jobs/{id}/star")).json(&StarJob { starred })).await
}

/// Deletes a finished job.
pub async fn delete_job(id: &str) -> Result<(), ApiError> {
    send(Request::delete(&format!("/api/jobs/{id}")).build())
        .await
        .map(drop)
}

/// A one-time link (absolute URL) that opens this device's jobs in another browser.
pub async fn device_link() -> Result<String, ApiError> {
    let link: DeviceLink = call(post("/api/device/link").build()).await?;
    let path = link.path;
    let origin = web_sys::window()
        .and_then(|w| w.location().origin().ok())
        .unwrap_or_default();
    Ok(format!("{origin}{path}"))
}

/// Whether this device may use the relay: `Some(false)` when it must pair first, `None` when
/// the relay cannot be reached.
pub async fn session() -> Option<bool> {
    let response = Request::get("/api/session").send().await.ok()?;
    match response.status() {
        401 => Some(false),
        status if (200..300).contains(&status) => Some(true),
        _ => None,
    }
}

/// The bytes of the image at `url` (a [`shared::api::view_url`]), as a blob (to upload it
/// again as an input, or to share it).
pub async fn image_blob(url: &str) -> Result<web_sys::Blob, ApiError> {
    let response = send(Request::get(url).build()).await?;
    let bytes = response.binary().await.map_err(network)?;
    let parts = js_sys::Array::of1(&js_sys::Uint8Array::from(bytes.as_slice()));
    web_sys::Blob::new_with_u8_array_sequence(&parts)
        .map_err(|_| ApiError::Network("cannot hold the image".to_owned()))
}
