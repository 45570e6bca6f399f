//! The team's workflow library: API-format workflows kept as plain JSON files in
//! `<data dir>/workflows/`, one per workflow, named after it (`Portrait upscale.json`). A
//! workflow saved from ComfyUI's editor is converted to the API format on the way in, with this
//! ComfyUI's node schemas, as ComfyUI's frontend converts it to queue it.
//!
//! Anyone paired can import, rename and delete, unless the operator locked the relay to the
//! saved workflows (`--locked-workflows`): then the files are managed on disk only, and devices
//! send values for a saved workflow, never a graph. Values (a prompt's text, the picture of a
//! LoadImage) can always be set through the automation API: they change what a workflow says,
//! never how it is wired.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing;
use axum::{Json, Router};
use bytes::BytesMut;
use futures_util::StreamExt as _;
use serde_json::Value;

use shared::api::{Rename, SavedWorkflow, WorkflowList};
use shared::editor::{ConvertError, is_editor_format};
use shared::workflow::{Workflow, WorkflowError};

use crate::auth::token::write_private;
use crate::clock::epoch_ms;
use crate::embedded_workflow::{self, EmbeddedError, Format};
use crate::error::{ApiError, RelayError};
use crate::object_info::ObjectInfo;
use crate::state::AppState;

/// The workflow library: list, read, save, delete, rename.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/workflows", routing::get(list))
        .route(
            "/api/workflows/{name}",
            // Pictures stream through `put`, which bounds what it keeps itself.
            routing::put(put)
                .layer(axum::extract::DefaultBodyLimit::disable())
                .get(get)
                .delete(delete),
        )
        .route("/api/workflows/{name}/rename", routing::post(rename))
}

/// The longest workflow name.
const MAX_NAME: usize = 80;
/// The largest workflow file accepted.
const MAX_WORKFLOW_BYTES: usize = 8 * 1024 * 1024;

/// Why a library operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LibraryError {
    /// The name cannot be a file name.
    #[error(
        "A workflow name is 1 to {MAX_NAME} letters, digits, spaces, and - _ . ( ), and does not start with a dot."
    )]
    BadName,
    /// No workflow has this name.
    #[error("There is no saved workflow \"{0}\".")]
    NotFound(String),
    /// A workflow already has the new name.
    #[error("A workflow called \"{0}\" already exists.")]
    Exists(String),
    /// The body is not JSON.
    #[error("This is not valid JSON: {0}")]
    Malformed(String),
    /// The JSON is not an API-format workflow.
    #[error("{0}")]
    NotApiWorkflow(WorkflowError),
    /// An editor-format workflow that cannot be converted (nodes this ComfyUI lacks, say).
    #[error("{0}")]
    NotConvertible(ConvertError),
    /// A picture, sound or video whose workflow cannot be read.
    #[error("{0}")]
    Embedded(EmbeddedError),
    /// A picture, sound or video without a workflow inside.
    #[error(
        "This file holds no workflow. ComfyUI saves one inside the PNG, WebP, FLAC, MP4 and \
         WebM files it makes, unless it runs with --disable-metadata or the file was edited since."
    )]
    NoEmbeddedWorkflow,
    /// The operator manages the library on disk.
    #[error("The workflows are locked: the operator manages them on the relay's machine.")]
    Locked,
    /// The disk failed.
    #[error("Comfy Relay could not read or write the workflow: {0}")]
    Io(#[from] std::io::Error),
}

impl IntoResponse for LibraryError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::BadName | Self::Malformed(_) => StatusCode::BAD_REQUEST,
            Self::Embedded(EmbeddedError::TooLarge) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Embedded(_) => StatusCode::BAD_REQUEST,
            Self::NoEmbeddedWorkflow => StatusCode::UNPROCESSABLE_ENTITY,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Exists(_) => StatusCode::CONFLICT,
            Self::NotApiWorkflow(_) | Self::NotConvertible(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Locked => StatusCode::FORBIDDEN,
            Self::Io(error) => {
                tracing::error!(%error, "workflow library");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        ApiError::new(status, self.to_string()).into_response()
    }
}

/// Whether a name is a safe file name for a workflow.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.chars().count() <= MAX_NAME
        && !name.starts_with('.')
        && name.trim() == name
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_' | '.' | '(' | ')'))
}

