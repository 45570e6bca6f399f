//! The phone app in headless Chromium at 390x844 and 1280x800 (and 360 wide): importing every
//! recorded workflow three ways, editing an input of every type, seeds, uploading a picture,
//! progress, previews and results, validation errors next to their inputs, pins and memory, the
//! gallery and its viewer. A screenshot of each step goes to `target/browser-artifacts/`.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use serde_json::{Value, json};
use testkit::app::{self, Import};
use testkit::browser::{Browser, Viewport, dist_dir};
use testkit::fixtures;
use testkit::stack::{StackOptions, spawn_stack_with};

async fn every_recorded_workflow_imports_three_ways_into_a_typed_form(viewport: Viewport) {
    let stack = app::spawn_stack(1.0).await;
    let browser = app::open(viewport, &stack).await;
    let invert = fixtures::path("comfyui/workflows/invert_slow.json");
    app::import(
        &browser,
        Import::Paste(fixtures::SD15_TXT2IMG),
        "sd15 txt2img",
    )
    .await;
    browser.screenshot_at("all-inputs", "import-1-pasted").await;
    app::import(&browser, Import::File(&invert), "invert slow").await;
    browser.screenshot_at("all-inputs", "import-2-chosen").await;
    app::import(&browser, Import::Drop(fixtures::EMPTY_IMAGE), "empty image").await;
    browser
        .screenshot_at("all-inputs", "import-3-dropped")
        .await;

    app::library(&browser).await;
    let listed = browser.by_test_id("library").await.text().await.unwrap();
    for name in ["empty image", "invert slow", "sd15 txt2img"] {
        assert!(listed.contains(name), "{listed}");
    }
    browser.screenshot_at("library", "import-4-library").await;
    let saved: Vec<String> = stack
        .state
        .library
        .list()
        .unwrap()
        .into_iter()
        .map(|w| w.name)
        .collect();
    assert_eq!(
        saved,
        ["empty image", "invert slow", "sd15 txt2img"],
        "kept by the relay for the team"
    );
    browser.close().await;
}

#[tokio::test]
async fn on_a_phone_every_recorded_workflow_imports_three_ways_into_a_typed_form() {
    every_recorded_workflow_imports_three_ways_into_a_typed_form(Viewport::Phone).await;
}

#[tokio::test]
async fn on_a_desktop_every_recorded_workflow_imports_three_ways_into_a_typed_form() {
    every_recorded_workflow_imports_three_ways_into_a_typed_form(Viewport::Desktop).await;
}

