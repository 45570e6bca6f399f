//! The recorded traffic the double answers from, embedded at compile time.

use std::collections::HashMap;
use std::io::Read as _;
use std::sync::LazyLock;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Map, Value};

macro_rules! exchanges {
    ($($name:literal),* $(,)?) => {
        [$(($name, include_str!(concat!("../../fixtures/comfyui/http/", $name, ".json")))),*]
    };
}

macro_rules! transcripts {
    ($($name:literal),* $(,)?) => {
        [$(($name, include_str!(concat!("../../fixtures/comfyui/ws/", $name, ".jsonl")))),*]
    };
}

macro_rules! output_recordings {
    ($($name:literal),* $(,)?) => {
        [$(include_str!(concat!("../../fixtures/comfyui/outputs/", $name, ".json"))),*]
    };
}

const OBJECT_INFO_GZ: &[u8] = include_bytes!("../../fixtures/comfyui/object_info_full.json.gz");

/// One frame a recorded run sent, and when, relative to the run's first frame.
#[derive(Debug, Clone)]
pub struct TimedFrame {
    /// Time since the run's first frame.
    pub at: Duration,
    /// The frame.
    pub frame: RecordedFrame,
}

/// A recorded frame's content.
#[derive(Debug, Clone)]
pub enum RecordedFrame {
    /// A JSON text frame.
    Text(Value),
    /// A binary frame, whole.
    Binary(Vec<u8>),
}

/// A recorded run: the frames ComfyUI sent from queueing to the end, for one prompt.
#[derive(Debug, Clone)]
pub struct Transcript {
    /// The prompt id in the recording, replaced by the double's own.
    pub prompt_id: String,
    /// The run's frames, without the connection's opening `status` and `feature_flags`.
    pub frames: Vec<TimedFrame>,
}

/// Everything recorded, parsed once.
pub struct Recorded {
    /// `GET /object_info` of the recording server.
    pub object_info: Map<String, Value>,
    exchanges: HashMap<&'static str, Value>,
    transcripts: HashMap<&'static str, Transcript>,
    executed_by_class: HashMap<String, Value>,
}

/// The recordings, parsed on first use.
pub static RECORDED: LazyLock<Recorded> = LazyLock::new(Recorded::load);

impl Recorded {
    fn load() -> Self {
        let mut json = String::new();
        flate2::read::GzDecoder::new(OBJECT_INFO_GZ)
            .read_to_string(&mut json)
            .expect("object_info_full.json.gz is gzip");
        let object_info = serde_json::from_str(&json).expect("object_info is a JSON object");
        let exchanges = exchanges!(
            "get_system_stats",
            "get_features",
            "get_embeddings",
            "get_models_checkpoints",
            "prompt_malformed_json",
            "prompt_no_prompt_key",
            "prompt_unknown_class",
            "prompt_no_output_node",
            "prompt_out_of_range",
            "upload_too_large",
            "history_one",
            "history_error",
            "history_interrupted",
            "prompt_same_client_id",
        )
        .into_iter()
        .map(|(name, text)| (name, serde_json::from_str(text).expect("exchange is JSON")))
        .collect();
        let transcripts = transcripts!(
            "run_success_preview_metadata",
            "run_execution_error",
            "run_interrupted_global",
            "same_client_id_new_socket",
        )
        .into_iter()
        .map(|(name, text)| (name, Transcript::parse(text)))
        .collect();
        let mut executed_by_class = HashMap::new();
        let recordings = output_recordings!(
            "text",
            "animated_webp",
            "animated_png",
            "video",
            "webm",
            "audio",
            "audio_mp3_opus",
            "latent",
            "mask_preview",
        );
        for text in recordings {
            let recording: Value = serde_json::from_str(text).expect("an output recording is JSON");
            for message in recording["ws"].as_array().expect("its messages") {
                if message["type"] == "executed" {
                    let node = message["data"]["node"].as_str().expect("the node");
                    let class = recording["prompt"][node]["class_type"]
                        .as_str()
                        .expect("a class");
                    executed_by_class.insert(class.to_owned(), message.clone());
                }
            }
        }
        Self {
            object_info,
            exchanges,
            transcripts,
            executed_by_class,
        }
    }

    /// The `executed` message a real node of `class` sent (SaveVideo, PreviewAny, SaveAudio,
    /// ...: `tests/fixtures/comfyui/outputs/`), if one was recorded.
    pub fn executed_of(&self, class: &str) -> Option<&Value> {
        self.executed_by_class.get(class)
    }

    /// A recorded exchange's response JSON body.
    pub fn response_json(&self, exchange: &str) -> Value {
        self.exchange(exchange)["response"]["json"].clone()
    }

    /// A recorded exchange's request JSON body.
    pub fn request_json(&self, exchange: &str) -> Value {
        self.exchange(exchange)["request"]["json"].clone()
    }

    /// A recorded exchange's response text body.
    pub fn response_text(&self, exchange: &str) -> String {
        self.exchange(exchange)["response"]["text"]
            .as_str()
            .expect("a text response")
            .to_owned()
    }

    fn exchange(&self, name: &str) -> &Value {
        self.exchanges
            .get(name)
            .unwrap_or_else(|| panic!("exchange {name} is not embedded"))
    }

    /// A recorded run.
    pub fn transcript(&self, name: &str) -> &Transcript {
        self.transcripts
            .get(name)
            .unwrap_or_else(|| panic!("transcript {name} is not embedded"))
    }
}

impl Transcript {
    fn parse(jsonl: &str) -> Self {
        let mut frames = Vec::new();
        let mut start_ms = None;
        for line in jsonl.lines().filter(|line| !line.trim().is_empty()) {
            let line: Value = serde_json::from_str(line).expect("transcript line is JSON");
            if line["dir"] != "recv" {
                continue;
            }
            let frame = match (line.get("text"), line.get("binary_b64")) {
                (Some(text), _) => RecordedFrame::Text(text.clone()),
                (None, Some(b64)) => RecordedFrame::Binary(
                    base64::engine::general_purpose::STANDARD
                        .decode(b64.as_str().expect("base64 text"))
                        .expect("valid base64"),
                ),
                (None, None) => continue,
            };
            // The connection's own opening frames are not part of the run.
            if let RecordedFrame::Text(text) = &frame
                && (text["type"] == "feature_flags" || text["data"].get("sid").is_some())
            {
                continue;
            }
            let ms = line["ms"].as_u64().expect("ms");
            let start = *start_ms.get_or_insert(ms);
            frames.push(TimedFrame {
                at: Duration::from_millis(ms - start),
                frame,
            });
        }
        let prompt_id = frames
            .iter()
            .find_map(|f| match &f.frame {
                RecordedFrame::Text(text) => text["data"]["prompt_id"].as_str().map(str::to_owned),
                RecordedFrame::Binary(_) => None,
            })
            .expect("a run names its prompt");
        Self { prompt_id, frames }
    }

    /// The node ids of the run, in the order they first execute.
    pub fn executed_nodes(&self) -> Vec<String> {
        let mut nodes: Vec<String> = Vec::new();
        for frame in &self.frames {
            if let RecordedFrame::Text(text) = &frame.frame
                && text["type"] == "executing"
                && let Some(node) = text["data"]["node"].as_str()
                && !nodes.iter().any(|n| n == node)
            {
                nodes.push(node.to_owned());
            }
        }
        nodes
    }
}
