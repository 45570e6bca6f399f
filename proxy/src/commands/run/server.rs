//! The server `comfy-relay run` talks to: a Comfy Relay (with its token) or ComfyUI itself.
//! Both answer ComfyUI's routes the same way; the relay adds checks and needs the token.
//!
//! Requests are addressed by the relay's own [`ComfyClient`]; this module says what each
//! answer means to a person at a terminal.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt as _;
use reqwest::StatusCode;
use serde_json::Value;
use shared::api::{ErrorBody, InputProblem};
use shared::comfy::{
    HistoryEntry, ImageRef, InterruptRequest, PromptAccepted, PromptRejected, PromptRequest, Queue,
    QueueEdit, UploadedImage,
};
use shared::schema::NodeSchema;
use shared::workflow::Workflow;
use tokio::io::AsyncWriteExt as _;
use url::Url;

use super::RunError;
use crate::comfy::{ComfyClient, ComfySocket};
use crate::error::error_chain;

/// How long the server may take to answer a request, or to send the next part of an answer.
const TIMEOUT: Duration = Duration::from_secs(60);

/// A relay or ComfyUI at `base`.
pub struct Server {
    comfy: ComfyClient,
    base: Url,
}

impl Server {
    /// The server at `base`, sending `token` as a bearer when given.
    pub fn new(base: Url, token: Option<String>) -> Result<Self, RunError> {
        let comfy = ComfyClient::fixed(base.clone(), token, TIMEOUT)
            .map_err(|e| RunError::Unreachable(error_chain(&e)))?;
        Ok(Self { comfy, base })
    }

    /// Where it is.
    pub fn base(&self) -> &Url {
        &self.base
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.comfy.request(method, path)
    }