async fn an_input_of_every_type_is_edited_and_reaches_comfyui(viewport: Viewport) {
    let stack = app::spawn_stack(1.0).await;
    let browser = app::open(viewport, &stack).await;
    app::import(&browser, Import::Paste(fixtures::SD15_TXT2IMG), "sd15").await;
    // Checked as typed, with ComfyUI's own bounds.
    app::type_into(&browser, "input-3-steps", "0").await;
    let complaint = browser
        .wait_for_text("error-3-steps", |t| !t.is_empty())
        .await;
    assert_eq!(complaint, "0 is smaller than the minimum, 1");
    browser
        .screenshot_at("input-3-steps", "types-1-checked-as-typed")
        .await;

    app::type_into(&browser, "input-3-steps", "30").await;
    app::type_into(&browser, "input-3-cfg", "6,5").await;
    app::choose(&browser, "input-3-sampler_name", "dpmpp_2m").await;
    app::type_into(&browser, "input-6-text", "a lighthouse in a storm").await;
    app::type_into(&browser, "input-9-filename_prefix", "lighthouse").await;
    let before = app::value_of(&browser, "input-3-seed").await;
    browser.tap("dice-3-seed").await;
    let seed = app::value_of(&browser, "input-3-seed").await;
    assert_ne!(seed, before, "the dice draws a new seed");
    let seed: u64 = seed.parse().unwrap();
    browser
        .screenshot_at("input-3-seed", "types-2-edited")
        .await;
    browser.tap("queue").await;
    app::wait_for_job(&browser, "succeeded").await;

    let sent = app::last_queued(&stack);
    assert_eq!(sent["3"]["inputs"]["steps"], 30);
    assert_eq!(sent["3"]["inputs"]["cfg"], 6.5);
    assert_eq!(sent["3"]["inputs"]["sampler_name"], "dpmpp_2m");
    assert_eq!(
        sent["3"]["inputs"]["seed"],
        json!(seed),
        "the seed arrives exactly, beyond a JS number"
    );
    assert_eq!(sent["6"]["inputs"]["text"], "a lighthouse in a storm");
    assert_eq!(sent["9"]["inputs"]["filename_prefix"], "lighthouse");

    app::import(
        &browser,
        Import::Paste(fixtures::COMPOSITE_BOOLEAN),
        "composite",
    )
    .await;
    let toggle = browser.by_test_id("input-9-resize_source").await;
    assert_eq!(
        toggle.prop("checked").await.unwrap().as_deref(),
        Some("false")
    );
    browser.tap("input-9-resize_source").await;
    app::type_into(&browser, "input-8-color", "65280").await;
    browser
        .screenshot_at("input-9-resize_source", "types-3-boolean")
        .await;
    browser.tap("queue").await;
    browser
        .wait_for_text("job-state", |t| t == "succeeded")
        .await;
    let sent = app::last_queued(&stack);
    assert_eq!(sent["9"]["inputs"]["resize_source"], true);
    assert_eq!(sent["8"]["inputs"]["color"], 65280);
    browser.close().await;
}

#[tokio::test]
async fn on_a_phone_an_input_of_every_type_is_edited_and_reaches_comfyui() {
    an_input_of_every_type_is_edited_and_reaches_comfyui(Viewport::Phone).await;
}

#[tokio::test]
async fn on_a_desktop_an_input_of_every_type_is_edited_and_reaches_comfyui() {
    an_input_of_every_type_is_edited_and_reaches_comfyui(Viewport::Desktop).await;
}

#[tokio::test]
async fn a_randomised_seed_is_new_for_every_run() {
    let stack = app::spawn_stack(1.0).await;
    let browser = app::open(Viewport::Phone, &stack).await;
    app::import(&browser, Import::Paste(fixtures::SD15_TXT2IMG), "sd15").await;
    browser.tap("randomize-3-seed").await;
    let mut seeds = Vec::new();
    for run in 0..2 {
        browser.tap("queue").await;
        browser
            .wait_for_text("job-state", |t| t == "succeeded")
            .await;
        let seed = app::last_queued(&stack)["3"]["inputs"]["seed"].clone();
        assert_eq!(
            app::value_of(&browser, "input-3-seed").await,
            seed.to_string(),
            "run {run} shows its seed"
        );
        seeds.push(seed);
    }
    assert_ne!(seeds[0], seeds[1]);
    assert_ne!(
        seeds[0],
        json!(156680208700286u64),
        "not the workflow's own seed"
    );
    browser.close().await;
}

async fn a_picture_is_uploaded_and_the_job_shows_progress_a_preview_and_its_result(
    viewport: Viewport,
) {
    let stack = app::spawn_stack(4.0).await;
    let browser = app::open(viewport, &stack).await;
    app::import_invert(&browser).await;
    let picture = fixtures::path("phone.png");
    browser
        .by_test_id("input-1-image-file")
        .await
        .send_keys(&picture.display().to_string())
        .await
        .unwrap();
    browser
        .wait_for_text("input-1-image", |t| t == "phone.png")
        .await;
    assert_eq!(
        app::wait_loaded(&browser, "input-1-image-thumb").await,
        32,
        "the thumbnail shows the picture"
    );
    browser
        .screenshot_at("input-1-image-thumb", "upload-1-picture")
        .await;
    let stored = stack.comfyui.files();
    assert_eq!(stored[0].name, "phone.png");
    assert_eq!(stored[0].bytes.as_ref(), fixtures::PHONE_PNG);

    browser.tap("queue").await;
    browser
        .wait_for_text("job-status", |t| {
            t.starts_with("Running Slow Progress (test)")
        })
        .await;
    assert!(
        app::wait_loaded(&browser, "job-preview").await > 0,
        "the live preview shows"
    );
    browser.screenshot_at("job", "upload-2-preview").await;
    app::wait_for_job(&browser, "succeeded").await;
    assert_eq!(app::wait_loaded(&browser, "job-output").await, 64);
    browser.screenshot_at("job", "upload-3-result").await;
    assert_eq!(
        app::last_queued(&stack)["1"]["inputs"]["image"],
        "phone.png"
    );
    browser.close().await;
}

