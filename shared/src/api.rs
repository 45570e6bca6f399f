//! Comfy Relay's own HTTP and WebSocket bodies, as the proxy sends them and the web app reads them.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::comfy::{ImageRef, Output};
use crate::workflow::{InputError, Workflow};

/// The JSON body of every error the relay itself answers: a sentence a person can read, and
/// optionally structured detail (for example ComfyUI's own validation errors).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong and, where it helps, what to do about it.
    pub error: String,
    /// Structured context, for programs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<ErrorDetail>,
}

/// An error's structured context; each part is there when it applies.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// The inputs at fault, when a workflow or a value was refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<InputProblem>,
    /// Set when the device must pair before it may do this.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pairing_required: bool,
    /// The ComfyUI address the relay tried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comfyui_url: Option<String>,
    /// Why ComfyUI could not be reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
}

/// A saved workflow as the library lists it (`GET /api/workflows`, and the answer to saving or
/// renaming one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedWorkflow {
    /// Its name.
    pub name: String,
    /// How many nodes it has.
    pub nodes: usize,
    /// When it was last saved, in milliseconds since the epoch.
    pub updated_at: u64,
}

/// `GET /api/workflows`: the team's saved workflows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowList {
    /// The saved workflows, by name.
    pub workflows: Vec<SavedWorkflow>,
    /// Whether only the operator can change them (`--locked-workflows`).
    pub locked: bool,
}

/// `POST /api/workflows/{name}/rename`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rename {
    /// The new name.
    pub to: String,
}

/// `POST /api/device/link`: a one-time link that opens this device in another browser.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceLink {
    /// The link's path, `/link/{code}`.
    pub path: String,
    /// How long it stays valid.
    pub expires_in_secs: u64,
}

/// `GET /api/session`: which device this is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// The device's id.
    pub device: String,
    /// Whether the relay requires pairing.
    pub pairing_required: bool,
}

/// One input value to set before queueing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputEdit {
    /// The node's id.
    pub node_id: String,
    /// The input's name.
    pub input: String,
    /// The new literal value.
    pub value: Value,
}

impl InputEdit {
    /// Applies edits to a workflow, stopping at the first that does not fit.
    pub fn apply_all(edits: &[Self], workflow: &mut Workflow) -> Result<(), InputError> {
        edits
            .iter()
            .try_for_each(|edit| workflow.set_input(&edit.node_id, &edit.input, edit.value.clone()))
    }
}

/// `POST /api/jobs`: a workflow (given, or saved in the library by name) and the values to
/// change in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRequest {
    /// The API-format workflow, as JSON (checked by the relay, which explains what is wrong).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<Value>,
    /// Or the name of a saved workflow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow_name: Option<String>,
    /// Values to set before queueing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<InputEdit>,
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting in ComfyUI's queue.
    Queued,
    /// Running now.
    Running,
    /// Every output node ran.
    Succeeded,
    /// A node raised.
    Failed,
    /// Stopped while it ran.
    Interrupted,
    /// Taken off the queue before it started.
    Cancelled,
    /// ComfyUI forgot it (it restarted); it can be queued again.
    Lost,
}

impl JobState {
    /// Whether the job has ended.
    pub fn is_finished(self) -> bool {
        !matches!(self, Self::Queued | Self::Running)
    }

    /// Its name as the API spells it (`succeeded`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Interrupted => "interrupted",
            Self::Cancelled => "cancelled",
            Self::Lost => "lost",
        }
    }
}

/// Where one node of a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeRun {
    /// Not reached yet (or not needed for the outputs).
    Pending,
    /// Skipped: its cached outputs are reused.
    Cached,
    /// Running now.
    Running,
    /// Done.
    Finished,
    /// It raised: the job failed here.
    Failed,
}

/// One node of a job, with its progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// The node's id.
    pub id: String,
    /// Its title (or class).
    pub title: String,
    /// Its class.
    pub class_type: String,
    /// Where it is.
    pub state: NodeRun,
    /// Its step progress, 0 to 1.
    pub fraction: f64,
}

/// Why a job failed or was lost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobError {
    /// A sentence for people.
    pub message: String,
    /// The node that raised, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    /// Its class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_type: Option<String>,
    /// The Python traceback, when ComfyUI gave one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub traceback: Vec<String>,
}

