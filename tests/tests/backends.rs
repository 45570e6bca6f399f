//! Several ComfyUI servers behind one relay: jobs spread over them, go where their nodes are,
//! survive a server that dies or stalls, and find their uploads and outputs on the right one.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use shared::api::{ErrorBody, Health, Job, JobState};
use testkit::comfyui::{FakeComfyUi, Options};
use testkit::device::Device;
use testkit::fixtures;
use testkit::stack::{Stack, StackOptions, spawn_stack_with};

const LIMIT: Duration = Duration::from_secs(60);

fn finished(job: &Job) -> bool {
    job.state.is_finished()
}

/// A relay in front of one double per `Options`, with more relay flags.
async fn servers(doubles: Vec<Options>, relay_args: &[&str]) -> Stack {
    let mut doubles = doubles.into_iter();
    spawn_stack_with(StackOptions {
        comfyui: doubles.next().unwrap(),
        more_comfyuis: doubles.collect(),
        relay_args: relay_args.iter().map(|arg| (*arg).to_owned()).collect(),
        ..StackOptions::default()
    })
    .await
}

fn paced(pace: f64) -> Options {
    Options {
        pace,
        ..Options::default()
    }
}

fn lacking(class: &'static str, pace: f64) -> Options {
    Options {
        missing_classes: vec![class],
        ..paced(pace)
    }
}

/// Every double of the stack, the first first.
fn doubles(stack: &Stack) -> Vec<&FakeComfyUi> {
    std::iter::once(&stack.comfyui)
        .chain(&stack.more_comfyuis)
        .collect()
}

/// The prompt ids a double was given.
fn given(comfyui: &FakeComfyUi) -> Vec<String> {
    comfyui
        .queued_prompts()
        .iter()
        .map(|body| body["prompt_id"].as_str().unwrap().to_owned())
        .collect()
}

async fn health(device: &Device) -> Health {
    device
        .send(Method::GET, "/api/health")
        .await
        .json()
        .await
        .unwrap()
}

