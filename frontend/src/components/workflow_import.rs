//! Importing a workflow into the library: pasted, chosen, or dropped onto the page.

use leptos::prelude::*;
use leptos::task::spawn_local;
use shared::workflow::{Workflow, WorkflowError};
use wasm_bindgen::JsValue;
use wasm_bindgen_futures::JsFuture;

use crate::api;
use crate::model::route::Route;
use crate::task;

/// A name for a workflow from its file's name: `portrait_api.json` → `portrait`.
pub fn name_from_file(file_name: &str) -> String {
    let stem = file_name
        .rsplit_once('.')
        .map_or(file_name, |(stem, _)| stem);
    let stem = stem.strip_suffix("_api").unwrap_or(stem);
    let cleaned: String = stem
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, ' ' | '-' | '_' | '(' | ')') {
                c
            } else {
                ' '
            }
        })
        .collect();
    let cleaned = cleaned.trim();
    if cleaned.is_empty() {
        "Workflow".to_owned()
    } else {
        cleaned.chars().take(80).collect()
    }
}

/// Reads a file's text.
async fn file_text(file: web_sys::File) -> Option<String> {
    JsFuture::from(file.text()).await.ok()?.as_string()
}

/// Paste a workflow (as ComfyUI saves it, or its API export), choose it, or drop it here; name
/// it; save it to the library.
#[component]
pub fn WorkflowImport() -> impl IntoView {
    let text = RwSignal::new(String::new());
    let name = RwSignal::new("Workflow".to_owned());
    // A picture, sound or video ComfyUI made goes to the relay as it is, which reads the workflow
    // inside.
    let picture = StoredValue::new(None::<web_sys::File>);
    let picture_chosen = RwSignal::new(false);
    // What will be saved, or why it cannot be. A workflow saved from ComfyUI's editor is
    // converted by the relay when it is saved.
    let parsed = move || {
        if picture_chosen.get() {
            return Some(Ok(
                "A picture, sound or video: the relay reads the workflow ComfyUI saved in it."
                    .to_owned(),
            ));
        }
        text.with(|t| {
            (!t.trim().is_empty()).then(|| match Workflow::parse(t) {
                Ok(workflow) => Ok(format!("An API workflow with {} nodes.", workflow.len())),
                Err(WorkflowError::UiFormat) => Ok("A workflow from ComfyUI's editor: the relay converts it with this ComfyUI's nodes when you save it.".to_owned()),
                Err(error) => Err(error.to_string()),
            })
        })
    };
    let dragging = RwSignal::new(false);
    let take_file = move |file: web_sys::File| {
        name.set(name_from_file(&file.name()));
        let kind = file.type_();
        if ["image/", "audio/", "video/"]
            .iter()
            .any(|media| kind.starts_with(media))
        {
            picture.set_value(Some(file));
            picture_chosen.set(true);
            return;
        }
        picture.set_value(None);
        picture_chosen.set(false);
        spawn_local(async move {
            if let Some(contents) = file_text(file).await {
                text.set(contents);
            }
        });
    };
    let on_choose = move |ev: leptos::ev::Event| {
        let input: web_sys::HtmlInputElement = event_target(&ev);
        if let Some(file) = input.files().and_then(|files| files.get(0)) {
            take_file(file);
        }
        // Choosing the same file again must fire `change` again.
        input.set_value("");
    };
    let on_drop = move |ev: leptos::ev::DragEvent| {
        ev.prevent_default();
        dragging.set(false);
        if let Some(file) = ev
            .data_transfer()
            .and_then(|d| d.files())
            .and_then(|f| f.get(0))
        {
            take_file(file);
        }
    };
    let saving = RwSignal::new(false);
    let failure = RwSignal::new(None::<String>);
    let save = move || {
        let body = picture
            .get_value()
            .map_or_else(|| JsValue::from(text.get_untracked()), JsValue::from);
        let name = name.get_untracked().trim().to_owned();
        task::submit(saving, async move {
            match api::save_workflow(&name, body).await {
                Ok(_) => crate::go(&Route::Workflow(name)),
                Err(error) => failure.set(Some(error.to_string())),
            }
        });
    };
    view! {
        <section
            class=move || if dragging.get() { "card drop dragging" } else { "card drop" }
            aria-labelledby="import-heading"
            data-testid="import"
            on:dragover=move |ev: leptos::ev::DragEvent| {
                ev.prevent_default();
                dragging.set(true);
            }
            on:dragleave=move |_| dragging.set(false)
            on:drop=on_drop
        >
            <h2 id="import-heading">"Import a workflow"</h2>
            <p class="muted">
                "A workflow as ComfyUI saves it, its Export (API), or a picture, sound or video ComfyUI made. Paste it here, choose the file, or drop it on this card."
            </p>
            <label for="workflow-json">"Workflow JSON"</label>
            <textarea
                id="workflow-json"
                data-testid="workflow-json"
                rows="4"
                spellcheck="false"
                autocomplete="off"
                placeholder="{ \"3\": { \"class_type\": \"KSampler\", … } }"
                prop:value=move || text.get()
                on:input=move |ev| {
                    picture.set_value(None);
                    picture_chosen.set(false);
                    text.set(event_target_value(&ev));
                }
            ></textarea>
            <label class="button secondary file-button">
                "Choose a file…"
                <input type="file" accept=".json,application/json,image/png,image/webp,audio/flac,video/mp4,video/webm" data-testid="workflow-file" on:change=on_choose />
            </label>
            {move || parsed().map(|result| match result {
                Ok(summary) => view! {
                    <p class="ok" data-testid="workflow-summary">{summary}</p>
                }.into_any(),
                Err(message) => view! {
                    <p class="error" data-testid="workflow-error" role="alert">{message}</p>
                }.into_any(),
            })}
            <label for="workflow-name">"Name"</label>
            <input
                id="workflow-name"
                data-testid="workflow-name"
                type="text"
                enterkeyhint="done"
                autocomplete="off"
                prop:value=move || name.get()
                on:input=move |ev| name.set(event_target_value(&ev))
            />
            <button
                class="button primary wide"
                data-testid="save-workflow"
                disabled=move || !matches!(parsed(), Some(Ok(_))) || saving.get()
                on:click=move |_| save()
            >
                "Save to the library"
            </button>
            {move || failure.get().map(|message| view! { <p class="error" role="alert">{message}</p> })}
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_file_names() {
        assert_eq!(name_from_file("portrait_api.json"), "portrait");
        assert_eq!(name_from_file("sd1.5 txt2img.json"), "sd1 5 txt2img");
        assert_eq!(name_from_file(".json"), "Workflow");
    }
}
