//! The real `comfy-relay` binary as a child process: for benchmarks that measure the relay's own
//! memory rather than the test process's, and for tests that kill it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::Child;

/// A running `comfy-relay` process on a loopback port.
pub struct RelayProcess {
    child: Child,
    /// Its process id.
    pub pid: u32,
    /// Its base URL, `http://127.0.0.1:PORT`.
    pub base: String,
    /// Its port.
    pub port: u16,
    /// How long it took from being started to answering HTTP.
    pub ready_after: Duration,
    _dirs: Option<tempfile::TempDir>,
}

/// How to start one: which binary, where, with what.
pub struct Launch<'a> {
    /// The executable: `comfy-relay`, or the test kit's `relay-cli` in tests.
    pub binary: PathBuf,
    /// The loopback port it listens on.
    pub port: u16,
    /// Its data directory, which outlives it.
    pub data_dir: &'a Path,
    /// The web app it serves.
    pub static_dir: &'a Path,
    /// ComfyUI's URL.
    pub comfyui_url: &'a str,
    /// More flags.
    pub extra: &'a [&'a str],
    /// `RUST_LOG`.
    pub log: &'a str,
}

/// The `comfy-relay` binary next to the running one (`scripts/bench` builds both).
fn binary() -> PathBuf {
    std::env::current_exe()
        .expect("the bench knows where it is")
        .with_file_name("comfy-relay")
}

/// A loopback port free now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl RelayProcess {
    /// Starts the `comfy-relay` next to this benchmark in front of `comfyui_url`, with a
    /// temporary static and data dir, `extra` flags and `RUST_LOG=log`; returns once it answers
    /// HTTP.
    pub async fn start(comfyui_url: &str, extra: &[&str], log: &str) -> Self {
        let dirs = tempfile::tempdir().expect("a temporary dir");
        let mut relay = Self::start_in(dirs.path(), comfyui_url, extra, log).await;
        relay._dirs = Some(dirs);
        relay
    }

    /// Starts it as [`RelayProcess::start`] does, serving from the data (and static) directory
    /// `data_dir`.
    pub async fn start_in(data_dir: &Path, comfyui_url: &str, extra: &[&str], log: &str) -> Self {
        Self::launch(Launch {
            binary: binary(),
            port: free_port(),
            data_dir,
            static_dir: data_dir,
            comfyui_url,
            extra,
            log,
        })
        .await
    }

    /// Starts the relay `launch` describes; returns once it answers HTTP.
    pub async fn launch(launch: Launch<'_>) -> Self {
        let started = Instant::now();
        let child = tokio::process::Command::new(&launch.binary)
            .arg(format!("--listen=127.0.0.1:{}", launch.port))
            .arg(format!("--comfyui-url={}", launch.comfyui_url))
            .arg(format!("--static-dir={}", launch.static_dir.display()))
            .arg(format!("--data-dir={}", launch.data_dir.display()))
            .args(launch.extra)
            .env("RUST_LOG", launch.log)
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} ({e}); run scripts/bench",
                    launch.binary.display()
                )
            });
        let pid = child.id().expect("a running child");
        let base = format!("http://127.0.0.1:{}", launch.port);
        let deadline = started + Duration::from_secs(60);
        while reqwest::get(format!("{base}/api/session")).await.is_err() {
            assert!(Instant::now() < deadline, "the relay did not start");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let ready_after = started.elapsed();
        // Let its first look at ComfyUI settle.
        tokio::time::sleep(Duration::from_millis(300)).await;
        Self {
            child,
            pid,
            base,
            port: launch.port,
            ready_after,
            _dirs: None,
        }
    }

    /// A figure of `/proc/PID/status` in KiB, such as `VmRSS:` or `VmHWM:` (the peak).
    pub fn status_kib(&self, field: &str) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid)).expect("the relay runs");
        status
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("the field is reported")
    }

    /// Forgets the peak so far, so that the next `VmHWM:` is what came after.
    pub fn reset_peak(&self) {
        std::fs::write(format!("/proc/{}/clear_refs", self.pid), "5")
            .expect("clear_refs is writable");
    }

    /// Stops the relay at once (SIGKILL), as a crash or an out-of-memory kill would.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}
