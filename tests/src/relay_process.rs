//! The real `comfy-relay` binary as a child process, for benchmarks that measure the relay's own
//! memory rather than the test process's.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::Child;

/// A running `comfy-relay` process on a free loopback port.
pub struct RelayProcess {
    child: Child,
    /// Its process id.
    pub pid: u32,
    /// Its base URL, `http://127.0.0.1:PORT`.
    pub base: String,
    /// Its port.
    pub port: u16,
    _dirs: tempfile::TempDir,
}

/// The `comfy-relay` binary next to the running one (`scripts/bench` builds both).
fn binary() -> PathBuf {
    std::env::current_exe()
        .expect("the bench knows where it is")
        .with_file_name("comfy-relay")
}

impl RelayProcess {
    /// Starts the relay in front of `comfyui_url`, with a temporary static and data dir, `extra`
    /// flags and `RUST_LOG=log`; returns once it answers HTTP.
    pub async fn start(comfyui_url: &str, extra: &[&str], log: &str) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let dirs = tempfile::tempdir().expect("a temporary dir");
        let binary = binary();
        let child = tokio::process::Command::new(&binary)
            .arg(format!("--listen=127.0.0.1:{port}"))
            .arg(format!("--comfyui-url={comfyui_url}"))
            .arg(format!("--static-dir={}", dirs.path().display()))
            .arg(format!("--data-dir={}", dirs.path().display()))
            .args(extra)
            .env("RUST_LOG", log)
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {} ({e}); run scripts/bench", binary.display())
            });
        let pid = child.id().expect("a running child");
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while reqwest::get(format!("{base}/api/session")).await.is_err() {
            assert!(Instant::now() < deadline, "the relay did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Let its first look at ComfyUI settle.
        tokio::time::sleep(Duration::from_millis(300)).await;
        Self {
            child,
            pid,
            base,
            port,
            _dirs: dirs,
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

    /// Stops the relay.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}
