//! "Use on another device": a one-time link that opens this device's jobs elsewhere.

use leptos::prelude::*;

use crate::{api, task};

/// A button that asks the relay for a one-time link and shows it, ready to copy.
#[component]
pub fn DeviceLink() -> impl IntoView {
    let busy = RwSignal::new(false);
    let link = RwSignal::new(None::<Result<String, String>>);
    let create = move |_| {
        task::submit(busy, async move {
            link.set(Some(api::device_link().await.map_err(|e| e.to_string())));
        });
    };
    let shown = move || {
        link.get().map(|result| match result {
            Ok(url) => view! {
                <p class="muted">"Open this link on your other device within ten minutes (it works once):"</p>
                <input class="link" data-testid="device-link" readonly value=url on:focus=|ev| {
                    let input: web_sys::HtmlInputElement = event_target(&ev);
                    input.select();
                } />
            }
            .into_any(),
            Err(error) => view! { <p class="error" role="alert">{error}</p> }.into_any(),
        })
    };
    view! {
        <details class="card device-link">
            <summary>"Use on another device"</summary>
            <p class="muted">"Your jobs belong to this browser. A link lets another one see and manage them too."</p>
            <button class="button secondary" data-testid="create-device-link" disabled=move || busy.get() on:click=create>
                "Create a link"
            </button>
            {shown}
        </details>
    }
}