#[tokio::test]
async fn on_a_phone_a_picture_is_uploaded_and_the_job_shows_progress_a_preview_and_its_result() {
    a_picture_is_uploaded_and_the_job_shows_progress_a_preview_and_its_result(Viewport::Phone)
        .await;
}

#[tokio::test]
async fn on_a_desktop_a_picture_is_uploaded_and_the_job_shows_progress_a_preview_and_its_result() {
    a_picture_is_uploaded_and_the_job_shows_progress_a_preview_and_its_result(Viewport::Desktop)
        .await;
}

#[tokio::test]
async fn comfyuis_validation_error_appears_next_to_its_input() {
    let stack = app::spawn_stack(1.0).await;
    let browser = app::open(Viewport::Phone, &stack).await;
    let mut workflow: Value = serde_json::from_str(fixtures::INVERT_SLOW).unwrap();
    workflow["1"]["inputs"]["image"] = json!("does-not-exist.png");
    app::import(
        &browser,
        Import::Paste(&workflow.to_string()),
        "missing picture",
    )
    .await;
    browser.tap("queue").await;
    let message = browser
        .wait_for_text("error-1-image", |t| !t.is_empty())
        .await;
    assert!(
        message.contains("Invalid image file: does-not-exist.png"),
        "{message}"
    );
    browser
        .screenshot_at("error-1-image", "validation-next-to-input")
        .await;
    browser.close().await;
}

#[tokio::test]
async fn a_node_comfyui_lacks_is_named_before_anything_is_queued() {
    let stack = app::spawn_stack(1.0).await;
    let browser = app::open(Viewport::Phone, &stack).await;
    let workflow = json!({
        "1": {"class_type": "FancyUpscaler", "inputs": {"scale": 2}, "_meta": {"title": "Upscale"}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}}
    });
    app::import(
        &browser,
        Import::Paste(&workflow.to_string()),
        "needs a custom node",
    )
    .await;
    let alert = browser
        .wait_for_text("missing-nodes", |t| !t.is_empty())
        .await;
    assert!(alert.contains("\"FancyUpscaler\""), "{alert}");
    let queue = browser.by_test_id("queue").await;
    assert_eq!(
        queue.attr("disabled").await.unwrap().as_deref(),
        Some("true")
    );
    browser.screenshot("missing-node").await;
    assert!(stack.comfyui.requests_to("POST", "/prompt").is_empty());
    browser.close().await;
}

