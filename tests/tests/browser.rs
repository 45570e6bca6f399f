//! The real built page in headless Chromium, at a phone viewport and a desktop one, against the
//! relay and the ComfyUI double. Screenshots of each step go to `target/browser-artifacts/`.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use serde_json::Value;
use tests::browser::{Browser, Viewport, dist_dir};
use tests::comfyui::Options;
use tests::fixtures;
use tests::stack::{Stack, StackOptions, spawn_stack_with};

async fn stack(pace: f64) -> Stack {
    spawn_stack_with(StackOptions {
        comfyui: Options {
            pace,
            ..Options::default()
        },
        static_dir: Some(dist_dir()),
        ..StackOptions::default()
    })
    .await
}

async fn open_app(viewport: Viewport, stack: &Stack) -> Browser {
    let browser = Browser::launch(viewport).await;
    browser.goto(&stack.relay_url()).await;
    browser.wait_for_text("connection", |t| t == "Live").await;
    browser
}

async fn paste_workflow_edit_prompt_queue_and_see_the_result(viewport: Viewport) {
    let stack = stack(1.0).await;
    let browser = open_app(viewport, &stack).await;

    browser
        .by_test_id("workflow-json")
        .await
        .send_keys(fixtures::SD15_TXT2IMG)
        .await
        .unwrap();
    let prompt = browser.by_test_id("input-6-text").await;
    assert_eq!(
        prompt.prop("value").await.unwrap().as_deref(),
        Some("beautiful scenery nature glass bottle landscape, , purple galaxy bottle,")
    );
    let labels = browser.by_test_id("inputs").await.text().await.unwrap();
    assert!(labels.contains("CLIP Text Encode (Prompt)"), "{labels}");
    assert!(labels.contains("Save Image"), "{labels}");
    prompt.clear().await.unwrap();
    prompt.send_keys("a red fox on the moon").await.unwrap();
    browser.screenshot_at("input-6-text", "run-1-edited").await;

    browser.by_test_id("queue").await.click().await.unwrap();
    browser
        .wait_for_text("progress-percent", |t| t == "100%")
        .await;
    browser.wait_for_text("run-status", |t| t == "Done").await;
    let image = browser.by_test_id("result-image").await;
    let src = image.attr("src").await.unwrap().unwrap();
    assert!(src.starts_with("/view?filename=ComfyUI_"), "{src}");
    let loaded = browser
        .eval("const i = document.querySelector('[data-testid=result-image]'); return i.complete && i.naturalWidth;")
        .await;
    assert_eq!(
        loaded,
        Value::from(64),
        "the output PNG loads through the relay"
    );
    browser.screenshot_at("results", "run-2-done").await;

    let queued = stack.comfyui.queued_prompts();
    assert_eq!(queued.len(), 1);
    assert_eq!(
        queued[0]["prompt"]["6"]["inputs"]["text"],
        "a red fox on the moon"
    );
    assert_eq!(
        queued[0]["prompt"]["7"]["inputs"]["text"],
        "text, watermark"
    );
    let tab_id = browser
        .eval("return sessionStorage.getItem('comfy-relay.client-id');")
        .await;
    assert_eq!(
        queued[0]["client_id"], tab_id,
        "queued for this tab's socket"
    );
    browser.close().await;
}

#[tokio::test]
async fn on_a_phone_a_pasted_workflow_with_an_edited_prompt_runs_to_its_image() {
    paste_workflow_edit_prompt_queue_and_see_the_result(Viewport::Phone).await;
}

#[tokio::test]
async fn on_a_desktop_a_pasted_workflow_with_an_edited_prompt_runs_to_its_image() {
    paste_workflow_edit_prompt_queue_and_see_the_result(Viewport::Desktop).await;
}

async fn a_ui_format_file_shows_how_to_export_the_api_format(viewport: Viewport) {
    let stack = stack(1.0).await;
    let browser = open_app(viewport, &stack).await;
    let path = fixtures::path("comfyui/workflows/ui_format_not_api.json");
    browser
        .by_test_id("workflow-file")
        .await
        .send_keys(&path.display().to_string())
        .await
        .unwrap();
    let message = browser
        .wait_for_text("workflow-error", |t| !t.is_empty())
        .await;
    assert!(message.contains("Export (API)"), "{message}");
    let queue = browser.by_test_id("queue").await;
    assert_eq!(
        queue.attr("disabled").await.unwrap().as_deref(),
        Some("true")
    );
    browser.screenshot("ui-format-message").await;
    assert!(stack.comfyui.requests_to("POST", "/prompt").is_empty());
    browser.close().await;
}

#[tokio::test]
async fn on_a_phone_a_ui_format_file_shows_how_to_export_the_api_format() {
    a_ui_format_file_shows_how_to_export_the_api_format(Viewport::Phone).await;
}

#[tokio::test]
async fn on_a_desktop_a_ui_format_file_shows_how_to_export_the_api_format() {
    a_ui_format_file_shows_how_to_export_the_api_format(Viewport::Desktop).await;
}

#[tokio::test]
async fn the_interrupt_button_stops_this_tabs_run_in_comfyui() {
    let stack = stack(6.0).await;
    let browser = open_app(Viewport::Phone, &stack).await;
    let path = fixtures::path("comfyui/workflows/invert_slow.json");
    browser
        .by_test_id("workflow-file")
        .await
        .send_keys(&path.display().to_string())
        .await
        .unwrap();
    browser.by_test_id("input-4-filename_prefix").await;
    browser.by_test_id("queue").await.click().await.unwrap();
    browser
        .wait_for_text("run-status", |t| {
            t.starts_with("Running Slow Progress (test)")
        })
        .await;
    browser
        .screenshot_at("run-status", "interrupt-1-running")
        .await;
    browser.by_test_id("interrupt").await.click().await.unwrap();
    browser
        .wait_for_text("run-status", |t| t == "Interrupted")
        .await;
    browser
        .screenshot_at("run-status", "interrupt-2-stopped")
        .await;

    assert_eq!(stack.comfyui.queued_prompts().len(), 1);
    let interrupts = stack.comfyui.requests_to("POST", "/interrupt");
    assert_eq!(interrupts.len(), 1);
    let history = stack.comfyui.history_ids();
    assert_eq!(
        interrupts[0].json()["prompt_id"],
        history[0],
        "the interrupt names this run"
    );
    browser.close().await;
}
