//! The relay as a process killed (SIGKILL) mid-run and started again on the same data
//! directory: every job is still there, the ones ComfyUI finished meanwhile have their outputs,
//! the ones it still runs are followed to their end, and the ones the relay held are handed to
//! ComfyUI once, when it has room.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::path::Path;
use std::time::{Duration, Instant};

use shared::api::{Job, JobState};
use testkit::comfyui::{FakeComfyUi, Options};
use testkit::device::Device;
use testkit::fixtures;
use testkit::relay_process::{Launch, RelayProcess, free_port};

const CLI: &str = env!("CARGO_BIN_EXE_relay-cli");
const LIMIT: Duration = Duration::from_secs(30);

/// The relay on `port` with `data_dir` and `extra` flags, once it answers.
async fn relay(comfyui: &FakeComfyUi, port: u16, data_dir: &Path, extra: &[&str]) -> RelayProcess {
    RelayProcess::launch(Launch {
        binary: CLI.into(),
        port,
        data_dir,
        static_dir: data_dir,
        comfyui_url: &comfyui.url(),
        extra,
        log: "warn",
    })
    .await
}

fn find<'a>(jobs: &'a [Job], id: &str) -> &'a Job {
    jobs.iter()
        .find(|job| job.id == id)
        .unwrap_or_else(|| panic!("job {id} is not listed: {jobs:#?}"))
}

#[tokio::test]
async fn a_relay_killed_mid_run_comes_back_with_every_job_and_what_finished_meanwhile() {
    let comfyui = FakeComfyUi::start_with(Options {
        pace: 3.0,
        ..Options::default()
    })
    .await;
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let first = relay(&comfyui, port, data.path(), &[]).await;
    let phone = Device::new(&url).await;
    let mut events = phone.events().await;
    let ids: Vec<String> = {
        let mut ids = Vec::new();
        for _ in 0..4 {
            ids.push(phone.submit_ok(fixtures::INVERT_SLOW).await.id);
        }
        ids
    };
    let done = events
        .wait_for(&ids[0], LIMIT, |j| j.state.is_finished())
        .await;
    assert_eq!(done.state, JobState::Succeeded);
    events
        .wait_for(&ids[1], LIMIT, |j| j.state == JobState::Running)
        .await;
    let held = events.wait_for(&ids[3], LIMIT, |_| true).await;
    assert!(
        held.held,
        "two jobs are in ComfyUI, the fourth waits in the relay"
    );

    // Killed only once ComfyUI has the third: killed while it is being handed, the relay would
    // rightly call it lost, not knowing whether ComfyUI got it.
    let deadline = Instant::now() + LIMIT;
    while comfyui.queued_prompts().len() < 3 {
        assert!(Instant::now() < deadline, "the third job was never handed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    first.stop().await;
    // ComfyUI goes on without the relay: the second job ends while nobody listens.
    let deadline = Instant::now() + LIMIT;
    while !comfyui.history_ids().contains(&ids[1]) {
        assert!(Instant::now() < deadline, "the double never finished it");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let _second = relay(&comfyui, port, data.path(), &[]).await;
    let phone = Device::with_cookie(&url, phone.cookie());
    let mut events = phone.events().await;
    let before = events.wait_for(&ids[0], LIMIT, |_| true).await;
    assert_eq!(before.state, JobState::Succeeded);
    assert_eq!(before.outputs, done.outputs, "what it made is remembered");
    assert_eq!(before.progress, 1.0);
    let meanwhile = events
        .wait_for(&ids[1], LIMIT, |j| j.state.is_finished())
        .await;
    assert_eq!(meanwhile.state, JobState::Succeeded);
    assert_eq!(
        meanwhile.outputs.len(),
        1,
        "its outputs come from the history"
    );
    let last = events
        .wait_for(&ids[2], LIMIT, |j| j.state.is_finished())
        .await;
    assert_eq!(last.state, JobState::Succeeded, "followed again to its end");
    assert_eq!(last.outputs.len(), 1);

    let held = events
        .wait_for(&ids[3], LIMIT, |j| j.state.is_finished())
        .await;
    assert_eq!(held.state, JobState::Succeeded, "held across the restart");

    let listed = phone.jobs().await;
    assert_eq!(listed.len(), 4, "{listed:#?}");
    for id in &ids {
        assert_eq!(find(&listed, id).state, JobState::Succeeded);
    }
    let given: Vec<String> = comfyui
        .queued_prompts()
        .iter()
        .map(|body| body["prompt_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(given, ids, "each job was given to ComfyUI once, in turn");
}

#[tokio::test]
async fn with_a_retention_finished_jobs_are_forgotten_once_old_unless_starred() {
    let comfyui = FakeComfyUi::start_instant().await;
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let first = relay(&comfyui, port, data.path(), &[]).await;
    let phone = Device::new(&url).await;
    let mut events = phone.events().await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let id = phone.submit_ok(fixtures::INVERT_SLOW).await.id;
        events.wait_for(&id, LIMIT, |j| j.state.is_finished()).await;
        ids.push(id);
    }
    let starred = phone
        .post_json(
            &format!("/api/jobs/{}/star", ids[0]),
            serde_json::json!({ "starred": true }),
        )
        .await;
    assert_eq!(starred.status(), 200);
    first.stop().await;

    // Ten days pass for the first two jobs.
    let ten_days: i64 = 10 * 24 * 60 * 60 * 1000;
    let database = rusqlite::Connection::open(data.path().join("jobs.sqlite3")).unwrap();
    let aged = database
        .execute(
            "UPDATE jobs SET created_at = created_at - ?1, finished_at = finished_at - ?1
             WHERE id IN (?2, ?3)",
            rusqlite::params![ten_days, ids[0], ids[1]],
        )
        .unwrap();
    assert_eq!(aged, 2);
    drop(database);

    let _second = relay(&comfyui, port, data.path(), &["--keep-days=7"]).await;
    let phone = Device::with_cookie(&url, phone.cookie());
    let deadline = Instant::now() + LIMIT;
    loop {
        let page: shared::api::HistoryPage = phone.get_json("/api/jobs/history").await;
        let kept: Vec<&str> = page.jobs.iter().map(|j| j.id.as_str()).collect();
        if kept == [ids[2].as_str(), ids[0].as_str()] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the retention never applied: {kept:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let listed: Vec<String> = phone.jobs().await.into_iter().map(|j| j.id).collect();
    assert_eq!(
        listed,
        [ids[2].clone(), ids[0].clone()],
        "forgotten in memory too"
    );
    let gone = phone
        .send(reqwest::Method::GET, &format!("/api/jobs/{}", ids[1]))
        .await;
    assert_eq!(gone.status(), 404);
}
