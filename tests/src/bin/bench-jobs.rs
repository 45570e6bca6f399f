//! `bench-jobs`: how the job database holds up: jobs queued per second (each written to SQLite
//! before the relay answers), then `GET /api/jobs/history` and start-up with a large database.
//!
//! Runs the real `comfy-relay` binary as a child process in front of the ComfyUI double
//! replaying recorded runs with no delays:
//! 1. `--clients` devices queue `--jobs` jobs at once, as fast as the relay answers: jobs
//!    queued per second, then runs per second until ComfyUI has run them all;
//! 2. stops the relay and grows its database to `--total` jobs by copying the rows it wrote
//!    (new ids, older times), as a team's months of use would leave it;
//! 3. starts the relay again on that data directory: time until it answers;
//! 4. reads one device's history `--requests` times each way (first page, a page deep in the
//!    past, a text search that matches, one that matches nothing and so reads every job of the
//!    device, the gallery's page of jobs that made files, the starred ones when none is): p50
//!    and p99.
//!
//! `scripts/bench` builds the release binaries and runs it.

use std::time::{Duration, Instant};

use clap::Parser;
use shared::api::HistoryPage;
use testkit::comfyui::FakeComfyUi;
use testkit::device::Device;
use testkit::fixtures;
use testkit::relay_process::RelayProcess;

/// Measures the job database of a comfy-relay process.
#[derive(Parser)]
#[command(name = "bench-jobs", about)]
struct Args {
    /// Jobs to queue through the relay.
    #[arg(long, default_value_t = 5_000)]
    jobs: usize,
    /// Devices queueing at once.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Jobs in the database for the history and start-up figures.
    #[arg(long, default_value_t = 100_000)]
    total: usize,
    /// History requests per kind.
    #[arg(long, default_value_t = 300)]
    requests: usize,
}

/// The flags both relay runs share: no cap on what one device may have waiting.
const FLAGS: &[&str] = &[
    "--max-pending-jobs=1000000",
    "--max-connections-per-address=512",
];

