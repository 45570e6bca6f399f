//! Shows whether the live connection to ComfyUI is up.

use leptos::prelude::*;

use crate::ws::Connection;

/// A small badge: "Live", "Connecting…" or "Reconnecting…".
#[component]
pub fn ConnectionBadge(
    /// The socket's state.
    connection: RwSignal<Connection>,
) -> impl IntoView {
    let label = move || match connection.get() {
        Connection::Open => "Live",
        Connection::Connecting => "Connecting…",
        Connection::Retrying => "Reconnecting…",
    };
    let class = move || match connection.get() {
        Connection::Open => "badge badge-ok",
        _ => "badge badge-wait",
    };
    view! {
        <span class=class data-testid="connection" role="status" aria-live="polite">
            {label}
        </span>
    }
}