/// The workflows kept in one folder.
pub struct Library {
    dir: PathBuf,
    locked: bool,
    auto_run: Vec<String>,
    /// Serialises read-modify-write of the files.
    writing: Mutex<()>,
}

fn modified_ms(path: &Path) -> u64 {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .map_or(0, epoch_ms)
}

/// Reads a workflow file's text into a checked workflow.
pub fn parse(text: &[u8]) -> Result<Workflow, LibraryError> {
    let value: Value =
        serde_json::from_slice(text).map_err(|e| LibraryError::Malformed(e.to_string()))?;
    Workflow::from_value(value).map_err(LibraryError::NotApiWorkflow)
}

impl Library {
    /// The library in `<data_dir>/workflows`; `auto_run` names the workflows that run as soon
    /// as a picture is uploaded into them.
    pub fn new(data_dir: &Path, locked: bool, auto_run: Vec<String>) -> Self {
        Self {
            dir: data_dir.join("workflows"),
            locked,
            auto_run,
            writing: Mutex::new(()),
        }
    }

    /// Whether devices may only run saved workflows.
    pub fn locked(&self) -> bool {
        self.locked
    }

    /// Whether a workflow runs as soon as a picture is uploaded into it.
    pub fn auto_runs(&self, name: &str) -> bool {
        self.auto_run.iter().any(|n| n == name || n == "*")
    }

    fn write_lock(&self) -> MutexGuard<'_, ()> {
        // A panic while writing leaves nothing half-done in memory: the lock only orders writes.
        self.writing.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self, path: &Path, workflow: &Workflow) -> Result<(), LibraryError> {
        std::fs::create_dir_all(&self.dir)?;
        let pretty = serde_json::to_vec_pretty(workflow).map_err(std::io::Error::other)?;
        write_private(path, &pretty)?;
        Ok(())
    }

    fn path(&self, name: &str) -> Result<PathBuf, LibraryError> {
        if !valid_name(name) {
            return Err(LibraryError::BadName);
        }
        Ok(self.dir.join(format!("{name}.json")))
    }

    fn writable(&self) -> Result<(), LibraryError> {
        if self.locked {
            return Err(LibraryError::Locked);
        }
        Ok(())
    }

    /// Every saved workflow, by name.
    pub fn list(&self) -> Result<Vec<SavedWorkflow>, LibraryError> {
        let mut saved = Vec::new();
        self.each(|name, path, workflow| {
            saved.push(SavedWorkflow {
                name: name.to_owned(),
                nodes: workflow.len(),
                updated_at: modified_ms(path),
            });
        })?;
        saved.sort_by_key(|w| w.name.to_lowercase());
        Ok(saved)
    }

    /// Whether a saved workflow has an input set to `value` (a LoadImage's picture, say).
    pub fn names_value(&self, value: &str) -> bool {
        let mut named = false;
        let found = self.each(|_, _, workflow| {
            named = named
                || workflow
                    .nodes_in_display_order()
                    .into_iter()
                    .any(|(_, node)| node.inputs.values().any(|v| v.as_str() == Some(value)));
        });
        found.is_ok() && named
    }

    /// Reads every saved workflow once, for `visit` (name, file, workflow).
    fn each(&self, mut visit: impl FnMut(&str, &Path, &Workflow)) -> Result<(), LibraryError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(error) => return Err(error.into()),
        };
        for entry in entries {
            let path = entry?.path();
            let Some(name) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".json"))
                .filter(|n| valid_name(n))
            else {
                continue;
            };
            // A file that is not a workflow (edited by hand, say) is left out, not fatal.
            let Ok(workflow) = std::fs::read(&path)
                .map_err(LibraryError::from)
                .and_then(|t| parse(&t))
            else {
                tracing::warn!(file = %path.display(), "not an API-format workflow; not listed");
                continue;
            };
            visit(name, &path, &workflow);
        }
        Ok(())
    }

    /// A saved workflow.
    pub fn get(&self, name: &str) -> Result<Workflow, LibraryError> {
        let path = self.path(name)?;
        match std::fs::read(&path) {
            Ok(text) => parse(&text),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                Err(LibraryError::NotFound(name.to_owned()))
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Saves (or replaces) a workflow; returns how it is listed.
    pub fn save(&self, name: &str, workflow: &Workflow) -> Result<SavedWorkflow, LibraryError> {
        self.writable()?;
        let path = self.path(name)?;
        let _writing = self.write_lock();
        self.write(&path, workflow)?;
        Ok(SavedWorkflow {
            name: name.to_owned(),
            nodes: workflow.len(),
            updated_at: modified_ms(&path),
        })
    }

    /// Changes values of a saved workflow with `change`, which sees the workflow as saved and
    /// may refuse; the file is rewritten only when it accepts. Allowed on a locked library:
    /// [`Workflow::set_input`] never rewires a graph.
    pub fn set_values<T, E: From<LibraryError>>(
        &self,
        name: &str,
        change: impl FnOnce(&mut Workflow) -> Result<T, E>,
    ) -> Result<T, E> {
        let _writing = self.write_lock();
        let mut workflow = self.get(name)?;
        let changed = change(&mut workflow)?;
        self.write(&self.path(name)?, &workflow)?;
        Ok(changed)
    }

    /// Renames a workflow.
    pub fn rename(&self, name: &str, to: &str) -> Result<SavedWorkflow, LibraryError> {
        self.writable()?;
        let _writing = self.write_lock();
        let (from, to_path) = (self.path(name)?, self.path(to)?);
        if !from.exists() {
            return Err(LibraryError::NotFound(name.to_owned()));
        }
        if to_path.exists() && name != to {
            return Err(LibraryError::Exists(to.to_owned()));
        }
        std::fs::rename(&from, &to_path)?;
        let workflow = self.get(to)?;
        Ok(SavedWorkflow {
            name: to.to_owned(),
            nodes: workflow.len(),
            updated_at: modified_ms(&to_path),
        })
    }

    /// Deletes a workflow.
    pub fn delete(&self, name: &str) -> Result<(), LibraryError> {
        self.writable()?;
        let _writing = self.write_lock();
        match std::fs::remove_file(self.path(name)?) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                Err(LibraryError::NotFound(name.to_owned()))
            }
            Err(error) => Err(error.into()),
        }
    }
}

