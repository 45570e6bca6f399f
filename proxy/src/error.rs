//! The relay's errors and how each becomes an HTTP answer a person can read.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use shared::api::{ErrorBody, ErrorDetail};

/// An answer that is an error: its status and the body every error of the relay has.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: ErrorBody,
}

impl ApiError {
    /// `status` with a sentence for people.
    pub fn new(status: StatusCode, error: impl Into<String>) -> Self {
        Self {
            status,
            body: ErrorBody {
                error: error.into(),
                detail: None,
            },
        }
    }

    /// The same, with structured detail for programs (none for `None`).
    pub fn with_detail(mut self, detail: impl Into<Option<ErrorDetail>>) -> Self {
        self.body.detail = detail.into();
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

/// Everything the relay itself can answer with instead of ComfyUI's response.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// Nothing accepts connections at ComfyUI's address.
    #[error("ComfyUI is not reachable at {url}. Is it running? Comfy Relay keeps retrying.")]
    Unreachable {
        /// The address tried.
        url: String,
        /// The connection error.
        detail: String,
    },
    /// ComfyUI accepted the connection but did not answer in time.
    #[error("ComfyUI did not answer within {seconds} s.")]
    Timeout {
        /// The address tried.
        url: String,
        /// The time allowed.
        seconds: u64,
    },
    /// ComfyUI accepts connections but does not answer its health check (a stopped process).
    #[error(
        "ComfyUI stopped answering: its health check gets no answer. Comfy Relay will say when \
         it answers again."
    )]
    Stalled {
        /// The address tried.
        url: String,
    },
    /// The exchange with ComfyUI broke for another reason.
    #[error("The exchange with ComfyUI failed: {detail}")]
    Failed {
        /// The address tried.
        url: String,
        /// What broke.
        detail: String,
    },
}

impl RelayError {
    /// Classifies a failed request to ComfyUI.
    pub fn from_upstream(url: &url::Url, error: reqwest::Error, timeout_secs: u64) -> Self {
        let url = url.as_str().to_owned();
        if error.is_connect() {
            Self::Unreachable {
                url,
                detail: error_chain(&error),
            }
        } else if error.is_timeout() {
            Self::Timeout {
                url,
                seconds: timeout_secs,
            }
        } else {
            Self::Failed {
                url,
                detail: error_chain(&error),
            }
        }
    }

    /// How the relaying client failed to reach `target`: no connection, or no valid answer.
    pub fn from_relay(target: &crate::upstream::Target, error: crate::comfy::SendError) -> Self {
        let url = target.to_string();
        match error {
            crate::comfy::SendError::Connect(detail) => Self::Unreachable { url, detail },
            crate::comfy::SendError::Exchange(detail) => Self::Failed { url, detail },
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            Self::Unreachable { .. } | Self::Failed { .. } => StatusCode::BAD_GATEWAY,
            Self::Timeout { .. } | Self::Stalled { .. } => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    fn detail(&self) -> Option<ErrorDetail> {
        match self {
            Self::Unreachable { url, detail } | Self::Failed { url, detail } => Some(ErrorDetail {
                comfyui_url: Some(url.clone()),
                cause: Some(detail.clone()),
                ..ErrorDetail::default()
            }),
            Self::Timeout { url, .. } | Self::Stalled { url } => Some(ErrorDetail {
                comfyui_url: Some(url.clone()),
                ..ErrorDetail::default()
            }),
        }
    }
}

/// An error and its sources on one line: reqwest's own message says little.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The innermost cause of an error ("Connection refused (os error 111)"), for short messages.
pub fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

impl IntoResponse for RelayError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(error = %self, detail = ?self.detail(), "relay error");
        }
        ApiError::new(status, self.to_string())
            .with_detail(self.detail())
            .into_response()
    }
}
