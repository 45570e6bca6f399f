//! Attacks and bad input against a relay that requires pairing: each case is one request with
//! the status it must get, and the ComfyUI route it must not have reached (the double records
//! every request it receives).

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use shared::api::ErrorBody;
use testkit::client::http_without_redirects;
use testkit::device::Device;
use testkit::fixtures;
use testkit::stack::{Stack, spawn_guarded_stack};

const TOKEN: &str = "0123456789abcdef0123456789abcdef";

/// Pairs a new browser through the pairing link, as a phone scanning the QR code does.
async fn pair(stack: &Stack) -> Device {
    Device::paired(&stack.relay_url(), TOKEN).await
}

fn multipart_body(boundary: &str, fields: &[(&str, &str)], file: Option<(&str, &[u8])>) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .bytes(),
        );
    }
    if let Some((filename, bytes)) = file {
        body.extend(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{filename}\"\r\nContent-Type: image/png\r\n\r\n").bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend(b"\r\n");
    }
    body.extend(format!("--{boundary}--\r\n").bytes());
    body
}

/// Posts a multipart `body` whose parts are separated by `boundary`.
async fn post_form(
    device: &Device,
    path: &str,
    boundary: &str,
    body: Vec<u8>,
) -> reqwest::Response {
    device
        .request(Method::POST, path)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .await
        .unwrap()
}