/// Waits until the relay's health says server `index` is up (and the relay follows it) or
/// down.
async fn until_server(device: &Device, index: usize, up: bool) -> Health {
    let deadline = Instant::now() + LIMIT;
    loop {
        let now = health(device).await;
        let server = &now.backends[index];
        if server.up == up && server.events_connected == up {
            return now;
        }
        assert!(Instant::now() < deadline, "{now:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `double` holds an input picture named `name` with `bytes`.
async fn until_holds(double: &FakeComfyUi, name: &str, bytes: &[u8]) {
    let deadline = Instant::now() + LIMIT;
    loop {
        let files = double.files();
        if files
            .iter()
            .any(|f| f.kind == "input" && f.name == name && f.bytes.as_ref() == bytes)
        {
            return;
        }
        assert!(Instant::now() < deadline, "{}: {files:?}", double.url());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Job `id` of `device` once it has ended, asked by long poll.
async fn ended(device: &Device, id: &str) -> Job {
    let deadline = Instant::now() + LIMIT;
    loop {
        let now = device.long_poll(id, 5.0).await;
        if now.state.is_finished() {
            return now;
        }
        assert!(Instant::now() < deadline, "{now:?}");
    }
}

/// Queues two jobs that invert `uploaded`.
async fn two_inverting(phone: &Device, uploaded: &shared::comfy::UploadedImage) -> Vec<Job> {
    let picture =
        json!([{ "node_id": "1", "input": "image", "value": uploaded.load_image_value() }]);
    let mut jobs = Vec::new();
    for _ in 0..2 {
        let response = phone.submit(fixtures::INVERT_SLOW, picture.clone()).await;
        assert_eq!(response.status(), 201);
        jobs.push(response.json::<Job>().await.unwrap());
    }
    jobs
}

#[tokio::test]
async fn jobs_spread_over_three_servers_and_health_shows_each_with_its_jobs() {
    let stack = servers(vec![paced(1.0); 3], &["--in-flight=1"]).await;
    let (phone, laptop) = (
        Device::new(&stack.relay_url()).await,
        Device::new(&stack.relay_url()).await,
    );
    let mut jobs = Vec::new();
    for _ in 0..3 {
        jobs.push(phone.submit_ok(fixtures::INVERT_SLOW).await);
        jobs.push(laptop.submit_ok(fixtures::INVERT_SLOW).await);
    }
    let now = health(&phone).await;
    assert!(now.ok);
    assert_eq!(now.backends.len(), 3);
    for (backend, double) in now.backends.iter().zip(doubles(&stack)) {
        assert_eq!(backend.url.trim_end_matches('/'), double.url());
        assert!(backend.up && backend.events_connected, "{backend:?}");
        assert_eq!(
            backend.running + backend.waiting,
            1,
            "one job each at once: {now:#?}"
        );
        assert_eq!(backend.gpu.as_deref(), Some("cpu"), "as ComfyUI names it");
        assert!(backend.vram_total.is_some_and(|total| total > 0));
    }
    assert_eq!(now.comfyui_url.trim_end_matches('/'), stack.comfyui.url());
    for (n, job) in jobs.iter().enumerate() {
        let device = if n % 2 == 0 { &phone } else { &laptop };
        let done = ended(device, &job.id).await;
        assert_eq!(done.state, JobState::Succeeded, "{done:?}");
    }
    let spread: Vec<usize> = doubles(&stack).iter().map(|d| given(d).len()).collect();
    assert_eq!(spread, [2, 2, 2], "six jobs over three servers");
}

#[tokio::test]
async fn a_workflow_goes_to_the_server_with_its_nodes_and_one_no_server_can_run_is_refused_naming_each()
 {
    let stack = servers(
        vec![lacking("ImageInvert", 0.1), lacking("EmptyImage", 0.1)],
        &[],
    )
    .await;
    let phone = Device::new(&stack.relay_url()).await;
    let mut events = phone.events().await;
    for _ in 0..2 {
        let invert = phone.submit_ok(fixtures::INVERT_SLOW).await;
        let empty = phone.submit_ok(fixtures::EMPTY_IMAGE).await;
        for job in [&invert, &empty] {
            let done = events.wait_for(&job.id, LIMIT, finished).await;
            assert_eq!(done.state, JobState::Succeeded, "{done:?}");
        }
        assert!(given(&stack.more_comfyuis[0]).contains(&invert.id));
        assert!(given(&stack.comfyui).contains(&empty.id));
    }
    assert_eq!(given(&stack.comfyui).len(), 2, "only what it can run");
    assert_eq!(given(&stack.more_comfyuis[0]).len(), 2);

    // A picture made empty, then inverted: each server lacks one of the two.
    let mut both: Value = serde_json::from_str(fixtures::EMPTY_IMAGE).unwrap();
    both["8"] = json!({"class_type": "ImageInvert", "inputs": {"image": ["5", 0]}});
    both["7"]["inputs"]["images"] = json!(["8", 0]);
    let refused = phone.submit(&both.to_string(), json!([])).await;
    assert_eq!(refused.status(), 422);
    let body: ErrorBody = refused.json().await.unwrap();
    for (class, server) in [
        ("ImageInvert", stack.comfyui.url()),
        ("EmptyImage", stack.more_comfyuis[0].url()),
    ] {
        assert!(
            body.error.contains(class) && body.error.contains(&server),
            "names {class} on {server}: {}",
            body.error
        );
    }
}

#[tokio::test]
async fn a_job_naming_a_model_only_one_server_has_goes_there() {
    let stack = servers(
        vec![
            paced(0.1),
            Options {
                more_checkpoints: vec!["sdxl.safetensors"],
                ..paced(0.1)
            },
        ],
        &[],
    )
    .await;
    let phone = Device::new(&stack.relay_url()).await;
    let mut events = phone.events().await;
    let sdxl = json!([{ "node_id": "4", "input": "ckpt_name", "value": "sdxl.safetensors" }]);
    for _ in 0..2 {
        let response = phone.submit(fixtures::SD15_TXT2IMG, sdxl.clone()).await;
        assert_eq!(response.status(), 201);
        let job: Job = response.json().await.unwrap();
        let done = events.wait_for(&job.id, LIMIT, finished).await;
        assert_eq!(done.state, JobState::Succeeded, "{done:?}");
    }
    assert_eq!(given(&stack.comfyui).len(), 0);
    assert_eq!(given(&stack.more_comfyuis[0]).len(), 2);
    let nowhere = json!([{ "node_id": "4", "input": "ckpt_name", "value": "flux.safetensors" }]);
    let refused = phone.submit(fixtures::SD15_TXT2IMG, nowhere).await;
    assert_eq!(refused.status(), 422);
    let body: ErrorBody = refused.json().await.unwrap();
    assert!(
        body.error.contains("flux.safetensors") && body.error.contains(&stack.comfyui.url()),
        "{}",
        body.error
    );
}

#[tokio::test]
async fn a_server_killed_mid_run_loses_its_running_job_its_waiting_one_runs_elsewhere_and_it_rejoins()
 {
    let mut stack = servers(vec![paced(2.0); 2], &[]).await;
    let phone = Device::new(&stack.relay_url()).await;
    let mut events = phone.events().await;
    let mut jobs = Vec::new();
    for _ in 0..4 {
        jobs.push(phone.submit_ok(fixtures::INVERT_SLOW).await);
    }
    // The least loaded first, ties to the first server: one running and one ready on each.
    let on_first = given(&stack.comfyui);
    assert_eq!(on_first, [jobs[0].id.clone(), jobs[2].id.clone()]);
    events
        .wait_for(&jobs[0].id, LIMIT, |job| job.state == JobState::Running)
        .await;

    stack.comfyui.kill().await;
    let lost = events.wait_for(&jobs[0].id, LIMIT, finished).await;
    assert_eq!(lost.state, JobState::Lost);
    let message = lost.error.unwrap().message;
    assert!(
        message.contains(&stack.comfyui.url()) && message.contains("Queue it again"),
        "{message}"
    );
    let down = until_server(&phone, 0, false).await;
    assert!(down.ok, "the other server still runs jobs");
    for job in &jobs[1..] {
        let done = events.wait_for(&job.id, LIMIT, finished).await;
        assert_eq!(done.state, JobState::Succeeded, "{done:?}");
    }
    assert!(
        given(&stack.more_comfyuis[0]).contains(&jobs[2].id),
        "the job the dead server had not started ran on the other"
    );

    stack.comfyui.restart().await;
    until_server(&phone, 0, true).await;
    // Two at once: one for each server.
    let again = phone.act(&jobs[0].id, "requeue").await;
    assert_eq!(again.status(), 201);
    let again: Job = again.json().await.unwrap();
    let another = phone.submit_ok(fixtures::INVERT_SLOW).await;
    for job in [&again, &another] {
        let done = events.wait_for(&job.id, LIMIT, finished).await;
        assert_eq!(done.state, JobState::Succeeded);
    }
    assert_eq!(given(&stack.comfyui).len(), 1, "it rejoined");
}

#[tokio::test]
async fn with_requeue_lost_the_job_a_dead_server_ran_runs_again_on_another() {
    let mut stack = servers(vec![paced(2.0), paced(0.5)], &["--requeue-lost"]).await;
    let phone = Device::new(&stack.relay_url()).await;
    let mut events = phone.events().await;
    let job = phone.submit_ok(fixtures::INVERT_SLOW).await;
    events
        .wait_for(&job.id, LIMIT, |job| job.state == JobState::Running)
        .await;
    assert_eq!(given(&stack.comfyui), [job.id.as_str()]);
    stack.comfyui.kill().await;
    let done = events.wait_for(&job.id, LIMIT, finished).await;
    assert_eq!(done.state, JobState::Succeeded, "{done:?}");
    assert_eq!(given(&stack.more_comfyuis[0]), [job.id.as_str()]);
}

#[tokio::test]
async fn a_stalled_server_that_comes_back_never_runs_what_was_handed_elsewhere_meanwhile() {
    let stack = servers(vec![paced(20.0), paced(0.5)], &[]).await;
    let phone = Device::new(&stack.relay_url()).await;
    let mut events = phone.events().await;
    let first = phone.submit_ok(fixtures::INVERT_SLOW).await;
    let second = phone.submit_ok(fixtures::INVERT_SLOW).await;
    let third = phone.submit_ok(fixtures::INVERT_SLOW).await;
    assert_eq!(given(&stack.comfyui), [first.id.clone(), third.id.clone()]);
    events
        .wait_for(&first.id, LIMIT, |job| job.state == JobState::Running)
        .await;

    // Stopped, as by SIGSTOP: connections stay open, nothing answers.
    stack.comfyui.stall(true);
    let lost = events.wait_for(&first.id, LIMIT, finished).await;
    assert_eq!(lost.state, JobState::Lost);
    for job in [&second, &third] {
        let done = events.wait_for(&job.id, LIMIT, finished).await;
        assert_eq!(done.state, JobState::Succeeded, "{done:?}");
    }
    assert!(given(&stack.more_comfyuis[0]).contains(&third.id));

    stack.comfyui.stall(false);
    until_server(&phone, 0, true).await;
    // It starts the third at once, as a resumed ComfyUI does; the relay deletes it from its
    // queue, or stops it, before giving that server anything new.
    let next = phone.submit_ok(fixtures::INVERT_SLOW).await;
    let done = events.wait_for(&next.id, LIMIT, finished).await;
    assert_eq!(done.state, JobState::Succeeded);
    let named_third = |body: &Value| {
        body["prompt_id"] == json!(third.id)
            || body["delete"]
                .as_array()
                .is_some_and(|ids| ids.contains(&json!(third.id)))
    };
    let told: Vec<Value> = ["/queue", "/interrupt"]
        .iter()
        .flat_map(|route| stack.comfyui.requests_to("POST", route))
        .map(|request| request.json())
        .collect();
    assert!(
        told.iter().any(named_third),
        "{told:?} {:?} {:?}",
        stack
            .comfyui
            .requests()
            .iter()
            .map(|r| (r.method.clone(), r.path.clone()))
            .collect::<Vec<_>>(),
        stack.comfyui.history_ids()
    );
    // Whatever that server said of the third since, the relay keeps the run that counted.
    let third_now = phone.long_poll(&third.id, 0.0).await;
    assert_eq!(third_now.state, JobState::Succeeded);
    assert_eq!(third_now.outputs.len(), 1);
}

#[tokio::test]
async fn an_upload_is_on_every_server_and_an_output_is_read_from_the_server_that_made_it() {
    let stack = servers(vec![lacking("ImageInvert", 0.1), paced(0.1)], &[]).await;
    let phone = Device::new(&stack.relay_url()).await;
    let mut events = phone.events().await;
    let uploaded = phone.upload_png("phone.png", fixtures::PHONE_PNG).await;
    for double in doubles(&stack) {
        until_holds(double, &uploaded.name, fixtures::PHONE_PNG).await;
        assert_eq!(double.files().len(), 1, "{}", double.url());
    }

    let response = phone
        .submit(
            fixtures::INVERT_SLOW,
            json!([{ "node_id": "1", "input": "image", "value": uploaded.load_image_value() }]),
        )
        .await;
    assert_eq!(response.status(), 201);
    let job: Job = response.json().await.unwrap();
    let done = events.wait_for(&job.id, LIMIT, finished).await;
    assert_eq!(done.state, JobState::Succeeded, "{done:?}");
    let output = done.outputs[0].file().unwrap().clone();
    let made_by = &stack.more_comfyuis[0];
    assert!(made_by.files().iter().any(|f| f.name == output.filename));

    let views_before = stack.comfyui.requests_to("GET", "/view").len();
    let viewed = phone
        .send(Method::GET, &shared::api::view_url(&output, None))
        .await;
    assert_eq!(viewed.status(), 200);
    let bytes = viewed.bytes().await.unwrap();
    let made = made_by
        .files()
        .into_iter()
        .find(|f| f.name == output.filename)
        .unwrap();
    assert_eq!(bytes, made.bytes);
    assert_eq!(
        stack.comfyui.requests_to("GET", "/view").len(),
        views_before,
        "the first server was not asked for a file it does not have"
    );
}

#[tokio::test]
async fn outputs_of_the_same_name_on_two_servers_are_each_read_from_their_own_devices_server() {
    let stack = servers(vec![paced(0.1); 2], &["--in-flight=1"]).await;
    let (phone, laptop) = (
        Device::new(&stack.relay_url()).await,
        Device::new(&stack.relay_url()).await,
    );
    let mine = phone.submit_ok(fixtures::INVERT_SLOW).await;
    let theirs = laptop.submit_ok(fixtures::INVERT_SLOW).await;
    assert_eq!(given(&stack.comfyui), [mine.id.as_str()]);
    assert_eq!(given(&stack.more_comfyuis[0]), [theirs.id.as_str()]);
    let mut outputs = Vec::new();
    for (device, job) in [(&phone, &mine), (&laptop, &theirs)] {
        let done = ended(device, &job.id).await;
        outputs.push(done.outputs[0].file().unwrap().clone());
    }
    // Each server numbers its outputs alone: both made the same name.
    assert_eq!(outputs[0], outputs[1]);
    let path = shared::api::view_url(&outputs[0], None);
    for (device, server) in [(&laptop, &stack.more_comfyuis[0]), (&phone, &stack.comfyui)] {
        assert_eq!(
            viewed_on(&stack, device, &path).await.url(),
            server.url(),
            "each device sees the picture its own job made"
        );
    }
}

/// The double asked for a `/view` by `device` of `path`.
async fn viewed_on<'a>(stack: &'a Stack, device: &Device, path: &str) -> &'a FakeComfyUi {
    let asked = |server: &FakeComfyUi| server.requests_to("GET", "/view").len();
    let before: Vec<usize> = doubles(stack).into_iter().map(asked).collect();
    assert_eq!(device.send(Method::GET, path).await.status(), 200, "{path}");
    doubles(stack)
        .into_iter()
        .zip(before)
        .find(|(server, before)| asked(server) > *before)
        .map(|(server, _)| server)
        .unwrap()
}

#[tokio::test]
async fn one_devices_outputs_of_the_same_name_on_two_servers_are_each_read_from_their_jobs_server()
{
    let stack = servers(vec![paced(1.0); 3], &["--in-flight=1"]).await;
    let (phone, laptop) = (
        Device::new(&stack.relay_url()).await,
        Device::new(&stack.relay_url()).await,
    );
    let first = phone.submit_ok(fixtures::INVERT_SLOW).await;
    let second = phone.submit_ok(fixtures::INVERT_SLOW).await;
    let theirs = laptop.submit_ok(fixtures::INVERT_SLOW).await;
    let [a, b, c] = doubles(&stack)[..] else {
        unreachable!()
    };
    assert_eq!(given(a), [first.id.as_str()]);
    assert_eq!(given(b), [second.id.as_str()]);
    assert_eq!(given(c), [theirs.id.as_str()]);
    let mut outputs = Vec::new();
    for (device, job) in [(&phone, &first), (&phone, &second), (&laptop, &theirs)] {
        outputs.push(
            ended(device, &job.id).await.outputs[0]
                .file()
                .unwrap()
                .clone(),
        );
    }
    assert!(
        outputs.iter().all(|file| *file == outputs[0]),
        "each server numbers its outputs alone: {outputs:?}"
    );
    let file = &outputs[0];

    // The app names the job whose output it shows, as every URL it builds does.
    for (job, server) in [(&first, a), (&second, b)] {
        let path = shared::api::view_url(file, Some(&job.id));
        assert_eq!(viewed_on(&stack, &phone, &path).await.url(), server.url());
    }
    // Without a job, or naming another device's, the device's newest job decides.
    for job in [None, Some(theirs.id.as_str())] {
        let path = shared::api::view_url(file, job);
        assert_eq!(viewed_on(&stack, &phone, &path).await.url(), b.url());
    }
}

#[tokio::test]
async fn a_server_busy_with_prompts_others_queued_there_is_passed_over_for_an_idle_one() {
    let stack = servers(vec![paced(3.0), paced(0.1)], &[]).await;
    let phone = Device::new(&stack.relay_url()).await;
    // Someone at the first server's own machine queues two prompts there.
    let mut foreign: Value = serde_json::from_str(fixtures::INVERT_SLOW).unwrap();
    for n in 0..2 {
        foreign["4"]["inputs"]["filename_prefix"] = json!(format!("theirs{n}"));
        let queued = reqwest::Client::new()
            .post(format!("{}/prompt", stack.comfyui.url()))
            .json(&json!({ "prompt": foreign, "client_id": "someone-else" }))
            .send()
            .await
            .unwrap();
        assert_eq!(queued.status(), 200);
    }
    let deadline = Instant::now() + LIMIT;
    while stack.comfyui.running_prompt().is_none() {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The status ComfyUI sends every socket when a run starts says how much it has queued.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let job = phone.submit_ok(fixtures::INVERT_SLOW).await;
    assert_eq!(given(&stack.more_comfyuis[0]), [job.id.as_str()]);
}

#[tokio::test]
async fn jobs_using_a_picture_uploaded_after_the_servers_were_first_asked_still_spread() {
    let stack = servers(vec![paced(1.0); 2], &["--in-flight=1"]).await;
    let phone = Device::new(&stack.relay_url()).await;
    let mut events = phone.events().await;
    // Every server's node schemas are fetched and kept.
    let first = phone.submit_ok(fixtures::INVERT_SLOW).await;
    events.wait_for(&first.id, LIMIT, finished).await;
    let uploaded = phone.upload_png("later.png", fixtures::PHONE_PNG).await;
    let jobs = two_inverting(&phone, &uploaded).await;
    assert!(
        jobs.iter().all(|job| !job.held),
        "one server each, at once: {jobs:?}"
    );
    for job in &jobs {
        let done = events.wait_for(&job.id, LIMIT, finished).await;
        assert_eq!(done.state, JobState::Succeeded, "{done:?}");
    }
    assert!(given(&stack.more_comfyuis[0]).contains(&jobs[1].id));
}

#[tokio::test]
async fn a_server_down_when_a_picture_was_uploaded_is_given_it_with_the_first_job_that_needs_it() {
    let mut stack = servers(vec![paced(1.0), paced(0.1)], &["--in-flight=1"]).await;
    let phone = Device::new(&stack.relay_url()).await;
    let mut events = phone.events().await;
    stack.more_comfyuis[0].kill().await;
    until_server(&phone, 1, false).await;
    let uploaded = phone
        .upload_png("while-down.png", fixtures::PHONE_PNG)
        .await;
    stack.more_comfyuis[0].restart().await;
    assert!(stack.more_comfyuis[0].files().is_empty());
    until_server(&phone, 1, true).await;

    let jobs = two_inverting(&phone, &uploaded).await;
    for job in &jobs {
        let done = events.wait_for(&job.id, LIMIT, finished).await;
        assert_eq!(done.state, JobState::Succeeded, "{done:?}");
    }
    let second = &stack.more_comfyuis[0];
    assert_eq!(given(second), [jobs[1].id.as_str()]);
    let copied = second.files();
    assert!(
        copied
            .iter()
            .any(|f| f.name == uploaded.name && f.bytes.as_ref() == fixtures::PHONE_PNG),
        "{copied:?}"
    );
}

#[tokio::test]
async fn an_upload_is_answered_while_another_server_hangs_and_reaches_it_once_it_answers() {
    // Health checks a minute apart: the hung server is not known to be down while the upload
    // is answered, so only not waiting for its copy answers it.
    let stack = spawn_stack_with(StackOptions {
        comfyui: paced(0.1),
        more_comfyuis: vec![paced(0.1)],
        probe_interval_secs: 60,
        ..StackOptions::default()
    })
    .await;
    let phone = Device::new(&stack.relay_url()).await;
    let hung = &stack.more_comfyuis[0];
    hung.stall(true);
    let upload = phone.upload_png("hung.png", fixtures::PHONE_PNG);
    let uploaded = tokio::time::timeout(Duration::from_secs(20), upload)
        .await
        .expect("the upload is answered without waiting for the hung server");
    assert!(hung.files().is_empty());
    until_holds(&stack.comfyui, &uploaded.name, fixtures::PHONE_PNG).await;

    hung.stall(false);
    until_holds(hung, &uploaded.name, fixtures::PHONE_PNG).await;
}

#[tokio::test]
async fn a_server_holding_another_picture_of_an_uploads_name_keeps_it_and_its_job_loads_the_copy() {
    let stack = servers(vec![paced(1.0), paced(0.1)], &["--in-flight=1"]).await;
    let second = &stack.more_comfyuis[0];
    // Someone at the second server uploaded another picture of that name there, in ComfyUI.
    let theirs = reqwest::multipart::Part::bytes(fixtures::OUTPUT_PNG)
        .file_name("phone.png")
        .mime_str("image/png")
        .unwrap();
    reqwest::Client::new()
        .post(format!("{}/upload/image", second.url()))
        .multipart(reqwest::multipart::Form::new().part("image", theirs))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();

    let phone = Device::new(&stack.relay_url()).await;
    let mut events = phone.events().await;
    let uploaded = phone.upload_png("phone.png", fixtures::PHONE_PNG).await;
    assert_eq!(uploaded.name, "phone.png");
    until_holds(second, "phone (1).png", fixtures::PHONE_PNG).await;
    let jobs = two_inverting(&phone, &uploaded).await;
    for job in &jobs {
        let done = events.wait_for(&job.id, LIMIT, finished).await;
        assert_eq!(done.state, JobState::Succeeded, "{done:?}");
    }
    assert_eq!(given(second), [jobs[1].id.as_str()]);
    assert_eq!(
        second.queued_prompts()[0]["prompt"]["1"]["inputs"]["image"],
        "phone (1).png",
        "the job on the second server loads the copy"
    );
    assert!(
        second
            .files()
            .iter()
            .any(|f| f.name == "phone.png" && f.bytes.as_ref() == fixtures::OUTPUT_PNG),
        "the second server's own picture is kept"
    );
    assert_eq!(
        stack.comfyui.queued_prompts()[0]["prompt"]["1"]["inputs"]["image"],
        "phone.png"
    );
}

#[tokio::test]
async fn with_the_first_server_down_an_upload_lands_on_another_and_follows_its_jobs_back() {
    let mut stack = servers(vec![paced(0.1), paced(1.0)], &["--in-flight=1"]).await;
    let phone = Device::new(&stack.relay_url()).await;
    let mut events = phone.events().await;
    stack.comfyui.kill().await;
    until_server(&phone, 0, false).await;

    let uploaded = phone.upload_png("phone.png", fixtures::PHONE_PNG).await;
    // The first server may hold another `phone.png`: this one gets a name of its own.
    let mark = uploaded
        .name
        .strip_prefix("phone-")
        .and_then(|rest| rest.strip_suffix(".png"))
        .unwrap_or_else(|| panic!("{}", uploaded.name));
    assert_eq!(mark.len(), 8, "{}", uploaded.name);
    let second = &stack.more_comfyuis[0];
    until_holds(second, &uploaded.name, fixtures::PHONE_PNG).await;
    let thumbnail = phone
        .send(Method::GET, &shared::api::view_url(&uploaded.file(), None))
        .await;
    assert_eq!(thumbnail.status(), 200);
    assert_eq!(thumbnail.bytes().await.unwrap(), fixtures::PHONE_PNG);

    // Back: one server at a time each, so one job goes to the first, with the picture.
    stack.comfyui.restart().await;
    until_server(&phone, 0, true).await;
    let jobs = two_inverting(&phone, &uploaded).await;
    for job in &jobs {
        let done = events.wait_for(&job.id, LIMIT, finished).await;
        assert_eq!(done.state, JobState::Succeeded, "{done:?}");
    }
    assert_eq!(given(second).len(), 1);
    assert_eq!(given(&stack.comfyui).len(), 1);
    until_holds(&stack.comfyui, &uploaded.name, fixtures::PHONE_PNG).await;
}

#[tokio::test]
async fn a_server_silent_for_less_than_three_health_checks_keeps_the_job_it_runs() {
    // One server, as most teams have: a few seconds without an answer (a model loading) must not
    // lose a long run.
    let stack = spawn_stack_with(StackOptions {
        comfyui: paced(10.0),
        probe_interval_secs: 2,
        ..StackOptions::default()
    })
    .await;
    let phone = Device::new(&stack.relay_url()).await;
    let mut events = phone.events().await;
    let running = phone.submit_ok(fixtures::INVERT_SLOW).await;
    let waiting = phone.submit_ok(fixtures::INVERT_SLOW).await;
    events
        .wait_for(&running.id, LIMIT, |job| job.state == JobState::Running)
        .await;
    stack.comfyui.stall(true);
    until_server(&phone_of(&stack).await, 0, false).await;
    stack.comfyui.stall(false);
    for job in [&running, &waiting] {
        let done = events.wait_for(&job.id, LIMIT, finished).await;
        assert_eq!(done.state, JobState::Succeeded, "{done:?}");
    }
    assert_eq!(
        stack.comfyui.history_ids().len(),
        2,
        "each ran once, the waiting one handed again after the stall"
    );
}

/// Another device of the stack, for asking while the first waits on its events.
async fn phone_of(stack: &Stack) -> Device {
    Device::new(&stack.relay_url()).await
}