/// `GET /api/workflows`.
pub async fn list(State(library): State<Arc<Library>>) -> Result<Json<WorkflowList>, LibraryError> {
    Ok(Json(WorkflowList {
        workflows: library.list()?,
        locked: library.locked(),
    }))
}

/// `GET /api/workflows/{name}`: the workflow itself.
pub async fn get(
    State(library): State<Arc<Library>>,
    UrlPath(name): UrlPath<String>,
) -> Result<Json<Workflow>, LibraryError> {
    library.get(&name).map(Json)
}

/// `PUT /api/workflows/{name}`: saves the body: an API-format workflow, one saved from
/// ComfyUI's editor (converted with ComfyUI's node schemas), or a PNG, WebP or FLAC ComfyUI
/// made (the API workflow that made it, else its editor graph).
pub async fn put(
    State(library): State<Arc<Library>>,
    State(object_info): State<Arc<ObjectInfo>>,
    UrlPath(name): UrlPath<String>,
    body: Body,
) -> Result<Json<SavedWorkflow>, Response> {
    // Refused before anything is read or asked of ComfyUI.
    library.writable().map_err(IntoResponse::into_response)?;
    library.path(&name).map_err(IntoResponse::into_response)?;
    let mut data = body.into_data_stream();
    let mut text = BytesMut::new();
    // Enough of the start to tell a picture from JSON.
    while text.len() < 12 {
        match data.next().await {
            Some(chunk) => text.extend_from_slice(&chunk.map_err(|e| malformed(e.to_string()))?),
            None => break,
        }
    }
    let json = if let Some(format) = Format::sniff(&text) {
        let found = embedded_workflow::read(format, text.freeze(), Body::from_stream(data))
            .await
            .map_err(|e| LibraryError::Embedded(e).into_response())?;
        found
            .prompt
            .or(found.workflow)
            .ok_or_else(|| LibraryError::NoEmbeddedWorkflow.into_response())?
            .into_bytes()
    } else {
        while let Some(chunk) = data.next().await {
            text.extend_from_slice(&chunk.map_err(|e| malformed(e.to_string()))?);
            if text.len() > MAX_WORKFLOW_BYTES {
                return Err(malformed("the workflow is larger than 8 MB".to_owned()));
            }
        }
        text.to_vec()
    };
    crate::limits::check_json_shape(&json).map_err(|e| malformed(e.to_string()))?;
    let value: Value = serde_json::from_slice(&json).map_err(|e| malformed(e.to_string()))?;
    let workflow = if is_editor_format(&value) {
        object_info
            .to_api(&value)
            .await
            .map_err(RelayError::into_response)?
            .map_err(|e| LibraryError::NotConvertible(e).into_response())?
    } else {
        Workflow::from_value(value).map_err(|e| LibraryError::NotApiWorkflow(e).into_response())?
    };
    let saved = library
        .save(&name, &workflow)
        .map_err(IntoResponse::into_response)?;
    tracing::info!(workflow = %name, "saved a workflow");
    Ok(Json(saved))
}

