//! The workflow library over HTTP, jobs from saved workflows, the relay's kept `/object_info`,
//! and a relay locked to saved workflows.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use reqwest::Method;
use serde_json::{Value, json};
use shared::api::{ErrorBody, Job};
use testkit::device::Device;
use testkit::fixtures;
use testkit::stack::{StackOptions, spawn_stack, spawn_stack_with};

#[tokio::test]
async fn workflows_are_saved_listed_renamed_and_deleted_as_files() {
    let stack = spawn_stack().await;
    let phone = Device::new(&stack.relay_url()).await;
    assert_eq!(
        phone
            .put_workflow("Portrait%20(v2)", fixtures::SD15_TXT2IMG)
            .await
            .status(),
        200
    );
    assert_eq!(
        phone
            .put_workflow("empty", fixtures::EMPTY_IMAGE)
            .await
            .status(),
        200
    );
    assert!(
        stack
            .data_dir
            .path()
            .join("workflows/Portrait (v2).json")
            .is_file(),
        "a plain JSON file"
    );

    let listed: Value = phone.get_json("/api/workflows").await;
    assert_eq!(listed["locked"], false);
    let names: Vec<&str> = listed["workflows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["empty", "Portrait (v2)"]);

    let renamed = phone
        .post_json(
            "/api/workflows/empty/rename",
            json!({"to": "Portrait (v2)"}),
        )
        .await;
    assert_eq!(renamed.status(), 409, "never overwrite another workflow");
    let renamed = phone
        .post_json("/api/workflows/empty/rename", json!({"to": "blank"}))
        .await;
    assert_eq!(renamed.status(), 200);
    let fetched: Value = phone.get_json("/api/workflows/blank").await;
    assert_eq!(fetched["7"]["class_type"], "SaveImage");
    assert_eq!(
        phone
            .send(Method::DELETE, "/api/workflows/blank")
            .await
            .status(),
        204
    );
    assert_eq!(
        phone
            .send(Method::GET, "/api/workflows/blank")
            .await
            .status(),
        404
    );
}

#[tokio::test]
async fn editor_workflows_are_saved_converted_and_only_under_safe_names() {
    let stack = spawn_stack().await;
    let phone = Device::new(&stack.relay_url()).await;
    let ui = phone.put_workflow("ui", fixtures::UI_FORMAT).await;
    assert_eq!(ui.status(), 200);
    let saved: Value = phone.get_json("/api/workflows/ui").await;
    assert_eq!(saved["1"]["class_type"], "EmptyImage");
    assert_eq!(saved["1"]["inputs"]["width"], 64);
    assert_eq!(saved["2"]["inputs"]["images"], json!(["1", 0]));
    let foreign = fixtures::UI_FORMAT.replace("\"SaveImage\"", "\"ImageSaverPro\"");
    let refused = phone.put_workflow("foreign", &foreign).await;
    assert_eq!(refused.status(), 422);
    let message = refused.json::<ErrorBody>().await.unwrap().error;
    assert!(
        message.contains("does not have the nodes this workflow uses: ImageSaverPro"),
        "{message}"
    );
    assert_eq!(
        phone
            .send(Method::GET, "/api/workflows/foreign")
            .await
            .status(),
        404,
        "nothing is kept of a refused workflow"
    );
    assert_eq!(phone.put_workflow("broken", "{\"3\": ").await.status(), 400);
    assert_eq!(
        phone
            .put_workflow("..%2F..%2Fescape", fixtures::EMPTY_IMAGE)
            .await
            .status(),
        400
    );
    assert_eq!(
        phone
            .put_workflow(".hidden", fixtures::EMPTY_IMAGE)
            .await
            .status(),
        400
    );
    assert!(!stack.data_dir.path().join("escape.json").exists());
}

#[tokio::test]
async fn a_saved_workflow_runs_by_name_with_values_and_its_jobs_carry_the_name() {
    let stack = spawn_stack().await;
    let phone = Device::new(&stack.relay_url()).await;
    phone.put_workflow("sd15", fixtures::SD15_TXT2IMG).await;
    let response = phone
        .post_json("/api/jobs", json!({"workflow_name": "sd15", "values": [{"node_id": "6", "input": "text", "value": "a harbour at dawn"}]})).await;
    assert_eq!(response.status(), 201);
    let job: Job = response.json().await.unwrap();
    assert_eq!(job.workflow_name.as_deref(), Some("sd15"));
    assert_eq!(
        stack.comfyui.queued_prompts()[0]["prompt"]["6"]["inputs"]["text"],
        "a harbour at dawn"
    );
    let unknown = phone
        .post_json("/api/jobs", json!({"workflow_name": "nope"}))
        .await;
    assert_eq!(unknown.status(), 404);
}

#[tokio::test]
async fn object_info_is_fetched_once_and_served_whole_gzipped_or_by_class() {
    let stack = spawn_stack().await;
    let phone = Device::new(&stack.relay_url()).await;
    let some: Value = phone
        .get_json("/api/object_info?classes=KSampler,SaveImage,NoSuchNode")
        .await;
    let classes: Vec<&String> = some.as_object().unwrap().keys().collect();
    assert_eq!(classes, ["KSampler", "SaveImage"]);
    let whole = phone
        .request(Method::GET, "/api/object_info")
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(whole.headers()["content-encoding"], "gzip");
    let compressed = whole.bytes().await.unwrap();
    let mut json = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(compressed.as_ref()),
        &mut json,
    )
    .unwrap();
    let whole: serde_json::Map<String, Value> = serde_json::from_str(&json).unwrap();
    assert_eq!(whole.len(), 497);
    assert!(
        compressed.len() * 5 < json.len(),
        "{} bytes for {}",
        compressed.len(),
        json.len()
    );
    assert_eq!(
        stack.comfyui.requests_to("GET", "/object_info").len(),
        1,
        "ComfyUI was asked once"
    );
}

