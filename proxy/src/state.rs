//! The state every handler shares: cheap to clone, built once at start.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Auth;
use crate::backend::Backend;
use crate::comfy::{self, ComfyClient};
use crate::comfy_routes::AllowedRoute;
use crate::config::Config;
use crate::device_links::DeviceLinks;
use crate::device_sockets::DeviceSockets;
use crate::jobs::Jobs;
use crate::library::Library;
use crate::object_info::ObjectInfo;
use crate::push::Push;
use crate::same_origin::HostNames;
use crate::server::{ConnectionLimits, Connections};
use crate::tls::Tls;

/// Shared by every request and background task; a clone is one reference count (axum clones
/// the state for every request it hands a handler).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`AppState`] holds.
pub struct Shared {
    /// One HTTP client (and connection pool) for every request to ComfyUI.
    pub http: reqwest::Client,
    /// How often to check whether ComfyUI answers.
    pub probe_interval: Duration,
    /// The built web app.
    pub static_dir: PathBuf,
    /// Cancelled when the relay shuts down; long-lived tasks and sockets watch it.
    pub shutdown: CancellationToken,
    /// Long-lived tasks (relayed sockets, the upstream watcher), awaited at shutdown.
    pub tasks: TaskTracker,
    /// Jobs queued through the relay and the sockets following them.
    pub jobs: Arc<Jobs>,
    /// One-time links that hand a device's identity to another browser.
    pub device_links: Arc<DeviceLinks>,
    /// Who may use the relay.
    pub auth: Arc<Auth>,
    /// The host names the relay answers to.
    pub host_names: Arc<HostNames>,
    /// ComfyUI routes the operator allowed beyond the ones the relay serves.
    pub allowed_routes: Arc<Vec<AllowedRoute>>,
    /// Whether any input picture may be viewed by any device.
    pub share_inputs: bool,
    /// The open connections, counted against their caps.
    pub connections: Arc<Connections>,
    /// The devices' open sockets, closed when a device is revoked.
    pub sockets: Arc<DeviceSockets>,
    /// The largest image upload accepted, in bytes.
    pub max_upload_bytes: u64,
    /// The team's saved workflows.
    pub library: Arc<Library>,
    /// HTTPS, when it is on.
    pub tls: Option<Arc<Tls>>,
    /// Notifications to the devices' browsers when their jobs end.
    pub push: Arc<Push>,
}

impl AppState {
    /// Builds the state for `config`.
    pub fn new(config: &Config) -> anyhow::Result<Self> {
        let http = comfy::http_client(config.upstream_timeout())?;
        let backends = config
            .comfyui_servers()
            .into_iter()
            .enumerate()
            .map(|(index, candidates)| {
                Arc::new(Backend::new(
                    index,
                    http.clone(),
                    candidates,
                    config.upstream_timeout(),
                ))
            })
            .collect();
        let shutdown = CancellationToken::new();
        Ok(Self(Arc::new(Shared {
            jobs: Arc::new(Jobs::new(backends, config)?),
            device_links: Arc::new(DeviceLinks::default()),
            auth: Arc::new(Auth::new(config)?),
            host_names: Arc::new(HostNames::new(&config.allowed_hosts)),
            allowed_routes: Arc::new(config.allowed_routes.clone()),
            share_inputs: config.share_inputs,
            connections: Connections::new(ConnectionLimits {
                total: config.max_connections,
                per_address: config.max_connections_per_address,
            }),
            sockets: Arc::new(DeviceSockets::new(
                shutdown.clone(),
                config.max_sockets_per_device,
            )),
            max_upload_bytes: config.max_upload_bytes,
            library: Arc::new(Library::new(
                &config.data_dir,
                config.locked_workflows,
                config.auto_run.clone(),
            )),
            tls: Tls::from_config(config)?,
            push: Arc::new(Push::new(config)?),
            http,
            probe_interval: config.probe_interval(),
            static_dir: config.static_dir.clone(),
            shutdown,
            tasks: TaskTracker::new(),
        })))
    }
}

impl Shared {
    /// The first ComfyUI server: the one raw clients reach, and whose node schemas the app
    /// reads.
    pub fn first_backend(&self) -> &Backend {
        &self.jobs.backends()[0]
    }
}

/// The relaying handlers need only the first ComfyUI server's client, which is cheaper to
/// clone than the whole state.
impl axum::extract::FromRef<AppState> for ComfyClient {
    fn from_ref(state: &AppState) -> Self {
        state.jobs.comfy().clone()
    }
}

/// The first server's node schemas, which the app's forms are built from.
impl axum::extract::FromRef<AppState> for Arc<ObjectInfo> {
    fn from_ref(state: &AppState) -> Self {
        state.first_backend().object_info.clone()
    }
}

/// The parts of the state a handler may take on its own (`State<Arc<Library>>`), so that each
/// says what it uses.
macro_rules! parts {
    ($($field:ident: $part:ty),* $(,)?) => {
        $(impl axum::extract::FromRef<AppState> for $part {
            fn from_ref(state: &AppState) -> Self {
                state.$field.clone()
            }
        })*
    };
}

parts!(
    auth: Arc<Auth>,
    device_links: Arc<DeviceLinks>,
    library: Arc<Library>,
    push: Arc<Push>,
);
