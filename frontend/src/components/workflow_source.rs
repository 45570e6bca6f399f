//! Where a workflow comes from: pasted text or a chosen file.

use leptos::prelude::*;
use leptos::task::spawn_local;
use wasm_bindgen_futures::JsFuture;

/// A text area to paste a `workflow_api.json` into and a button to choose the file; both hand
/// the text to `on_text`.
#[component]
pub fn WorkflowSource(
    /// Receives the text pasted or read from the chosen file.
    #[prop(into)]
    on_text: Callback<String>,
) -> impl IntoView {
    let on_file = move |ev: leptos::ev::Event| {
        let input: web_sys::HtmlInputElement = event_target(&ev);
        let Some(file) = input.files().and_then(|files| files.get(0)) else {
            return;
        };
        spawn_local(async move {
            if let Ok(text) = JsFuture::from(file.text()).await {
                on_text.run(text.as_string().unwrap_or_default());
            }
        });
        // Choosing the same file again must fire `change` again.
        input.set_value("");
    };
    view! {
        <label for="workflow-json">"Paste a workflow_api.json"</label>
        <textarea
            id="workflow-json"
            data-testid="workflow-json"
            rows="4"
            spellcheck="false"
            autocomplete="off"
            placeholder="{ \"3\": { \"class_type\": \"KSampler\", … } }"
            on:input=move |ev| on_text.run(event_target_value(&ev))
        ></textarea>
        <label class="button secondary file-button">
            "Choose a file…"
            <input
                type="file"
                accept=".json,application/json"
                data-testid="workflow-file"
                on:change=on_file
            />
        </label>
    }
}
