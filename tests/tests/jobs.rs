//! Jobs through the relay's own socket to ComfyUI: nothing lost when phones sleep, sockets drop
//! or ComfyUI restarts; each device sees and cancels only its own jobs; slow readers cost
//! nothing.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use shared::api::{ErrorBody, Job, JobState, NodeRun};
use shared::comfy::{BinaryFrame, Output};
use testkit::client::http_without_redirects;
use testkit::comfyui::Options;
use testkit::device::Device;
use testkit::fixtures;
use testkit::stack::{StackOptions, spawn_paced_stack, spawn_stack, spawn_stack_with};

const LIMIT: Duration = Duration::from_secs(20);

fn finished(job: &Job) -> bool {
    job.state.is_finished()
}

/// What must not differ between two views of the same finished job.
fn outcome(job: &Job) -> Value {
    json!({
        "state": job.state, "progress": job.progress, "outputs": job.outputs,
        "nodes": job.nodes, "error": job.error, "finished_at": job.finished_at,
    })
}

#[tokio::test]
async fn a_job_runs_to_success_and_the_device_follows_it_live_with_previews() {
    let stack = spawn_stack().await;
    let phone = Device::new(&stack.relay_url()).await;
    let mut events = phone.events().await;
    let job = phone.submit_ok(fixtures::INVERT_SLOW).await;
    assert!(matches!(job.state, JobState::Queued | JobState::Running));

    let running = events
        .wait_for(&job.id, LIMIT, |j| j.progress > 0.3 && !finished(j))
        .await;
    assert_eq!(running.state, JobState::Running);
    assert!(running.current_node.is_some());
    let done = events.wait_for(&job.id, LIMIT, finished).await;
    assert_eq!(done.state, JobState::Succeeded);
    assert_eq!(done.progress, 1.0);
    assert_eq!(done.outputs.len(), 1);
    assert!(
        done.outputs[0]
            .file()
            .unwrap()
            .filename
            .starts_with("capture_"),
        "{:?}",
        done.outputs
    );
    assert!(
        done.nodes.iter().all(|n| n.state == NodeRun::Finished),
        "{:?}",
        done.nodes
    );
    assert!(!events.previews.is_empty(), "previews are relayed");
    for frame in &events.previews {
        let BinaryFrame::Preview(preview) = BinaryFrame::parse(frame).unwrap() else {
            panic!("not a preview")
        };
        assert_eq!(
            preview.metadata.unwrap().prompt_id,
            job.id,
            "untouched type-4 frames"
        );
    }

    let fetched: Job = phone.get_json(&format!("/api/jobs/{}", job.id)).await;
    assert_eq!(outcome(&fetched), outcome(&done));
    let sent = &stack.comfyui.queued_prompts()[0];
    assert_eq!(
        sent["client_id"], stack.state.jobs.client_id,
        "queued under the relay's client id"
    );
    assert_eq!(sent["extra_data"]["preview_method"], "auto");
}

#[tokio::test]
async fn a_job_returns_every_kind_of_output_and_each_file_is_the_devices_to_fetch() {
    let stack = spawn_stack().await;
    let phone = Device::new(&stack.relay_url()).await;
    let other = Device::new(&stack.relay_url()).await;
    let mut events = phone.events().await;
    let job = phone.submit_ok(&fixtures::every_output_kind()).await;
    let done = events.wait_for(&job.id, LIMIT, finished).await;
    assert_eq!(done.state, JobState::Succeeded, "{:?}", done.error);
    let mut kinds: Vec<(String, String)> = done
        .outputs
        .iter()
        .map(|output| {
            let media = output.media().to_owned();
            let what = match output {
                Output::Text(text) => text.clone(),
                other => {
                    let file = other.file().unwrap();
                    format!("{}/{} ({})", file.subfolder, file.filename, file.kind)
                }
            };
            (media, what)
        })
        .collect();
    kinds.sort();
    let temp = kinds
        .iter()
        .position(|(_, what)| what.ends_with("(temp)"))
        .expect("PreviewAudio's temp file");
    assert_eq!(kinds[temp].0, "audio");
    assert!(kinds[temp].1.starts_with("/ComfyUI_temp_"), "{kinds:?}");
    kinds.remove(temp);
    // Named after each node's filename_prefix, its folder part the subfolder, as ComfyUI does.
    let names: Vec<(&str, &str)> = kinds
        .iter()
        .map(|(media, what)| (media.as_str(), what.split('_').next().unwrap()))
        .collect();
    assert_eq!(
        names,
        [
            ("animated", "/rec"),
            ("audio", "audio/rec"),
            ("file", "latents/rec"),
            ("text", "hello\nworld"),
            ("video", "video/rec"),
        ],
        "{kinds:?}"
    );
    assert!(kinds[1].1.ends_with(".flac (output)"), "{kinds:?}");
    assert!(kinds[4].1.ends_with(".mp4 (output)"), "{kinds:?}");
    for file in done.outputs.iter().filter_map(Output::file) {
        let view = format!("/view?{}", file.view_query());
        let answer = phone.send(reqwest::Method::GET, &view).await;
        assert_eq!(answer.status(), 200, "{view}");
        assert_eq!(other.send(reqwest::Method::GET, &view).await.status(), 403);
    }
    // The database keeps what it made, of every kind.
    let kept: shared::api::HistoryPage = phone.get_json("/api/jobs/history").await;
    let kept = kept.jobs.into_iter().find(|j| j.id == job.id).unwrap();
    assert_eq!(kept.outputs, done.outputs);
}

