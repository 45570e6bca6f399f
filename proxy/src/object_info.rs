//! ComfyUI's node schemas (`/object_info`), fetched once and kept.
//!
//! With many custom nodes ComfyUI can take seconds to minutes to answer `/object_info`
//! (ComfyUI #6372), so the relay asks once, shares the answer with every device
//! (`GET /api/object_info`), and refreshes on demand, or one class at a time when a workflow
//! names a class or a combo value the kept copy does not know (a node or model installed since).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Map, Value};
use shared::api::InputProblem;
use shared::editor::{self, ConvertError};
use shared::schema::{NodeSchema, check_workflow};
use shared::workflow::Workflow;
use tokio::sync::Mutex;

use crate::comfy::ComfyClient;
use crate::error::RelayError;

/// One fetched `/object_info`.
struct Snapshot {
    raw: Map<String, Value>,
    /// The raw answer serialised and gzipped once, for every device that asks (megabytes of
    /// JSON with many custom nodes; a tenth of that compressed).
    json_gz: Bytes,
    schemas: BTreeMap<String, NodeSchema>,
}

impl Snapshot {
    fn new(raw: Map<String, Value>) -> Self {
        let json = serde_json::to_vec(&raw).expect("JSON serialises");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, &json).expect("writing to memory");
        let json_gz = Bytes::from(gz.finish().expect("writing to memory"));
        let schemas = NodeSchema::parse_all(&raw);
        Self {
            raw,
            json_gz,
            schemas,
        }
    }
}

/// The kept `/object_info`.
pub struct ObjectInfo {
    comfy: ComfyClient,
    /// Held while fetching, so concurrent callers wait for one fetch instead of starting many.
    snapshot: Mutex<Option<Arc<Snapshot>>>,
}

impl ObjectInfo {
    /// Nothing kept yet.
    pub fn new(comfy: ComfyClient) -> Self {
        Self {
            comfy,
            snapshot: Mutex::new(None),
        }
    }

    async fn current(&self, refresh: bool) -> Result<Arc<Snapshot>, RelayError> {
        let mut slot = self.snapshot.lock().await;
        match slot.as_ref() {
            Some(snapshot) if !refresh => Ok(snapshot.clone()),
            _ => {
                let started = std::time::Instant::now();
                let raw = self.comfy.object_info().await?;
                tracing::info!(
                    classes = raw.len(),
                    "fetched ComfyUI's node schemas in {:?}",
                    started.elapsed()
                );
                let snapshot = Arc::new(Snapshot::new(raw));
                *slot = Some(snapshot.clone());
                Ok(snapshot)
            }
        }
    }

    /// Fetches one class again and keeps the answer; `false` if ComfyUI does not have it.
    async fn refresh_class(&self, class: &str) -> Result<bool, RelayError> {
        let mut fetched = self.comfy.object_info_class(class).await?;
        let mut slot = self.snapshot.lock().await;
        let mut raw = slot.as_ref().map(|s| s.raw.clone()).unwrap_or_default();
        let known = match fetched.remove(class) {
            Some(info) => {
                raw.insert(class.to_owned(), info);
                true
            }
            None => {
                raw.remove(class);
                false
            }
        };
        *slot = Some(Arc::new(Snapshot::new(raw)));
        Ok(known)
    }

    /// What ComfyUI would refuse in `workflow`: unknown classes and values outside a node's
    /// range or list. Classes behind a problem are fetched again once before it is reported.
    pub async fn check(&self, workflow: &Workflow) -> Result<Vec<InputProblem>, RelayError> {
        let snapshot = self.current(false).await?;
        let problems = check_workflow(workflow, |class| snapshot.schemas.get(class));
        if problems.is_empty() {
            return Ok(problems);
        }
        let mut stale: Vec<&str> = problems
            .iter()
            .filter_map(|p| workflow.node(&p.node_id).map(|n| n.class_type.as_str()))
            .collect();
        stale.sort_unstable();
        stale.dedup();
        for class in stale {
            self.refresh_class(class).await?;
        }
        let snapshot = self.current(false).await?;
        Ok(check_workflow(workflow, |class| {
            snapshot.schemas.get(class)
        }))
    }

