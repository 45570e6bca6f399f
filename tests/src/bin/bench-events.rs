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

use std::time::{Duration, Instant};

use clap::Parser;
use futures_util::StreamExt;
use shared::api::Event;
use testkit::comfyui::FakeComfyUi;
use testkit::device::Device;
use testkit::fixtures;
use testkit::relay_process::RelayProcess;
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
}

/// Reads one socket until it has seen `jobs` jobs finish; returns how many messages it got.
async fn follow(device: Device, jobs: usize) -> usize {
    let url = format!("{}/api/events", device_ws_base(&device));
    let mut socket = testkit::client::connect(&url, &[("cookie", device.cookie())])
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
    let comfyui = FakeComfyUi::start_instant().await;
    // Every socket of this benchmark is a connection, and a hundred open at once from one
    // address, each unauthenticated until its handshake is read.
    let relay = RelayProcess::start(
        &comfyui.url(),
        &[
            "--max-finished-jobs=100000",
            "--max-connections=8192",
            "--max-connections-per-address=512",
            "--max-sockets-per-device=8192",
        ],
        "warn",
    )
    .await;
    let (pid, base) = (relay.pid, relay.base.clone());
    let device = Device::new(&base).await;
    println!(
        "comfy-relay pid {pid}: {} KiB resident at start",
        relay.status_kib("VmRSS:")
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
        relay.status_kib("VmRSS:")
    );

    // 2. Idle sockets.
    let idle_device = Device::new(&base).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = relay.status_kib("VmRSS:");
    let mut idle = Vec::with_capacity(args.idle);
    for _ in 0..args.idle {
        idle.push(idle_device.events().await);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = relay.status_kib("VmRSS:");
    println!(
        "idle: {} event sockets took {} KiB: {:.1} KiB per idle socket",
        args.idle,
        after.saturating_sub(before),
        after.saturating_sub(before) as f64 / args.idle as f64
    );
    drop(idle);
    relay.stop().await;
}
