//! The text frames ComfyUI sends on `GET /ws?clientId=...`.
//!
//! Each frame is `{"type": ..., "data": {...}}`. A run's frames arrive in this order (recorded in
//! `ws/run_success_preview_metadata.jsonl`): `status`, `execution_start`, `execution_cached`, then
//! per node `progress_state` and `executing`, per step `progress_state`, a binary preview and
//! `progress`, `executed` for output nodes, and finally `execution_success` (or
//! `execution_error` / `execution_interrupted`), `status` and `executing {node: null}`.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// One text frame from ComfyUI's WebSocket, parsed by its `type`.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerMessage {
    /// Queue length; the first one after connecting also carries the socket's `sid`.
    Status(Status),
    /// The server's answer to our `feature_flags` message.
    FeatureFlags(FeatureFlags),
    /// A prompt started executing.
    ExecutionStart(ExecutionStart),
    /// Nodes whose cached outputs are reused and that will not run.
    ExecutionCached(ExecutionCached),
    /// The node that runs now; `node: None` means the prompt is done.
    Executing(Executing),
    /// Step progress inside the running node.
    Progress(Progress),
    /// Progress of every node of the prompt seen so far (newer ComfyUI).
    ProgressState(ProgressState),
    /// An output node finished and produced files.
    Executed(Executed),
    /// The prompt ran to the end.
    ExecutionSuccess(ExecutionSuccess),
    /// A node raised an exception; the prompt stopped.
    ExecutionError(ExecutionError),
    /// The prompt was interrupted.
    ExecutionInterrupted(ExecutionInterrupted),
    /// A message type this code does not know. Kept, never an error.
    Unknown {
        /// The frame's `type`.
        kind: String,
        /// The frame's `data`, untouched.
        data: serde_json::Value,
    },
}

/// Why a text frame could not be read as a [`ServerMessage`].
#[derive(Debug, thiserror::Error)]
#[error("ComfyUI sent a WebSocket message that is not {expected}: {source}")]
pub struct MessageError {
    expected: &'static str,
    #[source]
    source: serde_json::Error,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

#[derive(Serialize)]
struct EnvelopeOut<'a, T: Serialize> {
    #[serde(rename = "type")]
    kind: &'a str,
    data: &'a T,
}

impl ServerMessage {
    /// Parses one text frame. Unknown `type`s become [`ServerMessage::Unknown`]; a known type
    /// whose `data` does not fit its recorded shape is an error.
    pub fn parse(text: &str) -> Result<Self, MessageError> {
        let envelope: Envelope<'_> = serde_json::from_str(text).map_err(|source| MessageError {
            expected: "a {type, data} object",
            source,
        })?;
        let data = envelope.data.map_or("null", RawValue::get);
        fn body<'a, T: Deserialize<'a>>(
            data: &'a str,
            expected: &'static str,
        ) -> Result<T, MessageError> {
            serde_json::from_str(data).map_err(|source| MessageError { expected, source })
        }
        Ok(match envelope.kind.as_ref() {
            "status" => Self::Status(body(data, "a status")?),
            "feature_flags" => Self::FeatureFlags(body(data, "feature flags")?),
            "execution_start" => Self::ExecutionStart(body(data, "an execution_start")?),
            "execution_cached" => Self::ExecutionCached(body(data, "an execution_cached")?),
            "executing" => Self::Executing(body(data, "an executing")?),
            "progress" => Self::Progress(body(data, "a progress")?),
            "progress_state" => Self::ProgressState(body(data, "a progress_state")?),
            "executed" => Self::Executed(body(data, "an executed")?),
            "execution_success" => Self::ExecutionSuccess(body(data, "an execution_success")?),
            "execution_error" => Self::ExecutionError(body(data, "an execution_error")?),
            "execution_interrupted" => {
                Self::ExecutionInterrupted(body(data, "an execution_interrupted")?)
            }
            other => Self::Unknown {
                kind: other.to_owned(),
                data: body(data, "JSON")?,
            },
        })
    }

    /// The frame's `type` as ComfyUI spells it.
    pub fn kind(&self) -> &str {
        match self {
            Self::Status(_) => "status",
            Self::FeatureFlags(_) => "feature_flags",
            Self::ExecutionStart(_) => "execution_start",
            Self::ExecutionCached(_) => "execution_cached",
            Self::Executing(_) => "executing",
            Self::Progress(_) => "progress",
            Self::ProgressState(_) => "progress_state",
            Self::Executed(_) => "executed",
            Self::ExecutionSuccess(_) => "execution_success",
            Self::ExecutionError(_) => "execution_error",
            Self::ExecutionInterrupted(_) => "execution_interrupted",
            Self::Unknown { kind, .. } => kind,
        }
    }

    /// The prompt this message is about, when it names one.
    pub fn prompt_id(&self) -> Option<&str> {
        match self {
            Self::ExecutionStart(m) => Some(&m.prompt_id),
            Self::ExecutionCached(m) => Some(&m.prompt_id),
            Self::Executing(m) => m.prompt_id.as_deref(),
            Self::Progress(m) => m.prompt_id.as_deref(),
            Self::ProgressState(m) => Some(&m.prompt_id),
            Self::Executed(m) => Some(&m.prompt_id),
            Self::ExecutionSuccess(m) => Some(&m.prompt_id),
            Self::ExecutionError(m) => Some(&m.prompt_id),
            Self::ExecutionInterrupted(m) => Some(&m.prompt_id),
            Self::Status(_) | Self::FeatureFlags(_) | Self::Unknown { .. } => None,
        }
    }

    /// Serialises back to the `{type, data}` text ComfyUI sends.
    pub fn to_json(&self) -> String {
        fn out<T: Serialize>(kind: &str, data: &T) -> String {
            serde_json::to_string(&EnvelopeOut { kind, data })
                .expect("message types serialise infallibly")
        }
        let kind = self.kind();
        match self {
            Self::Status(d) => out(kind, d),
            Self::FeatureFlags(d) => out(kind, d),
            Self::ExecutionStart(d) => out(kind, d),
            Self::ExecutionCached(d) => out(kind, d),
            Self::Executing(d) => out(kind, d),
            Self::Progress(d) => out(kind, d),
            Self::ProgressState(d) => out(kind, d),
            Self::Executed(d) => out(kind, d),
            Self::ExecutionSuccess(d) => out(kind, d),
            Self::ExecutionError(d) => out(kind, d),
            Self::ExecutionInterrupted(d) => out(kind, d),
            Self::Unknown { data, .. } => out(kind, data),
        }
    }
}