#[tokio::test]
async fn a_model_this_comfyui_lacks_stays_named_until_one_it_has_is_chosen() {
    let stack = app::spawn_stack(1.0).await;
    let browser = app::open(Viewport::Phone, &stack).await;
    let mut workflow: Value = serde_json::from_str(fixtures::SD15_TXT2IMG).unwrap();
    workflow["4"]["inputs"]["ckpt_name"] = json!("flux1-dev.safetensors");
    app::import(&browser, Import::Paste(&workflow.to_string()), "flux").await;
    let notice = browser
        .wait_for_text("not-installed", |t| !t.is_empty())
        .await;
    assert!(
        notice.contains("\"flux1-dev.safetensors\" (Load Checkpoint › ckpt_name)"),
        "{notice}"
    );
    let shown = browser
        .eval(
            "const s = document.querySelector('[data-testid=\"input-4-ckpt_name\"]');
               return [s.value, s.selectedOptions[0].textContent, s.options.length];",
        )
        .await;
    assert_eq!(
        shown,
        json!([
            "flux1-dev.safetensors",
            "flux1-dev.safetensors (not installed here)",
            2
        ]),
        "the saved name stays, marked, above what ComfyUI has"
    );
    assert_eq!(
        browser
            .wait_for_text("error-4-ckpt_name", |t| !t.is_empty())
            .await,
        "\"flux1-dev.safetensors\" is not installed here: choose one of the list"
    );
    browser
        .screenshot_at("input-4-ckpt_name", "model-1-not-installed")
        .await;
    browser.tap("queue").await;
    let refused = browser
        .wait_for_text("queue-error", |t| !t.is_empty())
        .await;
    assert_eq!(refused, "1 input(s) need a valid value first.");
    assert!(stack.comfyui.requests_to("POST", "/prompt").is_empty());

    // 42 samplers: a list searched by typing, with every name suggested.
    let sampler = browser
        .eval(
            "const s = document.querySelector('[data-testid=\"input-3-sampler_name\"]');
               return [s.type, s.list.options.length, s.placeholder];",
        )
        .await;
    assert_eq!(sampler, json!(["search", 42, "Search 42 choices"]));
    app::type_into(&browser, "input-3-sampler_name", "warp").await;
    assert_eq!(
        browser
            .wait_for_text("error-3-sampler_name", |t| !t.is_empty())
            .await,
        "\"warp\" is not installed here: choose one of the list"
    );
    app::choose(&browser, "input-3-sampler_name", "dpmpp_2m").await;
    app::choose(&browser, "input-4-ckpt_name", testkit::comfyui::CHECKPOINT).await;
    browser
        .wait_until(
            "the notice went away",
            "return !document.querySelector('[data-testid=\"not-installed\"]');",
        )
        .await;
    browser.tap("queue").await;
    app::wait_for_job(&browser, "succeeded").await;
    let sent = app::last_queued(&stack);
    assert_eq!(
        sent["4"]["inputs"]["ckpt_name"],
        testkit::comfyui::CHECKPOINT
    );
    assert_eq!(sent["3"]["inputs"]["sampler_name"], "dpmpp_2m");
    browser.close().await;
}

#[tokio::test]
async fn pinned_inputs_come_first_and_the_last_values_are_remembered_on_the_device() {
    let stack = app::spawn_stack(1.0).await;
    let browser = app::open(Viewport::Phone, &stack).await;
    app::import(&browser, Import::Paste(fixtures::SD15_TXT2IMG), "sd15").await;
    browser.tap("pin-6-text").await;
    let pinned = browser.by_test_id("pinned").await.text().await.unwrap();
    assert!(pinned.contains("CLIP Text Encode (Prompt)"), "{pinned}");
    app::type_into(&browser, "input-6-text", "remember me").await;
    browser.tap("queue").await;
    browser
        .wait_for_text("job-state", |t| t == "succeeded")
        .await;
    browser.screenshot_at("pinned", "pins-1-pinned").await;

    browser.client.refresh().await.unwrap();
    browser
        .wait_for_text("workflow-title", |t| t == "sd15")
        .await;
    assert_eq!(app::value_of(&browser, "input-6-text").await, "remember me");
    let pinned = browser.by_test_id("pinned").await.text().await.unwrap();
    assert!(
        pinned.contains("CLIP Text Encode (Prompt)"),
        "still pinned after a reload: {pinned}"
    );
    browser.close().await;
}

