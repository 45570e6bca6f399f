//! Runs the double's queue one prompt at a time by replaying a recorded run transcript.
//!
//! Each prompt replays the successful run recorded with the most similar workflow
//! (`invert_slow`, or `empty_image`'s EmptyImage → PreviewImage + SaveImage). Replaying a
//! transcript for another prompt rewrites its prompt id, maps its node ids onto the prompt's
//! nodes (same class first, then by position from the output end, so the step-reporting node
//! lands on the sampler), and names output files after the prompt's `filename_prefix`, as
//! ComfyUI would. An output node whose class was recorded on its own (`fixtures/comfyui/
//! outputs/`: SaveVideo, SaveAudio, PreviewAny, SaveAnimatedWEBP, ...) sends what that node
//! sent, in the transcript's `executed` frame or in one of its own before the run's success.
//! A prompt with a non-zero `fail_at_step` replays the recorded failure; an
//! interrupt ends the replay with the recorded `execution_interrupted` tail. Recorded delays
//! are kept, multiplied by the pace.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use bytes::Bytes;
use serde_json::{Map, Value, json};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::recorded::{RECORDED, RecordedFrame, Transcript};
use super::sockets::{self, Outgoing};
use super::validate::{execution_order, output_nodes};
use super::{Job, Running, Shared, StoredFile, patched_object_info};
use crate::fixtures;

/// How a replay ended, choosing the history template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Success,
    Error,
    Interrupted,
}

/// Takes prompts off the queue and plays them until `stop`; while the double is stalled (a
/// stopped process) it starts none.
pub async fn run(shared: Arc<Shared>, stop: CancellationToken) {
    let mut stalled = shared.stalled.subscribe();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = stalled.wait_for(|stalled| !*stalled) => {}
        }
        let next = shared.lock().pending.pop_front();
        match next {
            Some(job) => play(&shared, job).await,
            None => tokio::select! {
                () = stop.cancelled() => return,
                () = shared.wake_runner.notified() => {}
            },
        }
    }
}

/// Rewrites a recorded run's ids into a job's.
struct Rewrite {
    from_prompt: String,
    to_prompt: String,
    nodes: HashMap<String, String>,
}

/// A recorded run and the workflow it was recorded with.
struct Recording {
    transcript: &'static str,
    workflow: Map<String, Value>,
}

impl Recording {
    fn new(transcript: &'static str, workflow: Value) -> Self {
        let Value::Object(workflow) = workflow else {
            panic!("recorded workflows are objects")
        };
        Self {
            transcript,
            workflow,
        }
    }

    /// How many of the prompt's nodes have a class this recording ran.
    fn similarity(&self, prompt: &Map<String, Value>) -> usize {
        prompt
            .values()
            .filter(|node| {
                self.workflow
                    .values()
                    .any(|r| r["class_type"] == node["class_type"])
            })
            .count()
    }
}

/// The successful runs, best default first, and the recorded failure.
static SUCCESSES: LazyLock<Vec<Recording>> = LazyLock::new(|| {
    vec![
        Recording::new(
            "run_success_preview_metadata",
            serde_json::from_str(fixtures::INVERT_SLOW).expect("JSON"),
        ),
        Recording::new(
            "same_client_id_new_socket",
            RECORDED.request_json("prompt_same_client_id")["prompt"].clone(),
        ),
    ]
});
static FAILURE: LazyLock<Recording> = LazyLock::new(|| {
    Recording::new(
        "run_execution_error",
        serde_json::from_str(fixtures::INVERT_SLOW).expect("JSON"),
    )
});

/// The recording to replay for a job.
fn recording_for(job: &Job) -> &'static Recording {
    if fails(job) {
        return &FAILURE;
    }
    let mut best = &SUCCESSES[0];
    for recording in SUCCESSES.iter().skip(1) {
        if recording.similarity(&job.prompt) > best.similarity(&job.prompt) {
            best = recording;
        }
    }
    best
}

/// Keys whose string value is a node id.
const NODE_FIELDS: [&str; 5] = [
    "node",
    "node_id",
    "display_node",
    "display_node_id",
    "real_node_id",
];