#[tokio::test]
async fn edited_values_reach_comfyui() {
    let stack = spawn_stack().await;
    let phone = Device::new(&stack.relay_url()).await;
    let response = phone
        .submit(fixtures::SD15_TXT2IMG, json!([{"node_id": "6", "input": "text", "value": "a lighthouse"}, {"node_id": "3", "input": "seed", "value": 18446744073709551615u64}]))
        .await;
    assert_eq!(response.status(), 201);
    let sent = &stack.comfyui.queued_prompts()[0]["prompt"];
    assert_eq!(sent["6"]["inputs"]["text"], "a lighthouse");
    assert_eq!(sent["3"]["inputs"]["seed"], json!(18446744073709551615u64));
}

#[tokio::test]
async fn an_event_socket_dropped_mid_run_and_back_later_ends_exactly_like_one_that_stayed() {
    let stack = spawn_paced_stack(4.0).await;
    let phone = Device::new(&stack.relay_url()).await;
    let mut steady = phone.events().await;
    let mut sleepy = phone.events().await;
    let job = phone.submit_ok(fixtures::INVERT_SLOW).await;
    sleepy.wait_for(&job.id, LIMIT, |j| j.progress > 0.25).await;
    sleepy.drop_connection();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut woken = phone.events().await;
    let uninterrupted = steady.wait_for(&job.id, LIMIT, finished).await;
    let resumed = woken.wait_for(&job.id, LIMIT, finished).await;
    assert_eq!(outcome(&resumed), outcome(&uninterrupted));
    assert_eq!(resumed.state, JobState::Succeeded);
}

#[tokio::test]
async fn when_the_relays_socket_to_comfyui_drops_the_run_is_finished_from_history() {
    let stack = spawn_paced_stack(2.0).await;
    let phone = Device::new(&stack.relay_url()).await;
    let mut events = phone.events().await;
    let job = phone.submit_ok(fixtures::INVERT_SLOW).await;
    events
        .wait_for(&job.id, LIMIT, |j| j.state == JobState::Running)
        .await;

    stack.comfyui.refuse_sockets(true);
    stack.comfyui.drop_sockets();
    // A change of the job already on its way may come first; then the loss is reported.
    loop {
        match events.next(LIMIT).await {
            Some(shared::api::Event::Comfyui { connected: false }) => break,
            Some(shared::api::Event::Job { .. }) => {}
            other => panic!("the relay did not report losing ComfyUI: {other:?}"),
        }
    }
    // The run ends while nobody listens: its end events are lost for good.
    while !stack.comfyui.history_ids().contains(&job.id) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!events.jobs[&job.id].state.is_finished());
    stack.comfyui.refuse_sockets(false);

    let done = events.wait_for(&job.id, LIMIT, finished).await;
    assert_eq!(done.state, JobState::Succeeded);
    assert_eq!(done.outputs.len(), 1, "outputs come from the history");
    assert_eq!(done.progress, 1.0);
}

