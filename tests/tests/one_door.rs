//! The relay as the only door to ComfyUI, tried as an attacker on the LAN would: a paired phone
//! taking over the relay's session or another device's, paths that would reach refused routes,
//! clients that hold connections open, bodies that would fill memory, a revoked device's
//! socket, and a ComfyUI that stops answering. Each class of attack has a test here.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};
use shared::api::JobState;
use shared::comfy::PromptAccepted;
use testkit::device::Device;
use testkit::fixtures;
use testkit::stack::spawn_guarded_stack;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const TOKEN: &str = "0123456789abcdef0123456789abcdef";

/// Connects to the relay from `source` (any 127.x.y.z address), without sending anything.
async fn connect_from(relay: SocketAddr, source: [u8; 4]) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((source, 0))).unwrap();
    socket.connect(relay).await.unwrap()
}

/// Reads until the relay closes the connection or `limit` passes; returns what was read and
/// whether it closed.
async fn read_to_close(stream: &mut TcpStream, limit: Duration) -> (String, bool) {
    let mut read = Vec::new();
    let mut buffer = [0u8; 4096];
    let closed = tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => read.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await
    .is_ok();
    (String::from_utf8_lossy(&read).into_owned(), closed)
}

/// Queues a raw prompt for `device` and returns its id.
async fn raw_prompt(device: &Device, client_id: &str) -> String {
    let response = device
        .post_json(
            "/prompt",
            fixtures::prompt_body(fixtures::SD15_TXT2IMG, client_id),
        )
        .await;
    assert_eq!(response.status(), 200);
    response.json::<PromptAccepted>().await.unwrap().prompt_id
}