/// One attack or bad input.
struct Case {
    name: &'static str,
    method: Method,
    path: &'static str,
    /// `None`: no cookie; `Some(true)`: the paired device's cookie.
    paired: bool,
    headers: Vec<(&'static str, String)>,
    body: Option<(String, Vec<u8>)>,
    status: u16,
    /// A ComfyUI route (method, path without /api) that must not have been asked for.
    not_reached: (&'static str, &'static str),
    /// Words the error must contain.
    says: &'static str,
}

fn json_body(value: Value) -> Option<(String, Vec<u8>)> {
    Some((
        "application/json".to_owned(),
        serde_json::to_vec(&value).unwrap(),
    ))
}

fn workflow(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

fn cases() -> Vec<Case> {
    let evil = || vec![("origin", "http://evil.example".to_owned())];
    let upload = |fields: &[(&str, &str)], file: Option<(&str, &[u8])>| {
        let boundary = "security-test";
        Some((
            format!("multipart/form-data; boundary={boundary}"),
            multipart_body(boundary, fields, file),
        ))
    };
    let job = |workflow: Value| json_body(json!({ "workflow": workflow }));
    let mut out_of_range = workflow(fixtures::EMPTY_IMAGE);
    out_of_range["5"]["inputs"]["width"] = json!(-5);
    let heic = b"\0\0\0\x18ftypheic\0\0\0\0mif1heic".as_slice();
    let polyglot = [
        fixtures::PHONE_PNG,
        b"<html><script>alert(document.cookie)</script>",
    ]
    .concat();
    let cut_off = &fixtures::PHONE_PNG[..fixtures::PHONE_PNG.len() - 20];
    let case = |name, method, path, paired, status, not_reached, says| Case {
        name,
        method,
        path,
        paired,
        headers: Vec::new(),
        body: None,
        status,
        not_reached,
        says,
    };
    vec![
        Case {
            body: job(workflow(fixtures::EMPTY_IMAGE)),
            ..case(
                "no token: queue a job",
                Method::POST,
                "/api/jobs",
                false,
                401,
                ("POST", "/prompt"),
                "not paired",
            )
        },
        case(
            "no token: list jobs",
            Method::GET,
            "/api/jobs",
            false,
            401,
            ("GET", "/queue"),
            "pairing link",
        ),
        Case {
            body: json_body(json!({"prompt": workflow(fixtures::EMPTY_IMAGE)})),
            ..case(
                "no token: raw prompt",
                Method::POST,
                "/prompt",
                false,
                401,
                ("POST", "/prompt"),
                "not paired",
            )
        },
        case(
            "no token: view a file",
            Method::GET,
            "/view?filename=x.png&type=output",
            false,
            401,
            ("GET", "/view"),
            "not paired",
        ),
        case(
            "no token: history",
            Method::GET,
            "/api/history",
            false,
            401,
            ("GET", "/history"),
            "not paired",
        ),
        Case {
            headers: vec![("authorization", "Bearer wrong".to_owned())],
            ..case(
                "wrong token",
                Method::GET,
                "/api/jobs",
                false,
                401,
                ("GET", "/queue"),
                "token is wrong",
            )
        },
        Case {
            headers: vec![(
                "cookie",
                "comfy_relay_device=00000000000000000000000000000000".to_owned(),
            )],
            ..case(
                "unknown device cookie",
                Method::GET,
                "/api/jobs",
                false,
                401,
                ("GET", "/queue"),
                "unpaired",
            )
        },
        Case {
            headers: evil(),
            body: job(workflow(fixtures::EMPTY_IMAGE)),
            ..case(
                "foreign origin queues a job",
                Method::POST,
                "/api/jobs",
                true,
                403,
                ("POST", "/prompt"),
                "another web site",
            )
        },
        Case {
            headers: evil(),
            body: json_body(json!({})),
            ..case(
                "foreign origin interrupts",
                Method::POST,
                "/interrupt",
                true,
                403,
                ("POST", "/interrupt"),
                "another web site",
            )
        },
        Case {
            headers: vec![("sec-fetch-site", "cross-site".to_owned())],
            body: json_body(json!({"prompt": workflow(fixtures::EMPTY_IMAGE)})),
            ..case(
                "cross-site raw prompt",
                Method::POST,
                "/prompt",
                true,
                403,
                ("POST", "/prompt"),
                "another web site",
            )
        },
        Case {
            headers: vec![("origin", "null".to_owned())],
            body: job(workflow(fixtures::EMPTY_IMAGE)),
            ..case(
                "sandboxed (null) origin",
                Method::POST,
                "/api/jobs",
                true,
                403,
                ("POST", "/prompt"),
                "another web site",
            )
        },
        Case {
            headers: vec![("host", "attacker.example".to_owned())],
            ..case(
                "rebound DNS name",
                Method::GET,
                "/api/history",
                true,
                403,
                ("GET", "/history"),
                "host name",
            )
        },
        case(
            "ComfyUI's log",
            Method::GET,
            "/internal/logs",
            true,
            403,
            ("GET", "/internal/logs"),
            "logs",
        ),
        case(
            "ComfyUI's log under /api",
            Method::GET,
            "/api/internal/logs",
            true,
            403,
            ("GET", "/internal/logs"),
            "logs",
        ),
        case(
            "free the GPU",
            Method::POST,
            "/free",
            true,
            403,
            ("POST", "/free"),
            "unloads",
        ),
        case(
            "free the GPU under /api",
            Method::POST,
            "/api/free",
            true,
            403,
            ("POST", "/free"),
            "unloads",
        ),
        case(
            "user data",
            Method::GET,
            "/api/userdata/workflows%2Fsecret.json",
            true,
            403,
            ("GET", "/userdata/workflows%2Fsecret.json"),
            "files",
        ),
        case(
            "manager install",
            Method::POST,
            "/api/manager/queue/install",
            true,
            403,
            ("POST", "/manager/queue/install"),
            "install",
        ),
        case(
            "settings",
            Method::GET,
            "/api/settings",
            true,
            403,
            ("GET", "/settings"),
            "settings",
        ),
        case(
            "unknown route",
            Method::GET,
            "/api/some/custom/node/route",
            true,
            403,
            ("GET", "/some/custom/node/route"),
            "not a route",
        ),
        Case {
            body: json_body(json!({"clear": true})),
            ..case(
                "clear everyone's history: only the device's own (none) is cleared",
                Method::POST,
                "/api/history",
                true,
                200,
                ("POST", "/history"),
                "",
            )
        },
        Case {
            body: json_body(json!({"clear": true})),
            ..case(
                "clear everyone's queue: only the device's own (none) is cleared",
                Method::POST,
                "/queue",
                true,
                200,
                ("POST", "/queue"),
                "",
            )
        },
        Case {
            body: upload(
                &[("subfolder", "../../tmp")],
                Some(("x.png", fixtures::PHONE_PNG)),
            ),
            ..case(
                "subfolder traversal",
                Method::POST,
                "/upload/image",
                true,
                400,
                ("POST", "/upload/image"),
                "subfolder",
            )
        },
        Case {
            body: upload(&[("type", "output")], Some(("x.png", fixtures::PHONE_PNG))),
            ..case(
                "upload into outputs",
                Method::POST,
                "/upload/image",
                true,
                400,
                ("POST", "/upload/image"),
                "input folder",
            )
        },
        Case {
            body: upload(&[], Some(("notes.png", b"buy milk, then eggs"))),
            ..case(
                "text file as an image",
                Method::POST,
                "/upload/image",
                true,
                415,
                ("POST", "/upload/image"),
                "not an image",
            )
        },
        Case {
            body: upload(&[], Some(("cat.png", &polyglot))),
            ..case(
                "PNG with a page appended",
                Method::POST,
                "/upload/image",
                true,
                415,
                ("POST", "/upload/image"),
                "data after its end",
            )
        },
        Case {
            body: upload(&[], Some(("cut.png", cut_off))),
            ..case(
                "PNG cut off",
                Method::POST,
                "/upload/image",
                true,
                415,
                ("POST", "/upload/image"),
                "ends before",
            )
        },
        Case {
            body: upload(&[], Some(("IMG_0001.HEIC", heic))),
            ..case(
                "HEIC photo",
                Method::POST,
                "/upload/image",
                true,
                415,
                ("POST", "/upload/image"),
                "Most Compatible",
            )
        },
        Case {
            body: upload(&[("image_name", "x")], None),
            ..case(
                "form without the image",
                Method::POST,
                "/upload/image",
                true,
                400,
                ("POST", "/upload/image"),
                "no \"image\"",
            )
        },
        Case {
            headers: vec![("content-length", "314572800".to_owned())],
            body: Some(("multipart/form-data; boundary=x".to_owned(), Vec::new())),
            ..case(
                "declared oversized upload",
                Method::POST,
                "/upload/image",
                true,
                413,
                ("POST", "/upload/image"),
                "larger than",
            )
        },
        Case {
            body: job(workflow(fixtures::UI_FORMAT)),
            ..case(
                "UI-format job",
                Method::POST,
                "/api/jobs",
                true,
                422,
                ("POST", "/prompt"),
                "Export (API)",
            )
        },
        Case {
            body: json_body(json!({"prompt": workflow(fixtures::UI_FORMAT)})),
            ..case(
                "UI-format raw prompt",
                Method::POST,
                "/api/prompt",
                true,
                422,
                ("POST", "/prompt"),
                "Export (API)",
            )
        },
        Case {
            body: Some(("application/json".to_owned(), b"{\"workflow\": {".to_vec())),
            ..case(
                "malformed job JSON",
                Method::POST,
                "/api/jobs",
                true,
                400,
                ("POST", "/prompt"),
                "not valid",
            )
        },
        Case {
            body: Some(("application/json".to_owned(), b"{\"prompt\": ".to_vec())),
            ..case(
                "malformed raw prompt",
                Method::POST,
                "/prompt",
                true,
                400,
                ("POST", "/prompt"),
                "not valid JSON",
            )
        },
        Case {
            body: job(out_of_range.clone()),
            ..case(
                "out-of-range job",
                Method::POST,
                "/api/jobs",
                true,
                422,
                ("POST", "/prompt"),
                "smaller than the minimum",
            )
        },
        Case {
            body: json_body(json!({"prompt": out_of_range})),
            ..case(
                "out-of-range raw prompt",
                Method::POST,
                "/prompt",
                true,
                422,
                ("POST", "/prompt"),
                "input \"width\"",
            )
        },
        Case {
            body: job(json!({"1": {"class_type": "EvilNode", "inputs": {}}})),
            ..case(
                "unknown node class",
                Method::POST,
                "/api/jobs",
                true,
                422,
                ("POST", "/prompt"),
                "EvilNode",
            )
        },
    ]
}

#[tokio::test]
async fn every_attack_and_bad_input_is_refused_before_comfyui() {
    let stack = spawn_guarded_stack(TOKEN, &["--max-upload-bytes=1000000"], 1.0).await;
    let phone = pair(&stack).await;
    let mut failures = Vec::new();
    for case in cases() {
        let mut request = http_without_redirects().request(
            case.method.clone(),
            format!("{}{}", stack.relay_url(), case.path),
        );
        if case.paired {
            request = request.header("cookie", phone.cookie());
        }
        for (name, value) in &case.headers {
            request = request.header(*name, value);
        }
        if let Some((content_type, body)) = &case.body {
            request = request
                .header("content-type", content_type)
                .body(body.clone());
        }
        let before = stack.comfyui.requests().len();
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let reached = stack.comfyui.requests()[before..]
            .iter()
            .any(|r| r.method == case.not_reached.0 && r.route() == case.not_reached.1);
        let error = serde_json::from_str::<ErrorBody>(&text)
            .map(|b| b.error)
            .unwrap_or(text);
        if status != case.status || reached || !error.contains(case.says) {
            failures.push(format!(
                "{}: got {status} (want {}), reached ComfyUI: {reached}, said: {error}",
                case.name, case.status
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(stack.comfyui.files().is_empty(), "no file was stored");
    assert!(
        stack.comfyui.queued_prompts().is_empty(),
        "nothing was queued"
    );
}

#[tokio::test]
async fn websocket_upgrades_need_a_device_and_the_relays_own_origin() {
    let stack = spawn_guarded_stack(TOKEN, &[], 1.0).await;
    let phone = pair(&stack).await;
    let own = stack.relay_url();
    for path in ["/api/events", "/ws?clientId=x", "/api/ws?clientId=x"] {
        let url = stack.relay_ws(path);
        let stranger = testkit::client::connect(&url, &[]).await.unwrap_err();
        assert!(stranger.to_string().contains("401"), "{path}: {stranger}");
        let evil = testkit::client::connect(
            &url,
            &[
                ("cookie", phone.cookie()),
                ("origin", "http://evil.example"),
            ],
        )
        .await
        .unwrap_err();
        assert!(evil.to_string().contains("403"), "{path}: {evil}");
        testkit::client::connect(
            &url,
            &[("cookie", phone.cookie()), ("origin", own.as_str())],
        )
        .await
        .unwrap_or_else(|e| panic!("{path}: the paired device connects: {e}"));
    }
}

#[tokio::test]
async fn wrong_tokens_lock_the_address_out_ever_longer_however_many_come_at_once() {
    let stack = spawn_guarded_stack(TOKEN, &[], 1.0).await;
    let guess = |token: &'static str| {
        let url = format!("{}/api/jobs", stack.relay_url());
        async move {
            http_without_redirects()
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    // Twenty guesses at once: one is checked, the rest are locked out unchecked.
    let statuses = futures_util::future::join_all((0..20).map(|_| guess("guess"))).await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 19);
    // Even the right token is not looked at while locked out.
    assert_eq!(guess(TOKEN).await, 429);
    let mut lockouts = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        while guess("guess").await == 429 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        lockouts.push(started.elapsed());
    }
    assert!(lockouts[1] >= Duration::from_millis(450), "{lockouts:?}");
    assert!(lockouts[2] >= Duration::from_millis(950), "{lockouts:?}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        guess(TOKEN).await,
        200,
        "the right token works after the lock-out"
    );
}

#[tokio::test]
async fn a_revoked_device_is_refused_from_its_next_request_on() {
    let stack = spawn_guarded_stack(TOKEN, &[], 1.0).await;
    let phone = pair(&stack).await;
    let laptop = pair(&stack).await;
    assert!(phone.jobs().await.is_empty());

    let paired = proxy::auth::paired::PairedDevices::open(stack.data_dir.path()).unwrap();
    let listed = paired.list();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].name, "Chrome on Android");
    let mut out = Vec::new();
    proxy::commands::devices::run(
        stack.data_dir.path(),
        Some(proxy::config::DevicesAction::Revoke {
            id: listed[0].id.clone(),
        }),
        &mut out,
    )
    .unwrap();

    let refused = phone.send(Method::GET, "/api/jobs").await;
    assert_eq!(refused.status(), 401);
    let body: ErrorBody = refused.json().await.unwrap();
    assert!(body.error.contains("unpaired"), "{}", body.error);
    let still = laptop.send(Method::GET, "/api/jobs").await;
    assert_eq!(still.status(), 200, "the other device is untouched");
}

#[tokio::test]
async fn scripts_use_the_token_as_a_bearer_and_share_one_device() {
    let stack = spawn_guarded_stack(TOKEN, &[], 1.0).await;
    let script = Device::script(&stack.relay_url(), TOKEN);
    let queued = script
        .post_json(
            "/api/jobs",
            json!({ "workflow": workflow(fixtures::EMPTY_IMAGE) }),
        )
        .await;
    assert_eq!(queued.status(), 201);
    let another_script = Device::script(&stack.relay_url(), TOKEN);
    let listed: Value = another_script.get_json("/api/jobs").await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn another_devices_job_cannot_be_cancelled_and_a_device_can_only_wait_for_so_many() {
    let stack = spawn_guarded_stack(TOKEN, &["--max-pending-jobs=2"], 10.0).await;
    let phone = pair(&stack).await;
    let laptop = pair(&stack).await;
    let running = phone.submit_ok(fixtures::INVERT_SLOW).await;
    let mut events = phone.events().await;
    events
        .wait_for(&running.id, Duration::from_secs(10), |j| {
            j.state == shared::api::JobState::Running
        })
        .await;
    phone.submit_ok(fixtures::INVERT_SLOW).await;
    phone.submit_ok(fixtures::INVERT_SLOW).await;
    let third = phone.submit(fixtures::INVERT_SLOW, json!([])).await;
    assert_eq!(third.status(), 429);
    let body: ErrorBody = third.json().await.unwrap();
    assert!(body.error.contains("2 jobs waiting"), "{}", body.error);
    assert_eq!(
        stack.comfyui.queued_prompts().len(),
        2,
        "ComfyUI has --in-flight (2) of them; the relay holds the third, and counts it"
    );

    let cancel = laptop.act(&running.id, "cancel").await;
    assert_eq!(cancel.status(), 403);
    assert!(stack.comfyui.requests_to("POST", "/interrupt").is_empty());
    assert_eq!(
        laptop.submit_ok(fixtures::EMPTY_IMAGE).await.state,
        shared::api::JobState::Queued,
        "the cap is per device"
    );
}

#[tokio::test]
async fn raw_prompts_count_towards_the_cap_until_comfyui_starts_them() {
    let stack = spawn_guarded_stack(TOKEN, &["--max-pending-jobs=2"], 10.0).await;
    let phone = pair(&stack).await;
    let raw = |workflow: &str| {
        let workflow: Value = serde_json::from_str(workflow).unwrap();
        phone.post_json("/prompt", json!({ "prompt": workflow }))
    };
    let first = raw(fixtures::INVERT_SLOW).await;
    assert_eq!(first.status(), 200);
    let first: Value = first.json().await.unwrap();
    let started = Instant::now();
    while stack.comfyui.running_prompt().as_deref() != first["prompt_id"].as_str() {
        assert!(started.elapsed() < Duration::from_secs(10), "never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Running prompts do not count; one raw prompt and one job wait.
    assert_eq!(raw(fixtures::EMPTY_IMAGE).await.status(), 200);
    phone.submit_ok(fixtures::EMPTY_IMAGE).await;
    let refused = raw(fixtures::EMPTY_IMAGE).await;
    assert_eq!(refused.status(), 429);
    let body: ErrorBody = refused.json().await.unwrap();
    assert!(body.error.contains("2 jobs waiting"), "{}", body.error);
    assert_eq!(
        phone
            .submit(fixtures::EMPTY_IMAGE, json!([]))
            .await
            .status(),
        429
    );
    assert_eq!(
        stack.comfyui.queued_prompts().len(),
        3,
        "the refused ones never reached ComfyUI"
    );

    // Once ComfyUI has started what waited, the device may queue again.
    let started = Instant::now();
    loop {
        let again = raw(fixtures::EMPTY_IMAGE).await;
        if again.status() == 200 {
            break;
        }
        assert_eq!(again.status(), 429);
        assert!(started.elapsed() < Duration::from_secs(20), "never freed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(stack.comfyui.queued_prompts().len(), 4);
}

#[tokio::test]
async fn uploads_are_stored_under_a_safe_name_and_an_oversized_stream_costs_no_memory() {
    let stack = spawn_guarded_stack(TOKEN, &["--max-upload-bytes=2000000"], 1.0).await;
    let phone = pair(&stack).await;
    let boundary = "upload-test";
    let body = multipart_body(
        boundary,
        &[("subfolder", "team"), ("overwrite", "true")],
        Some(("../../evil.PNG", fixtures::PHONE_PNG)),
    );
    let stored: Value = post_form(&phone, "/upload/image", boundary, body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        stored,
        json!({"name": "evil.png", "subfolder": "team", "type": "input"})
    );
    let files = stack.comfyui.files();
    assert_eq!(
        (files[0].name.as_str(), files[0].subfolder.as_str()),
        ("evil.png", "team")
    );
    assert_eq!(files[0].bytes.as_ref(), fixtures::PHONE_PNG);

    // 200 MB streamed without a declared length, against a 2 MB limit.
    let resident = || {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .unwrap()
            .trim()
            .trim_end_matches(" kB")
            .parse::<u64>()
            .unwrap()
    };
    let before = resident();
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"huge.png\"\r\nContent-Type: image/png\r\n\r\n"
    );
    let mut chunks = vec![
        Ok::<_, std::io::Error>(head.into_bytes()),
        Ok(fixtures::png_head_with_chunk(300 << 20)),
    ];
    chunks.extend((0..200).map(|_| Ok(vec![0u8; 1024 * 1024])));
    let response = phone
        .request(Method::POST, "/upload/image")
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await;
    let grew_mb = resident().saturating_sub(before) / 1024;
    if let Ok(response) = response {
        assert_eq!(response.status(), 413);
    }
    assert!(
        grew_mb < 40,
        "memory grew by {grew_mb} MB for a 200 MB upload"
    );
    assert_eq!(
        stack.comfyui.files().len(),
        1,
        "nothing of the huge upload was stored"
    );
}

#[tokio::test]
async fn an_operator_can_allow_a_blocked_route_by_name() {
    let stack = spawn_guarded_stack(TOKEN, &["--allow-route=GET /internal/logs"], 1.0).await;
    let phone = pair(&stack).await;
    let allowed = phone.send(Method::GET, "/internal/logs").await;
    assert_eq!(
        allowed.status(),
        404,
        "the double has no logs route: ComfyUI answered"
    );
    assert_eq!(stack.comfyui.requests_to("GET", "/internal/logs").len(), 1);
    let still_blocked = phone.send(Method::POST, "/internal/logs").await;
    assert_eq!(still_blocked.status(), 403, "the rule names a method");
}

/// A mask's form as ComfyUI's own editor sends it: the mask, then `original_ref`; or with
/// `original_ref` first.
fn mask_form(boundary: &str, original_ref: Option<&str>, first: bool) -> Vec<u8> {
    let field = original_ref.map(|value| {
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"original_ref\"\r\n\r\n{value}\r\n"
        )
    });
    let mut body = Vec::new();
    if first && let Some(field) = &field {
        body.extend(field.bytes());
    }
    body.extend(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"clipspace-mask.png\"\r\nContent-Type: image/png\r\n\r\n").bytes(),
    );
    body.extend_from_slice(fixtures::PHONE_PNG);
    body.extend(b"\r\n");
    if !first && let Some(field) = &field {
        body.extend(field.bytes());
    }
    body.extend(format!("--{boundary}--\r\n").bytes());
    body
}

#[tokio::test]
async fn a_mask_goes_only_over_a_picture_the_device_may_view_whatever_folder_its_name_marks() {
    // With every input picture shared, a folder mark in a name must not reach the outputs.
    let stack = spawn_guarded_stack(TOKEN, &["--share-inputs"], 1.0).await;
    let (phone, laptop) = (pair(&stack).await, pair(&stack).await);
    let upload = multipart_body("u", &[], Some(("photo.png", fixtures::PHONE_PNG)));
    let uploaded: Value = post_form(&phone, "/upload/image", "u", upload)
        .await
        .json()
        .await
        .unwrap();
    let job = laptop.submit_ok(fixtures::INVERT_SLOW).await;
    let job = laptop.long_poll(&job.id, 30.0).await;
    let Some(shared::comfy::Output::Image(made)) = job.outputs.first().cloned() else {
        panic!("the laptop's job made a picture: {job:?}");
    };
    let laptops = |kind: &str, mark: &str| {
        json!({"filename": format!("{}{mark}", made.filename), "subfolder": made.subfolder, "type": kind})
            .to_string()
    };
    let photo = json!({"filename": uploaded["name"], "subfolder": "", "type": "input"}).to_string();

    // (who, original_ref, before the mask, status, words of the answer)
    let cases: Vec<(&Device, Option<String>, bool, u16, &str)> = vec![
        (&phone, Some(photo.clone()), false, 200, "clipspace-mask"),
        (&phone, Some(photo.clone()), true, 200, "clipspace-mask"),
        (&phone, Some(laptops("output", "")), true, 403, "may view"),
        (&phone, Some(laptops("output", "")), false, 403, "may view"),
        (
            &phone,
            Some(laptops("input", " [output]")),
            false,
            403,
            "may view",
        ),
        // `type` defaults to output, as ComfyUI reads it.
        (
            &phone,
            Some(json!({"filename": made.filename}).to_string()),
            true,
            403,
            "may view",
        ),
        (&phone, None, false, 400, "original_ref"),
        (
            &phone,
            Some("photo.png".to_owned()),
            true,
            400,
            "original_ref",
        ),
        (
            &laptop,
            Some(laptops("input", " [output]")),
            false,
            200,
            "clipspace-mask",
        ),
    ];
    for (i, (device, original, first, status, says)) in cases.into_iter().enumerate() {
        let stored_before = stack.comfyui.mask_originals().len();
        let form = mask_form("m", original.as_deref(), first);
        let response = post_form(device, "/upload/mask", "m", form).await;
        assert_eq!(response.status(), status, "case {i}: {original:?}");
        let text = response.text().await.unwrap();
        assert!(text.contains(says), "case {i}: {text}");
        let stored = stack.comfyui.mask_originals();
        if status == 200 {
            // ComfyUI got the reference as it was sent, and the device may view the result.
            let sent: Value = serde_json::from_str(original.as_deref().unwrap()).unwrap();
            assert_eq!(stored.last(), Some(&sent), "case {i}");
            let answer: Value = serde_json::from_str(&text).unwrap();
            let view = format!(
                "/view?filename={}&subfolder=&type=input",
                answer["name"].as_str().unwrap()
            );
            assert_eq!(
                device.send(Method::GET, &view).await.status(),
                200,
                "case {i}"
            );
        } else {
            assert_eq!(stored.len(), stored_before, "case {i}: nothing stored");
        }
    }

    // `/view` judges a marked name by the folder ComfyUI opens too.
    let marked = format!(
        "/view?filename={}%20%5Boutput%5D&subfolder={}&type=input",
        made.filename, made.subfolder
    );
    assert_eq!(phone.send(Method::GET, &marked).await.status(), 403);
    assert_eq!(laptop.send(Method::GET, &marked).await.status(), 200);
}