impl Rewrite {
    fn new(transcript: &Transcript, recorded: &Map<String, Value>, job: &Job) -> Self {
        let info = patched_object_info(&[]);
        let recorded_order = execution_order(recorded, &output_nodes(recorded, &info));
        let target_order = execution_order(&job.prompt, &job.outputs);
        let class = |prompt: &Map<String, Value>, id: &str| prompt[id]["class_type"].clone();

        let mut nodes = HashMap::new();
        let mut free: Vec<String> = target_order.clone();
        let mut unmatched = Vec::new();
        for node in &recorded_order {
            match free
                .iter()
                .position(|t| class(&job.prompt, t) == class(recorded, node))
            {
                Some(at) => {
                    nodes.insert(node.clone(), free.remove(at));
                }
                None => unmatched.push(node.clone()),
            }
        }
        for (node, target) in unmatched.iter().rev().zip(free.iter().rev()) {
            nodes.insert(node.clone(), target.clone());
        }
        Self {
            from_prompt: transcript.prompt_id.clone(),
            to_prompt: job.prompt_id.clone(),
            nodes,
        }
    }

    fn node(&self, id: &str) -> String {
        self.nodes.get(id).cloned().unwrap_or_else(|| id.to_owned())
    }

    fn apply(&self, value: &Value) -> Value {
        self.walk(value, None)
    }

    fn walk(&self, value: &Value, key: Option<&str>) -> Value {
        match value {
            Value::String(s) if *s == self.from_prompt => json!(self.to_prompt),
            Value::String(s) if key.is_some_and(|k| NODE_FIELDS.contains(&k)) => {
                json!(self.node(s))
            }
            Value::Number(_) if key == Some("timestamp") => json!(now_ms()),
            Value::Array(items) if matches!(key, Some("nodes" | "executed")) => items
                .iter()
                .map(|i| i.as_str().map_or(i.clone(), |s| json!(self.node(s))))
                .collect(),
            Value::Array(items) => items.iter().map(|i| self.walk(i, None)).collect(),
            Value::Object(map) => {
                let rename_keys = matches!(key, Some("nodes" | "meta" | "outputs"));
                map.iter()
                    .map(|(k, v)| {
                        let k2 = if rename_keys { self.node(k) } else { k.clone() };
                        let v2 = if rename_keys {
                            self.walk(v, None)
                        } else {
                            self.walk(v, Some(k))
                        };
                        (k2, v2)
                    })
                    .collect::<Map<_, _>>()
                    .into()
            }
            other => other.clone(),
        }
    }

    /// A type-4 preview with its metadata rewritten.
    fn preview(&self, frame: &[u8]) -> Bytes {
        let len = u32::from_be_bytes(frame[4..8].try_into().expect("4 bytes")) as usize;
        let metadata: Value =
            serde_json::from_slice(&frame[8..8 + len]).expect("recorded metadata");
        let metadata = serde_json::to_vec(&self.apply(&metadata)).expect("JSON serialises");
        let mut out = frame[..4].to_vec();
        out.extend_from_slice(&u32::try_from(metadata.len()).expect("small").to_be_bytes());
        out.extend_from_slice(&metadata);
        out.extend_from_slice(&frame[8 + len..]);
        Bytes::from(out)
    }
}

/// Sends a text frame as ComfyUI would: `status` to everyone, the rest to the prompt's client,
/// or, for a prompt without client id, only `progress_state` to everyone.
async fn send(shared: &Shared, job: &Job, frame: &Value) {
    let text = Outgoing::Text(frame.to_string());
    match (&job.client_id, frame["type"].as_str()) {
        (_, Some("status")) | (None, Some("progress_state")) => {
            sockets::broadcast(shared, text).await;
        }
        (Some(client), _) => sockets::send_to(shared, client, text).await,
        (None, _) => {}
    }
}

