//! The relay in front of the ComfyUI double: every route, uploads, the WebSocket, the origin
//! guard, a ComfyUI that is down or slow, the app's deep links, and shutdown.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::time::Duration;

use serde_json::{Value, json};
use shared::comfy::{BinaryFrame, PromptAccepted, UploadedImage};
use testkit::client::{self, http, is_run_end, texts};
use testkit::fixtures;
use testkit::stack::{StackOptions, spawn_paced_stack, spawn_stack, spawn_stack_with};
use tokio_tungstenite::tungstenite::Message;

const RUN_LIMIT: Duration = Duration::from_secs(15);

#[tokio::test]
async fn every_read_route_answers_through_the_relay_as_comfyui_does_at_root_and_under_api() {
    let stack = spawn_stack().await;
    let routes = [
        "/system_stats",
        "/features",
        "/object_info",
        "/object_info/KSampler",
        "/queue",
        "/history",
        "/history/unknown-id",
        "/prompt",
    ];
    for route in routes {
        for prefix in ["", "/api"] {
            let path = format!("{prefix}{route}");
            let before = stack.comfyui.requests().len();
            let relayed = http()
                .get(format!("{}{path}", stack.relay_url()))
                .send()
                .await
                .unwrap();
            assert_eq!(relayed.status(), 200, "{path}");
            let relayed: Value = relayed.json().await.unwrap();
            let asked: Vec<String> = stack.comfyui.requests()[before..]
                .iter()
                .map(|r| r.path.clone())
                .collect();
            let direct: Value = http()
                .get(format!("{}{path}", stack.comfyui.url()))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(relayed, direct, "{path}");
            if matches!(route, "/queue" | "/history" | "/history/unknown-id") {
                // Scoped to the device: built by the relay (this client has no prompts).
                continue;
            }
            assert!(
                asked.iter().any(|p| p == route) && !asked.iter().any(|p| p.starts_with("/api")),
                "the relay asks ComfyUI's root route, built from the matched route: {asked:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_queued_prompt_reaches_comfyui_under_the_devices_client_id_and_its_run_comes_back_on_the_relayed_socket()
 {
    let stack = spawn_stack().await;
    let mut socket = client::connect(&stack.relay_ws("/ws?clientId=phone-1"), &[])
        .await
        .unwrap();
    client::negotiate_previews(&mut socket).await;
    let body = fixtures::prompt_body(fixtures::SD15_TXT2IMG, "phone-1");

    let response = http()
        .post(format!("{}/prompt", stack.relay_url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let accepted: PromptAccepted = response.json().await.unwrap();

    let queued = stack.comfyui.queued_prompts();
    assert_eq!(
        queued[0]["prompt"], body["prompt"],
        "the workflow is unchanged"
    );
    let client_id = queued[0]["client_id"].as_str().unwrap();
    assert!(
        client_id.starts_with(&format!("{}-", proxy::device::DeviceId::scripts())),
        "the client id is the device's own: {client_id}"
    );
    let frames = client::read_until(&mut socket, RUN_LIMIT, |f| {
        is_run_end(f, &accepted.prompt_id)
    })
    .await;
    let kinds: Vec<String> = texts(&frames)
        .iter()
        .map(|f| f["type"].as_str().unwrap().to_owned())
        .collect();
    for expected in [
        "status",
        "execution_start",
        "executing",
        "progress",
        "executed",
        "execution_success",
    ] {
        assert!(
            kinds.iter().any(|k| k == expected),
            "no {expected} in {kinds:?}"
        );
    }
    let previews: Vec<_> = frames
        .iter()
        .filter_map(|m| match m {
            Message::Binary(bytes) => Some(bytes.clone()),
            _ => None,
        })
        .collect();
    assert!(!previews.is_empty(), "previews are relayed");
    for frame in &previews {
        let BinaryFrame::Preview(preview) = BinaryFrame::parse(frame).unwrap() else {
            panic!("not a preview")
        };
        let metadata = preview
            .metadata
            .expect("negotiated previews carry metadata");
        assert_eq!(metadata.prompt_id, accepted.prompt_id);
        assert_eq!(
            &preview.image[..2],
            &[0xFF, 0xD8],
            "the JPEG arrives untouched"
        );
    }
}

#[tokio::test]
async fn a_socket_that_did_not_negotiate_gets_legacy_previews_through_the_relay() {
    let stack = spawn_stack().await;
    let mut socket = client::connect(&stack.relay_ws("/api/ws?clientId=old"), &[])
        .await
        .unwrap();
    let accepted: PromptAccepted = http()
        .post(format!("{}/api/prompt", stack.relay_url()))
        .json(&fixtures::prompt_body(fixtures::INVERT_SLOW, "old"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let frames = client::read_until(&mut socket, RUN_LIMIT, |f| {
        is_run_end(f, &accepted.prompt_id)
    })
    .await;
    let legacy = frames
        .iter()
        .filter(|m| matches!(m, Message::Binary(b) if b[..4] == [0, 0, 0, 1]))
        .count();
    assert_eq!(legacy, 4, "one legacy preview per recorded step");
}

#[tokio::test]
async fn requests_from_a_lan_origin_succeed_through_the_relay_though_comfyui_refuses_them() {
    let stack = spawn_stack().await;
    let body = fixtures::prompt_body(fixtures::EMPTY_IMAGE, "phone-2");
    // What the app sends from a phone: the relay's origin, which is foreign to ComfyUI.
    let relay_origin = stack.relay_url();
    let referer = format!("{relay_origin}/");
    let browser_headers = [
        ("origin", relay_origin.as_str()),
        ("referer", referer.as_str()),
        ("sec-fetch-site", "same-origin"),
        ("sec-fetch-mode", "cors"),
    ];
    let send = |base: String| {
        let mut request = http().post(format!("{base}/prompt")).json(&body);
        for (name, value) in browser_headers {
            request = request.header(name, value);
        }
        request.send()
    };
    assert_eq!(
        send(stack.comfyui.url()).await.unwrap().status(),
        403,
        "ComfyUI's guard"
    );
    assert_eq!(
        send(stack.relay_url()).await.unwrap().status(),
        200,
        "through the relay"
    );

    let relayed = stack.comfyui.requests_to("POST", "/prompt").pop().unwrap();
    assert_eq!(
        relayed.header("host"),
        Some(stack.comfyui.addr().to_string().as_str())
    );
    for dropped in ["origin", "referer", "sec-fetch-site", "sec-fetch-mode"] {
        assert_eq!(
            relayed.header(dropped),
            None,
            "{dropped} must not reach ComfyUI"
        );
    }

    let direct = client::connect(
        &format!("ws://{}/ws?clientId=x", stack.comfyui.addr()),
        &[("origin", relay_origin.as_str())],
    )
    .await;
    assert!(
        direct.is_err(),
        "ComfyUI refuses the upgrade from a LAN origin"
    );
    let relayed = client::connect(
        &stack.relay_ws("/ws?clientId=x"),
        &[("origin", relay_origin.as_str())],
    )
    .await;
    assert!(
        relayed.is_ok(),
        "the relay's upgrade reaches ComfyUI without the origin"
    );
}

#[tokio::test]
async fn an_upload_is_streamed_through_and_can_be_viewed_back() {
    let stack = spawn_stack().await;
    let form = reqwest::multipart::Form::new()
        .part(
            "image",
            reqwest::multipart::Part::bytes(fixtures::PHONE_PNG)
                .file_name("phone.png")
                .mime_str("image/png")
                .unwrap(),
        )
        .text("subfolder", "mobile");
    let uploaded: UploadedImage = http()
        .post(format!("{}/upload/image", stack.relay_url()))
        .multipart(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(uploaded.load_image_value(), "mobile/phone.png");
    let stored = stack.comfyui.files();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].bytes.as_ref(), fixtures::PHONE_PNG);

    let viewed = http()
        .get(format!(
            "{}/view?filename=phone.png&subfolder=mobile&type=input",
            stack.relay_url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(viewed.headers()["content-type"], "image/png");
    assert_eq!(viewed.bytes().await.unwrap().as_ref(), fixtures::PHONE_PNG);
}

#[tokio::test]
async fn an_upload_reaches_comfyui_before_the_browser_has_finished_sending_it() {
    let stack = spawn_stack().await;
    let boundary = "relay-test-boundary";
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"slow.png\"\r\nContent-Type: image/png\r\n\r\n"
    );
    let tail = format!("\r\n--{boundary}--\r\n");
    let (tx, rx) = futures_channel::mpsc::unbounded::<Result<Vec<u8>, std::io::Error>>();
    tx.unbounded_send(Ok(head.into_bytes())).unwrap();
    tx.unbounded_send(Ok(fixtures::PHONE_PNG[..100].to_vec()))
        .unwrap();
    let upload = tokio::spawn(
        http()
            .post(format!("{}/upload/image", stack.relay_url()))
            .header(
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(reqwest::Body::wrap_stream(rx))
            .send(),
    );
    // The rest of the body is still held back: a buffering relay would not have called yet.
    let reached = async {
        while stack
            .comfyui
            .requests_to("POST", "/upload/image")
            .is_empty()
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), reached)
        .await
        .expect("ComfyUI sees the upload while it is still being sent");
    tx.unbounded_send(Ok(fixtures::PHONE_PNG[100..].to_vec()))
        .unwrap();
    tx.unbounded_send(Ok(tail.into_bytes())).unwrap();
    drop(tx);
    let response = upload.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(stack.comfyui.files()[0].bytes.as_ref(), fixtures::PHONE_PNG);
}

#[tokio::test]
async fn interrupt_and_queue_edits_reach_comfyui_for_the_devices_own_prompts_only() {
    let stack = spawn_paced_stack(5.0).await;
    let relay = stack.relay_url();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let accepted: PromptAccepted = http()
            .post(format!("{relay}/prompt"))
            .json(&fixtures::prompt_body(fixtures::SD15_TXT2IMG, "script"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        ids.push(accepted.prompt_id);
    }
    for body in [
        json!({"delete": [ids[1], "someone-elses"]}),
        json!({"prompt_id": "someone-elses"}),
    ] {
        let path = if body.get("delete").is_some() {
            "/queue"
        } else {
            "/interrupt"
        };
        http()
            .post(format!("{relay}{path}"))
            .json(&body)
            .send()
            .await
            .unwrap();
    }
    let running = &ids[0];
    let interrupted = http()
        .post(format!("{relay}/interrupt"))
        .json(&json!({"prompt_id": running}))
        .send()
        .await
        .unwrap();
    assert_eq!(interrupted.status(), 200);
    assert_eq!(
        stack.comfyui.requests_to("POST", "/queue")[0].json(),
        json!({"delete": [ids[1]]}),
        "only the device's own prompt is deleted"
    );
    let interrupts = stack.comfyui.requests_to("POST", "/interrupt");
    assert_eq!(
        interrupts.len(),
        1,
        "someone else's prompt is never interrupted"
    );
    assert_eq!(interrupts[0].json(), json!({"prompt_id": running}));
}

#[tokio::test]
async fn comfyuis_own_error_answers_come_back_unchanged() {
    let stack = spawn_stack().await;
    let missing_image = json!({"prompt": {
        "1": {"class_type": "LoadImage", "inputs": {"image": "does-not-exist.png"}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}}
    }});
    let response = http()
        .post(format!("{}/prompt", stack.relay_url()))
        .json(&missing_image)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["node_errors"]["1"]["errors"][0]["type"],
        "custom_validation_failed"
    );

    let missing = http()
        .get(format!(
            "{}/view?filename=nope.png&type=output",
            stack.relay_url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 403, "not a file of this device's");
    assert!(stack.comfyui.requests_to("GET", "/view").is_empty());
}

#[tokio::test]
async fn when_comfyui_is_down_http_and_websocket_get_a_readable_502() {
    let mut stack = spawn_stack().await;
    let relay = stack.relay_url();
    let ws = stack.relay_ws("/ws?clientId=z");
    let addr = stack.comfyui.addr();
    stack.comfyui.kill().await;

    let response = http()
        .get(format!("{relay}/system_stats"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    let body: Value = response.json().await.unwrap();
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("ComfyUI is not reachable"), "{error}");
    assert_eq!(
        body["detail"]["comfyui_url"],
        format!("http://{addr}/system_stats")
    );

    let refused = client::connect(&ws, &[]).await.unwrap_err();
    assert!(refused.to_string().contains("502"), "{refused}");
}

/// A relay in front of whatever listens at `comfyui`, allowing it `timeout_secs` to answer;
/// its URL, and its data dir (kept while the relay runs).
async fn relay_in_front_of(
    comfyui: std::net::SocketAddr,
    timeout_secs: u64,
) -> (String, tempfile::TempDir) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let relay = format!("http://{}", listener.local_addr().unwrap());
    let data_dir = tempfile::tempdir().unwrap();
    let config = <proxy::Config as clap::Parser>::parse_from([
        "comfy-relay".to_owned(),
        format!("--listen={}", listener.local_addr().unwrap()),
        format!("--comfyui-url=http://{comfyui}"),
        format!("--data-dir={}", data_dir.path().display()),
        format!("--upstream-timeout-secs={timeout_secs}"),
    ]);
    tokio::spawn(proxy::run(
        listener,
        proxy::AppState::new(&config).unwrap(),
        std::future::pending(),
    ));
    (relay, data_dir)
}

#[tokio::test]
async fn a_comfyui_that_never_answers_gets_a_504_not_a_hang() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let _held = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let (relay, _data_dir) = relay_in_front_of(silent_addr, 1).await;

    let started = std::time::Instant::now();
    let response = http().get(format!("{relay}/queue")).send().await.unwrap();
    assert_eq!(response.status(), 504);
    assert!(started.elapsed() < Duration::from_secs(5));
    let body: Value = response.json().await.unwrap();
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("did not answer within 1 s") || error.contains("stopped answering"),
        "{body}"
    );
}

#[tokio::test]
async fn a_comfyui_that_goes_silent_mid_answer_ends_the_relayed_answer_instead_of_holding_it() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let _held = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut socket, _)) = silent.accept().await {
            let mut head = [0u8; 4096];
            let _ = socket.read(&mut head).await;
            let _ = socket
                .write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                      content-length: 100\r\n\r\n{\"system\":",
                )
                .await;
            held.push(socket);
        }
    });
    let (relay, _data_dir) = relay_in_front_of(silent_addr, 1).await;

    let started = std::time::Instant::now();
    let response = http()
        .get(format!("{relay}/system_stats"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "the answer had begun");
    let body = tokio::time::timeout(Duration::from_secs(10), response.bytes()).await;
    assert!(
        matches!(body, Ok(Err(_))),
        "the cut-off answer fails rather than hangs or looks complete: {body:?}"
    );
    println!("a silent answer ended after {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn deep_links_get_the_app_missing_files_get_404_and_unknown_api_paths_are_refused() {
    let stack = spawn_stack().await;
    let relay = stack.relay_url();
    for deep_link in ["/", "/jobs/123", "/workflows/portrait"] {
        let response = http()
            .get(format!("{relay}{deep_link}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{deep_link}");
        assert_eq!(response.headers()["cache-control"], "no-cache");
        assert_eq!(
            response.text().await.unwrap(),
            stack.index_html,
            "{deep_link}"
        );
    }
    let asset = http()
        .get(format!("{relay}/missing-1234.wasm"))
        .send()
        .await
        .unwrap();
    assert_eq!(asset.status(), 404);

    let api = http()
        .get(format!("{relay}/api/no/such/route"))
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 403, "a JSON answer, not the app's page");
    let body: Value = api.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("Comfy Relay does not pass GET /api/no/such/route on to ComfyUI"),
        "{body}"
    );
    assert!(
        stack
            .comfyui
            .requests_to("GET", "/no/such/route")
            .is_empty()
    );
}

#[tokio::test]
async fn a_socket_dropped_by_comfyui_is_closed_for_the_browser_with_a_reason() {
    let stack = spawn_stack().await;
    let mut socket = client::connect(&stack.relay_ws("/ws?clientId=c"), &[])
        .await
        .unwrap();
    client::read_until(&mut socket, RUN_LIMIT, |f| f["type"] == "status").await;
    stack.comfyui.drop_sockets();
    let frames = client::read_until(&mut socket, RUN_LIMIT, |_| false).await;
    let Some(Message::Close(Some(close))) = frames.last() else {
        panic!("expected a close frame, got {frames:?}")
    };
    assert_eq!(u16::from(close.code), 1011);
}

#[tokio::test]
async fn shutting_the_relay_down_closes_relayed_sockets_with_going_away() {
    let mut stack = spawn_stack().await;
    let mut socket = client::connect(&stack.relay_ws("/ws?clientId=s"), &[])
        .await
        .unwrap();
    client::read_until(&mut socket, RUN_LIMIT, |f| f["type"] == "status").await;
    let shutdown = stack.shut_down_relay();
    let (frames, ()) = tokio::join!(
        client::read_until(&mut socket, RUN_LIMIT, |_| false),
        shutdown
    );
    let Some(Message::Close(Some(close))) = frames.last() else {
        panic!("expected a close frame, got {frames:?}")
    };
    assert_eq!(u16::from(close.code), 1001);
}

#[tokio::test]
async fn without_an_explicit_url_the_relay_finds_comfyui_on_the_second_candidate() {
    let double = testkit::comfyui::FakeComfyUi::start().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nothing = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let upstream = proxy::upstream::Upstream::new(vec![
        nothing.parse().unwrap(),
        double.url().parse().unwrap(),
    ]);
    let now = upstream.check(&http()).await;
    assert_eq!(
        now,
        proxy::upstream::Reachability::Up {
            version: Some("0.3.64".into())
        }
    );
    assert_eq!(upstream.base().as_str().trim_end_matches('/'), double.url());
}

#[tokio::test]
async fn a_large_upload_over_comfyuis_limit_gets_comfyuis_413_through_the_relay() {
    let stack = spawn_stack_with(StackOptions {
        comfyui: testkit::comfyui::Options {
            max_upload_size: 1000,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let png = fixtures::png_padded_to(5000);
    let form = reqwest::multipart::Form::new().part(
        "image",
        reqwest::multipart::Part::bytes(png).file_name("big.png"),
    );
    let response = http()
        .post(format!("{}/upload/image", stack.relay_url()))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("Maximum request body size 1000 exceeded."),
        "{body}"
    );
}

#[tokio::test]
async fn built_assets_are_served_precompressed_when_the_browser_accepts_it() {
    let dist = tempfile::tempdir().unwrap();
    std::fs::write(dist.path().join("index.html"), "<!doctype html>").unwrap();
    std::fs::write(dist.path().join("app-1a2b.wasm"), b"\0asm plain").unwrap();
    std::fs::write(dist.path().join("app-1a2b.wasm.br"), b"brotli bytes").unwrap();
    let stack = spawn_stack_with(StackOptions {
        static_dir: Some(dist.path().to_owned()),
        ..Default::default()
    })
    .await;
    let url = format!("{}/app-1a2b.wasm", stack.relay_url());
    let compressed = http()
        .get(&url)
        .header("accept-encoding", "br, gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(compressed.headers()["content-encoding"], "br");
    assert_eq!(compressed.bytes().await.unwrap().as_ref(), b"brotli bytes");
    let plain = http().get(&url).send().await.unwrap();
    assert!(plain.headers().get("content-encoding").is_none());
    assert_eq!(plain.bytes().await.unwrap().as_ref(), b"\0asm plain");
}
