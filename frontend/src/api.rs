//! Every HTTP call the app makes, to the relay that served it.

use std::fmt;

use gloo_net::http::{Request, Response};
use shared::api::ErrorBody;
use shared::comfy::{ImageRef, PromptAccepted, PromptRejected, PromptRequest};
use shared::workflow::Workflow;

/// Why a call did not give the answer hoped for, in words for the person holding the phone.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiError {
    /// ComfyUI refused the prompt; one line per problem.
    Rejected(PromptRejected),
    /// The relay answered with an error of its own.
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

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rejected(rejected) => {
                write!(
                    f,
                    "ComfyUI refused the workflow: {}",
                    rejected.describe().join("; ")
                )
            }
            Self::Relay { body, .. } => write!(f, "{}", body.error),
            Self::Status { status: 500, .. } => write!(
                f,
                "ComfyUI could not read this workflow (error 500). Is it an API-format export?"
            ),
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
    if status == 400
        && let Ok(rejected) = serde_json::from_str::<PromptRejected>(&text)
    {
        return ApiError::Rejected(rejected);
    }
    match serde_json::from_str::<ErrorBody>(&text) {
        Ok(body) => ApiError::Relay { status, body },
        Err(_) => ApiError::Status { status, text },
    }
}

fn network(error: gloo_net::Error) -> ApiError {
    ApiError::Network(error.to_string())
}

/// Queues `workflow` for this tab's client id, so its events come to this tab's socket.
pub async fn queue_prompt(
    workflow: &Workflow,
    client_id: &str,
) -> Result<PromptAccepted, ApiError> {
    let body = PromptRequest {
        prompt: workflow.clone(),
        client_id: Some(client_id.to_owned()),
        extra_data: serde_json::Map::new(),
    };
    let response = Request::post("/prompt")
        .json(&body)
        .map_err(network)?
        .send()
        .await
        .map_err(network)?;
    if !response.ok() {
        return Err(error_from(response).await);
    }
    response.json().await.map_err(network)
}

/// Stops `prompt_id` if it is the one running (ComfyUI ignores the call otherwise).
pub async fn interrupt(prompt_id: &str) -> Result<(), ApiError> {
    let response = Request::post("/interrupt")
        .json(&serde_json::json!({ "prompt_id": prompt_id }))
        .map_err(network)?
        .send()
        .await
        .map_err(network)?;
    if response.ok() {
        Ok(())
    } else {
        Err(error_from(response).await)
    }
}

/// Where the browser fetches an image ComfyUI holds.
pub fn view_url(image: &ImageRef) -> String {
    format!("/view?{}", image.view_query())
}
