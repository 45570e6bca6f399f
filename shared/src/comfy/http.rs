//! ComfyUI's HTTP bodies (recorded in `tests/fixtures/comfyui/http/`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ws::{Executed, ImageRef, NodeOutput, ServerMessage};
use crate::workflow::Workflow;

/// The body of `POST /prompt`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptRequest {
    /// The API-format workflow to run.
    pub prompt: Workflow,
    /// The WebSocket client that will receive the run's events. Without it nobody does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Passed through to the run (`preview_method`, `extra_pnginfo`, ...).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub extra_data: serde_json::Map<String, serde_json::Value>,
    /// The id the run is to have. ComfyUI takes a given one (`server.py`:
    /// `json_data.get("prompt_id", uuid4())`) and makes one without it; an old ComfyUI that
    /// ignores it answers with its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_id: Option<String>,
}

/// The body of `POST /interrupt`: without a prompt id it stops whatever runs; with one, only
/// that prompt (and nothing when another runs).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InterruptRequest {
    /// The prompt to stop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_id: Option<String>,
}

/// The body of `POST /queue` and `POST /history`: forgets the prompts of `delete`, or with
/// `clear` all of them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QueueEdit {
    /// Prompt ids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delete: Vec<String>,
    /// All of them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub clear: bool,
}

/// `POST /prompt` → 200.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptAccepted {
    /// The id every later event and `/history` entry carries.
    pub prompt_id: String,
    /// Its place number in the queue.
    pub number: i64,
    /// Empty when accepted.
    #[serde(default)]
    pub node_errors: serde_json::Map<String, serde_json::Value>,
}

/// `POST /prompt` → 400: why ComfyUI refused to queue the prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptRejected {
    /// The overall reason.
    pub error: PromptError,
    /// Per node, what is wrong with its inputs.
    #[serde(default)]
    pub node_errors: BTreeMap<String, NodeErrors>,
}

/// An error as ComfyUI reports one: the overall reason of a [`PromptRejected`]
/// ([`PromptError`]) and each input's failure ([`ValidationError`]) have this shape, with
/// context of their own in `extra_info`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComfyError<Extra> {
    /// Its kind: `prompt_outputs_failed_validation`, `value_smaller_than_min`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// A sentence.
    pub message: String,
    /// More context, often empty (for an input, often its name or a longer explanation).
    #[serde(default)]
    pub details: String,
    /// Structured context.
    #[serde(default)]
    pub extra_info: Extra,
}

/// The overall reason in a [`PromptRejected`].
pub type PromptError = ComfyError<serde_json::Value>;

/// What is wrong with one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeErrors {
    /// One entry per bad input.
    pub errors: Vec<ValidationError>,
    /// Output nodes that depend on it.
    #[serde(default)]
    pub dependent_outputs: Vec<String>,
    /// The node's class.
    pub class_type: String,
}

/// One validation failure, for example `value_smaller_than_min`; its `extra_info` names the
/// input (`input_name`) and the value received.
pub type ValidationError = ComfyError<ValidationExtra>;

/// Structured context of a [`ValidationError`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ValidationExtra {
    /// The input concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_name: Option<String>,
    /// Everything else (`input_config`, `received_value`, ...).
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

impl PromptRejected {
    /// One line per problem, naming the node and input, for people.
    pub fn describe(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for (node_id, node) in &self.node_errors {
            for error in &node.errors {
                let input = error
                    .extra_info
                    .input_name
                    .as_deref()
                    .map(|name| format!(" input \"{name}\""))
                    .unwrap_or_default();
                let details = if error.details.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", error.details)
                };
                lines.push(format!(
                    "node {node_id} ({}){input}: {}{details}",
                    node.class_type, error.message
                ));
            }
        }
        if lines.is_empty() {
            let details = if self.error.details.is_empty() {
                String::new()
            } else {
                format!(" ({})", self.error.details)
            };
            lines.push(format!("{}{details}", self.error.message));
        }
        lines
    }
}