#[tokio::test]
async fn no_client_learns_the_relays_client_id_and_using_it_does_not_take_the_session_over() {
    let stack = spawn_guarded_stack(TOKEN, &[], 5.0).await;
    let phone = Device::paired(&stack.relay_url(), TOKEN).await;
    let attacker = Device::paired(&stack.relay_url(), TOKEN).await;
    let job = phone.submit_ok(fixtures::SD15_TXT2IMG).await;
    let relays_id = stack.state.jobs.client_id.clone();

    for device in [&phone, &attacker] {
        for path in ["/queue", "/api/queue", "/history", "/api/history"] {
            let text = device.send(Method::GET, path).await.text().await.unwrap();
            assert!(
                !text.contains(&relays_id),
                "{path} shows the relay's id: {text}"
            );
        }
        let entry = format!("/history/{}", job.id);
        let text = device.send(Method::GET, &entry).await.text().await.unwrap();
        assert!(!text.contains(&relays_id), "{entry}: {text}");
    }
    let own_queue: Value = phone.get_json("/queue").await;
    assert_eq!(
        own_queue["queue_running"].as_array().unwrap().len()
            + own_queue["queue_pending"].as_array().unwrap().len(),
        1,
        "the phone sees its own job"
    );

    // The id leaked anyway (a log, a screenshot): the attacker opens ComfyUI's socket with it.
    let mut stolen = attacker.raw_socket(&relays_id).await;
    let first = tokio::time::timeout(Duration::from_secs(5), stolen.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let sid = serde_json::from_str::<Value>(first.to_text().unwrap()).unwrap()["data"]["sid"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(
        sid, relays_id,
        "the attacker's socket has an id of its own device"
    );
    assert!(stack.comfyui.socket_ids().contains(&relays_id));
    assert!(stack.comfyui.socket_ids().contains(&sid));

    let done = phone.long_poll(&job.id, 60.0).await;
    assert_eq!(
        done.state,
        JobState::Succeeded,
        "the victim's job finishes normally"
    );
    assert!(!done.outputs.is_empty());
}

#[tokio::test]
async fn device_a_cannot_read_interrupt_or_delete_device_bs_prompts_or_files_through_raw_routes() {
    let stack = spawn_guarded_stack(TOKEN, &[], 5.0).await;
    let a = Device::paired(&stack.relay_url(), TOKEN).await;
    let b = Device::paired(&stack.relay_url(), TOKEN).await;
    let running = raw_prompt(&b, "b-tab").await;
    let waiting = raw_prompt(&b, "b-tab").await;
    let b_job = b.submit_ok(fixtures::SD15_TXT2IMG).await;

    let queue: Value = a.get_json("/queue").await;
    assert_eq!(
        queue,
        json!({"queue_running": [], "queue_pending": []}),
        "A sees none of B's"
    );
    for path in [
        format!("/history/{running}"),
        format!("/api/history/{}", b_job.id),
    ] {
        assert_eq!(a.get_json::<Value>(&path).await, json!({}), "{path}");
    }
    let deleted = a
        .post_json("/queue", json!({"delete": [waiting, b_job.id]}))
        .await;
    assert_eq!(deleted.status(), 200);
    let cleared = a.post_json("/api/queue", json!({"clear": true})).await;
    assert_eq!(cleared.status(), 200);
    let interrupted = a
        .post_json("/interrupt", json!({"prompt_id": running}))
        .await;
    assert_eq!(interrupted.status(), 403);
    let interrupted = a.post_json("/interrupt", json!({})).await;
    assert_eq!(interrupted.status(), 403, "the running prompt is B's");
    assert!(stack.comfyui.requests_to("POST", "/queue").is_empty());
    assert!(stack.comfyui.requests_to("POST", "/interrupt").is_empty());

    let finished = b.long_poll(&b_job.id, 60.0).await;
    assert_eq!(
        finished.state,
        JobState::Succeeded,
        "B's job was not touched"
    );
    let picture = finished.outputs[0].file().expect("a picture");
    let view = format!("/view?{}", picture.view_query());
    assert_eq!(
        a.send(Method::GET, &view).await.status(),
        403,
        "A cannot fetch B's picture"
    );
    assert_eq!(b.send(Method::GET, &view).await.status(), 200);
    let history: Value = b.get_json("/history").await;
    assert_eq!(
        history.as_object().unwrap().len(),
        3,
        "B sees all of its own: {history}"
    );
    let a_history: Value = a.get_json("/history").await;
    assert_eq!(a_history, json!({}));
}

#[tokio::test]
async fn a_raw_queue_deletion_of_the_devices_own_job_cancels_it_instead_of_leaving_it_queued() {
    let stack = spawn_guarded_stack(TOKEN, &[], 5.0).await;
    let phone = Device::paired(&stack.relay_url(), TOKEN).await;
    let first = phone.submit_ok(fixtures::SD15_TXT2IMG).await;
    let second = phone.submit_ok(fixtures::SD15_TXT2IMG).await;
    let deleted = phone
        .post_json("/queue", json!({"delete": [second.id]}))
        .await;
    assert_eq!(deleted.status(), 200);
    let second = phone.long_poll(&second.id, 10.0).await;
    assert_eq!(second.state, JobState::Cancelled, "{second:?}");
    let first = phone.long_poll(&first.id, 60.0).await;
    assert_eq!(first.state, JobState::Succeeded);
}

/// The first segments of the ComfyUI routes the relay may ask for.
const RELAYED_ROOTS: [&str; 9] = [
    "prompt",
    "upload",
    "view",
    "history",
    "queue",
    "object_info",
    "system_stats",
    "features",
    "ws",
];

/// What a permissive server (aiohttp) makes of a path: percent-decoded (twice, for good
/// measure), backslashes as slashes, dot segments resolved.
fn as_comfyui_reads_it(path: &str) -> Vec<String> {
    let decode = |text: &str| {
        let mut out = Vec::new();
        let bytes = text.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%'
                && let Some(byte) = text
                    .get(i + 1..i + 3)
                    .and_then(|hex| u8::from_str_radix(hex, 16).ok())
            {
                out.push(byte);
                i += 3;
                continue;
            }
            out.push(bytes[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    let decoded = decode(&decode(path)).replace('\\', "/");
    let mut segments: Vec<String> = Vec::new();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            other => segments.push(other.to_owned()),
        }
    }
    if segments.first().is_some_and(|s| s == "api") {
        segments.remove(0);
    }
    segments
}

#[test]
fn arbitrary_paths_never_reach_a_comfyui_route_the_relay_does_not_relay() {
    use proptest::prelude::*;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let stack = runtime.block_on(spawn_guarded_stack(TOKEN, &[], 1.0));
    let relay = stack.relay_addr;
    let pieces = prop::sample::select(vec![
        "/",
        "\\",
        ".",
        "..",
        "%2e",
        "%2E",
        "%2f",
        "%5c",
        "%252e",
        "%00",
        "api",
        "history",
        "object_info",
        "view",
        "queue",
        "prompt",
        "internal",
        "logs",
        "userdata",
        "settings",
        "users",
        "free",
        "manager",
        "upload",
        "mask",
        "system_stats",
        "x",
        "?",
        "#",
        ";",
        "//",
    ]);
    let path =
        prop::collection::vec(pieces, 1..12).prop_map(|parts| format!("/{}", parts.concat()));
    let method = prop::sample::select(vec!["GET", "POST", "DELETE", "PUT"]);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 400,
        ..ProptestConfig::default()
    });
    runner
        .run(&(method, path), |(method, path)| {
            runtime.block_on(async {
                let mut stream = TcpStream::connect(relay).await.unwrap();
                let request = format!(
                    "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n\
                     Content-Length: 2\r\nConnection: close\r\n\r\n{{}}"
                );
                stream.write_all(request.as_bytes()).await.unwrap();
                read_to_close(&mut stream, Duration::from_secs(10)).await;
            });
            Ok(())
        })
        .unwrap();
    for received in stack.comfyui.requests() {
        let segments = as_comfyui_reads_it(&received.path);
        let root = segments.first().map(String::as_str).unwrap_or_default();
        assert!(
            RELAYED_ROOTS.contains(&root),
            "{} {} reached ComfyUI as {segments:?}",
            received.method,
            received.path
        );
        assert!(
            !received.path.contains(['\\', '%']) || received.path.starts_with("/object_info/"),
            "{}",
            received.path
        );
        if root == "upload" {
            assert_eq!(segments, ["upload", "image"], "{}", received.path);
        }
    }
    runtime.block_on(async move { drop(stack) });
}

#[tokio::test]
async fn slow_headers_and_slow_bodies_are_closed_within_the_timeouts() {
    let stack = spawn_guarded_stack(TOKEN, &[], 1.0).await;
    let relay = stack.relay_addr;
    let drip = |head: &'static str| async move {
        let mut stream = TcpStream::connect(relay).await.unwrap();
        stream.write_all(head.as_bytes()).await.unwrap();
        let started = Instant::now();
        // One byte a second until the relay hangs up.
        let closed = loop {
            if started.elapsed() > Duration::from_secs(30) {
                break None;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            if stream.write_all(b"x").await.is_err() {
                break Some(started.elapsed());
            }
            let mut probe = [0u8; 512];
            if let Ok(Ok(0) | Err(_)) =
                tokio::time::timeout(Duration::from_millis(1), stream.read(&mut probe)).await
            {
                break Some(started.elapsed());
            }
        };
        closed.expect("the relay closed the connection")
    };
    let headers = drip("GET /api/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ");
    let body = drip(
        "POST /prompt HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer 0123456789abcdef0123456789abcdef\r\n\
         Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{",
    );
    let (headers, body) = tokio::join!(headers, body);
    println!("a slow header closed after {headers:?}, a slow body after {body:?}");
    assert!(headers <= Duration::from_secs(12), "{headers:?}");
    assert!(body <= Duration::from_secs(12), "{body:?}");
    assert!(stack.comfyui.requests_to("POST", "/prompt").is_empty());
}

#[tokio::test]
async fn half_open_connections_from_one_address_are_capped_and_another_address_still_gets_in() {
    let stack = spawn_guarded_stack(
        TOKEN,
        &["--max-connections-per-address=8", "--max-connections=20"],
        1.0,
    )
    .await;
    let relay = stack.relay_addr;
    let mut held = Vec::new();
    for _ in 0..8 {
        let mut stream = connect_from(relay, [127, 0, 0, 7]).await;
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            .await
            .unwrap();
        held.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut refused = connect_from(relay, [127, 0, 0, 7]).await;
    refused
        .write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let (answer, closed) = read_to_close(&mut refused, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("too many connections"), "{answer}");
    assert!(closed);

    let other = reqwest::Client::builder()
        .no_proxy()
        .local_address(std::net::IpAddr::from([127, 0, 0, 9]))
        .build()
        .unwrap()
        .get(format!("{}/api/jobs", stack.relay_url()))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 200, "another address is served");

    // The total: 8 held + 12 more from other addresses fill it; the next gets a 503.
    for last in 10..22u8 {
        let mut stream = connect_from(relay, [127, 0, 1, last]).await;
        stream.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        held.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut over = connect_from(relay, [127, 0, 2, 1]).await;
    over.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let (answer, _) = read_to_close(&mut over, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("as many connections"), "{answer}");
    drop(held);
}

#[tokio::test]
async fn a_huge_multipart_field_and_endless_chunked_bodies_are_refused_after_their_caps() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    let stack = spawn_guarded_stack(TOKEN, &[], 1.0).await;
    let phone = Device::paired(&stack.relay_url(), TOKEN).await;
    // (path, content type, prefix of the body, the route's cap). The client may get up to
    // SOCKET_BUFFERS further ahead than the relay read: loopback's socket buffers hold that.
    const SOCKET_BUFFERS: u64 = 8 << 20;
    let cases = [
        (
            "/upload/image",
            "multipart/form-data; boundary=b",
            "--b\r\nContent-Disposition: form-data; name=\"notes\"\r\n\r\n",
            64 << 10,
        ),
        ("/prompt", "application/json", "{\"prompt\": \"", 16 << 20),
        (
            "/interrupt",
            "application/json",
            "{\"prompt_id\": \"",
            64 << 10,
        ),
        ("/queue", "application/json", "{\"delete\": [\"", 64 << 10),
    ];
    for (path, content_type, prefix, cap) in cases {
        let pulled = Arc::new(AtomicU64::new(0));
        let endless = futures_util::stream::iter([Ok::<_, std::io::Error>(
            bytes::Bytes::from_static(prefix.as_bytes()),
        )])
        .chain({
            let pulled = pulled.clone();
            let chunk = bytes::Bytes::from(vec![b'0'; 64 * 1024]);
            futures_util::stream::repeat_with(move || {
                pulled.fetch_add(chunk.len() as u64, Ordering::SeqCst);
                Ok::<_, std::io::Error>(chunk.clone())
            })
        });
        let answer = phone
            .request(Method::POST, path)
            .header("content-type", content_type)
            .body(reqwest::Body::wrap_stream(endless))
            .send()
            .await;
        let read = pulled.load(Ordering::SeqCst);
        println!("{path}: refused after the client sent {} KB", read / 1024);
        if let Ok(answer) = answer {
            assert!(
                matches!(answer.status().as_u16(), 400 | 413),
                "{path}: {}",
                answer.status()
            );
        }
        assert!(
            read < cap + SOCKET_BUFFERS,
            "{path}: the client sent {read} bytes"
        );
    }
    assert!(
        stack
            .comfyui
            .requests_to("POST", "/upload/image")
            .is_empty()
    );
    assert!(stack.comfyui.requests_to("POST", "/prompt").is_empty());
}

#[tokio::test]
async fn a_revoked_devices_raw_socket_and_event_socket_close_within_seconds() {
    let stack = spawn_guarded_stack(TOKEN, &[], 1.0).await;
    let phone = Device::paired(&stack.relay_url(), TOKEN).await;
    let mut raw = phone.raw_socket("tab").await;
    let mut events = phone.events().await;
    let id = phone.get_json::<Value>("/api/session").await["device"]
        .as_str()
        .unwrap()
        .to_owned();
    let started = Instant::now();
    proxy::auth::paired::PairedDevices::open(stack.data_dir.path())
        .unwrap()
        .revoke(&id)
        .unwrap();
    let raw_closed = async {
        while let Some(Ok(message)) = raw.next().await {
            if message.is_close() {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), raw_closed)
        .await
        .expect("the raw socket closes");
    assert!(
        events.next(Duration::from_secs(5)).await.is_none(),
        "the event socket closes"
    );
    println!(
        "a revoked device's sockets closed after {:?}",
        started.elapsed()
    );
    assert_eq!(phone.send(Method::GET, "/queue").await.status(), 401);
}

#[tokio::test]
async fn a_stalled_comfyui_is_announced_and_requests_to_it_get_a_504_in_bounded_time() {
    let stack = spawn_guarded_stack(TOKEN, &[], 1.0).await;
    let phone = Device::paired(&stack.relay_url(), TOKEN).await;
    let mut events = phone.events().await;
    assert_eq!(events.comfyui_connected, Some(true));
    let started = Instant::now();
    stack.comfyui.stall(true);
    while events.comfyui_connected != Some(false) {
        assert!(
            events.next(Duration::from_secs(10)).await.is_some(),
            "the stall is announced"
        );
    }
    let announced = started.elapsed();
    let asked = Instant::now();
    let answer = phone.send(Method::GET, "/system_stats").await;
    assert_eq!(answer.status(), 504);
    let body: Value = answer.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("stopped answering"),
        "{body}"
    );
    let answered = asked.elapsed();
    println!("stall announced after {announced:?}; a request answered 504 after {answered:?}");
    assert!(answered < Duration::from_secs(5));
    stack.comfyui.stall(false);
    while events.comfyui_connected != Some(true) {
        assert!(
            events.next(Duration::from_secs(10)).await.is_some(),
            "the recovery is announced"
        );
    }
}

#[tokio::test]
async fn every_answer_says_nosniff_so_a_picture_with_html_appended_is_never_rendered() {
    let stack = spawn_guarded_stack(TOKEN, &[], 1.0).await;
    let phone = Device::paired(&stack.relay_url(), TOKEN).await;
    let stranger = Device::with_cookie(&stack.relay_url(), "x=y");
    for (device, path) in [
        (&phone, "/"),
        (&phone, "/api/jobs"),
        (&phone, "/system_stats"),
        (&phone, "/internal/logs"),
        (&stranger, "/api/jobs"),
    ] {
        let answer = device.send(Method::GET, path).await;
        assert_eq!(
            answer
                .headers()
                .get("x-content-type-options")
                .map(|v| v.to_str().unwrap()),
            Some("nosniff"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn a_socket_that_takes_the_relays_id_on_comfyuis_own_machine_does_not_freeze_the_jobs() {
    let stack = spawn_guarded_stack(TOKEN, &[], 1.0).await;
    let phone = Device::paired(&stack.relay_url(), TOKEN).await;
    // A client on ComfyUI's machine, past the relay, reuses the relay's id: ComfyUI now sends
    // the relay's events to it, and the relay's own socket hears nothing.
    let thief_url = format!(
        "{}/ws?clientId={}",
        stack.comfyui.url().replacen("http", "ws", 1),
        stack.state.jobs.client_id
    );
    let _thief = testkit::client::connect(&thief_url, &[]).await.unwrap();
    let started = Instant::now();
    let job = phone.submit_ok(fixtures::EMPTY_IMAGE).await;
    let done = phone.long_poll(&job.id, 30.0).await;
    println!(
        "a job whose events went elsewhere ended after {:?}",
        started.elapsed()
    );
    assert_eq!(
        done.state,
        JobState::Succeeded,
        "finished from ComfyUI's history"
    );
    assert!(!done.outputs.is_empty(), "with its pictures");

    // The relay took its id back: the next job's progress arrives live again.
    let mut events = phone.events().await;
    let next = phone.submit_ok(fixtures::SD15_TXT2IMG).await;
    events
        .wait_for(&next.id, Duration::from_secs(20), |job| {
            job.state == JobState::Running && job.progress > 0.0 && job.progress < 1.0
        })
        .await;
}

#[tokio::test]
async fn a_device_holds_at_most_its_share_of_sockets() {
    let stack = spawn_guarded_stack(TOKEN, &["--max-sockets-per-device=3"], 1.0).await;
    let phone = Device::paired(&stack.relay_url(), TOKEN).await;
    let other = Device::paired(&stack.relay_url(), TOKEN).await;
    let _events = phone.events().await;
    let _raw = [phone.raw_socket("a").await, phone.raw_socket("b").await];
    let url = format!("{}/ws?clientId=c", stack.relay_ws(""));
    let refused = testkit::client::connect(&url, &[("cookie", phone.cookie())])
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("429"), "{refused}");
    let _others = other.raw_socket("a").await;
    drop(_raw);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _again = phone.raw_socket("c").await;
}

#[tokio::test]
async fn operator_rules_become_routes_that_still_check_every_segment() {
    let stack = spawn_guarded_stack(
        TOKEN,
        &[
            "--allow-route=GET /userdata/",
            "--allow-route=PUT /userdata/",
        ],
        1.0,
    )
    .await;
    let script = Device::script(&stack.relay_url(), TOKEN);
    for method in [Method::GET, Method::PUT] {
        let answer = script
            .send(method.clone(), "/userdata/workflows/a.json")
            .await;
        assert_eq!(
            answer.status(),
            404,
            "{method}: the double has no such route, so it answered"
        );
    }
    assert_eq!(
        stack
            .comfyui
            .requests_to("GET", "/userdata/workflows/a.json")
            .len(),
        1
    );
    assert_eq!(
        stack
            .comfyui
            .requests_to("PUT", "/userdata/workflows/a.json")
            .len(),
        1
    );
    let refused = script
        .send(Method::DELETE, "/userdata/workflows/a.json")
        .await;
    assert_eq!(refused.status(), 403, "no rule names DELETE");
    let refused = script.send(Method::GET, "/settings").await;
    assert_eq!(refused.status(), 403, "other blocked routes stay blocked");

    for path in [
        "/userdata/..%2Fsettings",
        "/userdata/%2e%2e/settings",
        "/api/userdata/..\\settings",
    ] {
        let mut stream = TcpStream::connect(stack.relay_addr).await.unwrap();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let (answer, _) = read_to_close(&mut stream, Duration::from_secs(5)).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{path}: {answer}");
    }
    let reached: Vec<String> = stack
        .comfyui
        .requests()
        .into_iter()
        .map(|r| r.path)
        .collect();
    assert!(
        !reached.iter().any(|p| p.contains("settings")),
        "{reached:?}"
    );
}
