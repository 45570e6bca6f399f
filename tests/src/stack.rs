//! `spawn_stack()`: the ComfyUI double and the real relay, both on ephemeral ports.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser as _;
use proxy::{AppState, Config};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::comfyui::{FakeComfyUi, Options};

/// How to start a stack.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// The double's behaviour.
    pub comfyui: Options,
    /// The relay's static dir; `None` for a temporary dir with a one-line `index.html`.
    pub static_dir: Option<PathBuf>,
    /// Seconds the relay waits for ComfyUI to answer.
    pub upstream_timeout_secs: u64,
    /// Seconds between the relay's health checks of ComfyUI.
    pub probe_interval_secs: u64,
    /// More `comfy-relay` flags.
    pub relay_args: Vec<String>,
    /// More ComfyUI doubles behind the same relay, after the first.
    pub more_comfyuis: Vec<Options>,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            comfyui: Options::default(),
            static_dir: None,
            upstream_timeout_secs: 30,
            probe_interval_secs: 1,
            relay_args: Vec::new(),
            more_comfyuis: Vec::new(),
        }
    }
}

/// A running double + relay.
pub struct Stack {
    /// The ComfyUI double (the relay's first server).
    pub comfyui: FakeComfyUi,
    /// The relay's other servers, in order.
    pub more_comfyuis: Vec<FakeComfyUi>,
    /// Where the relay listens.
    pub relay_addr: SocketAddr,
    /// The relay's state, for tests that look inside (a slow reader's backlog, say).
    pub state: AppState,
    /// The page the temporary static dir serves, when no static dir was given.
    pub index_html: &'static str,
    stop_relay: Option<oneshot::Sender<()>>,
    relay: JoinHandle<std::io::Result<()>>,
    _static_dir: Option<tempfile::TempDir>,
    /// The relay's data directory (token, paired devices).
    pub data_dir: tempfile::TempDir,
}

/// The `index.html` of the temporary static dir.
pub const TEST_INDEX_HTML: &str = "<!doctype html><title>Comfy Relay test page</title>";

/// Starts the double and a relay in front of it with default options.
pub async fn spawn_stack() -> Stack {
    spawn_stack_with(StackOptions::default()).await
}

/// Starts the double and a relay in front of it.
pub async fn spawn_stack_with(options: StackOptions) -> Stack {
    let comfyui = FakeComfyUi::start_with(options.comfyui.clone()).await;
    spawn_relay(comfyui, options).await
}

/// Starts the double replaying runs at `pace` (see [`Options::pace`]) and a relay in front of it.
pub async fn spawn_paced_stack(pace: f64) -> Stack {
    spawn_stack_with(StackOptions {
        comfyui: Options {
            pace,
            ..Options::default()
        },
        ..StackOptions::default()
    })
    .await
}

/// Starts the double (at `pace`) and a relay that requires pairing even on loopback, with the
/// access token `token` and more `comfy-relay` flags.
pub async fn spawn_guarded_stack(token: &str, extra: &[&str], pace: f64) -> Stack {
    let mut relay_args = vec!["--require-token".to_owned(), format!("--token={token}")];
    relay_args.extend(extra.iter().map(|a| (*a).to_owned()));
    spawn_stack_with(StackOptions {
        comfyui: Options {
            pace,
            ..Options::default()
        },
        relay_args,
        ..StackOptions::default()
    })
    .await
}

/// Starts a relay in front of an already running double.
pub async fn spawn_relay(comfyui: FakeComfyUi, options: StackOptions) -> Stack {
    let mut more_comfyuis = Vec::new();
    for options in &options.more_comfyuis {
        more_comfyuis.push(FakeComfyUi::start_with(options.clone()).await);
    }
    let data_dir = tempfile::tempdir().expect("a temporary data dir");
    let (static_dir, temp) = match options.static_dir {
        Some(dir) => (dir, None),
        None => {
            let temp = tempfile::tempdir().expect("a temporary dir");
            std::fs::write(temp.path().join("index.html"), TEST_INDEX_HTML)
                .expect("index.html written");
            (temp.path().to_owned(), Some(temp))
        }
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
    let relay_addr = listener.local_addr().expect("a bound address");
    let mut args = vec![
        "comfy-relay".to_owned(),
        format!("--listen={relay_addr}"),
        format!("--comfyui-url={}", comfyui.url()),
        format!("--static-dir={}", static_dir.display()),
        format!("--upstream-timeout-secs={}", options.upstream_timeout_secs),
        format!("--probe-interval-secs={}", options.probe_interval_secs),
        format!("--data-dir={}", data_dir.path().display()),
    ];
    args.extend(
        more_comfyuis
            .iter()
            .map(|comfyui| format!("--comfyui-url={}", comfyui.url())),
    );
    args.extend(options.relay_args.iter().cloned());
    let config = Config::parse_from(args);
    let state = AppState::new(&config).expect("the relay's state builds");
    let (stop_relay, stopped) = oneshot::channel::<()>();
    let relay = tokio::spawn(proxy::run(listener, state.clone(), async move {
        let _ = stopped.await;
    }));
    Stack {
        comfyui,
        more_comfyuis,
        relay_addr,
        state,
        index_html: TEST_INDEX_HTML,
        stop_relay: Some(stop_relay),
        relay,
        _static_dir: temp,
        data_dir,
    }
}

impl Stack {
    /// The relay's base URL, `http://127.0.0.1:PORT`.
    pub fn relay_url(&self) -> String {
        format!("http://{}", self.relay_addr)
    }

    /// The relay's WebSocket URL for a path, `ws://127.0.0.1:PORT/path`.
    pub fn relay_ws(&self, path: &str) -> String {
        format!("ws://{}{path}", self.relay_addr)
    }

    /// Asks the relay to shut down, as SIGTERM does, and waits until it has.
    pub async fn shut_down_relay(&mut self) {
        if let Some(stop) = self.stop_relay.take() {
            let _ = stop.send(());
        }
        (&mut self.relay)
            .await
            .expect("the relay task did not panic")
            .expect("the relay stopped cleanly");
    }
}