    /// What ComfyUI would refuse in `workflow` by the kept schemas alone (fetched if none are
    /// kept): cheap enough to ask of every server for every held job.
    pub async fn check_kept(&self, workflow: &Workflow) -> Result<Vec<InputProblem>, RelayError> {
        let snapshot = self.current(false).await?;
        Ok(check_workflow(workflow, |class| {
            snapshot.schemas.get(class)
        }))
    }

    /// `editor` (a workflow in the editor's format) as ComfyUI's frontend would queue it, with
    /// this ComfyUI's widget orders. Classes it lacks are fetched again once (a node installed
    /// since) before they are named.
    pub async fn to_api(
        &self,
        editor: &Value,
    ) -> Result<Result<Workflow, ConvertError>, RelayError> {
        let snapshot = self.current(false).await?;
        let converted = match editor::to_api(editor, &snapshot.schemas) {
            Err(ConvertError::MissingNodes { classes }) => {
                for class in &classes {
                    self.refresh_class(class).await?;
                }
                let snapshot = self.current(false).await?;
                editor::to_api(editor, &snapshot.schemas)
            }
            converted => converted,
        };
        Ok(converted.and_then(|api| {
            Workflow::from_value(Value::Object(api))
                .map_err(|error| ConvertError::Malformed(error.to_string()))
        }))
    }

    /// The nodes of `workflow` that take an uploaded picture (LoadImage and its kin), in
    /// display order, each with the input that names the picture.
    pub async fn image_inputs(
        &self,
        workflow: &Workflow,
    ) -> Result<Vec<(String, String)>, RelayError> {
        let snapshot = self.current(false).await?;
        Ok(workflow
            .nodes_in_display_order()
            .into_iter()
            .filter_map(|(id, node)| {
                let input = snapshot.schemas.get(&node.class_type)?.image_input()?;
                Some((id.to_owned(), input.to_owned()))
            })
            .collect())
    }
}

/// `GET /api/object_info` query.
#[derive(Deserialize)]
pub struct ObjectInfoQuery {
    /// Fetch it from ComfyUI again first.
    #[serde(default)]
    refresh: bool,
    /// Only these classes, comma-separated (what a phone needs for one workflow).
    classes: Option<String>,
}

/// `GET /api/object_info[?refresh=true][&classes=A,B]`: the kept `/object_info` (fetched if
/// needed), whole and gzipped, or only some classes.
pub async fn serve(
    State(object_info): State<Arc<ObjectInfo>>,
    Query(query): Query<ObjectInfoQuery>,
    headers: axum::http::HeaderMap,
) -> Result<Response, RelayError> {
    let snapshot = object_info.current(query.refresh).await?;
    if let Some(classes) = query.classes {
        let subset: Map<String, Value> = classes
            .split(',')
            .filter_map(|class| {
                let class = class.trim();
                snapshot
                    .raw
                    .get(class)
                    .map(|info| (class.to_owned(), info.clone()))
            })
            .collect();
        return Ok(Json(Value::Object(subset)).into_response());
    }
    let accepts_gzip = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("gzip"));
    let mut response = (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        snapshot.json_gz.clone(),
    )
        .into_response();
    if accepts_gzip {
        response.headers_mut().insert(
            header::CONTENT_ENCODING,
            header::HeaderValue::from_static("gzip"),
        );
        return Ok(response);
    }
    // Rare: a client that does not take gzip gets it plain.
    let plain = serde_json::to_vec(&snapshot.raw).expect("JSON serialises");
    Ok((
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        plain,
    )
        .into_response())
}

/// `GET /api/object_info/{class}`: one class, fetched again from ComfyUI and kept.
pub async fn serve_class(
    State(object_info): State<Arc<ObjectInfo>>,
    axum::extract::Path(class): axum::extract::Path<String>,
) -> Result<Json<Value>, RelayError> {
    object_info.refresh_class(&class).await?;
    let snapshot = object_info.current(false).await?;
    let mut found = Map::new();
    if let Some(info) = snapshot.raw.get(&class) {
        found.insert(class, info.clone());
    }
    Ok(Json(Value::Object(found)))
}
