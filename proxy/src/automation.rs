//! The automation API: what the Python executor's middleware did, for a saved workflow of the
//! library, so a script (or a button, or a watched folder) can drive it with plain HTTP.
//!
//! - `POST /api/workflows/{name}/image` (multipart `image`, optional `node`): uploads a picture
//!   into the workflow's LoadImage, and queues it when the workflow auto-runs (`--auto-run`) or
//!   the request says `?run=true`;
//! - `POST /api/workflows/{name}/prompt` `{node_id | node_title, text}`: sets a prompt's text;
//! - `POST /api/workflows/{name}/run`: queues it.
//!
//! Values set here are saved in the workflow, so the next run (from a script or a phone) uses
//! them, as the script's one in-memory workflow did.

use axum::extract::DefaultBodyLimit;
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use shared::api::Job;
use shared::workflow::{Node, NodeChoiceError, NodeName, Workflow};

use crate::device::DeviceId;
use crate::jobs::JobsError;
use crate::library::LibraryError;
use crate::state::AppState;
use crate::upload::{self, UploadError};

/// Setting a saved workflow's picture or prompt, and running it.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/workflows/{name}/image",
            // The upload enforces its own limit, on the stream.
            post(image).layer(DefaultBodyLimit::disable()),
        )
        .route("/api/workflows/{name}/prompt", post(prompt))
        .route("/api/workflows/{name}/run", post(run))
}

