//! The state every handler shares: cheap to clone, built once at start.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::upstream::Upstream;

/// How long to wait for a TCP connection to ComfyUI.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Shared by every request and background task.
#[derive(Clone)]
pub struct AppState {
    /// One HTTP client (and connection pool) for every request to ComfyUI.
    pub http: reqwest::Client,
    /// Where ComfyUI is.
    pub upstream: Arc<Upstream>,
    /// How long ComfyUI may take to start answering.
    pub upstream_timeout: Duration,
    /// How often to check whether ComfyUI answers.
    pub probe_interval: Duration,
    /// The built web app.
    pub static_dir: PathBuf,
    /// Cancelled when the relay shuts down; long-lived tasks and sockets watch it.
    pub shutdown: CancellationToken,
    /// Long-lived tasks (relayed sockets, the upstream watcher), awaited at shutdown.
    pub tasks: TaskTracker,
}

impl AppState {
    /// Builds the state for `config`.
    pub fn new(config: &Config) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            // A stalled body (ComfyUI hung mid-response) fails instead of hanging forever.
            .read_timeout(config.upstream_timeout())
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()?;
        Ok(Self {
            http,
            upstream: Arc::new(Upstream::new(config.comfyui_candidates())),
            upstream_timeout: config.upstream_timeout(),
            probe_interval: config.probe_interval(),
            static_dir: config.static_dir.clone(),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
        })
    }
}
