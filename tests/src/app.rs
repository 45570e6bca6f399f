//! Driving the web app as a person does: import a workflow, fill its inputs, queue, follow the
//! job. Built on [`Browser`]; every step waits for what a person would see.

use std::path::Path;

use serde_json::Value;

use crate::browser::{Browser, Viewport, dist_dir};
use crate::comfyui::Options;
use crate::stack::{Stack, StackOptions, spawn_stack_with};

/// How a workflow gets into the library.
#[derive(Debug, Clone, Copy)]
pub enum Import<'a> {
    /// Pasted (typed) into the text area.
    Paste(&'a str),
    /// Chosen with the file picker.
    File(&'a Path),
    /// Dropped onto the import card.
    Drop(&'a str),
}

/// The double (replaying at `pace`) and a relay serving the built app.
pub async fn spawn_stack(pace: f64) -> Stack {
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

/// Opens the app and waits until it is live.
pub async fn open(viewport: Viewport, stack: &Stack) -> Browser {
    let browser = Browser::launch(viewport).await;
    browser.goto(&stack.relay_url()).await;
    browser.wait_for_text("connection", |t| t == "Live").await;
    browser
}

/// Imports the recorded slow invert workflow (a picture, four steps of progress, its inverse
/// saved) as `invert`.
pub async fn import_invert(browser: &Browser) {
    import(
        browser,
        Import::File(&crate::fixtures::path("comfyui/workflows/invert_slow.json")),
        "invert",
    )
    .await;
}

/// Goes to the library page.
pub async fn library(browser: &Browser) {
    browser.tap("tab-workflows").await;
    browser.by_test_id("import").await;
}

/// Imports a workflow under `name` and waits for its form.
pub async fn import(browser: &Browser, how: Import<'_>, name: &str) {
    library(browser).await;
    match how {
        Import::Paste(text) => {
            browser
                .by_test_id("workflow-json")
                .await
                .send_keys(text)
                .await
                .expect("the text area takes the workflow");
        }
        Import::File(path) => choose_file(browser, path).await,
        Import::Drop(text) => {
            let script = format!(
                "const dt = new DataTransfer();
                 dt.items.add(new File([{}], 'dropped_api.json', {{type: 'application/json'}}));
                 document.querySelector('[data-testid=import]')
                   .dispatchEvent(new DragEvent('drop', {{dataTransfer: dt, bubbles: true, cancelable: true}}));",
                serde_json::to_string(text).expect("a JS string")
            );
            browser.eval(&script).await;
        }
    }
    browser
        .wait_for_text("workflow-summary", |t| t.contains("API workflow"))
        .await;
    let field = browser.by_test_id("workflow-name").await;
    field.clear().await.expect("the name clears");
    field.send_keys(name).await.expect("the name is typed");
    browser.tap("save-workflow").await;
    browser.wait_for_text("workflow-title", |t| t == name).await;
    browser.by_test_id("queue").await;
}

/// Chooses `path` in the importer's file chooser.
pub async fn choose_file(browser: &Browser, path: &Path) {
    browser
        .by_test_id("workflow-file")
        .await
        .send_keys(&path.display().to_string())
        .await
        .expect("the file chooser takes the file");
}

/// Replaces what a text field holds.
pub async fn type_into(browser: &Browser, id: &str, text: &str) {
    let field = browser.by_test_id(id).await;
    field.clear().await.expect("the field clears");
    field
        .send_keys(text)
        .await
        .expect("the field takes the text");
}

/// The value a field shows.
pub async fn value_of(browser: &Browser, id: &str) -> String {
    browser
        .by_test_id(id)
        .await
        .prop("value")
        .await
        .expect("a value property")
        .unwrap_or_default()
}

/// Chooses an option of a select, or of a searchable list (as picking a suggestion does:
/// `input`, then `change`).
pub async fn choose(browser: &Browser, id: &str, option: &str) {
    browser
        .eval(&format!(
            "const s = document.querySelector('[data-testid=\"{id}\"]');
             s.value = {};
             s.dispatchEvent(new Event('input', {{bubbles: true}}));
             s.dispatchEvent(new Event('change', {{bubbles: true}}));",
            serde_json::to_string(option).expect("a JS string")
        ))
        .await;
}

/// Waits until the page's newest job card says `state`.
pub async fn wait_for_job(browser: &Browser, state: &str) {
    browser.wait_for_text("job-state", |t| t == state).await;
}

/// Whether an image element has loaded a picture (its natural width, or 0).
pub async fn loaded_width(browser: &Browser, id: &str) -> u64 {
    let width = browser
        .eval(&format!(
            "const i = document.querySelector('[data-testid=\"{id}\"]'); return i && i.complete ? i.naturalWidth : 0;"
        ))
        .await;
    width.as_u64().unwrap_or(0)
}

/// Waits (a few seconds at most) until an image has loaded; returns its natural width.
pub async fn wait_loaded(browser: &Browser, id: &str) -> u64 {
    let deadline = tokio::time::Instant::now() + crate::browser::WAIT;
    loop {
        let width = loaded_width(browser, id).await;
        if width > 0 || tokio::time::Instant::now() > deadline {
            return width;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The `prompt` of the last workflow the double queued.
pub fn last_queued(stack: &Stack) -> Value {
    stack
        .comfyui
        .queued_prompts()
        .pop()
        .expect("ComfyUI got a prompt")["prompt"]
        .clone()
}