/// `status`: how many prompts are queued or running.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// The queue counter.
    pub status: QueueInfo,
    /// The socket's client id; only on the first `status` after connecting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
}

/// The `status` payload, also the body of `GET /prompt`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueInfo {
    /// The counter itself.
    pub exec_info: ExecInfo,
}

/// Prompts queued or running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecInfo {
    /// Pending plus running prompts.
    pub queue_remaining: u64,
}

/// What the server supports: the WS `feature_flags` reply and the body of `GET /features`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FeatureFlags {
    /// Previews come as type-4 binary frames with JSON metadata naming their prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supports_preview_metadata: Option<bool>,
    /// The largest request body ComfyUI accepts, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_upload_size: Option<u64>,
}

impl FeatureFlags {
    /// The message a client sends first to ask for previews with metadata.
    pub fn client_hello() -> String {
        ServerMessage::FeatureFlags(FeatureFlags {
            supports_preview_metadata: Some(true),
            max_upload_size: None,
        })
        .to_json()
    }
}

/// `execution_start`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionStart {
    /// The prompt.
    pub prompt_id: String,
    /// Milliseconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<u64>,
}

/// `execution_cached`: nodes that will not run because their outputs are cached.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionCached {
    /// Node ids.
    pub nodes: Vec<String>,
    /// The prompt.
    pub prompt_id: String,
    /// Milliseconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<u64>,
}

/// `executing`: the node that runs now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Executing {
    /// The node, or `None` once the prompt is done.
    pub node: Option<String>,
    /// The node as shown in the UI (differs inside subgraphs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_node: Option<String>,
    /// The prompt; missing in the bare `executing` a reconnecting socket gets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_id: Option<String>,
}

/// `progress`: a step inside the running node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Steps done.
    pub value: f64,
    /// Steps in all.
    pub max: f64,
    /// The prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_id: Option<String>,
    /// The node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// `progress_state`: every node of the prompt that has started, with its progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProgressState {
    /// The prompt.
    pub prompt_id: String,
    /// Node id → its progress.
    pub nodes: BTreeMap<String, NodeProgress>,
}

/// One node's entry in `progress_state`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeProgress {
    /// Steps done.
    pub value: f64,
    /// Steps in all.
    pub max: f64,
    /// Running or finished.
    pub state: NodeState,
    /// The node.
    pub node_id: String,
    /// The prompt.
    pub prompt_id: String,
    /// The node as shown in the UI.
    pub display_node_id: Option<String>,
    /// The subgraph node containing it, if any.
    pub parent_node_id: Option<String>,
    /// The node in the expanded graph.
    pub real_node_id: Option<String>,
}

/// A node's state in `progress_state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    /// Not started yet.
    Pending,
    /// Running now.
    Running,
    /// Done.
    Finished,
    /// A state a newer ComfyUI may add.
    #[serde(other)]
    Unknown,
}

/// `executed`: an output node produced files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Executed {
    /// The node.
    pub node: String,
    /// The node as shown in the UI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_node: Option<String>,
    /// What it produced.
    pub output: NodeOutput,
    /// The prompt.
    pub prompt_id: String,
}

