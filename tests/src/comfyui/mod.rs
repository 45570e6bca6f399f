//! A ComfyUI double: a real axum server on `127.0.0.1` that behaves as the recorded ComfyUI.
//!
//! It answers ComfyUI's routes (at `/` and under `/api`) with the recorded bodies, validates
//! prompts into the recorded 400 shapes, stores uploads and serves them back, queues prompts and
//! replays a recorded run transcript to the socket of the client id that queued each one,
//! honours interrupts and queue deletions, keeps a history, and enforces ComfyUI's origin
//! guard. It remembers every request it received so tests can assert what reached ComfyUI. It
//! can drop every socket, and stop and start again on the same port, like a ComfyUI restart.

mod guard;
pub mod recorded;
mod routes;
mod runner;
mod sockets;
pub mod validate;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use recorded::RECORDED;

/// The checkpoint the double pretends to have, so the recorded SD 1.5 workflow validates.
pub const CHECKPOINT: &str = "v1-5-pruned-emaonly.safetensors";
/// The image ComfyUI ships in its input folder.
pub const EXAMPLE_IMAGE: &str = "example.png";
/// The sound the output kinds were recorded with, in the recording server's input folder.
pub const INPUT_AUDIO: &str = "tone440.wav";

/// How the double behaves.
#[derive(Debug, Clone)]
pub struct Options {
    /// Multiplies every recorded delay: 1.0 replays in real time, 5.0 makes a run last ~5 s.
    pub pace: f64,
    /// ComfyUI's `max_upload_size` (100 MB by default, as recorded).
    pub max_upload_size: u64,
    /// Refuse `Sec-Fetch-Site: cross-site` with 403, as ComfyUI versions of 2026 do.
    pub reject_cross_site: bool,
    /// Make a prompt id even when `POST /prompt` gives one, as ComfyUI did before it took a
    /// given id.
    pub ignore_prompt_id: bool,
    /// Node classes this ComfyUI lacks (a custom node installed on another server only).
    pub missing_classes: Vec<&'static str>,
    /// Checkpoints it has besides [`CHECKPOINT`] (a model on one server only).
    pub more_checkpoints: Vec<&'static str>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            pace: 1.0,
            max_upload_size: 104_857_600,
            reject_cross_site: true,
            ignore_prompt_id: false,
            missing_classes: Vec::new(),
            more_checkpoints: Vec::new(),
        }
    }
}

/// One request as the double received it.
#[derive(Debug, Clone)]
pub struct ReceivedRequest {
    /// HTTP method.
    pub method: String,
    /// Path, including any `/api` prefix.
    pub path: String,
    /// Query string, if any.
    pub query: Option<String>,
    /// Headers, lower-case names.
    pub headers: Vec<(String, String)>,
    /// The body, for JSON and form requests (uploads are in [`FakeComfyUi::files`]).
    pub body: Bytes,
}

