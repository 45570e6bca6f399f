//! The ComfyUI servers the relay runs jobs on: one per `--comfyui-url`, each with its own
//! client, health, event socket and node schemas.
//!
//! The first is the one raw clients reach (`/prompt`, `/ws`, `/queue`, `/history`), and uploads
//! land there while it answers ([`crate::jobs::Jobs::landing`]); jobs go to whichever answers,
//! can run them and has the least to do ([`crate::jobs::Jobs::hand_out`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shared::api::BackendHealth;
use shared::comfy::ImageRef;
use tokio::sync::Notify;
use url::Url;

use crate::comfy::ComfyClient;
use crate::object_info::ObjectInfo;
use crate::upstream::{Reachability, Upstream};

/// One ComfyUI server.
pub struct Backend {
    /// Its place among the relay's servers (0: the first).
    pub index: usize,
    /// Where it is.
    pub upstream: Arc<Upstream>,
    /// Its HTTP API and event socket.
    pub comfy: ComfyClient,
    /// Its node schemas.
    pub object_info: Arc<ObjectInfo>,
    /// The URL jobs record it by: the one it was configured with.
    key: String,
    /// Whether the relay's socket to it is open.
    connected: AtomicBool,
    /// Whether that socket closed and has not opened again.
    socket_closed: AtomicBool,
    /// Whether it answers its health check.
    reachable: AtomicBool,
    /// Since when it has not answered, in milliseconds since the epoch (0 while it answers).
    down_since_ms: AtomicU64,
    /// When the relay's socket last brought an event of a run, in milliseconds since the epoch.
    last_event_ms: AtomicU64,
    /// Wakes the task that refreshes its queue positions.
    pub(crate) queue_changed: Notify,
    /// Tells its socket follower to reconnect: the socket seems to have stopped hearing.
    pub(crate) resubscribe: Notify,
    /// What it was last given to run (a saved workflow's name, or its node classes), so the
    /// same work goes back where its models are loaded.
    last_ran: Mutex<Option<String>>,
    /// The input pictures uploaded through the relay that it is known to hold, each as the
    /// first server named it, with the name it has here (it may hold another of that name).
    inputs: Mutex<HashMap<ImageRef, ImageRef>>,
    /// Held while a picture is copied to it, so that a copy for a job never writes a file that
    /// an upload's copy is writing (a job could read it half written).
    pub(crate) copying: tokio::sync::Mutex<()>,
}

impl Backend {
    /// The server found at the first of `candidates` that answers, reached with `http`.
    pub fn new(
        index: usize,
        http: reqwest::Client,
        candidates: Vec<Url>,
        timeout: Duration,
    ) -> Self {
        let key = candidates
            .first()
            .map(Url::to_string)
            .expect("at least one ComfyUI URL");
        let upstream = Arc::new(Upstream::new(candidates));
        let comfy = ComfyClient::new(http, upstream.clone(), timeout);
        Self {
            index,
            object_info: Arc::new(ObjectInfo::new(comfy.clone())),
            comfy,
            upstream,
            key,
            connected: AtomicBool::new(false),
            socket_closed: AtomicBool::new(false),
            reachable: AtomicBool::new(true),
            down_since_ms: AtomicU64::new(0),
            last_event_ms: AtomicU64::new(0),
            queue_changed: Notify::new(),
            resubscribe: Notify::new(),
            last_ran: Mutex::new(None),
            inputs: Mutex::default(),
            copying: tokio::sync::Mutex::new(()),
        }
    }

    /// The URL jobs record it by.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Whether its events reach the relay: its socket is open and it answers.
    pub fn is_up(&self) -> bool {
        self.connected.load(Ordering::SeqCst) && self.reachable.load(Ordering::SeqCst)
    }

    /// Whether it answered its last health check.
    pub fn is_reachable(&self) -> bool {
        self.reachable.load(Ordering::SeqCst)
    }

    pub(crate) fn set_connected(&self, connected: bool) {
        self.connected.store(connected, Ordering::SeqCst);
        self.socket_closed.store(!connected, Ordering::SeqCst);
    }

    /// Whether it may be sent an upload: it answers its health check, and its socket has not
    /// closed without opening again (a server that stops closes it at once, and fails its
    /// health check only at the next one).
    pub(crate) fn takes_uploads(&self) -> bool {
        self.is_reachable() && !self.socket_closed.load(Ordering::SeqCst)
    }

    /// Records what its health check found; whether that is a change.
    pub(crate) fn set_reachable(&self, reachable: bool) -> bool {
        let changed = self.reachable.swap(reachable, Ordering::SeqCst) != reachable;
        if changed {
            let since = if reachable { 0 } else { crate::clock::now_ms() };
            self.down_since_ms.store(since, Ordering::SeqCst);
        }
        changed
    }

    /// How long it has not answered its health check, while it does not.
    pub(crate) fn down_for(&self) -> Option<Duration> {
        match self.down_since_ms.load(Ordering::SeqCst) {
            0 => None,
            since => Some(Duration::from_millis(
                crate::clock::now_ms().saturating_sub(since),
            )),
        }
    }

    /// Notes that its socket brought an event of one of the relay's runs.
    pub(crate) fn heard(&self) {
        self.last_event_ms
            .store(crate::clock::now_ms(), Ordering::Relaxed);
    }

    /// How long its socket has heard no event of the relay's runs.
    pub(crate) fn silent_for(&self) -> Duration {
        let last = self.last_event_ms.load(Ordering::Relaxed);
        Duration::from_millis(crate::clock::now_ms().saturating_sub(last))
    }

    fn last_ran(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.last_ran
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether `work` is what it was last given.
    pub(crate) fn ran_last(&self, work: &str) -> bool {
        self.last_ran().as_deref() == Some(work)
    }

    /// Records that it was given `work`.
    pub(crate) fn runs(&self, work: String) {
        *self.last_ran() = Some(work);
    }

    fn inputs(&self) -> std::sync::MutexGuard<'_, HashMap<ImageRef, ImageRef>> {
        self.inputs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records that it holds uploaded input picture `file` (as the first server named it) as
    /// `named`.
    pub(crate) fn holds_input(&self, file: ImageRef, named: ImageRef) {
        self.inputs().insert(file, named);
    }

    /// The name it holds uploaded input picture `file` under, if it is known to hold it.
    pub(crate) fn input_named(&self, file: &ImageRef) -> Option<ImageRef> {
        self.inputs().get(file).cloned()
    }

    /// Its state for `/api/health`: asks it now, with `http`; `running` and `waiting` are
    /// the relay's jobs it has.
    pub async fn health(
        &self,
        http: &reqwest::Client,
        running: usize,
        waiting: usize,
    ) -> BackendHealth {
        let reachability = self.upstream.check(http).await;
        let stats = self.upstream.stats();
        let gpu = stats.as_ref().and_then(|stats| stats.devices.first());
        let (version, error) = match reachability {
            Reachability::Up { version } => (version, None),
            Reachability::Down { reason } => (None, Some(reason)),
            Reachability::Unknown => (None, Some("not checked yet".to_owned())),
        };
        BackendHealth {
            url: self.upstream.base().to_string(),
            up: error.is_none(),
            version,
            error,
            events_connected: self.is_up(),
            running,
            waiting,
            gpu: gpu.map(|device| device.name.clone()),
            vram_total: gpu.map(|device| device.vram_total),
            vram_free: gpu.map(|device| device.vram_free),
        }
    }
}