#[tokio::test]
async fn when_comfyui_restarts_mid_run_the_job_is_marked_lost_and_can_be_queued_again() {
    let mut stack = spawn_paced_stack(5.0).await;
    let phone = Device::new(&stack.relay_url()).await;
    let mut events = phone.events().await;
    let job = phone.submit_ok(fixtures::INVERT_SLOW).await;
    events
        .wait_for(&job.id, LIMIT, |j| j.state == JobState::Running)
        .await;

    stack.comfyui.restart().await;
    let lost = events.wait_for(&job.id, LIMIT, finished).await;
    assert_eq!(lost.state, JobState::Lost);
    let message = lost.error.unwrap().message;
    assert!(message.contains("Queue it again"), "{message}");

    let again = phone.act(&job.id, "requeue").await;
    assert_eq!(again.status(), 201);
    let again: Job = again.json().await.unwrap();
    assert_ne!(again.id, job.id);
    let done = events.wait_for(&again.id, LIMIT, finished).await;
    assert_eq!(done.state, JobState::Succeeded);
}

#[tokio::test]
async fn a_client_that_never_reads_costs_bounded_memory_and_delays_no_one() {
    const JOBS: usize = 200;
    let stack = spawn_stack_with(StackOptions {
        comfyui: Options {
            pace: 0.01,
            ..Options::default()
        },
        relay_args: vec![format!("--max-pending-jobs={JOBS}")],
        ..StackOptions::default()
    })
    .await;
    let phone = Device::new(&stack.relay_url()).await;
    let stuck = testkit::client::connect_unread(
        &format!("{}/api/events", stack.relay_ws("")),
        phone.cookie(),
    )
    .await;
    let mut reader = phone.events().await;

    // Queued sixteen at a time, so most wait in the relay and every hand-off moves them all:
    // far more events than the stuck socket's buffers can absorb.
    let ids: Vec<String> = futures_util::stream::iter(0..JOBS)
        .map(|_| async { phone.submit_ok(fixtures::INVERT_SLOW).await.id })
        .buffer_unordered(16)
        .collect()
        .await;
    let started = std::time::Instant::now();
    for id in &ids {
        let job = reader.wait_for(id, LIMIT, finished).await;
        assert_eq!(job.state, JobState::Succeeded);
    }
    let reader_done = started.elapsed();
    while stack.comfyui.history_ids().len() < ids.len() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        reader_done < Duration::from_secs(15),
        "the reader kept up: {reader_done:?}"
    );
    assert!(
        reader.previews.len() >= ids.len(),
        "previews reached the reader"
    );
    // The stuck socket really is stuck, and holds at most one notice and one preview per job:
    // its cost grows with its jobs, not with the thousands of events they produced.
    let (notices, preview_bytes) = stack.state.jobs.hub.largest_backlog();
    assert!(notices > 0, "the stuck socket must be behind");
    assert!(notices <= 2 * JOBS, "{notices} notices waiting");
    assert!(
        preview_bytes <= JOBS * 5_000,
        "{preview_bytes} bytes of previews waiting"
    );
    assert_eq!(stack.state.jobs.hub.subscribers(), 2);
    drop(stuck);
}

#[tokio::test]
async fn a_hundred_sockets_following_one_job_all_see_it_finish() {
    // More sockets than one device may hold by default.
    let stack = spawn_stack_with(StackOptions {
        relay_args: vec!["--max-sockets-per-device=100".to_owned()],
        ..StackOptions::default()
    })
    .await;
    let phone = Device::new(&stack.relay_url()).await;
    let mut sockets = Vec::new();
    for _ in 0..100 {
        sockets.push(phone.events().await);
    }
    let job = phone.submit_ok(fixtures::EMPTY_IMAGE).await;
    let waits = sockets.into_iter().map(|mut events| {
        let id = job.id.clone();
        tokio::spawn(async move { events.wait_for(&id, LIMIT, finished).await })
    });
    for wait in waits {
        let seen = wait.await.unwrap();
        assert_eq!(seen.state, JobState::Succeeded);
        assert_eq!(seen.outputs.len(), 2, "PreviewImage and SaveImage outputs");
    }
}

