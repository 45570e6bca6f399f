//! Notifications when a job ends: the relay posts an encrypted message, signed with its VAPID
//! key, to each browser its device subscribed (a push service double over HTTPS on loopback),
//! forgets subscriptions the service says are gone and those of revoked devices, and refuses
//! subscriptions that would make it post inside its own network.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use shared::api::{JobState, PushInfo, PushMessage};
use testkit::device::Device;
use testkit::fixtures;
use testkit::push_service::{Browser, PushService};
use testkit::stack::{Stack, spawn_guarded_stack};

const TOKEN: &str = "push-test-token";
const LIMIT: Duration = Duration::from_secs(20);

/// A relay that trusts the double's authority and may post to loopback.
async fn stack_for(service: &PushService) -> Stack {
    let ca = format!("--push-ca={}", service.ca_path().display());
    spawn_guarded_stack(TOKEN, &[&ca, "--push-allow-private"], 0.05).await
}

async fn subscribe(device: &Device, subscription: &impl serde::Serialize) -> reqwest::Response {
    subscribe_raw(device, serde_json::to_string(subscription).unwrap()).await
}

async fn subscribe_raw(device: &Device, body: String) -> reqwest::Response {
    device
        .request(reqwest::Method::PUT, "/api/push/subscription")
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn run_to_end(device: &Device) -> shared::api::Job {
    let job = device.submit_ok(fixtures::INVERT_SLOW).await;
    let job = device.long_poll(&job.id, 20.0).await;
    assert!(job.state.is_finished(), "{job:?}");
    job
}

#[test]
fn the_doubles_decryption_reads_rfc_8291s_example() {
    // RFC 8291 appendix A: the receiver's keys and the message the sender made.
    let browser = Browser::from_keys(
        "q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94",
        "BTBZMqHH6r4Tts7J_aSIgg",
    );
    let body = URL_SAFE_NO_PAD
        .decode(
            "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6T\
             lzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulc\
             y4a-fN",
        )
        .unwrap();
    assert_eq!(
        browser.decrypt(&body).unwrap(),
        b"When I grow up, I want to be a watermelon"
    );
    let mut flipped = body.clone();
    *flipped.last_mut().unwrap() ^= 1;
    assert!(browser.decrypt(&flipped).is_err());
}

#[tokio::test]
async fn a_job_that_ends_is_pushed_encrypted_and_signed_to_each_browser_of_its_device_only() {
    let service = PushService::start().await;
    let stack = stack_for(&service).await;
    let phone = Device::paired(&stack.relay_url(), TOKEN).await;
    let other = Device::paired(&stack.relay_url(), TOKEN).await;

    let info: PushInfo = phone.get_json("/api/push").await;
    assert_eq!(info.subscriptions, 0);
    let relay_key = URL_SAFE_NO_PAD.decode(&info.public_key).unwrap();
    assert_eq!(
        (relay_key.len(), relay_key[0]),
        (65, 4),
        "an uncompressed P-256 point"
    );

    let (phone_browser, tablet_browser, other_browser) =
        (Browser::new(), Browser::new(), Browser::new());
    for (device, browser, name) in [
        (&phone, &phone_browser, "phone"),
        (&phone, &tablet_browser, "tablet"),
        (&other, &other_browser, "other"),
    ] {
        let answer = subscribe(device, &browser.subscription(&service.endpoint(name))).await;
        assert_eq!(answer.status(), 200, "{}", answer.text().await.unwrap());
    }
    let info: PushInfo = phone.get_json("/api/push").await;
    assert_eq!(info.subscriptions, 2);

    let job = run_to_end(&phone).await;
    assert_eq!(job.state, JobState::Succeeded);
    let received = service.wait_for(2, LIMIT).await;
    assert_eq!(received.len(), 2, "one message per browser of the phone");
    // The other device's browser hears nothing of the phone's job, nor may it ask.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(service.received().iter().all(|r| r.name != "other"));
    let path = format!("/api/jobs/{}/notification", job.id);
    let theirs = other.send(reqwest::Method::GET, &path).await.status();
    let job_path = format!("/api/jobs/{}", job.id);
    assert_eq!(
        theirs,
        other.send(reqwest::Method::GET, &job_path).await.status()
    );
    assert!(theirs.is_client_error(), "{theirs}");
    let path = "/api/jobs/no-such-job/notification";
    assert_eq!(phone.send(reqwest::Method::GET, path).await.status(), 404);

    for message in &received {
        let browser = match message.name.as_str() {
            "phone" => &phone_browser,
            "tablet" => &tablet_browser,
            name => panic!("a message for {name}"),
        };
        assert_eq!(message.headers["content-encoding"], "aes128gcm");
        assert!(
            message.headers["ttl"]
                .to_str()
                .unwrap()
                .parse::<u64>()
                .unwrap()
                > 0
        );
        assert_eq!(
            message.sender_key, info.public_key,
            "signed with the key browsers subscribed with"
        );
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let expires = message.claims["exp"].as_u64().unwrap();
        assert!(
            expires > now && expires <= now + 24 * 3600,
            "{}",
            message.claims
        );
        // Apple drops every message whose contact is @localhost or a local name.
        assert_eq!(message.claims["sub"], "mailto:comfy-relay@example.com");

        let plain = browser.decrypt(&message.body).unwrap();
        let pushed: PushMessage = serde_json::from_slice(&plain).unwrap();
        // The open app in the background shows the same words without a push.
        let told: PushMessage = phone
            .get_json(&format!("/api/jobs/{}/notification", job.id))
            .await;
        assert_eq!(told, pushed);
        assert_eq!(pushed.job, job.id);
        assert!(pushed.title.starts_with("Done: "), "{pushed:?}");
        assert_eq!(pushed.body, "Made 1 picture.");
        assert_eq!(pushed.url, "/#/jobs");
        let image = pushed.image.unwrap();
        assert!(image.starts_with("/view?filename=capture_"), "{image}");
        // The picture the notification shows is one the phone may fetch.
        assert_eq!(phone.send(reqwest::Method::GET, &image).await.status(), 200);
    }
}

#[tokio::test]
async fn a_subscription_the_service_calls_gone_and_those_of_a_revoked_device_are_forgotten() {
    let service = PushService::start().await;
    let stack = stack_for(&service).await;
    let phone = Device::paired(&stack.relay_url(), TOKEN).await;
    let (kept, gone) = (Browser::new(), Browser::new());
    subscribe(&phone, &kept.subscription(&service.endpoint("kept"))).await;
    subscribe(&phone, &gone.subscription(&service.endpoint("gone-1"))).await;

    run_to_end(&phone).await;
    assert_eq!(service.wait_for(2, LIMIT).await.len(), 2);
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let info: PushInfo = phone.get_json("/api/push").await;
        if info.subscriptions == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "410 did not remove it"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    run_to_end(&phone).await;
    let received = service.wait_for(3, LIMIT).await;
    let mut first: Vec<&str> = received[..2].iter().map(|r| r.name.as_str()).collect();
    first.sort_unstable();
    assert_eq!(first, ["gone-1", "kept"]);
    assert_eq!(received.len(), 3);
    assert_eq!(
        received[2].name, "kept",
        "the gone one is not posted to again"
    );

    // `comfy-relay devices revoke`, as another process would.
    let file = stack.data_dir.path().join("push/subscriptions.json");
    let read = || -> Value { serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap() };
    assert_eq!(read()["subscriptions"].as_array().unwrap().len(), 1);
    let devices = proxy::auth::paired::PairedDevices::open(stack.data_dir.path()).unwrap();
    let id = devices.list()[0].id.clone();
    devices.revoke(&id).unwrap();
    let deadline = tokio::time::Instant::now() + LIMIT;
    while !read()["subscriptions"].as_array().unwrap().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the revoked device's subscription stayed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn subscriptions_that_would_make_the_relay_post_inside_its_network_are_refused() {
    let service = PushService::start().await;
    // Without --push-allow-private: push services must be on the internet.
    let ca = format!("--push-ca={}", service.ca_path().display());
    let stack = spawn_guarded_stack(TOKEN, &[&ca], 0.05).await;
    let phone = Device::paired(&stack.relay_url(), TOKEN).await;
    let browser = Browser::new();
    let good = browser.subscription(&service.endpoint("x"));
    let keys = json!({ "p256dh": good.keys.p256dh, "auth": good.keys.auth });
    let comfyui = stack.comfyui.url();
    let cases = [
        (
            json!({ "endpoint": format!("{comfyui}/prompt"), "keys": keys }),
            422,
            "not an https URL",
        ),
        (
            json!({ "endpoint": "https://127.0.0.1:8188/prompt", "keys": keys }),
            422,
            "named host",
        ),
        (
            json!({ "endpoint": "https://[::1]/x", "keys": keys }),
            422,
            "named host",
        ),
        (
            json!({ "endpoint": "https://user:pw@push.example/x", "keys": keys }),
            422,
            "user name",
        ),
        (
            json!({ "endpoint": format!("https://push.example/{}", "a".repeat(3000)), "keys": keys }),
            422,
            "too long",
        ),
        (
            json!({ "endpoint": "not a url", "keys": keys }),
            422,
            "not a URL",
        ),
        (
            json!({ "endpoint": "https://push.example/x", "keys": { "p256dh": good.keys.p256dh, "auth": "AAAA" } }),
            422,
            "keys.auth",
        ),
        (
            json!({ "endpoint": "https://push.example/x", "keys": { "p256dh": URL_SAFE_NO_PAD.encode([4u8; 65]), "auth": good.keys.auth } }),
            422,
            "not a P-256",
        ),
        (json!({ "endpoint": "https://push.example/x" }), 400, "keys"),
    ];
    let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
    let huge =
        json!({ "endpoint": format!("https://push.example/{}", "a".repeat(40_000)), "keys": keys });
    let raw = [(deep, 400, "nested deeper"), (huge.to_string(), 413, "")];
    let cases = cases
        .into_iter()
        .map(|(body, status, says)| (body.to_string(), status, says))
        .chain(raw);
    for (body, status, says) in cases {
        let answer = subscribe_raw(&phone, body.clone()).await;
        assert_eq!(answer.status(), status, "{body}");
        let text = answer.text().await.unwrap();
        assert!(text.contains(says), "{body}: {text}");
    }
    let info: PushInfo = phone.get_json("/api/push").await;
    assert_eq!(info.subscriptions, 0, "nothing refused was kept");

    // A name that resolves to loopback is taken, but the relay never posts there.
    assert_eq!(subscribe(&phone, &good).await.status(), 200);
    run_to_end(&phone).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        service.received().is_empty(),
        "the relay posted to loopback"
    );

    // Unpaired, nobody reaches the routes.
    let stranger = Device::with_cookie(
        &stack.relay_url(),
        "comfy_relay_device=0123456789abcdef0123456789abcdef",
    );
    let answer = subscribe(&stranger, &good).await;
    assert_eq!(answer.status(), 401);
}