/// A job as the relay reports it: `GET /api/jobs/{id}` and every event about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// The job's id, made by the relay; ComfyUI runs it under the same prompt id.
    pub id: String,
    /// The relay's number for it, counting up from 1.
    pub number: i64,
    /// The saved workflow it ran, if it was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow_name: Option<String>,
    /// Where it is.
    pub state: JobState,
    /// While it is queued: how many prompts are ahead of it, the running one included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_position: Option<u32>,
    /// Whether it waits in the relay's own queue, not yet handed to ComfyUI: only such a job
    /// can be moved (`POST /api/jobs/{id}/move`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub held: bool,
    /// Overall progress, 0 to 1.
    pub progress: f64,
    /// The node running now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_node: Option<String>,
    /// Every node of the workflow, in display order.
    pub nodes: Vec<NodeStatus>,
    /// Whether a live preview is available (`GET /api/jobs/{id}/preview`).
    pub has_preview: bool,
    /// What it made so far: pictures, videos, sounds, texts, other files.
    pub outputs: Vec<Output>,
    /// Why it failed or was lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<JobError>,
    /// When it was queued, in milliseconds since the epoch.
    pub created_at: u64,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<u64>,
    /// Starred by its device (`POST /api/jobs/{id}/star`): kept past a retention.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub starred: bool,
}

/// `GET /api/jobs/history` query: one page of a device's jobs, newest first, from every job the
/// relay has kept.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HistoryQuery {
    /// Jobs queued before this one (the `next` of the previous page).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    /// How many at the most (the relay caps it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// Only jobs in this state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<JobState>,
    /// Only jobs of this saved workflow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<String>,
    /// Only jobs whose workflow (its values, prompts included) contains this text, in any case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Only starred jobs.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub starred: bool,
    /// Only jobs that made at least one file (the gallery's).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub with_outputs: bool,
}

impl HistoryQuery {
    /// The query string of `GET /api/jobs/history` asking for this page (no leading `?`).
    pub fn query_string(&self) -> String {
        let mut pairs: Vec<(&str, String)> = Vec::new();
        let mut add = |key, value: Option<String>| {
            if let Some(value) = value {
                pairs.push((key, crate::comfy::ws::percent_encode(&value)));
            }
        };
        add("before", self.before.clone());
        add("limit", self.limit.map(|limit| limit.to_string()));
        add("state", self.state.map(|state| state.name().to_owned()));
        add("workflow", self.workflow.clone());
        add("text", self.text.clone());
        add("starred", self.starred.then(|| "true".to_owned()));
        add("with_outputs", self.with_outputs.then(|| "true".to_owned()));
        pairs
            .into_iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect::<Vec<_>>()
            .join("&")
    }
}

/// `POST /api/jobs/{id}/star`: star or unstar a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StarJob {
    /// Starred or not.
    pub starred: bool,
}

/// One page of `GET /api/jobs/history`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryPage {
    /// The jobs, newest first.
    pub jobs: Vec<Job>,
    /// The `before` of the next page; none on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// `POST /api/jobs/{id}/move`: where a job the relay still holds goes among its device's
/// waiting jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoveJob {
    /// Its place among the device's held jobs: 0 is next; past the end is last.
    pub position: u32,
}

/// `GET /api/push`: what a browser needs to subscribe this device to notifications.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushInfo {
    /// The relay's VAPID public key (uncompressed P-256 point, base64url without padding): the
    /// `applicationServerKey` of `PushManager.subscribe`.
    pub public_key: String,
    /// How many browsers this device has subscribed.
    pub subscriptions: usize,
}

/// `PUT /api/push/subscription`: a browser's push subscription, as
/// `PushSubscription.toJSON()` gives it (its `expirationTime` is ignored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushSubscription {
    /// Where the push service takes messages for this browser (an `https` URL).
    pub endpoint: String,
    /// The browser's keys, which messages are encrypted to.
    pub keys: PushKeys,
}

/// The keys of a [`PushSubscription`], base64url.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushKeys {
    /// The browser's P-256 public key (65 bytes once decoded).
    pub p256dh: String,
    /// The shared authentication secret (16 bytes once decoded).
    pub auth: String,
}

/// What the relay pushes when one of a device's jobs ends, encrypted for each of its browsers;
/// the service worker shows it as a notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushMessage {
    /// "Done: portrait", "Failed in KSampler: portrait".
    pub title: String,
    /// A line more: what it made, or why it failed.
    pub body: String,
    /// The job, so one notification per job replaces an older one.
    pub job: String,
    /// The page a tap opens.
    pub url: String,
    /// A picture the job made (a `/view` URL on the relay), when it made one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

