//! The automation API (the Python executor's middleware mode): a script with the access token
//! uploads a picture into a saved workflow, sets prompt texts, runs it, long-polls the job,
//! interrupts it, and checks health. Refusals reach nothing in ComfyUI.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use shared::api::{ErrorBody, Job, JobState};
use testkit::client::http;
use testkit::device::Device;
use testkit::fixtures;
use testkit::stack::{Stack, spawn_guarded_stack};

const TOKEN: &str = "feedfacefeedfacefeedfacefeedface";

/// A script: every request carries the token as a bearer.
fn script(stack: &Stack) -> Device {
    Device::script(&stack.relay_url(), TOKEN)
}

/// Saves a workflow in the library, expecting 200.
async fn save(script: &Device, name: &str, workflow: &str) {
    assert_eq!(script.put_workflow(name, workflow).await.status(), 200);
}

/// Uploads the phone picture to `path` with the given form fields.
async fn upload(
    script: &Device,
    path: &str,
    fields: &[(&'static str, &'static str)],
) -> reqwest::Response {
    let mut form = reqwest::multipart::Form::new();
    for (name, value) in fields {
        form = form.text(*name, *value);
    }
    let form = form.part(
        "image",
        reqwest::multipart::Part::bytes(fixtures::PHONE_PNG)
            .file_name("phone.png")
            .mime_str("image/png")
            .unwrap(),
    );
    script
        .request(Method::POST, path)
        .multipart(form)
        .send()
        .await
        .unwrap()
}

