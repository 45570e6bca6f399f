//! Comfy Relay's own HTTP bodies, as the proxy sends them and the web app reads them.

use serde::{Deserialize, Serialize};

/// The JSON body of every error the relay itself answers: a sentence a person can read, and
/// optionally structured detail (for example ComfyUI's own validation errors).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong and, where it helps, what to do about it.
    pub error: String,
    /// Structured context: the upstream URL, the failing input, ComfyUI's own answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
}