/// Makes an `executed` frame say what the job's node would have made, and stores its files so
/// `/view` serves them: a node whose class has a recorded output (SaveVideo, PreviewAny,
/// SaveAudio, ...) sends that output; files in `output` are named after the prompt's
/// `filename_prefix` (its folder part as the subfolder), keeping their type's file ending.
fn store_outputs(shared: &Shared, job: &Job, frame: &mut Value) {
    let node = frame["data"]["node"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let class = job.prompt.get(&node).and_then(|n| n["class_type"].as_str());
    if let Some(recorded) = class.and_then(|class| RECORDED.executed_of(class)) {
        frame["data"]["output"] = recorded["data"]["output"].clone();
    }
    let prefix = job
        .prompt
        .get(&node)
        .and_then(|n| n["inputs"]["filename_prefix"].as_str());
    let Some(output) = frame["data"]["output"].as_object_mut() else {
        return;
    };
    let mut state = shared.lock();
    let files = output
        .values_mut()
        .filter_map(Value::as_array_mut)
        .flatten()
        .filter(|item| item.get("filename").is_some());
    for file in files {
        let kind = file["type"].as_str().unwrap_or("output").to_owned();
        if let (Some(prefix), "output") = (prefix, kind.as_str()) {
            state.output_counter += 1;
            let recorded = file["filename"].as_str().unwrap_or_default();
            let ending = recorded
                .rsplit_once('.')
                .map_or("png", |(_, ending)| ending)
                .to_owned();
            let (folder, stem) = prefix.rsplit_once('/').unwrap_or(("", prefix));
            file["subfolder"] = json!(folder);
            file["filename"] = json!(format!("{stem}_{:05}_.{ending}", state.output_counter));
        }
        state.files.push(StoredFile {
            kind,
            subfolder: file["subfolder"].as_str().unwrap_or_default().to_owned(),
            name: file["filename"].as_str().unwrap_or_default().to_owned(),
            bytes: Bytes::from_static(fixtures::OUTPUT_PNG),
        });
    }
}

/// `executed` frames for the job's output nodes the replayed transcript did not cover, from
/// what a real node of each one's class sent.
fn recorded_outputs_left(job: &Job, done: &[String]) -> Vec<Value> {
    job.outputs
        .iter()
        .filter(|node| !done.contains(node))
        .filter_map(|node| {
            let class = job.prompt.get(node)?["class_type"].as_str()?;
            let mut frame = RECORDED.executed_of(class)?.clone();
            frame["data"]["node"] = json!(node);
            frame["data"]["display_node"] = json!(node);
            frame["data"]["prompt_id"] = json!(job.prompt_id);
            Some(frame)
        })
        .collect()
}

/// Whether the job should replay the recorded failure.
fn fails(job: &Job) -> bool {
    job.prompt.values().any(|node| {
        node["inputs"]["fail_at_step"]
            .as_u64()
            .is_some_and(|step| step > 0)
    })
}

/// The recorded frames after an interrupt: `execution_interrupted`, `status`, `executing null`.
fn interrupted_tail() -> (&'static Transcript, usize) {
    let transcript = RECORDED.transcript("run_interrupted_global");
    let at = transcript
        .frames
        .iter()
        .position(
            |f| matches!(&f.frame, RecordedFrame::Text(t) if t["type"] == "execution_interrupted"),
        )
        .expect("the interrupt transcript has execution_interrupted");
    (transcript, at)
}

async fn play(shared: &Shared, job: Job) {
    let recording = recording_for(&job);
    let transcript = RECORDED.transcript(recording.transcript);
    let rewrite = Rewrite::new(transcript, &recording.workflow, &job);
    shared.lock().running = Some(Running {
        job: job.clone(),
        current_node: None,
        interrupt: false,
    });
    let pace = shared.options.pace;
    let start = Instant::now();
    let mut outputs = Map::new();
    let mut ending = Ending::Success;
    let mut finished = false;
    for timed in &transcript.frames {
        let due = start + timed.at.mul_f64(pace);
        if !finished {
            tokio::select! {
                () = tokio::time::sleep_until(due) => {}
                () = shared.wake_interrupt.notified() => {}
            }
            let interrupted = shared.lock().running.as_ref().is_some_and(|r| r.interrupt);
            if interrupted {
                ending = Ending::Interrupted;
                play_interrupt(shared, &job, &rewrite).await;
                break;
            }
            tokio::time::sleep_until(due).await;
        }
        match &timed.frame {
            RecordedFrame::Text(recorded) => {
                let mut frame = rewrite.apply(recorded);
                match frame["type"].as_str() {
                    Some("executing") => {
                        let node = frame["data"]["node"].as_str().map(str::to_owned);
                        if let Some(running) = shared.lock().running.as_mut() {
                            running.current_node.clone_from(&node);
                        }
                    }
                    Some("executed") => {
                        let node = frame["data"]["node"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned();
                        // Only output nodes report outputs; the recording's output node may
                        // have landed on one of the prompt's others.
                        if !job.outputs.contains(&node) {
                            continue;
                        }
                        store_outputs(shared, &job, &mut frame);
                        outputs.insert(node, frame["data"]["output"].clone());
                    }
                    Some("execution_success") => {
                        let done: Vec<String> = outputs.keys().cloned().collect();
                        for mut executed in recorded_outputs_left(&job, &done) {
                            store_outputs(shared, &job, &mut executed);
                            let node = executed["data"]["node"].as_str().unwrap_or_default();
                            outputs.insert(node.to_owned(), executed["data"]["output"].clone());
                            send(shared, &job, &executed).await;
                        }
                        finished = true;
                    }
                    Some("execution_error") => {
                        ending = Ending::Error;
                        finished = true;
                    }
                    Some("status") => {
                        let queued = shared.lock().pending.len() + usize::from(!finished);
                        frame["data"]["status"]["exec_info"]["queue_remaining"] = json!(queued);
                    }
                    _ => {}
                }
                send(shared, &job, &frame).await;
            }
            RecordedFrame::Binary(bytes) => {
                if let Some(client) = &job.client_id {
                    let with_metadata = rewrite.preview(bytes);
                    sockets::send_to(shared, client, Outgoing::Preview { with_metadata }).await;
                }
            }
        }
    }
    record_history(shared, &job, &rewrite, ending, outputs);
}

async fn play_interrupt(shared: &Shared, job: &Job, rewrite: &Rewrite) {
    let (transcript, at) = interrupted_tail();
    let current = shared
        .lock()
        .running
        .as_ref()
        .and_then(|r| r.current_node.clone());
    let interrupt_rewrite = Rewrite {
        from_prompt: transcript.prompt_id.clone(),
        to_prompt: job.prompt_id.clone(),
        nodes: rewrite.nodes.clone(),
    };
    let tail = &transcript.frames[at..];
    // ComfyUI stops at the next step boundary, as long after the request as recorded.
    let delay = transcript.frames[at]
        .at
        .saturating_sub(transcript.frames[at - 1].at);
    tokio::time::sleep(delay.mul_f64(shared.options.pace)).await;
    for timed in tail {
        let RecordedFrame::Text(recorded) = &timed.frame else {
            continue;
        };
        let mut frame = interrupt_rewrite.apply(recorded);
        if frame["type"] == "execution_interrupted"
            && let Some(node) = &current
        {
            frame["data"]["node_id"] = json!(node);
            frame["data"]["node_type"] = job.prompt[node]["class_type"].clone();
        }
        if frame["type"] == "status" {
            let queued = shared.lock().pending.len();
            frame["data"]["status"]["exec_info"]["queue_remaining"] = json!(queued);
        }
        send(shared, job, &frame).await;
    }
}

fn record_history(
    shared: &Shared,
    job: &Job,
    rewrite: &Rewrite,
    ending: Ending,
    outputs: Map<String, Value>,
) {
    let template_name = match ending {
        Ending::Success => "history_one",
        Ending::Error => "history_error",
        Ending::Interrupted => "history_interrupted",
    };
    let template = RECORDED.response_json(template_name);
    let (recorded_id, recorded_entry) = template
        .as_object()
        .and_then(|m| m.iter().next())
        .expect("a recorded history entry");
    let entry_rewrite = Rewrite {
        from_prompt: recorded_id.clone(),
        to_prompt: job.prompt_id.clone(),
        nodes: rewrite.nodes.clone(),
    };
    let mut entry = entry_rewrite.apply(recorded_entry);
    entry["prompt"] = job.queue_item();
    entry["outputs"] = Value::Object(outputs);
    let mut state = shared.lock();
    state.history.insert(job.prompt_id.clone(), entry);
    state.running = None;
}

/// Milliseconds since the Unix epoch, as ComfyUI stamps its messages.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}
