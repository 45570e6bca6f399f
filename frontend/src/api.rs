//! Every HTTP call the app makes, to the relay that served it.

use std::fmt;

use gloo_net::http::{Request, RequestBuilder, Response};
use serde::de::DeserializeOwned;
use shared::api::{ErrorBody, InputEdit, InputProblem, Job, JobRequest};
use shared::comfy::ImageRef;
use shared::workflow::Workflow;

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
                .and_then(|detail| detail.get("problems"))
                .and_then(|problems| serde_json::from_value(problems.clone()).ok())
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Relay { body, .. } => write!(f, "{}", body.error),
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

async fn error_from(response: Response) -> ApiError {
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    match serde_json::from_str::<ErrorBody>(&text) {
        Ok(body) => ApiError::Relay { status, body },
        Err(_) => ApiError::Status { status, text },
    }
}

fn network(error: gloo_net::Error) -> ApiError {
    ApiError::Network(error.to_string())
}

async fn call<T: DeserializeOwned>(
    request: Result<Request, gloo_net::Error>,
) -> Result<T, ApiError> {
    let response = request.map_err(network)?.send().await.map_err(network)?;
    if !response.ok() {
        return Err(error_from(response).await);
    }
    response.json().await.map_err(network)
}

fn post(path: &str) -> RequestBuilder {
    Request::post(path)
}

/// Queues `workflow` with `values` changed, for this device.
pub async fn submit_job(workflow: &Workflow, values: Vec<InputEdit>) -> Result<Job, ApiError> {
    let request = JobRequest {
        workflow: serde_json::to_value(workflow).map_err(|e| ApiError::Network(e.to_string()))?,
        values,
    };
    call(post("/api/jobs").json(&request)).await
}

/// Cancels a job: interrupts it if it runs, takes it off the queue if it waits.
pub async fn cancel_job(id: &str) -> Result<Job, ApiError> {
    call(post(&format!("/api/jobs/{id}/cancel")).build()).await
}

/// Queues a finished (or lost) job again.
pub async fn requeue_job(id: &str) -> Result<Job, ApiError> {
    call(post(&format!("/api/jobs/{id}/requeue")).build()).await
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

/// Where the browser fetches an image ComfyUI holds.
pub fn view_url(image: &ImageRef) -> String {
    format!("/view?{}", image.view_query())
}

/// A one-time link (absolute URL) that opens this device's jobs in another browser.
pub async fn device_link() -> Result<String, ApiError> {
    let link: serde_json::Value = call(post("/api/device/link").build()).await?;
    let path = link["path"].as_str().unwrap_or_default();
    let origin = web_sys::window()
        .and_then(|w| w.location().origin().ok())
        .unwrap_or_default();
    Ok(format!("{origin}{path}"))
}
