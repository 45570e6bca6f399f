//! The full-screen viewer: swipe (or tap the arrows) through the gallery, download, share, or
//! send an image into a workflow's image input.

use leptos::prelude::*;
use leptos::task::spawn_local;
use shared::api::view_url;
use shared::comfy::{ImageRef, Output};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

use crate::api;
use crate::model::form::{self, FieldKind};
use crate::model::gallery::{Shot, step};
use crate::model::output_markup;
use crate::model::route::Route;
use crate::{storage, task, upload};

/// The swipe distance, in CSS pixels, that turns the page.
const SWIPE: i32 = 50;

fn navigator_function(name: &str) -> Option<js_sys::Function> {
    js_sys::Reflect::get(&window().navigator(), &JsValue::from_str(name))
        .ok()?
        .dyn_into()
        .ok()
}

/// Shares the image itself (at `url`) where the browser can share files, else its address.
async fn share(image: ImageRef, url: String) -> Result<(), String> {
    let share = navigator_function("share").ok_or("This browser cannot share.")?;
    let data = js_sys::Object::new();
    let set = |key: &str, value: &JsValue| {
        let _ = js_sys::Reflect::set(&data, &JsValue::from_str(key), value);
    };
    set("title", &JsValue::from_str(&image.filename));
    let blob = api::image_blob(&url).await.map_err(|e| e.to_string())?;
    let options = web_sys::FilePropertyBag::new();
    options.set_type("image/png");
    let file = web_sys::File::new_with_blob_sequence_and_options(
        &js_sys::Array::of1(&blob),
        &image.filename,
        &options,
    )
    .map_err(|_| "Cannot prepare the image.")?;
    set("files", &js_sys::Array::of1(&file));
    let can_share_files = navigator_function("canShare")
        .and_then(|can| can.call1(&window().navigator(), &data).ok())
        .is_some_and(|answer| answer.is_truthy());
    if !can_share_files {
        let _ = js_sys::Reflect::delete_property(&data, &JsValue::from_str("files"));
        let origin = window().location().origin().unwrap_or_default();
        set("url", &JsValue::from_str(&format!("{origin}{url}")));
    }
    let promise: js_sys::Promise = share
        .call1(&window().navigator(), &data)
        .map_err(|_| "The browser refused to share.")?
        .unchecked_into();
    // Closing the share sheet rejects the promise: that is not an error worth showing.
    let _ = JsFuture::from(promise).await;
    Ok(())
}

/// Sends `image` (at `url`) into the first image input of workflow `name`, then opens that
/// workflow.
async fn use_as_input(
    image: ImageRef,
    url: String,
    name: String,
    progress: RwSignal<Option<f64>>,
) -> Result<(), String> {
    let workflow = api::workflow(&name).await.map_err(|e| e.to_string())?;
    let schemas = api::schemas(&workflow).await.map_err(|e| e.to_string())?;
    let field = form::groups(&workflow, &schemas)
        .into_iter()
        .flat_map(|g| g.fields)
        .find(|f| f.kind == FieldKind::Image)
        .ok_or_else(|| format!("\"{name}\" has no image input."))?;
    let blob = api::image_blob(&url).await.map_err(|e| e.to_string())?;
    progress.set(Some(0.0));
    let uploaded =
        upload::upload(&blob, &image.filename, move |done| progress.set(Some(done))).await;
    progress.set(None);
    let uploaded = uploaded.map_err(|e| e.to_string())?;
    storage::update(&name, |memory| {
        memory
            .values
            .insert(field.key.clone(), uploaded.load_image_value().into());
    });
    crate::go(&Route::Workflow(name));
    Ok(())
}

/// Opens workflow `name` with the values job `id` ran with.
async fn remix(id: String, name: String) -> Result<(), String> {
    let ran = api::job_workflow(&id).await.map_err(|e| e.to_string())?;
    storage::update(&name, |memory| memory.remix(&ran));
    crate::go(&Route::Workflow(name));
    Ok(())
}