/// The `original_ref` field of `POST /upload/mask` (JSON): the picture a mask is painted over,
/// which ComfyUI opens and saves again with the mask as its alpha channel. ComfyUI reads `type`
/// as `output` when it is missing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaskOriginal {
    /// File name (a folder mark such as ` [output]` included, as ComfyUI reads it).
    pub filename: String,
    /// Folder inside the type's directory.
    #[serde(default)]
    pub subfolder: String,
    /// `input`, `temp` or `output`.
    #[serde(rename = "type", default = "output_type")]
    pub kind: String,
}

fn output_type() -> String {
    "output".to_owned()
}

impl MaskOriginal {
    /// The file it names, as stated.
    pub fn file(&self) -> ImageRef {
        ImageRef {
            filename: self.filename.clone(),
            subfolder: self.subfolder.clone(),
            kind: self.kind.clone(),
        }
    }
}

/// `POST /upload/image` (and `/upload/mask`) → 200: where ComfyUI stored the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadedImage {
    /// The stored name; may differ from the one sent (`phone (1).png`).
    pub name: String,
    /// Folder inside the type's directory.
    #[serde(default)]
    pub subfolder: String,
    /// `input`, `temp` or `output`.
    #[serde(rename = "type")]
    pub kind: String,
}

impl UploadedImage {
    /// The file stored, as `/view` names it.
    pub fn file(&self) -> ImageRef {
        ImageRef {
            filename: self.name.clone(),
            subfolder: self.subfolder.clone(),
            kind: self.kind.clone(),
        }
    }

    /// The value a LoadImage `image` input takes to load this file.
    pub fn load_image_value(&self) -> String {
        self.file().load_image_value()
    }
}

/// `GET /system_stats`, the parts Comfy Relay reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SystemStats {
    /// The machine and ComfyUI's version.
    pub system: SystemInfo,
    /// The devices it runs on (a GPU, or `cpu`).
    #[serde(default)]
    pub devices: Vec<ComputeDevice>,
}

/// One entry of [`SystemStats::devices`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComputeDevice {
    /// For example `cuda:0 NVIDIA GeForce RTX 4090 : cudaMallocAsync`, or `cpu`.
    pub name: String,
    /// Its memory in bytes.
    #[serde(default)]
    pub vram_total: u64,
    /// Its free memory in bytes.
    #[serde(default)]
    pub vram_free: u64,
}

/// The `system` object of [`SystemStats`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SystemInfo {
    /// For example `0.3.64`; missing on old versions.
    #[serde(default)]
    pub comfyui_version: Option<String>,
    /// For example `posix`.
    #[serde(default)]
    pub os: Option<String>,
}

/// `GET /history/{id}` → `{id: entry}`; an unknown id gives `{}`.
pub type History = BTreeMap<String, HistoryEntry>;

/// One finished (or failed, or interrupted) prompt in `/history`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// `[number, prompt_id, graph, extra_data, outputs_to_execute]`.
    pub prompt: QueueItem,
    /// Per output node, what it produced.
    #[serde(default)]
    pub outputs: BTreeMap<String, NodeOutput>,
    /// How it ended.
    pub status: HistoryStatus,
}

impl HistoryEntry {
    /// The run's events as recorded in the history, in order (unknown or malformed ones
    /// skipped).
    pub fn events(&self) -> impl Iterator<Item = ServerMessage> + '_ {
        self.status.messages.iter().filter_map(|(kind, data)| {
            let frame = serde_json::json!({ "type": kind, "data": data });
            ServerMessage::parse(&frame.to_string()).ok()
        })
    }

    /// What a client that missed the run would have heard: an `executed` per output node,
    /// then the recorded events.
    pub fn replay(&self, prompt_id: &str) -> Vec<ServerMessage> {
        let outputs = self.outputs.iter().map(|(node, output)| {
            ServerMessage::Executed(Executed {
                node: node.clone(),
                display_node: None,
                output: output.clone(),
                prompt_id: prompt_id.to_owned(),
            })
        });
        outputs.chain(self.events()).collect()
    }

    /// Whether ComfyUI says the run succeeded.
    pub fn succeeded(&self) -> bool {
        self.status.status_str == "success"
    }
}

/// How a prompt in `/history` ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryStatus {
    /// `success` or `error` (an interrupt is an `error` with `execution_interrupted` inside).
    pub status_str: String,
    /// Whether it ran to the end.
    pub completed: bool,
    /// The run's events, as `[type, data]` pairs.
    #[serde(default)]
    pub messages: Vec<(String, serde_json::Value)>,
}

