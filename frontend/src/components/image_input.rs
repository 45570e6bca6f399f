//! An image input (LoadImage): the picture ComfyUI will load, taken with the camera or chosen,
//! shown as a thumbnail and uploaded with progress.

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::upload;

/// The `/view` URL of an image in ComfyUI's input folder, from a LoadImage value (`sub/name`).
pub fn input_view_url(value: &str) -> String {
    let (subfolder, name) = value.rsplit_once('/').unwrap_or(("", value));
    let image = shared::comfy::ImageRef {
        filename: name.to_owned(),
        subfolder: subfolder.to_owned(),
        kind: "input".to_owned(),
    };
    shared::api::view_url(&image, None)
}

/// Take a photo or choose a picture; it is uploaded at once and the input set to it.
#[component]
pub fn ImageInput(
    /// The control's id (its `data-testid` too).
    id: String,
    /// The input's value: the file name in ComfyUI's input folder.
    text: RwSignal<String>,
    /// Where problems are shown.
    error: RwSignal<Option<String>>,
    /// ComfyUI's upload limit.
    upload_limit: Option<u64>,
) -> impl IntoView {
    let progress = RwSignal::new(None::<f64>);
    let preview = RwSignal::new(None::<String>);
    let on_change = move |ev: leptos::ev::Event| {
        let input: web_sys::HtmlInputElement = event_target(&ev);
        let Some(file) = input.files().and_then(|files| files.get(0)) else {
            return;
        };
        input.set_value("");
        error.set(None);
        progress.set(Some(0.0));
        spawn_local(async move {
            let prepared = upload::prepare(file, upload_limit).await;
            let (blob, name) = match prepared {
                Ok(ready) => ready,
                Err(message) => {
                    progress.set(None);
                    error.set(Some(message));
                    return;
                }
            };
            if let Ok(url) = web_sys::Url::create_object_url_with_blob(&blob) {
                if let Some(old) = preview.get_untracked() {
                    let _ = web_sys::Url::revoke_object_url(&old);
                }
                preview.set(Some(url));
            }
            match upload::upload(&blob, &name, move |done| progress.set(Some(done))).await {
                Ok(uploaded) => text.set(uploaded.load_image_value()),
                Err(failure) => error.set(Some(failure.to_string())),
            }
            progress.set(None);
        });
    };
    let thumbnail = move || preview.get().unwrap_or_else(|| input_view_url(&text.get()));
    let camera = format!("{id}-camera");
    view! {
        <div class="image-input">
            <img class="thumb" data-testid=format!("{id}-thumb") alt=move || text.get() src=thumbnail />
            <p class="muted" data-testid=id.clone()>{move || text.get()}</p>
            {move || progress.get().map(|done| view! {
                <progress max="100" value=(done * 100.0) as u32 aria-label="Upload"></progress>
            })}
            <div class="row">
                <label class="button secondary">
                    "Take photo"
                    <input type="file" accept="image/*" capture="environment" data-testid=camera on:change=on_change />
                </label>
                <label class="button secondary">
                    "Choose picture"
                    <input type="file" accept="image/*" data-testid=format!("{id}-file") on:change=on_change />
                </label>
            </div>
        </div>
    }
}