/// What an output node produced: images, and whatever else custom nodes add (kept as is).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeOutput {
    /// Image files, fetched with `GET /view`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<ImageRef>,
    /// Other outputs (`gifs`, `audio`, `text`, ...), untouched.
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

/// A file ComfyUI holds, addressed as `GET /view?filename&subfolder&type`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ImageRef {
    /// File name.
    pub filename: String,
    /// Folder inside the type's directory; often empty.
    #[serde(default)]
    pub subfolder: String,
    /// `output`, `temp` or `input`.
    #[serde(rename = "type")]
    pub kind: String,
}

impl ImageRef {
    /// The file ComfyUI really opens for this reference. A name ending in `[output]`, `[input]`
    /// or `[temp]` (as LoadImage values may, `x.png [output]`) means that folder whatever the
    /// `type` says, and ComfyUI cuts the mark and the character before it
    /// (`folder_paths.annotated_filepath`, used by `/view` and `/upload/mask`). Who may reach
    /// a file is decided on this form; ComfyUI is sent the reference as it came, which it reads
    /// the same way.
    pub fn as_comfyui_opens(mut self) -> Self {
        for (mark, kind) in [
            ("[output]", "output"),
            ("[input]", "input"),
            ("[temp]", "temp"),
        ] {
            if self.filename.ends_with(mark) {
                let keep = self.filename.chars().count().saturating_sub(mark.len() + 1);
                self.filename = self.filename.chars().take(keep).collect();
                kind.clone_into(&mut self.kind);
                break;
            }
        }
        self
    }

    /// The value a LoadImage `image` input takes to load this file: `subfolder/name`, or the
    /// name alone.
    pub fn load_image_value(&self) -> String {
        if self.subfolder.is_empty() {
            self.filename.clone()
        } else {
            format!("{}/{}", self.subfolder, self.filename)
        }
    }

    /// The file a LoadImage value names, as ComfyUI reads it: `subfolder/name` in the input
    /// folder, or the folder a mark at its end names ([`Self::as_comfyui_opens`]).
    pub fn from_load_image_value(value: &str) -> Self {
        let (subfolder, filename) = value.rsplit_once('/').unwrap_or(("", value));
        Self {
            filename: filename.to_owned(),
            subfolder: subfolder.to_owned(),
            kind: "input".to_owned(),
        }
        .as_comfyui_opens()
    }

    /// The query string for `GET /view`.
    pub fn view_query(&self) -> String {
        format!(
            "filename={}&subfolder={}&type={}",
            percent_encode(&self.filename),
            percent_encode(&self.subfolder),
            percent_encode(&self.kind)
        )
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub(crate) fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `execution_success`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionSuccess {
    /// The prompt.
    pub prompt_id: String,
    /// Milliseconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<u64>,
}

/// `execution_error`: a node raised; nothing after it ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionError {
    /// The prompt.
    pub prompt_id: String,
    /// The node that raised.
    pub node_id: String,
    /// Its class.
    pub node_type: String,
    /// Nodes that had finished.
    #[serde(default)]
    pub executed: Vec<String>,
    /// The exception's message.
    pub exception_message: String,
    /// The exception's class.
    pub exception_type: String,
    /// The Python traceback, a line each.
    #[serde(default)]
    pub traceback: Vec<String>,
    /// The node's inputs when it raised.
    #[serde(default)]
    pub current_inputs: serde_json::Value,
    /// The outputs computed so far.
    #[serde(default)]
    pub current_outputs: serde_json::Value,
    /// Milliseconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<u64>,
}

/// `execution_interrupted`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionInterrupted {
    /// The prompt.
    pub prompt_id: String,
    /// The node that was running.
    pub node_id: String,
    /// Its class.
    pub node_type: String,
    /// Nodes that had finished.
    #[serde(default)]
    pub executed: Vec<String>,
    /// Milliseconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::comfy::fixtures;

    fn file(filename: &str, kind: &str) -> ImageRef {
        ImageRef {
            filename: filename.into(),
            subfolder: String::new(),
            kind: kind.into(),
        }
    }