/// `[number, prompt_id, graph, extra_data, outputs_to_execute]`, as in `/queue` and `/history`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueItem(
    /// The queue number.
    pub i64,
    /// The prompt id.
    pub String,
    /// The workflow.
    pub serde_json::Value,
    /// `extra_data`, including `client_id`.
    pub serde_json::Value,
    /// The output nodes to execute.
    pub Vec<String>,
);

impl QueueItem {
    /// The prompt id.
    pub fn prompt_id(&self) -> &str {
        &self.1
    }
}

/// `GET /queue`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Queue {
    /// The prompt running now (zero or one).
    pub queue_running: Vec<QueueItem>,
    /// Prompts waiting, in no guaranteed order.
    pub queue_pending: Vec<QueueItem>,
}

/// What ComfyUI's `/history` and `/queue` say of a prompt whose end was not heard live (the
/// socket dropped, or another client took it): the one rule `comfy-relay run` and the relay's
/// jobs both follow.
#[derive(Debug, PartialEq)]
pub enum Verdict<'a> {
    /// It ended: replay the entry ([`HistoryEntry::replay`]); if no end event is among its
    /// messages, [`HistoryEntry::succeeded`] says how it ended.
    Ended(&'a HistoryEntry),
    /// It is running.
    Running,
    /// It waits in the queue.
    Waiting,
    /// ComfyUI knows it no more (it restarted, or the prompt was taken off its queue): lost.
    Forgotten,
}

