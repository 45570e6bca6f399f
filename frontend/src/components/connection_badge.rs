//! Shows whether the app is live: its event socket, and the relay's link to ComfyUI.

use leptos::prelude::*;

use crate::events::{Connection, Events};

/// A small badge: "Live", "Connecting…", "Reconnecting…", "ComfyUI offline" or "Not paired".
#[component]
pub fn ConnectionBadge() -> impl IntoView {
    let events = expect_context::<Events>();
    let state = move || match (events.connection.get(), events.comfyui.get()) {
        _ if events.paired.get() == Some(false) => ("Not paired", "badge badge-wait"),
        (Connection::Open, Some(false)) => ("ComfyUI offline", "badge badge-wait"),
        (Connection::Open, _) => ("Live", "badge badge-ok"),
        (Connection::Connecting, _) => ("Connecting…", "badge badge-wait"),
        (Connection::Retrying, _) => ("Reconnecting…", "badge badge-wait"),
    };
    view! {
        <span class=move || state().1 data-testid="connection" role="status" aria-live="polite">
            {move || state().0}
        </span>
    }
}
