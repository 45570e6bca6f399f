//! `bench-backends`: jobs per minute through one relay as ComfyUI servers are added.
//!
//! Runs the real `comfy-relay` binary as a child process in front of 1, 2, then 3 ComfyUI
//! doubles that each replay the recorded slow run at `--pace` (so every job takes the same
//! time on any server, as on equal GPUs). `--clients` devices queue `--jobs` jobs at once; the
//! figure is the time from the first job queued to the last one ended. Prints jobs per minute
//! for each count and its ratio to one server: with the relay adding nothing, N servers give
//! N times one.
//!
//! `scripts/bench` builds the release binaries and runs it.

use std::time::{Duration, Instant};

use clap::Parser;
use shared::api::JobState;
use testkit::comfyui::{FakeComfyUi, Options};
use testkit::device::Device;
use testkit::fixtures;
use testkit::relay_process::RelayProcess;

/// Measures how jobs per minute scale with ComfyUI servers behind one comfy-relay.
#[derive(Parser)]
#[command(name = "bench-backends", about)]
struct Args {
    /// Jobs to run for each count of servers.
    #[arg(long, default_value_t = 36)]
    jobs: usize,
    /// Devices queueing them.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// The doubles' pace: how many times slower than recorded each run replays.
    #[arg(long, default_value_t = 0.5)]
    pace: f64,
    /// The most servers.
    #[arg(long, default_value_t = 3)]
    servers: usize,
}

/// Queues `jobs` jobs from `clients` devices through a relay in front of `servers` doubles and
/// waits for them all: the jobs per minute, and how many each server ran.
async fn run(args: &Args, servers: usize) -> (f64, Vec<usize>) {
    let mut doubles = Vec::new();
    for _ in 0..servers {
        doubles.push(
            FakeComfyUi::start_with(Options {
                pace: args.pace,
                ..Options::default()
            })
            .await,
        );
    }
    let mut flags = vec!["--max-pending-jobs=1000000".to_owned()];
    flags.extend(
        doubles[1..]
            .iter()
            .map(|double| format!("--comfyui-url={}", double.url())),
    );
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let relay = RelayProcess::start(&doubles[0].url(), &flags, "warn").await;
    let mut devices = Vec::new();
    for _ in 0..args.clients {
        devices.push(Device::new(&relay.base).await);
    }
    let started = Instant::now();
    let queued = futures_util::future::join_all(devices.iter().enumerate().map(|(n, device)| {
        let mine = args.jobs / args.clients + usize::from(n < args.jobs % args.clients);
        async move {
            let mut ids = Vec::new();
            for _ in 0..mine {
                ids.push(device.submit_ok(fixtures::INVERT_SLOW).await.id);
            }
            ids
        }
    }))
    .await;
    for (device, ids) in devices.iter().zip(&queued) {
        for id in ids {
            let job = loop {
                let job = device.long_poll(id, 30.0).await;
                if job.state.is_finished() {
                    break job;
                }
            };
            assert_eq!(job.state, JobState::Succeeded, "{job:?}");
        }
    }
    let elapsed = started.elapsed();
    relay.stop().await;
    let ran = doubles
        .iter()
        .map(|double| double.queued_prompts().len())
        .collect();
    (args.jobs as f64 / elapsed.as_secs_f64() * 60.0, ran)
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    // One job alone on one server: what a job costs.
    let (one_alone, _) = run(
        &Args {
            jobs: 1,
            clients: 1,
            ..Args::parse()
        },
        1,
    )
    .await;
    println!(
        "one job alone: {:.2} s from queued to ended (pace {})",
        60.0 / one_alone,
        args.pace
    );
    let mut base = None;
    for servers in 1..=args.servers {
        let (per_minute, ran) = run(&args, servers).await;
        let base = *base.get_or_insert(per_minute);
        println!(
            "{servers} server(s): {per_minute:.1} jobs/min, {:.2}x one server; jobs per server {ran:?}",
            per_minute / base
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