#[tokio::test]
async fn every_kind_of_output_shows_as_what_it_is_and_the_gallery_filters_by_kind() {
    let stack = app::spawn_stack(0.3).await;
    let browser = app::open(Viewport::Phone, &stack).await;
    let workflow = fixtures::every_output_kind();
    app::import(&browser, Import::Paste(&workflow), "every kind").await;
    browser.tap("queue").await;
    app::wait_for_job(&browser, "succeeded").await;
    let shown = "return [...document.querySelectorAll('[data-testid=job-output]')].map(e =>
        [e.tagName, e.dataset.media, e.tagName == 'PRE' ? e.textContent
            : (e.getAttribute('src') || e.getAttribute('href')).split('&')[0],
         e.controls === true]).sort();";
    let shown = browser.eval(shown).await;
    let kinds: Vec<(&str, &str, bool)> = shown
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e[0].as_str().unwrap(),
                e[1].as_str().unwrap(),
                e[3].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("A", "file", false),
            ("AUDIO", "audio", true),
            ("AUDIO", "audio", true),
            ("IMG", "animated", false),
            ("PRE", "text", false),
            ("VIDEO", "video", true),
        ],
        "{shown}"
    );
    assert_eq!(
        shown[4][2], "hello\nworld",
        "the text as the node showed it"
    );
    let origin = stack.relay_url();
    browser
        .cdp(
            "Browser.grantPermissions",
            json!({ "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"], "origin": origin }),
        )
        .await;
    browser.tap_css("[data-copy]").await;
    browser
        .wait_until(
            "the copy button says it copied",
            "return document.querySelector('[data-copy]').textContent === 'Copied'",
        )
        .await;
    let copied = browser
        .eval_async("return await navigator.clipboard.readText();")
        .await;
    assert_eq!(
        copied, "hello\nworld",
        "Copy puts the text on the clipboard"
    );
    assert!(
        shown[5][2]
            .as_str()
            .unwrap()
            .starts_with("/view?filename=rec_video_"),
        "{shown}"
    );
    browser.screenshot_at("job", "outputs-1-every-kind").await;

    browser.tap("tab-gallery").await;
    browser.wait_for_text("gallery", |_| true).await;
    let kinds = browser.by_test_id("gallery-kinds").await;
    assert!(
        kinds.is_displayed().await.unwrap(),
        "more than pictures: the filter shows"
    );
    let shown_tiles = "return [...document.querySelectorAll('[data-testid=gallery-item]')]
        .filter(t => t.offsetParent !== null).map(t => t.dataset.media).sort();";
    assert_eq!(
        browser.eval(shown_tiles).await,
        json!(["animated", "audio", "audio", "file", "text", "video"])
    );
    browser.screenshot_at("gallery", "outputs-2-gallery").await;
    for (kind, shown) in [
        ("video", json!(["video"])),
        ("audio", json!(["audio", "audio"])),
        ("image", json!(["animated"])),
        ("text", json!(["text"])),
        (
            "",
            json!(["animated", "audio", "audio", "file", "text", "video"]),
        ),
        ("video", json!(["video"])),
    ] {
        browser
            .tap_css(&format!(
                "[data-testid=gallery-kinds] label:has([value='{kind}'])"
            ))
            .await;
        assert_eq!(browser.eval(shown_tiles).await, shown, "{kind}");
    }
    browser
        .screenshot_at("gallery", "outputs-3-only-videos")
        .await;
    browser
        .tap_css("[data-testid=gallery-item][data-media=video]")
        .await;
    let player = browser.by_test_id("viewer-image").await;
    assert_eq!(player.prop("tagName").await.unwrap().unwrap(), "VIDEO");
    browser
        .screenshot_at("viewer", "outputs-3-video-in-the-viewer")
        .await;
    browser.close().await;
}