/// Copies every job row into `copies` more, each copy with a new id and number and moved
/// `span_ms` further into the past per copy, in one transaction, with the files each made
/// (renamed per copy). Only `id`, `number` and `created_at` are changed; every other column is
/// copied as the relay wrote it.
fn grow(database: &std::path::Path, copies: usize, span_ms: i64) -> rusqlite::Result<usize> {
    let mut connection = rusqlite::Connection::open(database)?;
    let columns: Vec<String> = connection
        .prepare("SELECT name FROM pragma_table_info('jobs')")?
        .query_map([], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let copied: Vec<String> = columns
        .iter()
        .map(|column| match column.as_str() {
            "id" => "id || '-' || k".to_owned(),
            "number" => "number + k * (SELECT max(number) FROM jobs)".to_owned(),
            "created_at" => "created_at - k * ?2".to_owned(),
            other => other.to_owned(),
        })
        .collect();
    let transaction = connection.transaction()?;
    let added = transaction.execute(
        &format!(
            "WITH RECURSIVE copy(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM copy WHERE k < ?1)
             INSERT INTO jobs ({}) SELECT {} FROM jobs, copy",
            columns.join(", "),
            copied.join(", ")
        ),
        rusqlite::params![i64::try_from(copies).expect("a count"), span_ms],
    )?;
    transaction.execute(
        "WITH RECURSIVE copy(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM copy WHERE k < ?1)
         INSERT INTO job_files (job, filename, subfolder, type)
         SELECT job || '-' || k, k || '-' || filename, subfolder, type FROM job_files, copy",
        [i64::try_from(copies).expect("a count")],
    )?;
    transaction.commit()?;
    Ok(added)
}

/// The p50 and p99 of `requests` sequential `GET`s of `path`, in milliseconds, and the size of
/// the last page.
async fn latency(device: &Device, path: &str, requests: usize) -> (f64, f64, usize) {
    let mut times = Vec::with_capacity(requests);
    let mut size = 0;
    for _ in 0..requests {
        let started = Instant::now();
        let page: HistoryPage = device.get_json(path).await;
        times.push(started.elapsed());
        size = page.jobs.len();
    }
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e3;
    (at(0.5), at(0.99), size)
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let comfyui = FakeComfyUi::start_instant().await;
    let data = tempfile::tempdir().expect("a temporary dir");

    // 1. Queue.
    let relay = RelayProcess::start_in(data.path(), &comfyui.url(), FLAGS, "warn").await;
    let mut devices = Vec::with_capacity(args.clients);
    for _ in 0..args.clients {
        devices.push(Device::new(&relay.base).await);
    }
    let started = Instant::now();
    let queuers: Vec<_> = devices
        .iter()
        .enumerate()
        .map(|(n, device)| {
            let device = device.clone();
            let share = args.jobs / args.clients + usize::from(n < args.jobs % args.clients);
            tokio::spawn(async move {
                for _ in 0..share {
                    device.submit_ok(fixtures::INVERT_SLOW).await;
                }
            })
        })
        .collect();
    for queuer in queuers {
        queuer.await.expect("every job was queued");
    }
    let queued = started.elapsed().as_secs_f64();
    while comfyui.history_ids().len() < args.jobs {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ran = started.elapsed().as_secs_f64();
    println!(
        "queue: {} jobs from {} devices queued in {queued:.2} s: {:.0} jobs/s written \
         (SQLite WAL, synchronous=FULL); ComfyUI ran them all in {ran:.2} s: {:.0} runs/s \
         at --in-flight 2",
        args.jobs,
        args.clients,
        args.jobs as f64 / queued,
        args.jobs as f64 / ran,
    );
    // Let the last endings reach the database.
    tokio::time::sleep(Duration::from_millis(500)).await;
    relay.stop().await;

    // 2. Grow.
    let database = data.path().join("jobs.sqlite3");
    let copies = args.total.div_ceil(args.jobs).saturating_sub(1);
    let started = Instant::now();
    let span_ms = i64::try_from(Duration::from_secs(86_400).as_millis()).expect("a day in ms");
    let added = grow(&database, copies, span_ms).expect("the database grows");
    let total = args.jobs + added;
    let bytes = std::fs::metadata(&database).map_or(0, |m| m.len());
    println!(
        "database: {total} jobs ({added} copied in {:.1} s), {:.1} MB",
        started.elapsed().as_secs_f64(),
        bytes as f64 / 1e6
    );

    // 3. Start.
    let relay = RelayProcess::start_in(data.path(), &comfyui.url(), FLAGS, "warn").await;
    println!(
        "start-up: answering {:.0} ms after it was started on that database, {} KiB resident",
        relay.ready_after.as_secs_f64() * 1e3,
        relay.status_kib("VmRSS:")
    );

    // 4. History.
    let device = Device::with_cookie(&relay.base, devices[0].cookie());
    let all: HistoryPage = device.get_json("/api/jobs/history?limit=100").await;
    let deep = {
        // About half-way back through the device's jobs.
        let mut page = all;
        for _ in 0..total / args.clients / 200 {
            let next = page.next.clone().expect("more pages");
            page = device
                .get_json(&format!("/api/jobs/history?before={next}"))
                .await;
        }
        page.next.expect("a page deep in the past")
    };
    for (what, path) in [
        ("first page", "/api/jobs/history".to_owned()),
        (
            "a page half-way back",
            format!("/api/jobs/history?before={deep}"),
        ),
        (
            "text that matches",
            "/api/jobs/history?text=imageinvert".to_owned(),
        ),
        (
            "text that matches nothing",
            "/api/jobs/history?text=no-such-words".to_owned(),
        ),
        (
            "the gallery's first page",
            "/api/jobs/history?with_outputs=true".to_owned(),
        ),
        (
            "starred, none are",
            "/api/jobs/history?starred=true".to_owned(),
        ),
    ] {
        let (p50, p99, size) = latency(&device, &path, args.requests).await;
        println!(
            "history, {what}: p50 {p50:.2} ms, p99 {p99:.2} ms ({size} jobs per answer, {} \
             requests, {} jobs of this device among {total})",
            args.requests,
            total / args.clients,
        );
    }
    relay.stop().await;
}