#[tokio::test]
async fn a_locked_relay_takes_values_for_saved_workflows_and_refuses_graphs() {
    let stack = spawn_stack_with(StackOptions {
        relay_args: vec!["--locked-workflows".to_owned()],
        ..StackOptions::default()
    })
    .await;
    let folder = stack.data_dir.path().join("workflows");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("empty.json"), fixtures::EMPTY_IMAGE).unwrap();
    let phone = Device::new(&stack.relay_url()).await;

    let listed: Value = phone.get_json("/api/workflows").await;
    assert_eq!(listed["locked"], true);
    assert_eq!(
        phone
            .put_workflow("mine", fixtures::EMPTY_IMAGE)
            .await
            .status(),
        403
    );
    assert_eq!(
        phone
            .send(Method::DELETE, "/api/workflows/empty")
            .await
            .status(),
        403
    );
    let graph = phone.submit(fixtures::EMPTY_IMAGE, json!([])).await;
    assert_eq!(graph.status(), 403);
    assert!(
        graph
            .json::<ErrorBody>()
            .await
            .unwrap()
            .error
            .contains("only runs saved workflows")
    );
    let raw = phone
        .post_json(
            "/prompt",
            json!({"prompt": serde_json::from_str::<Value>(fixtures::EMPTY_IMAGE).unwrap()}),
        )
        .await;
    assert_eq!(raw.status(), 403);
    assert!(stack.comfyui.requests_to("POST", "/prompt").is_empty());

    let by_name = phone
        .post_json("/api/jobs", json!({"workflow_name": "empty", "values": [{"node_id": "5", "input": "width", "value": 32}]})).await;
    assert_eq!(by_name.status(), 201);
    assert_eq!(
        stack.comfyui.queued_prompts()[0]["prompt"]["5"]["inputs"]["width"],
        32
    );
}

#[tokio::test]
async fn a_picture_sound_or_video_comfyui_made_is_saved_as_the_workflow_inside_it() {
    let stack = spawn_stack().await;
    let phone = Device::new(&stack.relay_url()).await;
    let picture = |name: &str| std::fs::read(fixtures::path(&format!("embedded/{name}"))).unwrap();
    let put = |name: &'static str, bytes: Vec<u8>| {
        let phone = phone.clone();
        async move {
            phone
                .request(Method::PUT, &format!("/api/workflows/{name}"))
                .header("content-type", "application/octet-stream")
                .body(bytes)
                .send()
                .await
                .unwrap()
        }
    };
    // The API workflow that made it, exactly; or the editor's graph, converted.
    for (file, prefix) in [
        ("comfyui_saved.png", "from_a_picture"),
        ("comfyui_saved.webp", "from_a_picture"),
        ("comfyui_saved.flac", "from_a_picture"),
        ("comfyui_saved.mp4", "from_a_picture"),
        ("comfyui_saved.webm", "from_a_picture"),
        ("videohelpersuite_saved.mp4", "from_a_picture"),
        ("graph_only.png", "ComfyUI"),
    ] {
        let saved = put("pictured", picture(file)).await;
        assert_eq!(
            saved.status(),
            200,
            "{file}: {}",
            saved.text().await.unwrap()
        );
        let workflow: Value = phone.get_json("/api/workflows/pictured").await;
        assert_eq!(workflow["1"]["class_type"], "EmptyImage", "{file}");
        assert_eq!(workflow["2"]["inputs"]["images"], json!(["1", 0]), "{file}");
        assert_eq!(workflow["2"]["inputs"]["filename_prefix"], prefix, "{file}");
    }
    let mut cut = picture("comfyui_saved.png");
    cut.truncate(cut.len() - 40);
    let refusals = [
        (picture("no_workflow.png"), 422, "holds no workflow"),
        (cut, 400, "damaged or cut short"),
        (b"GIF89a not a workflow".to_vec(), 400, "not valid JSON"),
    ];
    for (bytes, status, says) in refusals {
        let refused = put("refused", bytes).await;
        assert_eq!(refused.status(), status);
        let message = refused.json::<ErrorBody>().await.unwrap().error;
        assert!(message.contains(says), "{message}");
    }
    assert_eq!(
        phone
            .send(Method::GET, "/api/workflows/refused")
            .await
            .status(),
        404
    );
    // A picture far larger than any workflow streams through: only its text is kept.
    let mut large = picture("comfyui_saved.png");
    let iend = large.len() - 12;
    let filler = vec![0u8; 40 * 1024 * 1024];
    let mut chunk = (filler.len() as u32).to_be_bytes().to_vec();
    chunk.extend_from_slice(b"zzZz");
    chunk.extend_from_slice(&filler);
    chunk.extend_from_slice(&[0; 4]);
    large.splice(iend..iend, chunk);
    assert_eq!(put("large", large).await.status(), 200);
}