impl ReceivedRequest {
    /// The path without ComfyUI's optional `/api` prefix.
    pub fn route(&self) -> &str {
        self.path
            .strip_prefix("/api")
            .filter(|p| p.starts_with('/'))
            .unwrap_or(&self.path)
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (`Null` if it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// A file the double holds, uploaded or produced by a run.
#[derive(Debug, Clone)]
pub struct StoredFile {
    /// `input`, `output` or `temp`.
    pub kind: String,
    /// Folder inside the type's directory.
    pub subfolder: String,
    /// File name.
    pub name: String,
    /// Content.
    pub bytes: Bytes,
}

/// A queued prompt.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    pub prompt_id: String,
    pub number: i64,
    pub prompt: Map<String, Value>,
    pub extra_data: Value,
    pub outputs: Vec<String>,
    pub client_id: Option<String>,
}

impl Job {
    /// `[number, prompt_id, prompt, extra_data, outputs]`, as `/queue` and `/history` list it.
    pub fn queue_item(&self) -> Value {
        json!([
            self.number,
            self.prompt_id,
            self.prompt,
            self.extra_data,
            self.outputs
        ])
    }
}

/// The prompt running now.
#[derive(Debug, Clone)]
pub(crate) struct Running {
    pub job: Job,
    pub current_node: Option<String>,
    pub interrupt: bool,
}

/// A connected WebSocket client.
#[derive(Debug, Clone)]
pub(crate) struct Socket {
    pub tx: tokio::sync::mpsc::Sender<sockets::Outgoing>,
    pub negotiated: Arc<std::sync::atomic::AtomicBool>,
}

/// Everything the double knows, behind one lock (never held across an await).
#[derive(Debug)]
pub(crate) struct State {
    pub requests: Vec<ReceivedRequest>,
    pub accepted: Vec<Value>,
    pub sockets: HashMap<String, Socket>,
    pub drop_sockets: CancellationToken,
    pub refuse_sockets: bool,
    pub pending: VecDeque<Job>,
    pub running: Option<Running>,
    pub history: Map<String, Value>,
    pub files: Vec<StoredFile>,
    /// The `original_ref` of every mask stored, as sent.
    pub mask_originals: Vec<Value>,
    pub next_number: i64,
    pub output_counter: u32,
}

/// What handlers, sockets and the runner share.
pub(crate) struct Shared {
    pub options: Options,
    pub state: Mutex<State>,
    pub wake_runner: Notify,
    pub wake_interrupt: Notify,
    /// While true, HTTP requests get no answer, as from a stopped (SIGSTOP) ComfyUI.
    pub stalled: tokio::sync::watch::Sender<bool>,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .expect("the double's lock is never poisoned")
    }

    /// Names of the images in the input folder, as LoadImage lists them.
    pub fn input_files(&self) -> Vec<String> {
        let state = self.lock();
        let mut names = vec![EXAMPLE_IMAGE.to_owned()];
        names.extend(state.files.iter().filter(|f| f.kind == "input").map(|f| {
            if f.subfolder.is_empty() {
                f.name.clone()
            } else {
                format!("{}/{}", f.subfolder, f.name)
            }
        }));
        names
    }
}

impl Shared {
    /// Its `/object_info`: the recorded one with its input files and checkpoints, less its
    /// missing classes.
    pub fn object_info(&self) -> Map<String, Value> {
        let mut info = patched_object_info(&self.input_files());
        for class in &self.options.missing_classes {
            info.remove(*class);
        }
        if let Some(names) = info
            .get_mut("CheckpointLoaderSimple")
            .and_then(|c| c["input"]["required"]["ckpt_name"][0].as_array_mut())
        {
            names.extend(self.options.more_checkpoints.iter().map(|name| json!(name)));
        }
        info
    }
}

/// The recorded `/object_info`, with the double's checkpoint, input images and input sound in
/// the lists.
pub fn patched_object_info(input_files: &[String]) -> Map<String, Value> {
    let mut info = RECORDED.object_info.clone();
    if let Some(spec) = info
        .get_mut("CheckpointLoaderSimple")
        .and_then(|c| c["input"]["required"].get_mut("ckpt_name"))
    {
        spec[0] = json!([CHECKPOINT]);
    }
    if let Some(spec) = info
        .get_mut("LoadImage")
        .and_then(|c| c["input"]["required"].get_mut("image"))
    {
        spec[0] = json!(input_files);
    }
    if let Some(spec) = info
        .get_mut("LoadAudio")
        .and_then(|c| c["input"]["required"].get_mut("audio"))
    {
        spec[0] = json!([INPUT_AUDIO]);
    }
    info
}

/// A running ComfyUI double.
pub struct FakeComfyUi {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
    server: JoinHandle<()>,
    runner: JoinHandle<()>,
}

impl FakeComfyUi {
    /// Starts a double with default options on an ephemeral port.
    pub async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    /// Starts a double that replays every run with no delays (what benchmarks measure against).
    pub async fn start_instant() -> Self {
        Self::start_with(Options {
            pace: 0.0,
            ..Options::default()
        })
        .await
    }

    /// Starts a double with `options` on an ephemeral port.
    pub async fn start_with(options: Options) -> Self {
        Self::start_on("127.0.0.1:0".parse().expect("a valid address"), options).await
    }

    /// Starts a double on `addr` (port 0 for an ephemeral one).
    pub async fn start_on(addr: SocketAddr, options: Options) -> Self {
        let listener = TcpListener::bind(addr)
            .await
            .unwrap_or_else(|e| panic!("the double cannot listen on {addr}: {e}"));
        Self::serve(listener, options)
    }