/// The longest a notification's line runs, in characters.
const MAX_NOTIFICATION_LINE: usize = 200;

impl PushMessage {
    /// What to tell of a job that ended: "Done", "Failed in NODE" or "Lost", with its workflow
    /// and what it made or why it failed; nothing for one its device cancelled, or still going.
    /// The relay pushes it; the open app shows the same when it is in the background.
    pub fn ended(job: &Job) -> Option<Self> {
        let name = job
            .workflow_name
            .clone()
            .unwrap_or_else(|| format!("job {}", job.number));
        let name = cut(&name);
        let (title, body) = match job.state {
            JobState::Succeeded => (format!("Done: {name}"), made(&job.outputs)),
            JobState::Failed => {
                let error = job.error.as_ref();
                let title = match error.and_then(|e| e.node_type.as_deref()) {
                    Some(node) => format!("Failed in {}: {name}", cut(node)),
                    None => format!("Failed: {name}"),
                };
                (title, cut(error.map_or("", |e| e.message.as_str())))
            }
            JobState::Lost => (
                format!("Lost: {name}"),
                "ComfyUI forgot it (it restarted): queue it again.".to_owned(),
            ),
            JobState::Queued | JobState::Running | JobState::Interrupted | JobState::Cancelled => {
                return None;
            }
        };
        let image = job.outputs.iter().find_map(|output| match output {
            Output::Image(file) | Output::Animated(file) => Some(view_url(file, Some(&job.id))),
            _ => None,
        });
        Some(Self {
            title,
            body,
            job: job.id.clone(),
            url: "/#/jobs".to_owned(),
            image,
        })
    }
}

/// The relay's `GET /view` URL of `file`. `job`, the relay's job that made it, tells the relay
/// which ComfyUI server holds it: each server numbers its outputs on its own, so two may hold
/// files of the same name.
pub fn view_url(file: &ImageRef, job: Option<&str>) -> String {
    let mut url = format!("/view?{}", file.view_query());
    if let Some(job) = job {
        url.push_str("&job=");
        url.push_str(&crate::comfy::ws::percent_encode(job));
    }
    url
}

/// What a finished job made, in a line.
fn made(outputs: &[Output]) -> String {
    let mut counts = [0; 5];
    for output in outputs {
        counts[match output {
            Output::Image(_) | Output::Animated(_) => 0,
            Output::Video(_) => 1,
            Output::Audio(_) => 2,
            Output::Text(_) => 3,
            Output::File(_) => 4,
        }] += 1;
    }
    let parts: Vec<String> = counts
        .iter()
        .zip(["picture", "video", "sound", "text", "file"])
        .filter(|(n, _)| **n > 0)
        .map(|(n, kind)| format!("{n} {kind}{}", if *n == 1 { "" } else { "s" }))
        .collect();
    if parts.is_empty() {
        "Finished.".to_owned()
    } else {
        format!("Made {}.", parts.join(", "))
    }
}

/// `text` cut to [`MAX_NOTIFICATION_LINE`] characters.
fn cut(text: &str) -> String {
    if text.chars().count() <= MAX_NOTIFICATION_LINE {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(MAX_NOTIFICATION_LINE - 1).collect();
    cut.push('…');
    cut
}

/// A text message on `GET /api/events`. Previews come as binary frames, exactly as ComfyUI
/// sends them with metadata (the metadata's `prompt_id` is the job id).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// Sent first on every connection: all of this device's jobs, newest first.
    Snapshot {
        /// The jobs.
        jobs: Vec<Job>,
        /// Whether the relay is connected to ComfyUI.
        comfyui_connected: bool,
    },
    /// A job changed; this is its whole new state.
    Job {
        /// The job.
        job: Box<Job>,
    },
    /// A finished job was forgotten to keep memory bounded.
    Removed {
        /// The job's id.
        id: String,
    },
    /// The relay's connection to ComfyUI came or went.
    Comfyui {
        /// Whether it is connected.
        connected: bool,
    },
}

