//! The app on a phone's home screen, in headless Chromium over HTTPS from the relay's own
//! authority (trusted by its key, as a phone that installed it does): the service worker
//! registers, the manifest is what an install needs, notifications are offered and a job that
//! ends while the page is in the background is told, and with the relay stopped a reload still
//! opens the app and shows the jobs it last showed.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use base64::Engine as _;
use rcgen::PublicKeyData as _;
use serde_json::Value;
use sha2::Digest as _;
use testkit::app;
use testkit::browser::{Browser, Viewport, dist_dir};
use testkit::comfyui::Options;
use testkit::stack::{StackOptions, spawn_stack_with};

#[tokio::test]
async fn over_https_the_app_installs_and_opens_with_its_last_jobs_when_the_relay_is_down() {
    let mut stack = spawn_stack_with(StackOptions {
        comfyui: Options {
            pace: 0.0,
            ..Options::default()
        },
        static_dir: Some(dist_dir()),
        relay_args: vec!["--tls=local".to_owned()],
        ..StackOptions::default()
    })
    .await;
    // Chromium trusts the relay's authority by its key.
    let key = std::fs::read_to_string(stack.data_dir.path().join("tls/ca-key.pem")).unwrap();
    let key = rcgen::KeyPair::from_pem(&key).unwrap();
    let spki = base64::engine::general_purpose::STANDARD
        .encode(sha2::Sha256::digest(key.subject_public_key_info()));
    let browser = Browser::launch_with(
        Viewport::Phone,
        &[format!("--ignore-certificate-errors-spki-list={spki}")],
    )
    .await;
    let url = format!("https://{}/", stack.relay_addr);
    browser.goto(&url).await;
    browser.wait_for_text("connection", |t| t == "Live").await;
    assert_eq!(browser.eval("return isSecureContext").await, true);
    browser
        .wait_until(
            "the service worker controls the page",
            "return !!navigator.serviceWorker.controller",
        )
        .await;
    let manifest = browser
        .eval_async(
            "const link = document.querySelector('link[rel=manifest]');
             const response = await fetch(link.href);
             return [response.headers.get('content-type'), await response.json()];",
        )
        .await;
    assert_eq!(manifest[0], "application/manifest+json");
    let manifest = &manifest[1];
    assert_eq!(manifest["display"], "standalone");
    assert_eq!(manifest["start_url"], "/");
    let icons = manifest["icons"].as_array().unwrap();
    for size in ["192x192", "512x512"] {
        let icon = icons.iter().find(|i| i["sizes"] == size).unwrap();
        let src = icon["src"].as_str().unwrap();
        let fetched = browser
            .eval_async(&format!(
                "const r = await fetch('{src}'); return [r.status, r.headers.get('content-type')];"
            ))
            .await;
        assert_eq!(fetched, serde_json::json!([200, "image/png"]), "{src}");
    }

    // Notifications: offered on a tap; this browser has no push service to reach, which the
    // page says, and the open page still tells of a job that ends while it is hidden.
    browser
        .wait_until(
            "the page offers notifications",
            "return document.getElementById('page-hint-text').textContent.includes('notification when a job ends')",
        )
        .await;
    browser
        .cdp(
            "Browser.grantPermissions",
            serde_json::json!({ "permissions": ["notifications"], "origin": url.trim_end_matches('/') }),
        )
        .await;
    browser.tap_css("#page-hint-action").await;
    browser
        .wait_until(
            "the page says notifications come only while it is open",
            "return document.getElementById('page-hint-text').textContent.startsWith('Notifications come only while the app is open')",
        )
        .await;
    browser.screenshot("notifications-offer").await;

    app::import_invert(&browser).await;
    browser
        .eval("Object.defineProperty(document, 'visibilityState', { value: 'hidden', configurable: true })")
        .await;
    browser.tap("queue").await;
    app::wait_for_job(&browser, "succeeded").await;
    let shown = browser
        .eval_async(
            "const worker = await navigator.serviceWorker.ready;
             for (let i = 0; i < 200; i++) {
               const shown = await worker.getNotifications();
               if (shown.length) return shown.map((n) => [n.title, n.body, n.tag]);
               await new Promise((r) => setTimeout(r, 100));
             }
             return [];",
        )
        .await;
    let shown = shown.as_array().unwrap();
    if shown.is_empty() {
        // What the page knew, for the next time this fails (it once did, in CI only).
        let page = browser
            .eval_async(
                "const worker = await navigator.serviceWorker.ready;
                 const jobs = [...document.querySelectorAll('[data-testid=job]')];
                 return { permission: Notification.permission, visibility: document.visibilityState,
                          worker: !!worker.active, notify: typeof window.comfyRelayNotify,
                          jobs: jobs.map((j) => j.textContent.slice(0, 80)) };",
            )
            .await;
        panic!("no notification was shown; the page: {page}");
    }
    assert_eq!(shown.len(), 1, "{shown:?}");
    assert!(
        shown[0][0].as_str().unwrap().starts_with("Done: "),
        "{shown:?}"
    );
    assert_eq!(shown[0][1], "Made 1 picture.");
    browser.eval("delete document.visibilityState").await;
    browser.tap("tab-jobs").await;
    browser.by_test_id("job").await;
    let before: Value = browser
        .eval("return document.querySelectorAll('[data-testid=job]').length")
        .await;

    // The worker keeps the newest page of kept jobs beside the page the app asked for, in the
    // background: the relay stops once it has (as it would for a phone open a moment longer).
    browser
        .wait_until(
            "the worker kept the newest page of jobs",
            "return caches.open('comfy-relay-shell').then((cache) => cache.keys()).then((keys) =>
                 keys.some((r) => r.url.includes('/api/jobs/history?') && !r.url.includes('before=')));",
        )
        .await;
    stack.shut_down_relay().await;
    browser.client.refresh().await.unwrap();
    browser.tap("tab-jobs").await;
    browser
        .wait_until(
            "the jobs it last showed",
            "return document.querySelectorAll('[data-testid=job]').length > 0",
        )
        .await;
    let after = browser
        .eval("return document.querySelectorAll('[data-testid=job]').length")
        .await;
    assert_eq!(after, before, "the jobs it last showed");
    assert_ne!(
        browser.wait_for_text("connection", |t| t != "Live").await,
        "Live"
    );
    browser.screenshot("offline-jobs").await;
    browser.close().await;
}

#[tokio::test]
async fn on_plain_http_the_app_says_what_https_would_add() {
    let stack = spawn_stack_with(StackOptions {
        static_dir: Some(dist_dir()),
        relay_args: vec!["--allowed-host=relay.test".to_owned()],
        ..StackOptions::default()
    })
    .await;
    // A name, not loopback: a page the browser does not count as a secure context.
    let browser = Browser::launch_with(
        Viewport::Phone,
        &[format!(
            "--host-resolver-rules=MAP relay.test {}",
            stack.relay_addr.ip()
        )],
    )
    .await;
    let url = format!("http://relay.test:{}/", stack.relay_addr.port());
    browser.goto(&url).await;
    browser.wait_for_text("connection", |t| t == "Live").await;
    assert_eq!(browser.eval("return isSecureContext").await, false);
    browser
        .wait_until(
            "the page says what HTTPS would add",
            "return document.getElementById('page-hint-text').textContent.includes('need HTTPS')",
        )
        .await;
    browser.screenshot("plain-http-hint").await;
    browser.close().await;
}