    /// Serves on an already bound listener.
    pub fn serve(listener: TcpListener, options: Options) -> Self {
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let shared = Arc::new(Shared {
            options,
            state: Mutex::new(State {
                requests: Vec::new(),
                accepted: Vec::new(),
                sockets: HashMap::new(),
                drop_sockets: CancellationToken::new(),
                refuse_sockets: false,
                pending: VecDeque::new(),
                running: None,
                history: Map::new(),
                files: Vec::new(),
                mask_originals: Vec::new(),
                next_number: 0,
                output_counter: 0,
            }),
            wake_runner: Notify::new(),
            wake_interrupt: Notify::new(),
            stalled: tokio::sync::watch::Sender::new(false),
        });
        let stop = CancellationToken::new();
        let app = routes::router(shared.clone());
        let server_stop = stop.clone();
        let server = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                server_stop.cancelled().await;
            });
            let _ = serve.await;
        });
        let runner = tokio::spawn(runner::run(shared.clone(), stop.clone()));
        Self {
            addr,
            shared,
            stop,
            server,
            runner,
        }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<ReceivedRequest> {
        self.shared.lock().requests.clone()
    }

    /// Requests received for one route (with or without the `/api` prefix).
    pub fn requests_to(&self, method: &str, route: &str) -> Vec<ReceivedRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == method && r.route() == route)
            .collect()
    }

    /// The bodies of the `POST /prompt` requests it accepted, in order.
    pub fn queued_prompts(&self) -> Vec<Value> {
        self.shared.lock().accepted.clone()
    }

    /// Files it holds (uploads and run outputs).
    pub fn files(&self) -> Vec<StoredFile> {
        self.shared.lock().files.clone()
    }

    /// The `original_ref` of every mask it stored, as it was sent.
    pub fn mask_originals(&self) -> Vec<Value> {
        self.shared.lock().mask_originals.clone()
    }

    /// How many WebSocket clients are connected (one per client id).
    pub fn socket_count(&self) -> usize {
        self.shared.lock().sockets.len()
    }

    /// The prompt ids in its history.
    pub fn history_ids(&self) -> Vec<String> {
        self.shared.lock().history.keys().cloned().collect()
    }

    /// The prompt running now, if any.
    pub fn running_prompt(&self) -> Option<String> {
        self.shared
            .lock()
            .running
            .as_ref()
            .map(|r| r.job.prompt_id.clone())
    }

    /// Drops every WebSocket without a close frame, as a network failure would. Runs go on.
    pub fn drop_sockets(&self) {
        let mut state = self.shared.lock();
        state.drop_sockets.cancel();
        state.drop_sockets = CancellationToken::new();
        state.sockets.clear();
    }

    /// While set, HTTP requests are held without an answer and no new prompt starts, as by a
    /// stopped process whose sockets stay open; cleared, they are answered and the queue runs
    /// on.
    pub fn stall(&self, stalled: bool) {
        self.shared.stalled.send_replace(stalled);
    }

    /// The client ids of the open sockets.
    pub fn socket_ids(&self) -> Vec<String> {
        self.shared.lock().sockets.keys().cloned().collect()
    }

    /// While set, WebSocket upgrades are refused with 503, so dropped clients cannot come back.
    pub fn refuse_sockets(&self, refuse: bool) {
        self.shared.lock().refuse_sockets = refuse;
    }

    /// Stops like a killed ComfyUI: listener closed, sockets dropped, queue and history gone.
    /// Returns the address, to start again on the same port.
    pub async fn stop(mut self) -> SocketAddr {
        self.kill().await;
        self.addr
    }

    /// Stops it in place, as a killed ComfyUI; [`FakeComfyUi::restart`] brings it back.
    pub async fn kill(&mut self) {
        if self.stop.is_cancelled() {
            return;
        }
        self.drop_sockets();
        self.stop.cancel();
        self.runner.abort();
        self.server.abort();
        let _ = (&mut self.server).await;
        let _ = (&mut self.runner).await;
    }

    /// Stops and starts again on the same port with an empty queue and history, as a restarted
    /// ComfyUI does. Uploaded files survive (they are on disk in a real ComfyUI).
    pub async fn restart(&mut self) {
        let options = self.shared.options.clone();
        let files: Vec<StoredFile> = self
            .files()
            .into_iter()
            .filter(|f| f.kind == "input")
            .collect();
        self.kill().await;
        // The killed server's connections can hold the port for a moment (an orphaned socket
        // in FIN-WAIT-1 makes bind fail even with SO_REUSEADDR), as after a real restart.
        let mut attempts = 0;
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(listener) => break listener,
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && attempts < 100 => {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("the double cannot listen again on {}: {e}", self.addr),
            }
        };
        *self = Self::serve(listener, options);
        self.shared.lock().files = files;
    }
}