impl InputProblem {
    /// One line for people: "KSampler · cfg: 101 is larger than the maximum, 100.0".
    pub fn describe(&self) -> String {
        let node = self
            .node_title
            .clone()
            .unwrap_or_else(|| format!("node {}", self.node_id));
        match &self.input {
            Some(input) => format!("{node} · {input}: {}", self.message),
            None => format!("{node}: {}", self.message),
        }
    }
}

/// [`Event`] as it travels: a flat object. Read through this rather than serde's internally
/// tagged enum support, whose generic buffering costs the web app tens of kilobytes.
#[derive(Deserialize)]
struct EventFields {
    #[serde(rename = "type")]
    kind: String,
    jobs: Option<Vec<Job>>,
    comfyui_connected: Option<bool>,
    job: Option<Box<Job>>,
    id: Option<String>,
    connected: Option<bool>,
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let fields = EventFields::deserialize(deserializer)?;
        let missing = |field| D::Error::missing_field(field);
        Ok(match fields.kind.as_str() {
            "snapshot" => Self::Snapshot {
                jobs: fields.jobs.ok_or_else(|| missing("jobs"))?,
                comfyui_connected: fields
                    .comfyui_connected
                    .ok_or_else(|| missing("comfyui_connected"))?,
            },
            "job" => Self::Job {
                job: fields.job.ok_or_else(|| missing("job"))?,
            },
            "removed" => Self::Removed {
                id: fields.id.ok_or_else(|| missing("id"))?,
            },
            "comfyui" => Self::Comfyui {
                connected: fields.connected.ok_or_else(|| missing("connected"))?,
            },
            other => {
                return Err(D::Error::unknown_variant(
                    other,
                    &["snapshot", "job", "removed", "comfyui"],
                ));
            }
        })
    }
}