/// Why an automation request failed.
#[derive(Debug, thiserror::Error)]
pub enum AutomationError {
    /// The node named cannot take what was sent.
    #[error("{0}")]
    WrongNode(String),
    /// The body is not the expected JSON.
    #[error("The request is not valid: {0}")]
    BadRequest(String),
    /// The workflow is unknown or unreadable.
    #[error(transparent)]
    Library(#[from] LibraryError),
    /// The picture was refused.
    #[error(transparent)]
    Upload(#[from] UploadError),
    /// The job could not be queued.
    #[error(transparent)]
    Jobs(#[from] JobsError),
}

impl IntoResponse for AutomationError {
    fn into_response(self) -> Response {
        match self {
            Self::WrongNode(message) => UploadError::WrongNode(message).into_response(),
            Self::BadRequest(message) => JobsError::BadRequest(message).into_response(),
            Self::Library(error) => error.into_response(),
            Self::Upload(error) => error.into_response(),
            Self::Jobs(error) => error.into_response(),
        }
    }
}

/// Which node a request means: its id, or its title.
#[derive(Debug, Default, Deserialize)]
pub struct NodeRef {
    /// The node's id (`"6"`).
    #[serde(default)]
    pub node_id: Option<String>,
    /// Or its title, as shown in ComfyUI (`"Positive prompt"`).
    #[serde(default)]
    pub node_title: Option<String>,
}

impl NodeRef {
    /// The id of the node meant, among `candidates` (the nodes that could take the value);
    /// with neither id nor title, the only candidate.
    fn resolve<'a>(
        &self,
        workflow: &'a Workflow,
        candidates: &[(&'a str, &'a Node)],
        what: &str,
    ) -> Result<&'a str, AutomationError> {
        let listed = || {
            candidates
                .iter()
                .map(|(id, node)| format!("{id} \"{}\"", node.title()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let name = match (&self.node_id, &self.node_title) {
            (Some(id), _) => Some(NodeName::Id(id)),
            (None, Some(title)) => Some(NodeName::Title(title)),
            (None, None) => None,
        };
        let ids: Vec<&str> = candidates.iter().map(|(id, _)| *id).collect();
        workflow.choose_node(&ids, name).map_err(|error| {
            AutomationError::WrongNode(match (error, name) {
                (NodeChoiceError::Unknown, Some(NodeName::Title(title))) => {
                    format!("The workflow has no node titled \"{title}\".")
                }
                (NodeChoiceError::Unknown, _) => format!(
                    "The workflow has no node \"{}\".",
                    self.node_id.as_deref().unwrap_or_default()
                ),
                (NodeChoiceError::NotACandidate, _) => {
                    format!(
                        "That node is not a {what}; the workflow's are: {}.",
                        listed()
                    )
                }
                (NodeChoiceError::NoCandidate, _) => format!("The workflow has no {what}."),
                (NodeChoiceError::Several(_), _) => format!(
                    "The workflow has several: {}; say which with \"node_id\".",
                    listed()
                ),
            })
        })
    }
}

/// The nodes that take an uploaded picture, with the input that does.
async fn image_nodes(
    state: &AppState,
    workflow: &Workflow,
) -> Result<Vec<(String, String)>, AutomationError> {
    Ok(state
        .first_backend()
        .object_info
        .image_inputs(workflow)
        .await
        .map_err(JobsError::from)?)
}

/// `POST /api/workflows/{name}/image` query.
#[derive(Debug, Deserialize)]
pub struct ImageQuery {
    /// Queue the workflow once the picture is in (default: the workflow's `--auto-run`).
    run: Option<bool>,
    /// The node to put the picture into (also accepted as a form field).
    node: Option<String>,
}

/// What a value change did, and the job it started, if any.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValueSet {
    /// The node changed.
    pub node_id: String,
    /// The input changed.
    pub input: String,
    /// Its new value.
    pub value: Value,
    /// The job queued with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<Job>,
}

fn image_target(
    workflow: &Workflow,
    image_nodes: &[(String, String)],
    node: Option<&str>,
) -> Result<(String, String), AutomationError> {
    let candidates: Vec<(&str, &Node)> = image_nodes
        .iter()
        .filter_map(|(id, _)| workflow.node(id).map(|n| (id.as_str(), n)))
        .collect();
    let wanted = NodeRef {
        node_id: node.map(str::to_owned),
        node_title: None,
    };
    let id = wanted.resolve(workflow, &candidates, "LoadImage")?;
    Ok(image_nodes
        .iter()
        .find(|(candidate, _)| candidate == id)
        .cloned()
        .expect("resolved among these"))
}

/// `POST /api/workflows/{name}/image`: 200 with what was set, or 201 with the job it queued.
pub async fn image(
    State(state): State<AppState>,
    Extension(device): Extension<DeviceId>,
    Path(name): Path<String>,
    Query(query): Query<ImageQuery>,
    request: Request,
) -> Result<Response, AutomationError> {
    // Everything that can be checked before the picture is, so a refusal costs no upload.
    let workflow = state.library.get(&name)?;
    let image_nodes = image_nodes(&state, &workflow).await?;
    if query.node.is_some() || image_nodes.len() < 2 {
        // Otherwise the form's `node` field says which: checked when it is read.
        image_target(&workflow, &image_nodes, query.node.as_deref())?;
    }
    let multipart = upload::multipart_form(&state, request).await?;
    let (uploaded, fields) = upload::stream_image(
        &state,
        &device,
        upload::UploadRoute::Image,
        multipart,
        |fields| {
            let node = fields.node.as_deref().or(query.node.as_deref());
            image_target(&workflow, &image_nodes, node)
                .map(drop)
                .map_err(|e| UploadError::WrongNode(e.to_string()))
        },
    )
    .await?;
    let node = fields.node.as_deref().or(query.node.as_deref());
    let (node_id, input) = image_target(&workflow, &image_nodes, node)?;
    let value = Value::from(uploaded.load_image_value());
    let workflow = state.library.set_values(&name, |workflow| {
        workflow
            .set_input(&node_id, &input, value.clone())
            .map_err(|e| AutomationError::WrongNode(e.to_string()))?;
        Ok::<_, AutomationError>(workflow.clone())
    })?;
    tracing::info!(workflow = %name, node = %node_id, image = %value, "set a workflow's picture");
    let mut set = ValueSet {
        node_id,
        input,
        value,
        job: None,
    };
    if !query.run.unwrap_or_else(|| state.library.auto_runs(&name)) {
        return Ok(Json(set).into_response());
    }
    // The workflow as just saved, so the run has this picture whatever is saved next.
    set.job = Some(queue(&state, device, &name, workflow).await?);
    Ok((StatusCode::CREATED, Json(set)).into_response())
}

/// `POST /api/workflows/{name}/prompt` body.
#[derive(Debug, Deserialize)]
pub struct PromptText {
    /// The node.
    #[serde(flatten)]
    node: NodeRef,
    /// The input to set, when the node has several text inputs (default: `text`).
    #[serde(default)]
    input: Option<String>,
    /// The new text.
    text: String,
}

/// The text input of a node that a prompt update means.
fn text_input(node: &Node, wanted: Option<&str>) -> Option<String> {
    let texts: Vec<&String> = node
        .inputs
        .iter()
        .filter(|(_, value)| value.is_string())
        .map(|(name, _)| name)
        .collect();
    match wanted {
        Some(name) => texts.into_iter().find(|n| *n == name).cloned(),
        None if texts.iter().any(|n| *n == "text") => Some("text".to_owned()),
        None => match texts.as_slice() {
            [only] => Some((*only).clone()),
            _ => None,
        },
    }
}

/// The nodes a prompt update could mean: those with the text input it names (or one).
fn text_nodes<'a>(workflow: &'a Workflow, wanted: Option<&str>) -> Vec<(&'a str, &'a Node)> {
    workflow
        .nodes_in_display_order()
        .into_iter()
        .filter(|(_, node)| text_input(node, wanted).is_some())
        .collect()
}

/// `POST /api/workflows/{name}/prompt` `{node_id | node_title, [input], text}`.
pub async fn prompt(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<ValueSet>, AutomationError> {
    let request: PromptText =
        serde_json::from_slice(&body).map_err(|e| AutomationError::BadRequest(e.to_string()))?;
    if request.node.node_id.is_none() && request.node.node_title.is_none() {
        return Err(AutomationError::BadRequest(
            "say which node with \"node_id\" or \"node_title\"".to_owned(),
        ));
    }
    let set = state.library.set_values(&name, |workflow| {
        let candidates = text_nodes(workflow, request.input.as_deref());
        let node_id = request
            .node
            .resolve(workflow, &candidates, "node with a text input")?
            .to_owned();
        let node = workflow.node(&node_id).expect("resolved in this workflow");
        let input = text_input(node, request.input.as_deref()).expect("a candidate has one");
        let value = Value::from(request.text.clone());
        workflow
            .set_input(&node_id, &input, value.clone())
            .map_err(|e| AutomationError::WrongNode(e.to_string()))?;
        Ok::<_, AutomationError>(ValueSet {
            node_id,
            input,
            value,
            job: None,
        })
    })?;
    tracing::info!(workflow = %name, node = %set.node_id, "set a workflow's prompt");
    Ok(Json(set))
}

/// Queues `workflow`, the saved workflow `name`, for `device`.
async fn queue(
    state: &AppState,
    device: DeviceId,
    name: &str,
    workflow: Workflow,
) -> Result<Job, AutomationError> {
    let prompt = state.jobs.prepare(workflow, &[]).await?;
    Ok(state
        .jobs
        .submit(device, prompt, Some(name.to_owned()))
        .await?)
}

/// `POST /api/workflows/{name}/run`: 201 with the job.
pub async fn run(
    State(state): State<AppState>,
    Extension(device): Extension<DeviceId>,
    Path(name): Path<String>,
) -> Result<(StatusCode, Json<Job>), AutomationError> {
    let job = queue(&state, device, &name, state.library.get(&name)?).await?;
    Ok((StatusCode::CREATED, Json(job)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workflow() -> Workflow {
        Workflow::parse(
            r#"{
              "1": {"class_type": "LoadImage", "inputs": {"image": "a.png"}, "_meta": {"title": "Photo"}},
              "2": {"class_type": "LoadImage", "inputs": {"image": "b.png"}, "_meta": {"title": "Style"}},
              "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["4", 1]}, "_meta": {"title": "Positive"}},
              "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}, "_meta": {"title": "Negative"}},
              "8": {"class_type": "Note", "inputs": {"a": "x", "b": "y"}, "_meta": {"title": "Positive"}},
              "9": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "out"}}
            }"#,
        )
        .unwrap()
    }

    fn images() -> Vec<(String, String)> {
        vec![
            ("1".to_owned(), "image".to_owned()),
            ("2".to_owned(), "image".to_owned()),
        ]
    }

    #[test]
    fn a_picture_goes_into_the_load_image_named_or_the_only_one() {
        let workflow = workflow();
        assert_eq!(
            image_target(&workflow, &images(), Some("2")).unwrap().0,
            "2"
        );
        let several = image_target(&workflow, &images(), None).unwrap_err();
        assert!(several.to_string().contains("several"), "{several}");
        let not_one = image_target(&workflow, &images(), Some("6")).unwrap_err();
        assert!(not_one.to_string().contains("not a LoadImage"), "{not_one}");
        let unknown = image_target(&workflow, &images(), Some("42")).unwrap_err();
        assert!(unknown.to_string().contains("no node \"42\""), "{unknown}");
        let only = &images()[..1];
        assert_eq!(image_target(&workflow, only, None).unwrap().0, "1");
    }

    #[test]
    fn a_prompt_is_found_by_id_or_title_and_its_text_input() {
        let workflow = workflow();
        let candidates = text_nodes(&workflow, None);
        let by_title = NodeRef {
            node_id: None,
            node_title: Some("Negative".to_owned()),
        };
        assert_eq!(by_title.resolve(&workflow, &candidates, "x").unwrap(), "7");
        // Node 8 is also titled "Positive", but has no single text input: not a candidate.
        let positive = NodeRef {
            node_id: None,
            node_title: Some("Positive".to_owned()),
        };
        assert_eq!(positive.resolve(&workflow, &candidates, "x").unwrap(), "6");
        assert_eq!(
            text_input(workflow.node("9").unwrap(), None).as_deref(),
            Some("filename_prefix")
        );
        assert_eq!(text_input(workflow.node("8").unwrap(), None), None);
        assert_eq!(
            text_input(workflow.node("8").unwrap(), Some("b")).as_deref(),
            Some("b")
        );
    }
}