#[tokio::test]
async fn the_gallery_opens_a_viewer_that_swipes_downloads_and_sends_an_image_to_a_workflow() {
    let stack = app::spawn_stack(1.0).await;
    let browser = app::open(Viewport::Phone, &stack).await;
    app::import_invert(&browser).await;
    app::import(&browser, Import::Paste(fixtures::EMPTY_IMAGE), "empty").await;
    browser.tap("queue").await;
    app::wait_for_job(&browser, "succeeded").await;

    browser.tap("tab-gallery").await;
    browser.wait_for_text("gallery", |_| true).await;
    let count = browser
        .eval("return document.querySelectorAll('[data-testid=gallery-item]').length;")
        .await;
    assert_eq!(count, json!(2), "PreviewImage and SaveImage outputs");
    browser.screenshot_at("gallery", "gallery-1-grid").await;
    browser.tap("gallery-item").await;
    browser
        .wait_for_text("viewer-position", |t| t == "1 / 2")
        .await;
    let swipe = "const v = document.querySelector('[data-testid=viewer]');
        const touch = x => [new Touch({identifier: 1, target: v, clientX: x, clientY: 300})];
        v.dispatchEvent(new TouchEvent('touchstart', {changedTouches: touch(300), bubbles: true}));
        v.dispatchEvent(new TouchEvent('touchend', {changedTouches: touch(100), bubbles: true}));";
    browser.eval(swipe).await;
    browser
        .wait_for_text("viewer-position", |t| t == "2 / 2")
        .await;
    let download = browser.by_test_id("viewer-download").await;
    let href = download.attr("href").await.unwrap().unwrap();
    let name = download.attr("download").await.unwrap().unwrap();
    assert!(
        href.starts_with("/view?filename=") && href.contains(&name),
        "{href} {name}"
    );
    browser.screenshot("gallery-2-viewer").await;

    app::choose(&browser, "use-as-input-workflow", "invert").await;
    browser.tap("use-as-input").await;
    browser
        .wait_for_text("workflow-title", |t| t == "invert")
        .await;
    let value = browser
        .wait_for_text("input-1-image", |t| t.ends_with(".png"))
        .await;
    assert!(
        stack
            .comfyui
            .files()
            .iter()
            .any(|f| f.kind == "input" && f.name == value),
        "{value} was uploaded as an input"
    );
    browser
        .screenshot_at("input-1-image-thumb", "gallery-3-used-as-input")
        .await;
    browser.close().await;
}

#[tokio::test]
async fn remix_in_the_viewer_opens_the_workflow_with_the_values_that_made_the_picture() {
    let stack = app::spawn_stack(1.0).await;
    let browser = app::open(Viewport::Phone, &stack).await;
    app::import(&browser, Import::Paste(fixtures::SD15_TXT2IMG), "sd15").await;
    browser.tap("randomize-3-seed").await;
    let mut runs = Vec::new();
    for prompt in ["a red fox on the moon", "a blue whale"] {
        app::type_into(&browser, "input-6-text", prompt).await;
        browser.tap("queue").await;
        browser
            .wait_for_text("job-state", |t| t == "succeeded")
            .await;
        runs.push(app::last_queued(&stack));
    }
    assert_ne!(
        runs[0]["3"]["inputs"]["seed"],
        runs[1]["3"]["inputs"]["seed"]
    );

    // The fox is the older picture: second in the gallery, newest first.
    browser.tap("tab-gallery").await;
    browser.wait_for_text("gallery", |_| true).await;
    browser
        .eval("document.querySelectorAll('[data-testid=gallery-item]')[1].click();")
        .await;
    let caption = browser
        .wait_for_text("viewer", |t| t.contains("Job #1"))
        .await;
    assert!(caption.contains("sd15"), "{caption}");
    browser.screenshot("remix-1-viewer").await;
    browser.tap("viewer-remix").await;
    browser
        .wait_for_text("workflow-title", |t| t == "sd15")
        .await;
    browser
        .wait_until(
            "the fox's prompt came back",
            "return document.querySelector('[data-testid=\"input-6-text\"]')?.value === 'a red fox on the moon';",
        )
        .await;
    let seed = runs[0]["3"]["inputs"]["seed"].to_string();
    assert_eq!(app::value_of(&browser, "input-3-seed").await, seed);
    let randomize = browser.by_test_id("randomize-3-seed").await;
    assert_eq!(
        randomize.prop("checked").await.unwrap().as_deref(),
        Some("false"),
        "the seed that made it is kept for the next run"
    );
    browser.screenshot_at("input-3-seed", "remix-2-form").await;
    browser.tap("queue").await;
    browser
        .wait_for_text("job-state", |t| t == "succeeded")
        .await;
    assert_eq!(
        app::last_queued(&stack),
        runs[0],
        "the same workflow, the same values"
    );
    browser.close().await;
}