/// One problem with one input, from ComfyUI's validation or the relay's own checks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputProblem {
    /// The node.
    pub node_id: String,
    /// The node's title, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_title: Option<String>,
    /// The input concerned, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    /// What is wrong.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_view_url_names_the_job_that_made_the_file_encoded_as_its_query() {
        let file = ImageRef {
            filename: "a&b.png".to_owned(),
            subfolder: String::new(),
            kind: "output".to_owned(),
        };
        assert_eq!(
            view_url(&file, None),
            "/view?filename=a%26b.png&subfolder=&type=output"
        );
        assert_eq!(
            view_url(&file, Some("j 1&x=2")),
            "/view?filename=a%26b.png&subfolder=&type=output&job=j%201%26x%3D2"
        );
    }

    fn job(state: JobState, outputs: Vec<Output>, error: Option<JobError>) -> Job {
        Job {
            id: "j1".to_owned(),
            number: 7,
            workflow_name: Some("portrait".to_owned()),
            state,
            queue_position: None,
            held: false,
            progress: 1.0,
            current_node: None,
            nodes: Vec::new(),
            has_preview: false,
            outputs,
            error,
            created_at: 0,
            finished_at: Some(1),
            starred: false,
        }
    }

    fn file(name: &str) -> ImageRef {
        ImageRef {
            filename: name.to_owned(),
            subfolder: "a b".to_owned(),
            kind: "output".to_owned(),
        }
    }

    #[test]
    fn each_ending_is_told_once_and_a_cancelled_job_not_at_all() {
        let done = PushMessage::ended(&job(
            JobState::Succeeded,
            vec![
                Output::Video(file("clip.mp4")),
                Output::Image(file("a.png")),
                Output::Image(file("b.png")),
                Output::Text("hi".to_owned()),
            ],
            None,
        ))
        .unwrap();
        assert_eq!(done.title, "Done: portrait");
        assert_eq!(done.body, "Made 2 pictures, 1 video, 1 text.");
        assert_eq!(
            done.image.as_deref(),
            Some("/view?filename=a.png&subfolder=a%20b&type=output&job=j1")
        );
        assert_eq!((done.job.as_str(), done.url.as_str()), ("j1", "/#/jobs"));

        let failed = JobError {
            message: "CUDA out of memory".to_owned(),
            node_id: Some("3".to_owned()),
            node_type: Some("KSampler".to_owned()),
            traceback: Vec::new(),
        };
        let failed = PushMessage::ended(&job(JobState::Failed, Vec::new(), Some(failed))).unwrap();
        assert_eq!(failed.title, "Failed in KSampler: portrait");
        assert_eq!(failed.body, "CUDA out of memory");
        assert_eq!(failed.image, None);

        let mut lost = job(JobState::Lost, Vec::new(), None);
        lost.workflow_name = None;
        assert_eq!(PushMessage::ended(&lost).unwrap().title, "Lost: job 7");
        assert_eq!(
            PushMessage::ended(&job(JobState::Succeeded, Vec::new(), None))
                .unwrap()
                .body,
            "Finished."
        );
        for state in [JobState::Interrupted, JobState::Queued, JobState::Running] {
            assert_eq!(PushMessage::ended(&job(state, Vec::new(), None)), None);
        }
    }

    #[test]
    fn a_job_states_name_is_how_it_is_serialised() {
        for state in [
            JobState::Queued,
            JobState::Running,
            JobState::Succeeded,
            JobState::Failed,
            JobState::Interrupted,
            JobState::Lost,
        ] {
            assert_eq!(serde_json::to_value(state).unwrap(), state.name());
        }
    }

    #[test]
    fn a_history_query_names_only_what_it_asks_and_encodes_its_text() {
        assert_eq!(HistoryQuery::default().query_string(), "");
        let query = HistoryQuery {
            before: Some("job 1".into()),
            limit: Some(30),
            state: Some(JobState::Succeeded),
            workflow: None,
            text: Some("red & fox".into()),
            starred: true,
            with_outputs: true,
        };
        assert_eq!(
            query.query_string(),
            "before=job%201&limit=30&state=succeeded&text=red%20%26%20fox&starred=true&with_outputs=true"
        );
    }

    #[test]
    fn events_are_tagged_with_a_snake_case_type() {
        let event = Event::Comfyui { connected: true };
        assert_eq!(
            serde_json::to_value(&event).unwrap(),
            serde_json::json!({"type": "comfyui", "connected": true})
        );
        let back: Event = serde_json::from_str(r#"{"type":"removed","id":"p1"}"#).unwrap();
        assert_eq!(back, Event::Removed { id: "p1".into() });
        for event in [
            Event::Snapshot {
                jobs: Vec::new(),
                comfyui_connected: false,
            },
            Event::Comfyui { connected: true },
        ] {
            let text = serde_json::to_string(&event).unwrap();
            assert_eq!(
                serde_json::from_str::<Event>(&text).unwrap(),
                event,
                "{text}"
            );
        }
        assert!(serde_json::from_str::<Event>(r#"{"type":"removed"}"#).is_err());
    }

    #[test]
    fn edits_apply_in_order_and_stop_at_a_link() {
        let mut workflow = Workflow::parse(
            r#"{"1":{"class_type":"A","inputs":{"text":"a","x":["2",0]}},"2":{"class_type":"B","inputs":{}}}"#,
        )
        .unwrap();
        let edits = [
            InputEdit {
                node_id: "1".into(),
                input: "text".into(),
                value: "b".into(),
            },
            InputEdit {
                node_id: "1".into(),
                input: "x".into(),
                value: 3.into(),
            },
        ];
        assert!(InputEdit::apply_all(&edits, &mut workflow).is_err());
        assert_eq!(workflow.node("1").unwrap().inputs["text"], "b");
    }
}

/// `GET /api/health`: whether the relay can run jobs, and each ComfyUI server it runs them on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    /// Whether a ComfyUI server answers, so jobs can run.
    pub ok: bool,
    /// This relay's version.
    pub relay_version: String,
    /// The first ComfyUI server's base URL (the one raw clients reach).
    pub comfyui_url: String,
    /// Its version, when it answers and says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comfyui_version: Option<String>,
    /// Why it does not answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comfyui_error: Option<String>,
    /// Whether the relay's socket to a ComfyUI server is up (jobs' progress flows).
    pub events_connected: bool,
    /// Every ComfyUI server, in the order they were configured.
    pub backends: Vec<BackendHealth>,
}

/// One ComfyUI server in [`Health`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendHealth {
    /// Its base URL.
    pub url: String,
    /// Whether it answers now.
    pub up: bool,
    /// Its ComfyUI version, when it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Why it does not answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Whether the relay's socket to it is open.
    pub events_connected: bool,
    /// The relay's jobs it runs now.
    pub running: usize,
    /// The relay's jobs waiting in its queue.
    pub waiting: usize,
    /// Its first compute device as it names it (a GPU, or `cpu`), from its last answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<String>,
    /// That device's memory in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vram_total: Option<u64>,
    /// That device's free memory in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vram_free: Option<u64>,
}