fn malformed(why: String) -> Response {
    LibraryError::Malformed(why).into_response()
}

/// `POST /api/workflows/{name}/rename` `{"to": "new name"}`.
pub async fn rename(
    State(library): State<Arc<Library>>,
    UrlPath(name): UrlPath<String>,
    Json(rename): Json<Rename>,
) -> Result<Json<SavedWorkflow>, LibraryError> {
    library.rename(&name, &rename.to).map(Json)
}

/// `DELETE /api/workflows/{name}`.
pub async fn delete(
    State(library): State<Arc<Library>>,
    UrlPath(name): UrlPath<String>,
) -> Result<StatusCode, LibraryError> {
    library.delete(&name)?;
    tracing::info!(workflow = %name, "deleted a workflow");
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY_IMAGE: &str = r#"{"5":{"class_type":"EmptyImage","inputs":{"width":64}},"7":{"class_type":"SaveImage","inputs":{"images":["5",0]}}}"#;

    #[test]
    fn names_are_file_names_that_cannot_escape_the_folder() {
        for good in ["portrait", "Portrait upscale (v2)", "sd1.5 txt2img", "été"] {
            assert!(valid_name(good), "{good}");
        }
        for bad in [
            "",
            "../x",
            "a/b",
            ".hidden",
            " padded",
            "x\\y",
            "a:b",
            &"n".repeat(81),
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn save_list_rename_delete() {
        let dir = tempfile::tempdir().unwrap();
        let library = Library::new(dir.path(), false, Vec::new());
        assert!(library.list().unwrap().is_empty());
        let workflow = parse(EMPTY_IMAGE.as_bytes()).unwrap();
        library.save("b", &workflow).unwrap();
        library.save("A", &workflow).unwrap();
        let names: Vec<_> = library
            .list()
            .unwrap()
            .into_iter()
            .map(|w| w.name)
            .collect();
        assert_eq!(names, ["A", "b"]);
        assert_eq!(library.get("A").unwrap().len(), 2);
        assert!(matches!(
            library.rename("A", "b"),
            Err(LibraryError::Exists(_))
        ));
        library.rename("A", "c").unwrap();
        assert!(matches!(library.get("A"), Err(LibraryError::NotFound(_))));
        library.delete("c").unwrap();
        assert!(matches!(
            library.delete("c"),
            Err(LibraryError::NotFound(_))
        ));
    }

    #[test]
    fn files_are_read_as_api_workflows_and_a_locked_library_is_read_only() {
        let dir = tempfile::tempdir().unwrap();
        let library = Library::new(dir.path(), false, Vec::new());
        // Editor-format files are converted on the way in (`put`), never kept as they are.
        assert!(matches!(
            parse(b"{\"nodes\": [], \"links\": []}"),
            Err(LibraryError::NotApiWorkflow(_))
        ));
        assert!(matches!(
            parse(b"{not json"),
            Err(LibraryError::Malformed(_))
        ));
        let workflow = parse(EMPTY_IMAGE.as_bytes()).unwrap();
        library.save("x", &workflow).unwrap();
        let locked = Library::new(dir.path(), true, Vec::new());
        assert_eq!(locked.get("x").unwrap().len(), 2);
        assert!(matches!(
            locked.save("y", &workflow),
            Err(LibraryError::Locked)
        ));
        assert!(matches!(locked.delete("x"), Err(LibraryError::Locked)));
    }
}