#[tokio::test]
async fn the_app_fits_a_360_pixel_phone_with_finger_sized_targets_in_light_and_dark() {
    let stack = app::spawn_stack(1.0).await;
    let browser = app::open(Viewport::SmallPhone, &stack).await;
    app::import(&browser, Import::Paste(fixtures::SD15_TXT2IMG), "sd15").await;
    let overflow = browser
        .eval("return document.documentElement.scrollWidth;")
        .await;
    assert!(
        overflow.as_u64().unwrap() <= 360,
        "the page is {overflow} px wide"
    );
    let small = browser
        .eval(
            "return [...document.querySelectorAll('button, a.button, a.tab, input, select, textarea, summary')]
               .filter(e => e.offsetParent !== null && e.type !== 'file' && e.type !== 'checkbox')
               .filter(e => e.getBoundingClientRect().height < 44)
               .map(e => e.outerHTML.slice(0, 80));",
        )
        .await;
    assert_eq!(small, json!([]), "every control is at least 44 px tall");
    // A section that folds says so, and which way.
    let markers = "return [...document.querySelectorAll('summary')]
           .filter(s => s.offsetParent !== null)
           .map(s => [s.parentElement.open, getComputedStyle(s, '::before').content]);";
    let shown = browser.eval(markers).await;
    let shown = shown.as_array().unwrap();
    assert!(!shown.is_empty());
    for marker in shown {
        let expected = if marker[0] == true {
            "\"▾\""
        } else {
            "\"▸\""
        };
        assert_eq!(marker[1], expected, "{shown:?}");
    }
    browser.tap_css("details.inputs > summary").await;
    let folded = browser.eval(markers).await;
    assert_ne!(&folded, &json!(shown), "the marker turns with the section");
    let font = browser.eval("return getComputedStyle(document.querySelector('[data-testid=\"input-3-steps\"]')).fontSize;").await;
    assert_eq!(font, json!("16px"), "iOS does not zoom into 16 px inputs");
    browser.screenshot("small-1-light").await;

    let light = browser
        .eval("return getComputedStyle(document.body).backgroundColor;")
        .await;
    browser
        .cdp(
            "Emulation.setEmulatedMedia",
            json!({"features": [{"name": "prefers-color-scheme", "value": "dark"}]}),
        )
        .await;
    let dark = browser
        .eval("return getComputedStyle(document.body).backgroundColor;")
        .await;
    assert_ne!(light, dark, "dark mode follows the system");
    browser.screenshot("small-2-dark").await;
    browser.close().await;
}

#[tokio::test]
async fn a_locked_relay_runs_saved_workflows_by_name_only() {
    let stack = spawn_stack_with(StackOptions {
        static_dir: Some(dist_dir()),
        relay_args: vec!["--locked-workflows".to_owned()],
        ..StackOptions::default()
    })
    .await;
    // The operator puts the workflow on disk.
    let folder = stack.data_dir.path().join("workflows");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("sd15.json"), fixtures::SD15_TXT2IMG).unwrap();
    let browser = Browser::launch(Viewport::Phone).await;
    browser.goto(&stack.relay_url()).await;
    browser.wait_for_text("connection", |t| t == "Live").await;
    browser
        .wait_for_text("library", |t| t.contains("sd15"))
        .await;
    let import = browser
        .eval("return document.querySelector('[data-testid=import]') === null;")
        .await;
    assert_eq!(import, json!(true), "no importing into a locked library");
    browser
        .goto(&format!("{}/#/w/sd15", stack.relay_url()))
        .await;
    app::type_into(&browser, "input-6-text", "only values travel").await;
    browser.tap("queue").await;
    app::wait_for_job(&browser, "succeeded").await;
    let request = stack.comfyui.queued_prompts().pop().unwrap();
    assert_eq!(
        request["prompt"]["6"]["inputs"]["text"],
        "only values travel"
    );
    browser.close().await;
}

