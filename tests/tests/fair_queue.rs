//! The relay's own queue: ComfyUI gets two jobs at a time, devices take turns for the rest, and
//! a device moves or cancels the jobs the relay still holds.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::collections::HashMap;
use std::time::Duration;

use serde_json::json;
use shared::api::{ErrorBody, Job, JobState};
use testkit::comfyui::Options;
use testkit::device::Device;
use testkit::fixtures;
use testkit::stack::{Stack, StackOptions, spawn_paced_stack, spawn_stack_with};

const LIMIT: Duration = Duration::from_secs(60);

/// The prompt ids ComfyUI was given, in order.
fn handed(stack: &Stack) -> Vec<String> {
    stack
        .comfyui
        .queued_prompts()
        .iter()
        .map(|body| body["prompt_id"].as_str().unwrap().to_owned())
        .collect()
}

async fn wait_all_finished(device: &Device, jobs: &[Job]) -> Vec<Job> {
    let mut ended = Vec::new();
    for job in jobs {
        let deadline = tokio::time::Instant::now() + LIMIT;
        loop {
            let now = device.long_poll(&job.id, 5.0).await;
            if now.state.is_finished() {
                ended.push(now);
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "{now:?}");
        }
    }
    ended
}

async fn move_to(device: &Device, id: &str, position: u32) -> reqwest::Response {
    device
        .post_json(
            &format!("/api/jobs/{id}/move"),
            json!({ "position": position }),
        )
        .await
}

#[tokio::test]
async fn two_devices_queueing_ten_and_three_take_turns_on_comfyui() {
    let stack = spawn_paced_stack(0.5).await;
    let busy = Device::new(&stack.relay_url()).await;
    let other = Device::new(&stack.relay_url()).await;
    let mut owner = HashMap::new();
    let mut jobs = Vec::new();
    for _ in 0..10 {
        let job = busy.submit_ok(fixtures::INVERT_SLOW).await;
        owner.insert(job.id.clone(), "busy");
        jobs.push(job);
    }
    assert_eq!(
        handed(&stack).len(),
        2,
        "ComfyUI has one running and one ready"
    );
    assert!(!jobs[1].held && jobs[2].held, "{:?}", &jobs[..3]);
    for _ in 0..3 {
        let job = other.submit_ok(fixtures::INVERT_SLOW).await;
        owner.insert(job.id.clone(), "other");
        jobs.push(job);
    }
    let first_other = other
        .get_json::<Job>(&format!("/api/jobs/{}", jobs[10].id))
        .await;
    assert_eq!(
        first_other.queue_position,
        Some(2),
        "only what ComfyUI has is ahead of the other device's first job"
    );
    assert!(first_other.held);

    let ended = wait_all_finished(&busy, &jobs[..10]).await;
    let ended_other = wait_all_finished(&other, &jobs[10..]).await;
    for job in ended.iter().chain(&ended_other) {
        assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    }
    let order: Vec<&str> = handed(&stack).iter().map(|id| owner[id]).collect();
    assert_eq!(
        order,
        [
            "busy", "busy", "other", "busy", "other", "busy", "other", "busy", "busy", "busy",
            "busy", "busy", "busy"
        ]
    );
}

#[tokio::test]
async fn a_device_moves_and_cancels_the_jobs_the_relay_holds_and_only_those() {
    let stack = spawn_paced_stack(0.5).await;
    let phone = Device::new(&stack.relay_url()).await;
    let stranger = Device::new(&stack.relay_url()).await;
    let mut jobs = Vec::new();
    for _ in 0..5 {
        jobs.push(phone.submit_ok(fixtures::INVERT_SLOW).await);
    }
    let ids: Vec<&str> = jobs.iter().map(|job| job.id.as_str()).collect();

    let moved = move_to(&phone, ids[4], 0).await;
    assert_eq!(moved.status(), 200);
    let moved: Job = moved.json().await.unwrap();
    assert!(moved.held);
    assert_eq!(moved.queue_position, Some(2), "next after ComfyUI's two");
    let pushed_back: Job = phone.get_json(&format!("/api/jobs/{}", ids[2])).await;
    assert_eq!(pushed_back.queue_position, Some(3));

    let cancelled = phone.act(ids[3], "cancel").await;
    assert_eq!(cancelled.status(), 200);
    let cancelled: Job = cancelled.json().await.unwrap();
    assert_eq!(cancelled.state, JobState::Cancelled);
    assert_eq!(cancelled.error, None);
    assert!(
        stack.comfyui.requests_to("POST", "/queue").is_empty(),
        "ComfyUI never had it"
    );

    for (who, id, status, says) in [
        (&phone, ids[0], 409, "already in ComfyUI's queue"),
        (&stranger, ids[2], 403, "another device"),
        (&phone, ids[3], 409, "already ended"),
        (&phone, "no-such-job", 404, "no job"),
    ] {
        let refused = move_to(who, id, 0).await;
        assert_eq!(refused.status(), status, "{id}");
        let body: ErrorBody = refused.json().await.unwrap();
        assert!(body.error.contains(says), "{}", body.error);
    }
    let bad = phone
        .post_json(
            &format!("/api/jobs/{}/move", ids[2]),
            json!({"position": -1}),
        )
        .await;
    assert_eq!(bad.status(), 400);

    let live: Vec<Job> = jobs
        .iter()
        .filter(|job| job.id != ids[3])
        .cloned()
        .collect();
    for job in wait_all_finished(&phone, &live).await {
        assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    }
    assert_eq!(handed(&stack), [ids[0], ids[1], ids[4], ids[2]]);
}