    #[test]
    fn a_folder_mark_in_the_name_is_the_folder_comfyui_opens() {
        for (stated, opened) in [
            (file("a.png [output]", "input"), file("a.png", "output")),
            (file("a.png [temp]", "output"), file("a.png", "temp")),
            (file("a.png [input]", "output"), file("a.png", "input")),
            // ComfyUI cuts the character before the mark whatever it is, and only one mark.
            (file("a.png[output]", "input"), file("a.pn", "output")),
            (
                file("a [input] [output]", "temp"),
                file("a [input]", "output"),
            ),
            (file("[output]", "input"), file("", "output")),
            (file("a.png", "input"), file("a.png", "input")),
            (file("é.png [temp]", "input"), file("é.png", "temp")),
        ] {
            assert_eq!(stated.clone().as_comfyui_opens(), opened, "{stated:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn an_input_picture_is_found_again_from_the_value_that_loads_it(
            subfolder in "([a-z0-9_-]{1,8}(/[a-z0-9_-]{1,8}){0,2})?",
            filename in "[a-zA-Z0-9 ._()-]{1,24}",
        ) {
            let input = ImageRef {
                filename,
                subfolder,
                kind: "input".to_owned(),
            };
            let value = input.load_image_value();
            proptest::prop_assert_eq!(ImageRef::from_load_image_value(&value), input);
            let marked = ImageRef::from_load_image_value(&format!("{value} [output]"));
            proptest::prop_assert_eq!(marked.kind.as_str(), "output");
        }

        #[test]
        fn no_name_is_judged_as_a_folder_it_does_not_open(
            base in "[a-zA-Z0-9 ._\\[\\]é-]{0,24}",
            mark in 0usize..4,
            stated in proptest::sample::select(vec!["input", "output", "temp", ""]),
        ) {
            let marks = [("", ""), (" [output]", "output"), (" [input]", "input"), (" [temp]", "temp")];
            let (suffix, folder) = marks[mark];
            let opened = file(&format!("{base}{suffix}"), stated).as_comfyui_opens();
            if suffix.is_empty() {
                // A name that happens to end in a mark opens that mark's folder.
                let folder = [("[output]", "output"), ("[input]", "input"), ("[temp]", "temp")]
                    .iter()
                    .find(|(m, _)| base.ends_with(m))
                    .map_or(stated, |(_, folder)| *folder);
                proptest::prop_assert_eq!(opened.kind.as_str(), folder);
            } else {
                proptest::prop_assert_eq!(opened, file(&base, folder));
            }
        }
    }

    #[test]
    fn every_recorded_text_frame_parses_and_serialises_back_to_the_same_json() {
        let mut seen = std::collections::BTreeSet::new();
        for (name, frame) in fixtures::ws_text_frames() {
            let text = frame.to_string();
            let message =
                ServerMessage::parse(&text).unwrap_or_else(|e| panic!("{name}: {e}\n{text}"));
            assert!(
                !matches!(message, ServerMessage::Unknown { .. }),
                "{name}: recorded type {} parsed as unknown",
                message.kind()
            );
            seen.insert(message.kind().to_owned());
            let back: serde_json::Value = serde_json::from_str(&message.to_json()).unwrap();
            assert_eq!(
                fixtures::numbers_as_f64(back),
                fixtures::numbers_as_f64(frame),
                "{name}: round trip changed the frame"
            );
        }
        for kind in [
            "status",
            "feature_flags",
            "execution_start",
            "execution_cached",
            "executing",
            "progress",
            "progress_state",
            "executed",
            "execution_success",
            "execution_error",
            "execution_interrupted",
        ] {
            assert!(seen.contains(kind), "no recorded frame of type {kind}");
        }
    }

    #[test]
    fn an_unknown_message_type_is_kept_not_rejected() {
        let message = ServerMessage::parse(r#"{"type":"crystools.monitor","data":{"cpu":3}}"#)
            .expect("unknown types parse");
        assert_eq!(message.kind(), "crystools.monitor");
        assert_eq!(message.prompt_id(), None);
    }

    #[test]
    fn extra_fields_from_a_newer_comfyui_are_ignored() {
        let message = ServerMessage::parse(
            r#"{"type":"execution_success","data":{"prompt_id":"p","timestamp":1,"new":true}}"#,
        )
        .unwrap();
        assert_eq!(message.prompt_id(), Some("p"));
    }

    #[test]
    fn a_known_type_with_the_wrong_shape_is_an_error_that_names_it() {
        let error = ServerMessage::parse(r#"{"type":"progress","data":{"value":"x"}}"#)
            .expect_err("wrong shape");
        assert!(error.to_string().contains("a progress"), "{error}");
    }

    #[test]
    fn the_bare_executing_after_a_reconnect_has_no_prompt_id() {
        let message = ServerMessage::parse(r#"{"type":"executing","data":{"node":"2"}}"#).unwrap();
        let ServerMessage::Executing(executing) = message else {
            panic!("not executing")
        };
        assert_eq!(executing.node.as_deref(), Some("2"));
        assert_eq!(executing.prompt_id, None);
    }

    #[test]
    fn view_query_percent_encodes_names() {
        let image = ImageRef {
            filename: "a b&c.png".into(),
            subfolder: String::new(),
            kind: "output".into(),
        };
        assert_eq!(
            image.view_query(),
            "filename=a%20b%26c.png&subfolder=&type=output"
        );
    }
}
