//! What an unpaired device sees instead of the app.

use leptos::prelude::*;

/// Explains that this device must open the pairing link first.
#[component]
pub fn PairingRequired() -> impl IntoView {
    view! {
        <section class="card" data-testid="pairing-required" role="alert">
            <h2>"Pair this device first"</h2>
            <p>
                "This Comfy Relay only serves devices paired with it. Open the pairing link "
                "shown where it runs, or scan its QR code with this phone's camera."
            </p>
            <p class="muted">"Ask whoever runs Comfy Relay if you do not have the link."</p>
        </section>
    }
}