/// The viewer, over the page, showing `shots[open]`.
#[component]
pub fn Viewer(
    /// The gallery's images.
    shots: Memo<Vec<Shot>>,
    /// Which one is open (`None` closes the viewer).
    open: RwSignal<Option<usize>>,
) -> impl IntoView {
    let current = move || shots.with(|s| open.get().and_then(|i| s.get(i).cloned()));
    let turn = move |forward: bool| {
        let count = shots.with(Vec::len);
        open.update(|index| *index = index.map(|i| step(i, count, forward)));
    };
    let touch_x = StoredValue::new(None::<i32>);
    let workflows = task::fetch(api::workflows());
    let target = RwSignal::new(String::new());
    let progress = RwSignal::new(None::<f64>);
    let failure = RwSignal::new(None::<String>);
    let can_share = navigator_function("share").is_some();
    // What the tools act on: the shot's file with its URL, which names the job (so the relay
    // reads it from the server that made it); a text has none, and only a picture goes into an
    // image input.
    let shared_image = move || {
        current().and_then(|s| {
            let file = s.output.file()?;
            Some((file.clone(), view_url(file, Some(&s.job_id))))
        })
    };
    let picture = move || {
        let is_picture =
            current().is_some_and(|s| matches!(s.output, Output::Image(_) | Output::Animated(_)));
        shared_image().filter(|_| is_picture)
    };
    view! {
        <div
            class="viewer"
            role="dialog"
            aria-modal="true"
            aria-label="Image"
            data-testid="viewer"
            tabindex="0"
            on:keydown=move |ev: leptos::ev::KeyboardEvent| match ev.key().as_str() {
                "ArrowRight" => turn(true),
                "ArrowLeft" => turn(false),
                "Escape" => open.set(None),
                _ => {}
            }
            on:touchstart=move |ev: leptos::ev::TouchEvent| {
                touch_x.set_value(ev.changed_touches().get(0).map(|t| t.client_x()));
            }
            on:touchend=move |ev: leptos::ev::TouchEvent| {
                let end = ev.changed_touches().get(0).map(|t| t.client_x());
                if let (Some(start), Some(end)) = (touch_x.get_value(), end)
                    && (end - start).abs() > SWIPE
                {
                    turn(end < start);
                }
            }
        >
            <div class="viewer-bar">
                <span data-testid="viewer-position">
                    {move || format!("{} / {}", open.get().map_or(0, |i| i + 1), shots.with(Vec::len))}
                </span>
                <button class="button secondary small" data-testid="viewer-close" aria-label="Close" on:click=move |_| open.set(None)>"✕"</button>
            </div>
            {move || current().map(|shot| view! {
                <div class="viewer-media" inner_html=output_markup::full(&shot.output, &shot.job_id, "viewer-image", "viewer-image", false)></div>
                <p class="muted caption">
                    {format!("{}Job #{}{}", if shot.starred { "★ " } else { "" }, shot.job_number, shot.workflow_name.map(|n| format!(" · {n}")).unwrap_or_default())}
                </p>
            })}
            <div class="viewer-tools">
                <button class="button secondary" data-testid="viewer-previous" aria-label="Previous" on:click=move |_| turn(false)>"‹"</button>
                <a class="button secondary" data-testid="viewer-download" hidden=move || shared_image().is_none()
                    href=move || shared_image().map(|(_, url)| url).unwrap_or_default()
                    download=move || shared_image().map(|(f, _)| f.filename).unwrap_or_default()>"Download"</a>
                {can_share.then(|| view! {
                    <button class="button secondary" data-testid="viewer-share" on:click=move |_| {
                        if let Some((image, url)) = shared_image() {
                            spawn_local(async move {
                                if let Err(message) = share(image, url).await {
                                    failure.set(Some(message));
                                }
                            });
                        }
                    }>"Share"</button>
                })}
                {move || current().and_then(|shot| shot.workflow_name.map(|name| view! {
                    <button class="button secondary" data-testid="viewer-remix" on:click=move |_| {
                        let (id, name) = (shot.job_id.clone(), name.clone());
                        spawn_local(async move {
                            if let Err(message) = remix(id, name).await {
                                failure.set(Some(message));
                            }
                        });
                    }>"Remix"</button>
                }))}
                <button class="button secondary" data-testid="viewer-next" aria-label="Next" on:click=move |_| turn(true)>"›"</button>
            </div>
            <div class="viewer-use" hidden=move || picture().is_none()>
                <label for="use-as-input">"Use as input of"</label>
                <select id="use-as-input" data-testid="use-as-input-workflow" on:change=move |ev| target.set(event_target_value(&ev))>
                    <option value="">"choose a workflow…"</option>
                    {move || workflows.get().and_then(Result::ok).map(|library| {
                        library.workflows.into_iter().map(|w| view! { <option value=w.name.clone()>{w.name.clone()}</option> }).collect_view()
                    })}
                </select>
                <button class="button primary" data-testid="use-as-input" disabled=move || target.with(String::is_empty) || progress.get().is_some()
                    on:click=move |_| {
                        let (Some((image, url)), name) = (picture(), target.get_untracked()) else { return };
                        spawn_local(async move {
                            if let Err(message) = use_as_input(image, url, name, progress).await {
                                failure.set(Some(message));
                            }
                        });
                    }>"Use"</button>
                {move || progress.get().map(|done| view! { <progress max="100" value=(done * 100.0) as u32 aria-label="Upload"></progress> })}
            </div>
            {move || failure.get().map(|message| view! { <p class="error" role="alert">{message}</p> })}
        </div>
    }
}
