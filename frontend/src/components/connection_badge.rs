//! Shows whether the app is live: its event socket, and the relay's link to ComfyUI; a tap
//! opens the relay's page of its ComfyUI servers.

use leptos::prelude::*;

use crate::events::{Connection, Events};

/// A small badge: "Live", "Connecting…", "Reconnecting…", "ComfyUI offline" or "Not paired",
/// linking to `/servers`.
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
        <a href="/servers" class=move || state().1 data-testid="connection" aria-live="polite">
            {move || state().0}
        </a>
    }
}