/// The verdict on `prompt_id` from its history entry (if ComfyUI has one) and the queue.
pub fn verdict<'a>(
    prompt_id: &str,
    history: Option<&'a HistoryEntry>,
    queue: &Queue,
) -> Verdict<'a> {
    let holds = |items: &[QueueItem]| items.iter().any(|item| item.prompt_id() == prompt_id);
    match history {
        Some(entry) => Verdict::Ended(entry),
        None if holds(&queue.queue_running) => Verdict::Running,
        None if holds(&queue.queue_pending) => Verdict::Waiting,
        None => Verdict::Forgotten,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::comfy::fixtures;

    #[test]
    fn a_prompt_is_ended_by_its_history_else_placed_by_the_queue_else_forgotten() {
        let queue: Queue = serde_json::from_value(response_json("get_queue_busy")).unwrap();
        let running = queue.queue_running[0].prompt_id().to_owned();
        let waiting = queue.queue_pending[0].prompt_id().to_owned();
        let history: History = serde_json::from_value(response_json("history_one")).unwrap();
        let (ended, entry) = history.iter().next().unwrap();

        assert_eq!(verdict(ended, Some(entry), &queue), Verdict::Ended(entry));
        assert_eq!(verdict(&running, None, &queue), Verdict::Running);
        assert_eq!(verdict(&waiting, None, &queue), Verdict::Waiting);
        assert_eq!(verdict("not-known", None, &queue), Verdict::Forgotten);
    }

    fn response_json(name: &str) -> serde_json::Value {
        fixtures::http(name)["response"]["json"].clone()
    }

    #[test]
    fn recorded_accepted_prompts_parse() {
        for name in [
            "prompt_ok",
            "prompt_ok_legacy",
            "prompt_cached_rerun",
            "prompt_queue_a",
        ] {
            let accepted: PromptAccepted = serde_json::from_value(response_json(name)).unwrap();
            assert!(!accepted.prompt_id.is_empty(), "{name}");
            assert!(accepted.node_errors.is_empty(), "{name}");
        }
    }

    #[test]
    fn recorded_prompt_requests_round_trip() {
        for name in [
            "prompt_ok",
            "prompt_out_of_range",
            "prompt_without_client_id",
        ] {
            let request = fixtures::http(name)["request"]["json"].clone();
            let parsed: PromptRequest = serde_json::from_value(request.clone()).unwrap();
            assert_eq!(serde_json::to_value(&parsed).unwrap(), request, "{name}");
        }
    }

    #[test]
    fn recorded_interrupts_and_queue_and_history_edits_round_trip() {
        for name in [
            "interrupt_global",
            "interrupt_targeted",
            "interrupt_targeted_wrong_id",
        ] {
            let request = fixtures::http(name)["request"]["json"].clone();
            let parsed: InterruptRequest = serde_json::from_value(request.clone()).unwrap();
            assert_eq!(serde_json::to_value(&parsed).unwrap(), request, "{name}");
        }
        for name in ["queue_delete_pending", "history_clear"] {
            let request = fixtures::http(name)["request"]["json"].clone();
            let parsed: QueueEdit = serde_json::from_value(request.clone()).unwrap();
            assert_eq!(serde_json::to_value(&parsed).unwrap(), request, "{name}");
        }
    }

    #[test]
    fn every_recorded_validation_error_parses_and_names_its_input() {
        let cases = [
            (
                "prompt_out_of_range",
                "node 5 (EmptyImage) input \"width\": Value -5 smaller than min of 1",
            ),
            ("prompt_combo_not_in_list", "value_not_in_list"),
            ("prompt_missing_input", "required_input_missing"),
            ("prompt_wrong_type", "invalid_input_type"),
            (
                "prompt_load_missing_image",
                "Invalid image file: does-not-exist.png",
            ),
            ("prompt_bad_link", "exception_during_validation"),
            (
                "prompt_unknown_class",
                "Cannot execute because node NoSuchNode does not exist.",
            ),
            ("prompt_no_output_node", "Prompt has no outputs"),
            (
                "prompt_no_prompt_key",
                "No prompt provided (No prompt provided)",
            ),
        ];
        for (name, expected) in cases {
            let exchange = fixtures::http(name);
            assert_eq!(exchange["response"]["status"], 400, "{name}");
            let rejected: PromptRejected =
                serde_json::from_value(exchange["response"]["json"].clone())
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
            let described = rejected.describe().join("\n");
            let kinds: Vec<_> = rejected
                .node_errors
                .values()
                .flat_map(|n| n.errors.iter().map(|e| e.kind.clone()))
                .collect();
            assert!(
                described.contains(expected) || kinds.iter().any(|k| k == expected),
                "{name}: {described} / {kinds:?}"
            );
            assert!(!described.is_empty(), "{name}");
        }
    }

    #[test]
    fn recorded_uploads_parse_including_renames_and_subfolders() {
        let renamed: UploadedImage =
            serde_json::from_value(response_json("upload_other_content_same_name")).unwrap();
        assert_ne!(renamed.name, "phone.png");
        let sub: UploadedImage = serde_json::from_value(response_json("upload_subfolder")).unwrap();
        assert!(sub.load_image_value().contains('/'), "{sub:?}");
        let plain: UploadedImage = serde_json::from_value(response_json("upload_ok")).unwrap();
        assert_eq!(plain.load_image_value(), "phone.png");
    }

    #[test]
    fn recorded_history_entries_parse_for_success_error_and_interrupt() {
        for (name, status) in [
            ("history_one", "success"),
            ("history_error", "error"),
            ("history_interrupted", "error"),
            ("history_after_sleep", "success"),
        ] {
            let history: History = serde_json::from_value(response_json(name)).unwrap();
            let entry = history
                .values()
                .next()
                .unwrap_or_else(|| panic!("{name}: empty"));
            assert_eq!(entry.status.status_str, status, "{name}");
            assert_eq!(entry.prompt.prompt_id(), history.keys().next().unwrap());
        }
        let list: History = serde_json::from_value(response_json("history_list")).unwrap();
        assert!(list.len() > 1);
    }

    #[test]
    fn recorded_queues_parse() {
        let busy: Queue = serde_json::from_value(response_json("get_queue_busy")).unwrap();
        assert_eq!(busy.queue_running.len(), 1);
        assert_eq!(busy.queue_pending.len(), 1);
        let empty: Queue = serde_json::from_value(response_json("get_queue_empty")).unwrap();
        assert_eq!(empty, Queue::default());
    }

    #[test]
    fn recorded_system_stats_give_the_version() {
        let stats: SystemStats = serde_json::from_value(response_json("get_system_stats")).unwrap();
        assert_eq!(stats.system.comfyui_version.as_deref(), Some("0.3.64"));
    }
}