    /// Sends a request; an unreachable server or a refusal of the token becomes a [`RunError`].
    async fn send(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response, RunError> {
        let response = request.send().await.map_err(|e| {
            RunError::Unreachable(format!("Cannot reach {}: {}", self.base, error_chain(&e)))
        })?;
        match response.status() {
            StatusCode::UNAUTHORIZED => Err(RunError::Usage(format!(
                "{} is a Comfy Relay that needs its access token: pass --token (or set \
                 COMFY_RELAY_TOKEN). The relay prints it in its pairing link and keeps it in \
                 the `token` file of its data directory.",
                self.base
            ))),
            StatusCode::FORBIDDEN => Err(RunError::Usage(format!(
                "{} refused: {}",
                self.base,
                error_text(response).await
            ))),
            _ => Ok(response),
        }
    }

    async fn ok(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response, RunError> {
        let response = self.send(request).await?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        Err(RunError::Unreachable(format!(
            "{} answered {status}: {}",
            self.base,
            error_text(response).await
        )))
    }

    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, RunError> {
        self.ok(request).await?.json().await.map_err(|e| {
            RunError::Unreachable(format!(
                "{} answered something ComfyUI does not: {}",
                self.base,
                error_chain(&e)
            ))
        })
    }

    /// The schemas of the workflow's classes that the server has.
    pub async fn schemas(
        &self,
        workflow: &Workflow,
    ) -> Result<BTreeMap<String, NodeSchema>, RunError> {
        let mut schemas = BTreeMap::new();
        for class in workflow.classes() {
            let path = crate::comfy::object_info_path(class);
            let info: serde_json::Map<String, Value> =
                self.json(self.request(reqwest::Method::GET, &path)).await?;
            if let Some(schema) = info.get(class) {
                schemas.insert(class.to_owned(), NodeSchema::parse(class, schema));
            }
        }
        Ok(schemas)
    }

    /// Every node class the server has (for converting an editor-format workflow).
    pub async fn all_schemas(&self) -> Result<BTreeMap<String, NodeSchema>, RunError> {
        let info: serde_json::Map<String, Value> = self
            .json(self.request(reqwest::Method::GET, "/object_info"))
            .await?;
        Ok(NodeSchema::parse_all(&info))
    }

    /// Uploads a picture into ComfyUI's input folder, streaming the file.
    pub async fn upload(&self, path: &Path) -> Result<UploadedImage, RunError> {
        let file = tokio::fs::File::open(path).await.map_err(|e| {
            RunError::Usage(format!("--image: cannot read {}: {e}", path.display()))
        })?;
        let length = file.metadata().await.map(|m| m.len()).unwrap_or(0);
        let name = path
            .file_name()
            .map_or_else(|| "image".to_owned(), |n| n.to_string_lossy().into_owned());
        let part = reqwest::multipart::Part::stream_with_length(file, length).file_name(name);
        let form = reqwest::multipart::Form::new()
            .part("image", part)
            .text("type", "input");
        let response = self
            .send(
                self.request(reqwest::Method::POST, "/upload/image")
                    .multipart(form),
            )
            .await?;
        let status = response.status();
        if status.is_client_error() {
            return Err(RunError::Usage(format!(
                "--image: {} refused {}: {}",
                self.base,
                path.display(),
                error_text(response).await
            )));
        }
        if !status.is_success() {
            return Err(RunError::Unreachable(format!(
                "{} answered {status} to the upload: {}",
                self.base,
                error_text(response).await
            )));
        }
        response
            .json()
            .await
            .map_err(|e| RunError::Unreachable(error_chain(&e)))
    }

    /// Opens ComfyUI's event socket for `client_id`.
    pub async fn connect(&self, client_id: &str) -> Result<ComfySocket, RunError> {
        self.comfy
            .connect_ws(client_id)
            .await
            .map_err(|e| RunError::Unreachable(format!("Cannot open {}ws: {e}", self.base)))
    }

    /// Queues the workflow for `client_id`; ComfyUI's or the relay's refusal names each input.
    pub async fn queue(&self, workflow: &Workflow, client_id: &str) -> Result<String, RunError> {
        let body = PromptRequest {
            prompt: workflow.clone(),
            client_id: Some(client_id.to_owned()),
            extra_data: serde_json::Map::new(),
            prompt_id: None,
        };
        let response = self
            .send(self.request(reqwest::Method::POST, "/prompt").json(&body))
            .await?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| RunError::Unreachable(error_chain(&e)))?;
        if status.is_success() {
            let accepted: PromptAccepted = serde_json::from_str(&text).map_err(|_| {
                RunError::Unreachable(format!("{} answered /prompt with: {text}", self.base))
            })?;
            return Ok(accepted.prompt_id);
        }
        if let Ok(rejected) = serde_json::from_str::<PromptRejected>(&text) {
            let problems = crate::jobs::problems(&rejected, workflow);
            return Err(RunError::Usage(refusal(
                "ComfyUI refused the workflow",
                &problems,
            )));
        }
        if let Ok(error) = serde_json::from_str::<ErrorBody>(&text) {
            let problems: Vec<InputProblem> = error
                .detail
                .map(|detail| detail.problems)
                .unwrap_or_default();
            if status.is_client_error() {
                let text = if problems.is_empty() {
                    error.error
                } else {
                    refusal("The relay refused the workflow", &problems)
                };
                return Err(RunError::Usage(text));
            }
            return Err(RunError::Unreachable(error.error));
        }
        Err(RunError::Unreachable(format!(
            "{} answered /prompt with {status}: {text}",
            self.base
        )))
    }

    /// Stops a prompt: takes it off the queue if it waits, interrupts it if it runs. Only this
    /// prompt: another one running is left alone.
    pub async fn stop(&self, prompt_id: &str) -> Result<(), RunError> {
        let delete = QueueEdit {
            delete: vec![prompt_id.to_owned()],
            clear: false,
        };
        self.ok(self.request(reqwest::Method::POST, "/queue").json(&delete))
            .await?;
        let interrupt = InterruptRequest {
            prompt_id: Some(prompt_id.to_owned()),
        };
        self.ok(self
            .request(reqwest::Method::POST, "/interrupt")
            .json(&interrupt))
            .await?;
        Ok(())
    }

    /// The prompt's history entry, once it has ended.
    pub async fn history(&self, prompt_id: &str) -> Result<Option<HistoryEntry>, RunError> {
        let mut history: BTreeMap<String, HistoryEntry> = self
            .json(self.request(reqwest::Method::GET, &format!("/history/{prompt_id}")))
            .await?;
        Ok(history.remove(prompt_id))
    }

    /// ComfyUI's queue.
    pub async fn queue_state(&self) -> Result<Queue, RunError> {
        self.json(self.request(reqwest::Method::GET, "/queue"))
            .await
    }

    /// Downloads an output file into `dir`, streaming it; returns the file written.
    pub async fn download(&self, image: &ImageRef, dir: &Path) -> Result<PathBuf, RunError> {
        let request = self.request(reqwest::Method::GET, "/view").query(&[
            ("filename", image.filename.as_str()),
            ("subfolder", image.subfolder.as_str()),
            ("type", image.kind.as_str()),
        ]);
        let response = self.ok(request).await?;
        // ComfyUI's names are plain file names; never let one leave `dir`.
        let name = Path::new(&image.filename).file_name().ok_or_else(|| {
            RunError::Unreachable(format!("a bad output name: {}", image.filename))
        })?;
        let path = dir.join(name);
        let write_error =
            |e: std::io::Error| RunError::Usage(format!("Cannot write {}: {e}", path.display()));
        let mut file = tokio::fs::File::create(&path).await.map_err(write_error)?;
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| RunError::Unreachable(error_chain(&e)))?;
            file.write_all(&chunk).await.map_err(write_error)?;
        }
        file.flush().await.map_err(write_error)?;
        Ok(path)
    }
}

async fn error_text(response: reqwest::Response) -> String {
    let text = response.text().await.unwrap_or_default();
    serde_json::from_str::<ErrorBody>(&text).map_or(text, |body| body.error)
}

/// A refusal with one line per input concerned.
fn refusal(heading: &str, problems: &[InputProblem]) -> String {
    let mut text = heading.trim_end_matches('.').to_owned();
    if problems.is_empty() {
        return text;
    }
    text.push(':');
    for problem in problems {
        text.push_str("\n  ");
        text.push_str(&problem.describe());
    }
    text
}
