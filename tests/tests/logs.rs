//! The relay's log, at its most verbose, holds no secret: not the access token (sent in the
//! pairing link's query and as a bearer), not a device's cookie, not a device link's code, not
//! the relay's own ComfyUI client id.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::io::Write;
use std::sync::{Arc, Mutex};

use reqwest::Method;
use serde_json::Value;
use testkit::client::http_without_redirects;
use testkit::device::Device;
use testkit::fixtures;
use testkit::stack::spawn_guarded_stack;

const TOKEN: &str = "0123456789abcdef0123456789abcdef";

/// Everything logged, kept for the test to read.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn no_secret_is_logged_at_any_level() {
    let captured = Captured::default();
    let writer = captured.clone();
    // The relay's own filter, at its most verbose.
    tracing_subscriber::fmt()
        .with_env_filter(proxy::cli::log_filter("trace"))
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();
    let stack = spawn_guarded_stack(TOKEN, &[], 1.0).await;
    let phone = Device::paired(&stack.relay_url(), TOKEN).await;
    let script = Device::script(&stack.relay_url(), TOKEN);
    let job = phone.submit_ok(fixtures::EMPTY_IMAGE).await;
    phone.long_poll(&job.id, 30.0).await;
    script.send(Method::GET, "/queue").await;
    let mut socket = phone.raw_socket("tab").await;
    drop(socket.close(None).await);
    let link: Value = phone
        .send(Method::POST, "/api/device/link")
        .await
        .json()
        .await
        .unwrap();
    let path = link["path"].as_str().unwrap().to_owned();
    let url = format!("{}{path}", stack.relay_url());
    http_without_redirects().get(&url).send().await.unwrap();
    http_without_redirects().post(&url).send().await.unwrap();
    Device::script(&stack.relay_url(), "a-wrong-token-guess")
        .send(Method::GET, "/api/jobs")
        .await;

    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(log.len() > 1000, "the log was captured: {log}");
    let cookie_secret = phone.cookie().split('=').nth(1).unwrap().to_owned();
    let code = path.trim_start_matches("/link/").to_owned();
    for (what, secret) in [
        ("the access token", TOKEN.to_owned()),
        ("a device's cookie", cookie_secret),
        ("a device link's code", code),
        (
            "the relay's ComfyUI client id",
            stack.state.jobs.client_id.clone(),
        ),
        ("a guessed token", "a-wrong-token-guess".to_owned()),
    ] {
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains(&secret))
            .take(3)
            .collect();
        assert!(lines.is_empty(), "{what} is in the log: {lines:#?}");
    }
}