#[tokio::test]
async fn each_device_sees_only_its_own_jobs_and_cannot_cancel_anothers() {
    let stack = spawn_paced_stack(5.0).await;
    let phone = Device::new(&stack.relay_url()).await;
    let laptop = Device::new(&stack.relay_url()).await;
    let mut laptop_events = laptop.events().await;
    let job = phone.submit_ok(fixtures::INVERT_SLOW).await;

    assert!(laptop.jobs().await.is_empty());
    assert_eq!(phone.jobs().await.len(), 1);
    let peek = laptop
        .send(reqwest::Method::GET, &format!("/api/jobs/{}", job.id))
        .await;
    assert_eq!(peek.status(), 404);
    let cancel = laptop.act(&job.id, "cancel").await;
    assert_eq!(cancel.status(), 403);
    let body: ErrorBody = cancel.json().await.unwrap();
    assert!(body.error.contains("another device"), "{}", body.error);
    assert!(stack.comfyui.requests_to("POST", "/interrupt").is_empty());
    assert!(
        laptop_events
            .next(Duration::from_millis(500))
            .await
            .is_none(),
        "the laptop hears nothing"
    );
    assert!(laptop_events.jobs.is_empty());
}

#[tokio::test]
async fn cancelling_a_waiting_job_takes_it_off_comfyuis_queue() {
    let stack = spawn_paced_stack(5.0).await;
    let phone = Device::new(&stack.relay_url()).await;
    let mut events = phone.events().await;
    let first = phone.submit_ok(fixtures::INVERT_SLOW).await;
    let second = phone.submit_ok(fixtures::INVERT_SLOW).await;
    let waiting = events
        .wait_for(&second.id, LIMIT, |j| j.queue_position.is_some())
        .await;
    assert_eq!(waiting.queue_position, Some(1), "the running job is ahead");

    let cancel = phone.act(&second.id, "cancel").await;
    assert_eq!(cancel.status(), 200);
    let deletes = stack.comfyui.requests_to("POST", "/queue");
    assert_eq!(deletes[0].json(), json!({"delete": [second.id]}));
    assert!(stack.comfyui.requests_to("POST", "/interrupt").is_empty());
    let cancelled = events.wait_for(&second.id, LIMIT, finished).await;
    // Named once: cancelled, with no error beside it.
    assert_eq!(cancelled.state, JobState::Cancelled);
    assert_eq!(cancelled.error, None);
    assert!(
        !events.jobs[&first.id].state.is_finished(),
        "the first job runs on"
    );
}

#[tokio::test]
async fn cancelling_a_running_job_interrupts_exactly_that_prompt() {
    let stack = spawn_paced_stack(5.0).await;
    let phone = Device::new(&stack.relay_url()).await;
    let mut events = phone.events().await;
    let job = phone.submit_ok(fixtures::INVERT_SLOW).await;
    events
        .wait_for(&job.id, LIMIT, |j| j.state == JobState::Running)
        .await;

    assert_eq!(phone.act(&job.id, "cancel").await.status(), 200);
    let interrupts = stack.comfyui.requests_to("POST", "/interrupt");
    assert_eq!(interrupts.len(), 1);
    assert_eq!(interrupts[0].json(), json!({"prompt_id": job.id}));
    let stopped = events.wait_for(&job.id, LIMIT, finished).await;
    assert_eq!(stopped.state, JobState::Interrupted);
    assert_eq!(
        phone.act(&job.id, "cancel").await.status(),
        409,
        "already ended"
    );
}

#[tokio::test]
async fn a_value_outside_its_range_is_refused_by_the_relay_naming_the_input() {
    let stack = spawn_stack().await;
    let phone = Device::new(&stack.relay_url()).await;
    let response = phone
        .submit(
            fixtures::EMPTY_IMAGE,
            json!([{"node_id": "5", "input": "width", "value": -5}]),
        )
        .await;
    assert_eq!(response.status(), 422);
    let body: ErrorBody = response.json().await.unwrap();
    let problems = body.detail.unwrap().problems;
    assert_eq!(problems[0].node_id, "5");
    assert_eq!(problems[0].node_title.as_deref(), Some("EmptyImage"));
    assert_eq!(problems[0].input.as_deref(), Some("width"));
    assert_eq!(problems[0].message, "-5 is smaller than the minimum, 1");
    assert!(phone.jobs().await.is_empty());
    assert!(
        stack.comfyui.requests_to("POST", "/prompt").is_empty(),
        "refused before ComfyUI"
    );
}