fn saved(stack: &Stack, name: &str) -> Value {
    let path = stack.data_dir.path().join(format!("workflows/{name}.json"));
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

async fn error_of(response: reqwest::Response) -> String {
    response.json::<ErrorBody>().await.unwrap().error
}

#[tokio::test]
async fn a_picture_goes_into_the_saved_workflow_and_runs_only_when_asked() {
    let stack = spawn_guarded_stack(TOKEN, &[], 1.0).await;
    let script = script(&stack);
    save(&script, "invert", fixtures::INVERT_SLOW).await;

    let response = upload(&script, "/api/workflows/invert/image", &[]).await;
    assert_eq!(response.status(), 200);
    let set: Value = response.json().await.unwrap();
    let name = set["value"].as_str().unwrap().to_owned();
    assert!(name.ends_with(".png"), "{set}");
    assert_eq!(
        (set["node_id"].as_str(), set["input"].as_str()),
        (Some("1"), Some("image"))
    );
    assert!(set.get("job").is_none(), "not queued without ?run=true");
    assert_eq!(
        saved(&stack, "invert")["1"]["inputs"]["image"],
        name.as_str()
    );
    assert_eq!(stack.comfyui.requests_to("POST", "/upload/image").len(), 1);
    assert!(stack.comfyui.queued_prompts().is_empty());

    let response = upload(&script, "/api/workflows/invert/image?run=true", &[]).await;
    assert_eq!(response.status(), 201);
    let set: Value = response.json().await.unwrap();
    let job: Job = serde_json::from_value(set["job"].clone()).unwrap();
    let queued = &stack.comfyui.queued_prompts()[0];
    assert_eq!(queued["prompt"]["1"]["inputs"]["image"], set["value"]);
    assert_eq!(job.workflow_name.as_deref(), Some("invert"));

    let done = script.long_poll(&job.id, 30.0).await;
    assert_eq!(done.state, JobState::Succeeded);
    assert!(
        !done.outputs.is_empty(),
        "the long poll answers with the outputs"
    );
}

#[tokio::test]
async fn a_workflow_set_to_auto_run_queues_on_upload_unless_told_not_to() {
    let stack = spawn_guarded_stack(TOKEN, &["--auto-run=invert"], 1.0).await;
    let script = script(&stack);
    save(&script, "invert", fixtures::INVERT_SLOW).await;
    save(&script, "invert copy", fixtures::INVERT_SLOW).await;

    // The node field picks the LoadImage, as a form field before the picture.
    let response = upload(&script, "/api/workflows/invert/image", &[("node", "1")]).await;
    assert_eq!(response.status(), 201);
    let set: Value = response.json().await.unwrap();
    assert_eq!(set["job"]["state"], "queued");

    let response = upload(&script, "/api/workflows/invert/image?run=false", &[]).await;
    assert_eq!(response.status(), 200);

    // With two LoadImages, the form's node field picks one; without it, the answer says which.
    let mut two: Value = serde_json::from_str(fixtures::INVERT_SLOW).unwrap();
    two["5"] = two["1"].clone();
    save(&script, "two pictures", &two.to_string()).await;
    let response = upload(
        &script,
        "/api/workflows/two%20pictures/image",
        &[("node", "5")],
    )
    .await;
    assert_eq!(response.status(), 200);
    let two = saved(&stack, "two pictures");
    assert_ne!(two["5"]["inputs"]["image"], "example.png", "{two}");
    assert_eq!(two["1"]["inputs"]["image"], "example.png", "{two}");
    let uploads = stack.comfyui.requests_to("POST", "/upload/image").len();
    let response = upload(&script, "/api/workflows/two%20pictures/image", &[]).await;
    assert_eq!(response.status(), 422);
    assert!(error_of(response).await.contains("several"));
    assert_eq!(
        stack.comfyui.requests_to("POST", "/upload/image").len(),
        uploads,
        "refused before the picture reached ComfyUI"
    );
    let response = upload(&script, "/api/workflows/invert%20copy/image", &[]).await;
    assert_eq!(response.status(), 200, "only the named workflow auto-runs");
    assert_eq!(stack.comfyui.queued_prompts().len(), 1);
}

#[tokio::test]
async fn prompt_texts_are_set_by_node_id_or_title_and_used_by_the_next_run() {
    let stack = spawn_guarded_stack(TOKEN, &[], 1.0).await;
    let script = script(&stack);
    let mut workflow: Value = serde_json::from_str(fixtures::SD15_TXT2IMG).unwrap();
    workflow["7"]["_meta"]["title"] = json!("Negative");
    save(&script, "sd15", &workflow.to_string()).await;

    let response = script
        .post_json(
            "/api/workflows/sd15/prompt",
            json!({"node_id": "6", "text": "a red fox in the snow"}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let set: Value = response.json().await.unwrap();
    assert_eq!(
        (set["node_id"].as_str(), set["input"].as_str()),
        (Some("6"), Some("text"))
    );
    let response = script
        .post_json(
            "/api/workflows/sd15/prompt",
            json!({"node_title": "Negative", "text": "blurry"}),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(saved(&stack, "sd15")["7"]["inputs"]["text"], "blurry");
    assert!(
        stack.comfyui.queued_prompts().is_empty(),
        "setting a text queues nothing"
    );

    let response = script.send(Method::POST, "/api/workflows/sd15/run").await;
    assert_eq!(response.status(), 201);
    let job: Job = response.json().await.unwrap();
    let queued = &stack.comfyui.queued_prompts()[0]["prompt"];
    assert_eq!(queued["6"]["inputs"]["text"], "a red fox in the snow");
    assert_eq!(queued["7"]["inputs"]["text"], "blurry");
    assert_eq!(
        script.long_poll(&job.id, 30.0).await.state,
        JobState::Succeeded
    );
}

#[tokio::test]
async fn unknown_workflows_and_nodes_are_refused_before_comfyui() {
    let stack = spawn_guarded_stack(TOKEN, &[], 1.0).await;
    let script = script(&stack);
    save(&script, "invert", fixtures::INVERT_SLOW).await;
    save(&script, "sd15", fixtures::SD15_TXT2IMG).await;

    let cases = [
        (
            upload(&script, "/api/workflows/nope/image", &[]).await,
            404,
            "no saved workflow",
        ),
        (
            upload(&script, "/api/workflows/invert/image?node=3", &[]).await,
            422,
            "not a LoadImage",
        ),
        (
            upload(&script, "/api/workflows/invert/image", &[("node", "99")]).await,
            422,
            "no node \"99\"",
        ),
        (
            upload(&script, "/api/workflows/sd15/image", &[]).await,
            422,
            "has no LoadImage",
        ),
        (
            script
                .post_json(
                    "/api/workflows/sd15/prompt",
                    json!({"node_id": "42", "text": "x"}),
                )
                .await,
            422,
            "no node \"42\"",
        ),
        (
            script
                .post_json(
                    "/api/workflows/sd15/prompt",
                    json!({"node_id": "3", "text": "x"}),
                )
                .await,
            422,
            "not a node with a text input",
        ),
        (
            script
                .post_json(
                    "/api/workflows/sd15/prompt",
                    json!({"node_title": "CLIP Text Encode (Prompt)", "text": "x"}),
                )
                .await,
            422,
            "several",
        ),
        (
            script
                .post_json(
                    "/api/workflows/sd15/prompt",
                    json!({"node_title": "Nobody", "text": "x"}),
                )
                .await,
            422,
            "no node titled",
        ),
        (
            script
                .post_json("/api/workflows/sd15/prompt", json!({"text": "x"}))
                .await,
            400,
            "node_id",
        ),
        (
            script.send(Method::POST, "/api/workflows/nope/run").await,
            404,
            "no saved workflow",
        ),
    ];
    for (response, status, message) in cases {
        let url = response.url().to_string();
        assert_eq!(response.status(), status, "{url}");
        let error = error_of(response).await;
        assert!(error.contains(message), "{url}: {error}");
    }
    assert!(
        stack
            .comfyui
            .requests_to("POST", "/upload/image")
            .is_empty()
    );
    assert!(stack.comfyui.queued_prompts().is_empty());
    assert_eq!(
        saved(&stack, "sd15"),
        serde_json::from_str::<Value>(fixtures::SD15_TXT2IMG).unwrap()
    );
}

#[tokio::test]
async fn the_long_poll_times_out_and_interrupt_stops_only_the_devices_running_job() {
    let stack = spawn_guarded_stack(TOKEN, &[], 6.0).await;
    let script = script(&stack);
    save(&script, "invert", fixtures::INVERT_SLOW).await;
    let nothing = script.send(Method::POST, "/api/interrupt").await;
    assert_eq!(nothing.status(), 409);

    let job: Job = script
        .send(Method::POST, "/api/workflows/invert/run")
        .await
        .json()
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let early = script.long_poll(&job.id, 0.5).await;
    assert!(!early.state.is_finished(), "{early:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    while stack.comfyui.running_prompt().as_deref() != Some(job.id.as_str()) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    while script.long_poll(&job.id, 0.1).await.state != JobState::Running {}

    let response = script.send(Method::POST, "/api/interrupt").await;
    assert_eq!(response.status(), 200);
    let interrupts = stack.comfyui.requests_to("POST", "/interrupt");
    assert_eq!(interrupts.len(), 1);
    assert_eq!(
        interrupts[0].json(),
        json!({ "prompt_id": job.id }),
        "targeted"
    );
    assert_eq!(
        script.long_poll(&job.id, 30.0).await.state,
        JobState::Interrupted
    );
}

#[tokio::test]
async fn health_says_whether_comfyui_answers() {
    let mut stack = spawn_guarded_stack(TOKEN, &[], 1.0).await;
    let script = script(&stack);
    let response = script.send(Method::GET, "/api/health").await;
    assert_eq!(response.status(), 200);
    let health: Value = response.json().await.unwrap();
    assert_eq!(health["ok"], true);
    assert!(health["comfyui_version"].is_string(), "{health}");
    let anonymous = http();
    let refused = anonymous
        .get(format!("{}/api/health", stack.relay_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        refused.status(),
        401,
        "health is for scripts with the token"
    );

    stack.comfyui.kill().await;
    let response = script.send(Method::GET, "/api/health").await;
    assert_eq!(response.status(), 503);
    let health: Value = response.json().await.unwrap();
    assert_eq!(health["ok"], false);
    assert!(health["comfyui_error"].is_string(), "{health}");
}
