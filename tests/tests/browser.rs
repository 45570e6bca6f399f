//! The real built page in headless Chromium against the relay and the ComfyUI double: a run from
//! paste to image, jobs surviving reloads, wake-ups and a relay restart, the relay's own queue,
//! cancelling, pairing, device links.
//! Screenshots of each step go to `target/browser-artifacts/`.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::time::Duration;

use serde_json::Value;
use testkit::app::{self, Import};
use testkit::browser::{Browser, Viewport, dist_dir};
use testkit::comfyui::{FakeComfyUi, Options};
use testkit::fixtures;
use testkit::relay_process::{Launch, RelayProcess, free_port};
use testkit::stack::{StackOptions, spawn_stack_with};

async fn paste_workflow_edit_prompt_queue_and_see_the_result(viewport: Viewport) {
    let stack = app::spawn_stack(1.0).await;
    let browser = app::open(viewport, &stack).await;
    app::import(&browser, Import::Paste(fixtures::SD15_TXT2IMG), "sd15").await;
    assert_eq!(
        app::value_of(&browser, "input-6-text").await,
        "beautiful scenery nature glass bottle landscape, , purple galaxy bottle,"
    );
    let form = browser.by_test_id("all-inputs").await.text().await.unwrap();
    assert!(form.contains("CLIP Text Encode (Prompt)"), "{form}");
    assert!(form.contains("Save Image"), "{form}");
    app::type_into(&browser, "input-6-text", "a red fox on the moon").await;
    browser.screenshot_at("input-6-text", "run-1-edited").await;

    browser.tap("queue").await;
    browser.wait_for_text("job-percent", |t| t != "0%").await;
    browser.screenshot_at("job", "run-2-progress").await;
    app::wait_for_job(&browser, "succeeded").await;
    let src = browser
        .by_test_id("job-output")
        .await
        .attr("src")
        .await
        .unwrap()
        .unwrap();
    assert!(src.starts_with("/view?filename=ComfyUI_"), "{src}");
    assert_eq!(
        app::wait_loaded(&browser, "job-output").await,
        64,
        "the output PNG loads through the relay"
    );
    browser.screenshot_at("job", "run-3-done").await;

    let sent = app::last_queued(&stack);
    assert_eq!(sent["6"]["inputs"]["text"], "a red fox on the moon");
    assert_eq!(sent["7"]["inputs"]["text"], "text, watermark");
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

async fn a_file_saved_by_comfyuis_editor_is_converted_and_opens_as_a_form(viewport: Viewport) {
    let stack = app::spawn_stack(1.0).await;
    let browser = app::open(viewport, &stack).await;
    app::library(&browser).await;
    app::choose_file(
        &browser,
        &fixtures::path("comfyui/workflows/ui_format_not_api.json"),
    )
    .await;
    let summary = browser
        .wait_for_text("workflow-summary", |t| !t.is_empty())
        .await;
    assert!(summary.contains("ComfyUI's editor"), "{summary}");
    browser
        .screenshot_at("import", "import-editor-format")
        .await;
    browser.tap("save-workflow").await;
    browser
        .wait_for_text("workflow-title", |t| t == "ui_format_not")
        .await;
    let form = browser.by_test_id("all-inputs").await.text().await.unwrap();
    assert!(
        form.contains("EmptyImage") || form.contains("Empty Image"),
        "{form}"
    );
    let saved = std::fs::read_to_string(stack.data_dir.path().join("workflows/ui_format_not.json"))
        .unwrap();
    let saved: Value = serde_json::from_str(&saved).unwrap();
    assert_eq!(saved["2"]["inputs"]["images"], serde_json::json!(["1", 0]));
    browser.tap("queue").await;
    app::wait_for_job(&browser, "succeeded").await;
    assert!(stack.comfyui.requests_to("POST", "/prompt").len() == 1);
    browser.close().await;
}

#[tokio::test]
async fn tapping_the_open_pages_tab_keeps_what_is_being_typed() {
    let stack = app::spawn_stack(1.0).await;
    let browser = app::open(Viewport::Phone, &stack).await;
    // The app opens at an empty hash; the first tap on its tab makes it `#/`, the same page.
    app::type_into(&browser, "workflow-json", "{\"3\": ").await;
    browser.tap("tab-workflows").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    browser.tap("tab-workflows").await;
    assert_eq!(app::value_of(&browser, "workflow-json").await, "{\"3\": ");
    browser.close().await;
}

#[tokio::test]
async fn a_picture_or_a_video_comfyui_made_opens_the_workflow_that_made_it() {
    let stack = app::spawn_stack(1.0).await;
    let browser = app::open(Viewport::Phone, &stack).await;
    app::library(&browser).await;
    app::choose_file(&browser, &fixtures::path("embedded/comfyui_saved.webp")).await;
    let summary = browser
        .wait_for_text("workflow-summary", |t| !t.is_empty())
        .await;
    assert!(summary.contains("A picture"), "{summary}");
    browser.screenshot_at("import", "import-picture").await;
    browser.tap("save-workflow").await;
    browser
        .wait_for_text("workflow-title", |t| t == "comfyui_saved")
        .await;
    let saved: Value = serde_json::from_str(
        &std::fs::read_to_string(stack.data_dir.path().join("workflows/comfyui_saved.json"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(saved["2"]["inputs"]["filename_prefix"], "from_a_picture");

    // SaveVideo's MP4 goes to the relay as it is, which reads the metadata after the frames.
    let saved_path = stack.data_dir.path().join("workflows/comfyui_saved.json");
    std::fs::remove_file(&saved_path).unwrap();
    app::library(&browser).await;
    app::choose_file(&browser, &fixtures::path("embedded/comfyui_saved.mp4")).await;
    browser
        .wait_for_text("workflow-summary", |t| t.contains("video"))
        .await;
    browser.tap("save-workflow").await;
    browser
        .wait_for_text("workflow-title", |t| t == "comfyui_saved")
        .await;
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(&saved_path).unwrap()).unwrap();
    assert_eq!(saved["1"]["class_type"], "EmptyImage");
    browser.close().await;
}

#[tokio::test]
async fn an_editor_file_with_nodes_this_comfyui_lacks_names_them_and_saves_nothing() {
    let stack = app::spawn_stack(1.0).await;
    let browser = app::open(Viewport::Phone, &stack).await;
    app::library(&browser).await;
    let foreign = fixtures::UI_FORMAT.replace("\"SaveImage\"", "\"ImageSaverPro\"");
    browser
        .by_test_id("workflow-json")
        .await
        .send_keys(&foreign)
        .await
        .unwrap();
    browser
        .wait_for_text("workflow-summary", |t| t.contains("ComfyUI's editor"))
        .await;
    browser.tap("save-workflow").await;
    let refused = browser.find("[data-testid=import] [role=alert]").await;
    let message = refused.text().await.unwrap();
    assert!(message.contains("ImageSaverPro"), "{message}");
    browser
        .screenshot_at("import", "import-editor-missing-nodes")
        .await;
    assert!(
        !stack
            .data_dir
            .path()
            .join("workflows/Workflow.json")
            .exists(),
        "nothing is saved"
    );
    browser.close().await;
}

#[tokio::test]
async fn on_a_phone_a_file_saved_by_comfyuis_editor_is_converted_and_opens_as_a_form() {
    a_file_saved_by_comfyuis_editor_is_converted_and_opens_as_a_form(Viewport::Phone).await;
}

#[tokio::test]
async fn on_a_desktop_a_file_saved_by_comfyuis_editor_is_converted_and_opens_as_a_form() {
    a_file_saved_by_comfyuis_editor_is_converted_and_opens_as_a_form(Viewport::Desktop).await;
}

#[tokio::test]
async fn cancelling_a_running_job_from_its_card_interrupts_it_in_comfyui() {
    let stack = app::spawn_stack(6.0).await;
    let browser = app::open(Viewport::Phone, &stack).await;
    app::import_invert(&browser).await;
    browser.tap("queue").await;
    browser
        .wait_for_text("job-status", |t| {
            t.starts_with("Running Slow Progress (test)")
        })
        .await;
    browser.screenshot_at("job", "cancel-1-running").await;
    browser.tap("job-cancel").await;
    app::wait_for_job(&browser, "interrupted").await;
    browser.screenshot_at("job", "cancel-2-stopped").await;

    let interrupts = stack.comfyui.requests_to("POST", "/interrupt");
    assert_eq!(interrupts.len(), 1);
    assert_eq!(
        interrupts[0].json()["prompt_id"],
        stack.comfyui.history_ids()[0],
        "the interrupt names this job"
    );
    browser.close().await;
}

/// Waits until the status lines of the first job cards (the newest) are `expected`.
async fn wait_for_statuses(browser: &Browser, expected: &[&str]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let statuses = browser
            .eval(&format!(
                "return [...document.querySelectorAll('[data-testid=\"job-status\"]')]\
                     .slice(0, {}).map(e => e.textContent.trim());",
                expected.len()
            ))
            .await;
        if statuses == serde_json::json!(expected) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the cards say {statuses}, not {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_job_waiting_in_the_relay_says_so_and_runs_first_when_asked() {
    let stack = app::spawn_stack(20.0).await;
    let browser = app::open(Viewport::Phone, &stack).await;
    app::import_invert(&browser).await;
    // The workflow page shows the newest job: each tap shows another.
    let mut shown = Value::Null;
    for queued in 1..=4 {
        browser.tap("queue").await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let now = browser
                .eval("return document.querySelector('[data-testid=\"job\"]')?.dataset.jobId ?? null;")
                .await;
            if now != shown && !now.is_null() {
                shown = now;
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "job {queued} never showed"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    browser.tap("tab-jobs").await;
    let [newest, older] = [
        "Waiting in the relay · 3 jobs ahead",
        "Waiting in the relay · 2 jobs ahead",
    ];
    wait_for_statuses(&browser, &[newest, older, "Waiting · 1 job ahead"]).await;
    browser
        .screenshot_at("job", "held-1-waiting-in-the-relay")
        .await;

    // The newest card is the first on the page.
    browser.tap("job-first").await;
    wait_for_statuses(&browser, &[older, newest, "Waiting · 1 job ahead"]).await;
    browser.screenshot_at("job", "held-2-run-first").await;
    assert_eq!(
        stack.comfyui.queued_prompts().len(),
        2,
        "ComfyUI has two; the relay holds the rest"
    );
    browser.close().await;
}

#[tokio::test]
async fn a_page_reloaded_mid_run_shows_the_job_resume_and_finish_with_its_image() {
    let stack = app::spawn_stack(4.0).await;
    let browser = app::open(Viewport::Phone, &stack).await;
    app::import_invert(&browser).await;
    browser.tap("queue").await;
    browser
        .wait_for_text("job-percent", |t| {
            t.trim_end_matches('%').parse::<u32>().is_ok_and(|p| p > 0)
        })
        .await;
    browser.screenshot_at("job", "reload-1-before").await;

    browser.client.refresh().await.unwrap();
    browser.wait_for_text("connection", |t| t == "Live").await;
    browser.wait_for_text("job-status", |t| !t.is_empty()).await;
    app::wait_for_job(&browser, "succeeded").await;
    browser.by_test_id("job-output").await;
    browser.screenshot_at("job", "reload-2-after").await;
    assert_eq!(
        stack.comfyui.queued_prompts().len(),
        1,
        "nothing was queued twice"
    );
    browser.close().await;
}

#[tokio::test]
async fn a_page_open_while_the_relay_is_killed_and_started_again_shows_what_finished_meanwhile() {
    let comfyui = FakeComfyUi::start_with(Options {
        pace: 3.0,
        ..Options::default()
    })
    .await;
    let data = tempfile::tempdir().unwrap();
    let (dist, comfyui_url, port) = (dist_dir(), comfyui.url(), free_port());
    let launch = || Launch {
        binary: env!("CARGO_BIN_EXE_relay-cli").into(),
        port,
        data_dir: data.path(),
        static_dir: &dist,
        comfyui_url: &comfyui_url,
        extra: &[],
        log: "warn",
    };
    let first = RelayProcess::launch(launch()).await;
    let browser = Browser::launch(Viewport::Phone).await;
    browser.goto(&first.base).await;
    browser.wait_for_text("connection", |t| t == "Live").await;
    app::import_invert(&browser).await;
    browser.tap("queue").await;
    browser
        .wait_for_text("job-status", |t| t.starts_with("Running"))
        .await;

    first.stop().await;
    browser
        .wait_for_text("connection", |t| t == "Reconnecting…")
        .await;
    browser.screenshot_at("job", "restart-1-relay-killed").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while comfyui.history_ids().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "ComfyUI never finished"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let _second = RelayProcess::launch(launch()).await;
    browser.wait_for_text("connection", |t| t == "Live").await;
    app::wait_for_job(&browser, "succeeded").await;
    assert!(
        app::wait_loaded(&browser, "job-output").await > 0,
        "the output ComfyUI made while the relay was down loads"
    );
    browser
        .screenshot_at("job", "restart-2-back-with-the-result")
        .await;
    browser.close().await;
}

#[tokio::test]
async fn a_page_waking_up_reconnects_its_event_socket_at_once() {
    let stack = app::spawn_stack(1.0).await;
    let browser = app::open(Viewport::Phone, &stack).await;
    let hub = &stack.state.jobs.hub;
    let before = hub.subscriptions_opened();
    let wake_ups = [
        "window.dispatchEvent(new Event('online'))",
        "window.dispatchEvent(new PageTransitionEvent('pageshow', {persisted: true}))",
        "document.dispatchEvent(new Event('visibilitychange'))",
    ];
    for wake_up in wake_ups {
        let opened = hub.subscriptions_opened();
        browser.eval(&format!("{wake_up};")).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while hub.subscriptions_opened() == opened {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{wake_up} did not reconnect"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert_eq!(hub.subscriptions_opened(), before + 3);
    browser.wait_for_text("connection", |t| t == "Live").await;
    browser.close().await;
}

#[tokio::test]
async fn a_device_link_shows_the_phones_jobs_in_a_second_browser() {
    let stack = app::spawn_stack(1.0).await;
    let phone = app::open(Viewport::Phone, &stack).await;
    app::import(&phone, Import::Paste(fixtures::EMPTY_IMAGE), "empty").await;
    phone.tap("queue").await;
    app::wait_for_job(&phone, "succeeded").await;

    app::library(&phone).await;
    phone
        .eval("document.querySelector('.device-link').open = true;")
        .await;
    phone.tap("create-device-link").await;
    let link = phone
        .by_test_id("device-link")
        .await
        .prop("value")
        .await
        .unwrap()
        .unwrap();
    assert!(
        link.starts_with(&format!("{}/link/", stack.relay_url())),
        "{link}"
    );
    phone.screenshot_at("device-link", "device-link").await;

    let laptop = Browser::launch(Viewport::Desktop).await;
    laptop.goto(&link).await;
    // Opening the link only asks; the confirming same-origin POST adopts the device.
    laptop.tap("confirm-link").await;
    laptop.wait_for_text("connection", |t| t == "Live").await;
    laptop.tap("tab-jobs").await;
    app::wait_for_job(&laptop, "succeeded").await;
    phone.tap("tab-jobs").await;
    assert_eq!(
        laptop
            .by_test_id("job")
            .await
            .attr("data-job-id")
            .await
            .unwrap(),
        phone
            .by_test_id("job")
            .await
            .attr("data-job-id")
            .await
            .unwrap(),
    );
    laptop
        .screenshot_at("job", "device-link-second-browser")
        .await;
    laptop.close().await;
    phone.close().await;
}

#[tokio::test]
async fn a_phone_pairs_through_the_link_and_then_runs_a_workflow() {
    let token = "fedcba9876543210fedcba9876543210";
    let stack = spawn_stack_with(StackOptions {
        static_dir: Some(dist_dir()),
        relay_args: vec!["--require-token".to_owned(), format!("--token={token}")],
        ..StackOptions::default()
    })
    .await;
    let phone = Browser::launch(Viewport::Phone).await;
    phone.goto(&stack.relay_url()).await;
    let told = phone
        .wait_for_text("pairing-required", |t| !t.is_empty())
        .await;
    assert!(told.contains("pairing link"), "{told}");
    phone
        .wait_for_text("connection", |t| t == "Not paired")
        .await;
    phone.screenshot("pairing-1-not-paired").await;

    phone
        .goto(&format!("{}/pair?token={token}", stack.relay_url()))
        .await;
    phone.wait_for_text("connection", |t| t == "Live").await;
    let url = phone.client.current_url().await.unwrap();
    assert_eq!(
        url.as_str(),
        format!("{}/", stack.relay_url()),
        "the token is gone from the address bar"
    );
    app::import(&phone, Import::Paste(fixtures::EMPTY_IMAGE), "empty").await;
    phone.tap("queue").await;
    app::wait_for_job(&phone, "succeeded").await;
    phone
        .screenshot_at("job", "pairing-2-paired-and-done")
        .await;
    let cookie_visible_to_scripts = phone.eval("return document.cookie;").await;
    assert_eq!(
        cookie_visible_to_scripts,
        Value::from(""),
        "the device cookie is HttpOnly"
    );
    phone.close().await;
}

/// Queues `count` runs of the saved workflow `invert` from the page (as this browser's device),
/// the ones whose index `fox` picks saving under a prefix that names a fox; waits until every
/// one has succeeded.
async fn queue_from_the_page(browser: &Browser, count: usize, fox: fn(usize) -> bool) {
    let prefixes: Vec<String> = (0..count)
        .map(|i| {
            if fox(i) {
                format!("red_fox_{i}")
            } else {
                format!("plain_{i}")
            }
        })
        .collect();
    let script = format!(
        "const prefixes = {};
         for (const prefix of prefixes) {{
           const body = {{workflow_name: 'invert',
                          values: [{{node_id: '4', input: 'filename_prefix', value: prefix}}]}};
           const answer = await fetch('/api/jobs', {{method: 'POST',
             headers: {{'content-type': 'application/json'}}, body: JSON.stringify(body)}});
           if (answer.status !== 201) return 'refused: ' + await answer.text();
         }}
         for (let i = 0; i < 400; i++) {{
           const page = await (await fetch('/api/jobs/history?state=succeeded&limit=100')).json();
           if (page.jobs.length === prefixes.length) return 'done';
           await new Promise(wake => setTimeout(wake, 50));
         }}
         return 'not finished';",
        serde_json::to_string(&prefixes).unwrap()
    );
    assert_eq!(browser.eval(&script).await, "done");
}

/// The `data-job-id` of every job card on the page, top to bottom.
async fn card_ids(browser: &Browser) -> Vec<String> {
    let ids = browser
        .eval("return [...document.querySelectorAll('[data-testid=\"job\"]')].map(c => c.dataset.jobId);")
        .await;
    serde_json::from_value(ids).unwrap()
}

/// Waits until the job cards on the page are exactly `expected`, top to bottom.
async fn wait_for_cards(browser: &Browser, expected: &[String]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let shown = card_ids(browser).await;
        if shown == expected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the cards are {shown:?}, not {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Scrolls to the foot of the page until `count()` says `want` (pages load as the foot nears).
async fn scroll_until(browser: &Browser, what: &str, want: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let shown = browser
            .eval(&format!(
                "window.scrollTo(0, document.body.scrollHeight);
                 return document.querySelectorAll('[data-testid=\"{what}\"]').length;"
            ))
            .await
            .as_u64()
            .unwrap() as usize;
        if shown == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{shown} {what} shown, not {want}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_jobs_page_scrolls_searches_stars_and_deletes_through_every_kept_job_and_the_gallery_pages_too()
 {
    const JOBS: usize = 45;
    let stack = spawn_stack_with(StackOptions {
        comfyui: Options {
            pace: 0.0,
            ..Options::default()
        },
        static_dir: Some(dist_dir()),
        // Three finished jobs in memory: the rest only the database has.
        relay_args: vec![
            "--max-finished-jobs=3".to_owned(),
            "--max-pending-jobs=100".to_owned(),
        ],
        ..StackOptions::default()
    })
    .await;
    let browser = app::open(Viewport::Phone, &stack).await;
    app::import_invert(&browser).await;
    queue_from_the_page(&browser, JOBS, |i| i % 10 == 3).await;
    let history: Value = browser
        .eval("return (await (await fetch('/api/jobs/history?limit=100')).json()).jobs.map(j => j.id);")
        .await;
    let newest_first: Vec<String> = serde_json::from_value(history).unwrap();
    assert_eq!(newest_first.len(), JOBS);

    browser.tap("tab-jobs").await;
    scroll_until(&browser, "job", JOBS).await;
    assert_eq!(
        card_ids(&browser).await,
        newest_first,
        "every job once, newest first"
    );
    browser.screenshot("history-1-scrolled-to-the-end").await;

    app::type_into(&browser, "jobs-search", "RED_FOX").await;
    let foxes: Vec<String> = (0..JOBS)
        .rev()
        .filter(|i| i % 10 == 3)
        .map(|i| newest_first[JOBS - 1 - i].clone())
        .collect();
    wait_for_cards(&browser, &foxes).await;
    browser.screenshot("history-2-searched").await;

    // The oldest fox is long gone from the relay's memory: starred from its card all the same.
    let oldest_fox = foxes.last().unwrap().clone();
    let star = format!("[data-job-id=\"{oldest_fox}\"] [data-testid=\"job-star\"]");
    browser.tap_css(&star).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while browser.find(&star).await.text().await.unwrap() != "★ Starred" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the star never showed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app::type_into(&browser, "jobs-search", "").await;
    browser.tap("jobs-starred").await;
    wait_for_cards(&browser, std::slice::from_ref(&oldest_fox)).await;

    // Delete takes a second tap.
    browser.tap("job-delete").await;
    browser
        .wait_for_text("job-delete", |t| t == "Tap again to delete")
        .await;
    assert_eq!(card_ids(&browser).await.len(), 1, "one tap deletes nothing");
    browser.tap("job-delete").await;
    browser
        .wait_for_text("jobs-empty", |t| t == "No jobs here.")
        .await;
    let gone = browser
        .eval(&format!(
            "return (await fetch('/api/jobs/{oldest_fox}')).status;"
        ))
        .await;
    assert_eq!(gone, 404);

    browser.tap("tab-gallery").await;
    scroll_until(&browser, "gallery-item", JOBS - 1).await;
    browser.screenshot("history-3-gallery").await;
    browser.close().await;
}