#[tokio::test]
async fn comfyuis_own_validation_errors_come_back_per_input_with_node_titles() {
    let stack = spawn_stack().await;
    let phone = Device::new(&stack.relay_url()).await;
    let response = phone
        .submit(
            fixtures::INVERT_SLOW,
            json!([{"node_id": "1", "input": "image", "value": "does-not-exist.png"}]),
        )
        .await;
    assert_eq!(response.status(), 422);
    let body: ErrorBody = response.json().await.unwrap();
    let problems = body.detail.unwrap().problems;
    assert_eq!(problems[0].node_id, "1");
    assert_eq!(problems[0].node_title.as_deref(), Some("Load Image"));
    assert_eq!(problems[0].input.as_deref(), Some("image"));
    assert_eq!(
        problems[0].message,
        "Custom validation failed for node (image - Invalid image file: does-not-exist.png)"
    );
    assert_eq!(
        stack.comfyui.requests_to("POST", "/prompt").len(),
        1,
        "ComfyUI judged it"
    );
    assert!(phone.jobs().await.is_empty());
}

#[tokio::test]
async fn a_ui_format_or_malformed_request_is_refused_before_comfyui() {
    let stack = spawn_stack().await;
    let phone = Device::new(&stack.relay_url()).await;
    let ui = phone.submit(fixtures::UI_FORMAT, json!([])).await;
    assert_eq!(ui.status(), 422);
    let body: ErrorBody = ui.json().await.unwrap();
    assert!(body.error.contains("Export (API)"), "{}", body.error);

    let malformed = phone
        .request(reqwest::Method::POST, "/api/jobs")
        .header("content-type", "application/json")
        .body("{\"workflow\": {")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    let link_edit = phone
        .submit(
            fixtures::SD15_TXT2IMG,
            json!([{"node_id": "3", "input": "model", "value": "x"}]),
        )
        .await;
    assert_eq!(link_edit.status(), 422);
    assert!(stack.comfyui.requests_to("POST", "/prompt").is_empty());
}

#[tokio::test]
async fn a_device_link_opens_the_same_jobs_in_a_second_browser_once() {
    let stack = spawn_stack().await;
    let phone = Device::new(&stack.relay_url()).await;
    let job = phone.submit_ok(fixtures::EMPTY_IMAGE).await;
    let link: Value = phone
        .send(reqwest::Method::POST, "/api/device/link")
        .await
        .json()
        .await
        .unwrap();
    let path = link["path"].as_str().unwrap();
    let no_redirects = http_without_redirects();
    let url = format!("{}{path}", stack.relay_url());
    // Opening the link only asks (a page elsewhere could open it in the victim's browser).
    let asked = no_redirects.get(&url).send().await.unwrap();
    assert_eq!(asked.status(), 200);
    assert!(
        asked.headers().get("set-cookie").is_none(),
        "nothing swapped yet"
    );
    assert!(asked.text().await.unwrap().contains("confirm-link"));
    // A confirmation posted from another site is refused and does not use the code up.
    let forged = no_redirects
        .post(&url)
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    let opened = no_redirects.post(&url).send().await.unwrap();
    assert_eq!(opened.status(), 303);
    assert_eq!(
        opened.headers().get_all("set-cookie").iter().count(),
        1,
        "one device, not two"
    );
    let cookie = opened.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let laptop = Device::with_cookie(&stack.relay_url(), &cookie);
    assert_eq!(laptop.jobs().await[0].id, job.id);
    let again = no_redirects.post(&url).send().await.unwrap();
    assert_eq!(again.status(), 410);
}