#[tokio::test]
async fn a_comfyui_that_ignores_the_given_prompt_id_runs_held_jobs_under_its_own() {
    let stack = spawn_stack_with(StackOptions {
        comfyui: Options {
            pace: 0.5,
            ignore_prompt_id: true,
            ..Options::default()
        },
        ..StackOptions::default()
    })
    .await;
    let phone = Device::new(&stack.relay_url()).await;
    let mut events = phone.events().await;
    let mut jobs = Vec::new();
    for _ in 0..3 {
        jobs.push(phone.submit_ok(fixtures::INVERT_SLOW).await);
    }
    let comfy_ids = stack.comfyui.history_ids();
    assert!(jobs[2].held);
    // The held job takes ComfyUI's id when it is handed; the first two had it from the start.
    let deadline = tokio::time::Instant::now() + LIMIT;
    while stack.comfyui.history_ids().len() < 3 {
        assert!(tokio::time::Instant::now() < deadline, "{comfy_ids:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let history = stack.comfyui.history_ids();
    let mut kept = phone.jobs().await;
    while !kept.iter().all(|job| job.state.is_finished()) {
        assert!(tokio::time::Instant::now() < deadline, "{kept:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        kept = phone.jobs().await;
    }
    assert_eq!(kept.len(), 3, "{kept:?}");
    for job in &kept {
        assert!(history.contains(&job.id), "{} not in {history:?}", job.id);
        assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    }
    let renamed = kept
        .iter()
        .find(|job| job.number == jobs[2].number)
        .unwrap();
    let seen = events
        .wait_for(&renamed.id, LIMIT, |job| job.state.is_finished())
        .await;
    assert_eq!(seen.state, JobState::Succeeded);
}

#[tokio::test]
async fn a_held_job_comfyui_refuses_at_its_turn_fails_with_the_reason_and_the_next_one_runs() {
    let stack = spawn_paced_stack(0.5).await;
    let phone = Device::new(&stack.relay_url()).await;
    let mut jobs = Vec::new();
    for _ in 0..2 {
        jobs.push(phone.submit_ok(fixtures::INVERT_SLOW).await);
    }
    let refused = phone
        .submit(
            fixtures::INVERT_SLOW,
            json!([{"node_id": "1", "input": "image", "value": "does-not-exist.png"}]),
        )
        .await;
    assert_eq!(refused.status(), 201, "held: ComfyUI has not judged it yet");
    let refused: Job = refused.json().await.unwrap();
    assert!(refused.held);
    let after = phone.submit_ok(fixtures::INVERT_SLOW).await;

    let ended = wait_all_finished(&phone, &[refused.clone(), after.clone()]).await;
    assert_eq!(ended[0].state, JobState::Failed, "{:?}", ended[0]);
    let error = ended[0].error.clone().unwrap();
    assert_eq!(error.node_id.as_deref(), Some("1"));
    assert_eq!(error.node_type.as_deref(), Some("LoadImage"));
    assert!(
        error
            .message
            .contains("Invalid image file: does-not-exist.png"),
        "{}",
        error.message
    );
    assert_eq!(ended[1].state, JobState::Succeeded, "{:?}", ended[1]);
    let kept: Job = phone.get_json(&format!("/api/jobs/{}", refused.id)).await;
    assert_eq!(kept.state, JobState::Failed, "and so it stays");
    assert_eq!(
        handed(&stack),
        [jobs[0].id.as_str(), jobs[1].id.as_str(), after.id.as_str()],
        "ComfyUI kept no trace of the refused one"
    );
}