/// A script that says whether the first element matching `css` is wholly on screen.
fn on_screen(css: &str) -> String {
    format!(
        "(() => {{
           const e = document.querySelector('{css}');
           if (!e) return false;
           const r = e.getBoundingClientRect();
           return r.height > 0 && r.top >= 0 && r.bottom <= innerHeight;
         }})()"
    )
}

#[tokio::test]
async fn after_queue_the_first_bad_input_or_the_new_job_is_on_screen_and_a_tab_opens_at_its_top() {
    let stack = app::spawn_stack(0.05).await;
    let browser = app::open(Viewport::Phone, &stack).await;
    app::import(&browser, Import::Paste(fixtures::SD15_TXT2IMG), "sd15").await;

    // A bad value far above where the thumb is: Queue brings it to the middle, focused.
    app::type_into(&browser, "input-3-steps", "lots").await;
    browser
        .eval("scrollTo(0, document.body.scrollHeight)")
        .await;
    browser
        .wait_until(
            "the bad input is off screen",
            &format!("return !{}", on_screen("[data-testid=\"input-3-steps\"]")),
        )
        .await;
    browser.tap("queue").await;
    browser
        .wait_until(
            "the bad input is focused on screen",
            &format!(
                "return document.activeElement?.dataset.testid === 'input-3-steps' && {}",
                on_screen("[data-testid=\"input-3-steps\"]")
            ),
        )
        .await;
    browser.screenshot("queue-1-bad-input").await;

    // A good one, queued from the top of the page: the new job's card is brought on screen
    // (its top above the Queue and tab bars).
    app::type_into(&browser, "input-3-steps", "20").await;
    for run in 1..=3 {
        browser.eval("scrollTo(0, 0)").await;
        browser.tap("queue").await;
        browser
            .wait_until(
                "the new job's card starts on screen",
                "const card = document.querySelector('[data-testid=job]');
                 const top = card ? card.getBoundingClientRect().top : -1;
                 return document.querySelector('[data-testid=queue]').textContent === 'Queue'
                     && top >= 0 && top < innerHeight - 200;",
            )
            .await;
        if run == 1 {
            browser.screenshot("queue-2-new-job").await;
        }
        app::wait_for_job(&browser, "succeeded").await;
    }

    // A long page scrolled down, then another tab: it opens at its top.
    browser
        .eval("scrollTo(0, document.body.scrollHeight)")
        .await;
    browser.tap("tab-jobs").await;
    browser
        .wait_until(
            "the jobs page is long and open at its top",
            "return document.querySelectorAll('[data-testid=job]').length >= 3
                 && document.documentElement.scrollHeight > 1.5 * innerHeight
                 && scrollY === 0",
        )
        .await;
    browser.close().await;
}

#[tokio::test]
async fn the_connection_badge_opens_the_servers_page_with_each_server_and_back() {
    let stack = spawn_stack_with(StackOptions {
        more_comfyuis: vec![testkit::comfyui::Options::default()],
        static_dir: Some(dist_dir()),
        ..StackOptions::default()
    })
    .await;
    let browser = app::open(Viewport::Phone, &stack).await;
    browser.tap("connection").await;
    let listed = browser
        .wait_for_text("servers", |text| text.contains("running"))
        .await;
    for double in [&stack.comfyui, &stack.more_comfyuis[0]] {
        assert!(listed.contains(&double.url()), "{listed}");
    }
    assert!(listed.contains("ComfyUI 0.3.64 answers"), "{listed}");
    assert!(
        listed.contains("cpu ·") && listed.contains("GB free"),
        "{listed}"
    );
    let page = browser.eval("return document.body.innerText").await;
    assert!(
        page.as_str().unwrap().contains("All 2 servers answer."),
        "{page}"
    );
    browser.screenshot("servers-page").await;
    browser.tap_css("a[href='/']").await;
    browser.wait_for_text("connection", |t| t == "Live").await;
}