#[tokio::test]
async fn the_history_pages_through_a_devices_kept_jobs_and_finds_them_by_state_and_text() {
    let stack = spawn_stack().await;
    let phone = Device::new(&stack.relay_url()).await;
    let other = Device::new(&stack.relay_url()).await;
    let mut events = phone.events().await;
    let titled = fixtures::INVERT_SLOW.replace("\"Load Image\"", "\"Sunset 100% over_the bay\"");
    let mut ids = Vec::new();
    for workflow in [fixtures::INVERT_SLOW, &titled, fixtures::INVERT_SLOW] {
        ids.push(phone.submit_ok(workflow).await.id);
    }
    let theirs = other.submit_ok(fixtures::INVERT_SLOW).await.id;
    for id in &ids {
        events.wait_for(id, LIMIT, finished).await;
    }
    let page = |device: &Device, query: &'static str| {
        let device = device.clone();
        async move {
            let page: shared::api::HistoryPage =
                device.get_json(&format!("/api/jobs/history{query}")).await;
            let ids: Vec<String> = page.jobs.iter().map(|j| j.id.clone()).collect();
            (ids, page.next, page.jobs)
        }
    };

    let (first, next, jobs) = page(&phone, "?limit=2").await;
    assert_eq!(first, [ids[2].clone(), ids[1].clone()], "newest first");
    assert_eq!(next.as_deref(), Some(ids[1].as_str()));
    assert!(
        jobs.iter()
            .all(|j| j.state == JobState::Succeeded && j.outputs.len() == 1)
    );
    let second = phone
        .get_json::<shared::api::HistoryPage>(&format!(
            "/api/jobs/history?limit=2&before={}",
            ids[1]
        ))
        .await;
    assert_eq!(second.jobs.len(), 1);
    assert_eq!(second.jobs[0].id, ids[0]);
    assert_eq!(second.next, None, "the last page says so");

    let (found, _, _) = page(&phone, "?text=sunset%20100%25%20OVER_the").await;
    assert_eq!(
        found,
        [ids[1].clone()],
        "text in any case, % and _ as themselves"
    );
    let (none, _, _) = page(&phone, "?text=100_%25").await;
    assert!(none.is_empty(), "{none:?}");
    let (failed, _, _) = page(&phone, "?state=failed").await;
    assert!(failed.is_empty());
    let (succeeded, _, _) = page(&phone, "?state=succeeded&limit=100").await;
    assert_eq!(succeeded.len(), 3);

    let (mine, _, _) = page(&other, "").await;
    assert_eq!(
        mine,
        std::slice::from_ref(&theirs),
        "a device sees only its own jobs"
    );
    let elsewhere = other
        .get_json::<shared::api::HistoryPage>(&format!("/api/jobs/history?before={}", ids[2]))
        .await;
    assert!(
        elsewhere.jobs.is_empty(),
        "another device's cursor leads nowhere"
    );
    let refused = phone
        .send(reqwest::Method::GET, "/api/jobs/history?state=asleep")
        .await;
    assert_eq!(refused.status(), 400);
}

