//! `bench-events`: how fast the relay fans job events out, and what an idle event socket costs.
//!
//! Runs the real `comfy-relay` binary as a child process (so its memory is its own) in front of
//! the ComfyUI double replaying recorded runs with no delays, then:
//! 1. opens `--subscribers` event sockets for one device, queues `--jobs` jobs, and times until
//!    every socket has seen every job finish: events delivered per second, fanned out;
//! 2. opens `--idle` more event sockets that just sit there, and reads the relay's resident
//!    memory before and after: bytes per idle socket.
//!
//! `scripts/bench` builds the release binaries and runs it.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use clap::Parser;
use futures_util::StreamExt;
use shared::api::Event;
use tests::comfyui::{FakeComfyUi, Options};
use tests::device::Device;
use tests::fixtures;
use tokio_tungstenite::tungstenite::Message;

/// Measures event fan-out and idle-socket memory of a comfy-relay process.
#[derive(Parser)]
#[command(name = "bench-events", about)]
struct Args {
    /// Event sockets following every job.
    #[arg(long, default_value_t = 100)]
    subscribers: usize,
    /// Jobs to queue.
    #[arg(long, default_value_t = 200)]
    jobs: usize,
    /// Idle event sockets to open for the memory figure.
    #[arg(long, default_value_t = 2000)]
    idle: usize,
    /// The comfy-relay binary (default: next to this one).
    #[arg(long)]
    relay: Option<PathBuf>,
}

fn resident_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the relay runs");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS is reported")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Reads one socket until it has seen `jobs` jobs finish; returns how many messages it got.
async fn follow(device: Device, jobs: usize) -> usize {
    let url = format!("{}/api/events", device_ws_base(&device));
    let mut socket = tests::client::connect(&url, &[("cookie", device.cookie())])
        .await
        .expect("the event socket opens");
    let mut finished = std::collections::HashSet::new();
    let mut messages = 0;
    while finished.len() < jobs {
        let Some(Ok(message)) = socket.next().await else {
            panic!("the event socket closed early");
        };
        messages += 1;
        if let Message::Text(text) = message
            && let Ok(Event::Job { job }) = serde_json::from_str(text.as_str())
            && job.state.is_finished()
        {
            finished.insert(job.id);
        }
    }
    messages
}

fn device_ws_base(device: &Device) -> String {
    device
        .request(reqwest::Method::GET, "")
        .build()
        .expect("a request")
        .url()
        .as_str()
        .trim_end_matches('/')
        .replacen("http", "ws", 1)
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let relay_binary = args.relay.clone().unwrap_or_else(|| {
        std::env::current_exe()
            .expect("the bench knows where it is")
            .with_file_name("comfy-relay")
    });
    let comfyui = FakeComfyUi::start_with(Options {
        pace: 0.0,
        ..Options::default()
    })
    .await;
    let port = free_port();
    let static_dir = tempfile::tempdir().expect("a temporary dir");
    let mut relay = tokio::process::Command::new(&relay_binary)
        .args([
            &format!("--listen=127.0.0.1:{port}"),
            &format!("--comfyui-url={}", comfyui.url()),
            &format!("--static-dir={}", static_dir.path().display()),
            "--max-finished-jobs=100000",
            // Every socket of this benchmark is a connection.
            "--max-connections=8192",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {} ({e}); run scripts/bench",
                relay_binary.display()
            )
        });
    let pid = relay.id().expect("a running child");
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while reqwest::get(format!("{base}/api/jobs")).await.is_err() {
        assert!(Instant::now() < deadline, "the relay did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let device = Device::new(&base).await;
    println!(
        "comfy-relay pid {pid}: {} KiB resident at start",
        resident_kib(pid)
    );

    // 1. Fan-out.
    let followers: Vec<_> = (0..args.subscribers)
        .map(|_| tokio::spawn(follow(device.clone(), args.jobs)))
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    for _ in 0..args.jobs {
        device.submit_ok(fixtures::INVERT_SLOW).await;
    }
    let mut delivered = 0;
    for follower in followers {
        delivered += follower.await.expect("a follower finished");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let upstream_frames = comfyui.history_ids().len();
    println!(
        "fan-out: {} jobs to {} sockets in {elapsed:.2} s: {:.0} events/s delivered \
         ({delivered} events, {:.0} jobs/s; {upstream_frames} runs in ComfyUI's history)",
        args.jobs,
        args.subscribers,
        delivered as f64 / elapsed,
        args.jobs as f64 / elapsed,
    );
    println!(
        "comfy-relay: {} KiB resident after fan-out",
        resident_kib(pid)
    );

    // 2. Idle sockets.
    let idle_device = Device::new(&base).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = resident_kib(pid);
    let mut idle = Vec::with_capacity(args.idle);
    for _ in 0..args.idle {
        idle.push(idle_device.events().await);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = resident_kib(pid);
    println!(
        "idle: {} event sockets took {} KiB: {:.1} KiB per idle socket",
        args.idle,
        after.saturating_sub(before),
        after.saturating_sub(before) as f64 / args.idle as f64
    );
    drop(idle);
    let _ = relay.kill().await;
}