#[tokio::test]
async fn a_device_stars_and_deletes_its_finished_jobs_even_those_gone_from_memory() {
    let stack = spawn_stack_with(StackOptions {
        relay_args: vec!["--max-finished-jobs=1".to_owned()],
        ..StackOptions::default()
    })
    .await;
    let phone = Device::new(&stack.relay_url()).await;
    let other = Device::new(&stack.relay_url()).await;
    let mut events = phone.events().await;
    let old = phone.submit_ok(fixtures::INVERT_SLOW).await.id;
    let old = events.wait_for(&old, LIMIT, finished).await;
    let newer = phone.submit_ok(fixtures::INVERT_SLOW).await.id;
    events.wait_for(&newer, LIMIT, finished).await;
    let listed: Vec<String> = phone.jobs().await.into_iter().map(|j| j.id).collect();
    assert_eq!(
        listed,
        std::slice::from_ref(&newer),
        "one finished job in memory"
    );

    // A job only the database keeps is still the device's: read, viewed, starred, requeued.
    let kept: Job = phone.get_json(&format!("/api/jobs/{}", old.id)).await;
    assert_eq!(outcome(&kept), outcome(&old));
    let view = format!("/view?{}", old.outputs[0].file().unwrap().view_query());
    assert_eq!(phone.send(reqwest::Method::GET, &view).await.status(), 200);
    assert_eq!(other.send(reqwest::Method::GET, &view).await.status(), 403);
    let star = |device: &Device, id: &str, starred: bool| {
        let (device, path) = (device.clone(), format!("/api/jobs/{id}/star"));
        async move { device.post_json(&path, json!({ "starred": starred })).await }
    };
    assert_eq!(star(&other, &old.id, true).await.status(), 403);
    let starred: Job = star(&phone, &old.id, true).await.json().await.unwrap();
    assert!(starred.starred);
    let starred_page: shared::api::HistoryPage =
        phone.get_json("/api/jobs/history?starred=true").await;
    let starred_ids: Vec<&str> = starred_page.jobs.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(starred_ids, [old.id.as_str()]);
    // Starring a job in memory tells its device's sockets.
    star(&phone, &newer, true).await;
    let told = events.wait_for(&newer, LIMIT, |j| j.starred).await;
    assert!(told.starred);

    let running = phone.submit_ok(fixtures::INVERT_SLOW).await.id;
    let refused = phone
        .send(reqwest::Method::DELETE, &format!("/api/jobs/{running}"))
        .await;
    assert_eq!(
        refused.status(),
        409,
        "a job that has not ended is cancelled, not deleted"
    );
    let body: ErrorBody = refused.json().await.unwrap();
    assert!(body.error.contains("cancel it first"), "{}", body.error);
    events.wait_for(&running, LIMIT, finished).await;
    let requeued = phone.act(&newer, "requeue").await;
    assert_eq!(
        requeued.status(),
        201,
        "a job gone from memory is queued again"
    );
    let requeued: Job = requeued.json().await.unwrap();
    events.wait_for(&requeued.id, LIMIT, finished).await;

    let path = format!("/api/jobs/{}", old.id);
    assert_eq!(
        other.send(reqwest::Method::DELETE, &path).await.status(),
        403
    );
    assert_eq!(
        phone.send(reqwest::Method::DELETE, &path).await.status(),
        204
    );
    assert_eq!(phone.send(reqwest::Method::GET, &path).await.status(), 404);
    assert_eq!(
        phone.send(reqwest::Method::DELETE, &path).await.status(),
        404
    );
    assert_eq!(
        phone.send(reqwest::Method::GET, &view).await.status(),
        403,
        "a deleted job's files are no longer the device's"
    );
    let gallery: shared::api::HistoryPage =
        phone.get_json("/api/jobs/history?with_outputs=true").await;
    let gallery_ids: Vec<&str> = gallery.jobs.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(
        gallery_ids,
        [requeued.id.as_str(), running.as_str(), newer.as_str()]
    );

    // Deleting a job still in memory removes it from the device's sockets too.
    let path = format!("/api/jobs/{}", requeued.id);
    assert_eq!(
        phone.send(reqwest::Method::DELETE, &path).await.status(),
        204
    );
    loop {
        match events.next(LIMIT).await {
            Some(shared::api::Event::Removed { id }) if id == requeued.id => break,
            Some(_) => {}
            None => panic!("the deleted job was never removed from the socket"),
        }
    }
    assert!(phone.jobs().await.iter().all(|j| j.id != requeued.id));
}

#[tokio::test]
async fn the_workflow_a_job_ran_reads_back_with_its_values_for_its_device_only() {
    let stack = spawn_stack_with(StackOptions {
        relay_args: vec!["--max-finished-jobs=1".to_owned()],
        ..StackOptions::default()
    })
    .await;
    let phone = Device::new(&stack.relay_url()).await;
    let other = Device::new(&stack.relay_url()).await;
    let mut events = phone.events().await;
    let edited = json!([{"node_id": "2", "input": "steps", "value": 3}]);
    let response = phone.submit(fixtures::INVERT_SLOW, edited).await;
    assert_eq!(response.status(), 201);
    let old: Job = response.json().await.unwrap();
    events.wait_for(&old.id, LIMIT, finished).await;
    let path = format!("/api/jobs/{}/workflow", old.id);
    let ran: Value = phone.get_json(&path).await;
    let mut expected: Value = serde_json::from_str(fixtures::INVERT_SLOW).unwrap();
    expected["2"]["inputs"]["steps"] = json!(3);
    assert_eq!(ran, expected, "the graph as it ran, the edit in it");

    // Once only the database keeps the job, it still reads back.
    let newer = phone.submit_ok(fixtures::INVERT_SLOW).await.id;
    events.wait_for(&newer, LIMIT, finished).await;
    assert!(phone.jobs().await.iter().all(|j| j.id != old.id));
    assert_eq!(phone.get_json::<Value>(&path).await, expected);

    for (device, path) in [
        (&other, path.as_str()),
        (&phone, "/api/jobs/no-such-job/workflow"),
    ] {
        let refused = device.send(reqwest::Method::GET, path).await;
        assert_eq!(
            refused.status(),
            404,
            "{path}: another device's job is not found"
        );
    }
}
