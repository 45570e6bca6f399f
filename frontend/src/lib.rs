//! Comfy Relay's web app: the team's workflows with every input typed, this device's jobs live,
//! and the images they made.
//!
//! `main.rs` only mounts [`App`]. Pages live in [`pages`], one file each; smaller parts in
//! [`components`]; logic that needs no browser in [`model`], unit-tested natively.

pub mod api;
pub mod archive;
pub mod components;
pub mod events;
pub mod model;
pub mod pages;
pub mod storage;
pub mod task;
pub mod upload;

use leptos::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;

use components::connection_badge::ConnectionBadge;
use components::pairing_required::PairingRequired;
use components::tab_bar::TabBar;
use events::Events;
use model::route::Route;
use pages::gallery::GalleryPage;
use pages::jobs::JobsPage;
use pages::library::LibraryPage;
use pages::workflow::WorkflowPage;

/// Records a moment in the browser's performance timeline (what `bench-load` measures).
pub fn mark(name: &str) {
    if let Some(performance) = window().performance() {
        let _ = performance.mark(name);
    }
}

/// Brings the first element matching `css` on screen at `block` (the middle for an input,
/// the top for a card that may be taller than the screen), opening the section that folds it,
/// and focuses it: what Queue just did, shown where the thumb is.
pub fn reveal(css: &str, block: web_sys::ScrollLogicalPosition) {
    let Some(element) = document().query_selector(css).ok().flatten() else {
        return;
    };
    if let Ok(Some(section)) = element.closest("details") {
        let _ = section.set_attribute("open", "");
    }
    let options = web_sys::ScrollIntoViewOptions::new();
    options.set_block(block);
    element.scroll_into_view_with_scroll_into_view_options(&options);
    if let Ok(element) = element.dyn_into::<web_sys::HtmlElement>() {
        let _ = element.focus();
    }
}

/// Opens a page (through the URL's hash, so the back button works).
pub fn go(route: &Route) {
    let _ = window().location().set_hash(&route.hash());
}

fn current_route() -> Route {
    Route::parse(&window().location().hash().unwrap_or_default())
}

/// The app.
#[component]
pub fn App() -> impl IntoView {
    let events = Events::start();
    provide_context(events);
    let route = RwSignal::new(current_route());
    // Only a new page rebuilds the page: a tap on the open page's tab (or `#/` after an empty
    // hash) must not drop what is being typed into it.
    let on_hash = Closure::<dyn Fn()>::new(move || {
        let now = current_route();
        if route.with_untracked(|open| *open != now) {
            route.set(now);
            // A page opens at its top, not where the last one was scrolled to.
            window().scroll_to_with_x_and_y(0.0, 0.0);
        }
    });
    let _ =
        window().add_event_listener_with_callback("hashchange", on_hash.as_ref().unchecked_ref());
    // The listener lives as long as the page.
    on_hash.forget();

    let page = move || match route.get() {
        Route::Library => view! { <LibraryPage /> }.into_any(),
        Route::Workflow(name) => view! { <WorkflowPage name=name /> }.into_any(),
        Route::Jobs => view! { <JobsPage /> }.into_any(),
        Route::Gallery => view! { <GalleryPage /> }.into_any(),
    };
    view! {
        <header class="topbar">
            <a class="brand" href="#/">"Comfy Relay"</a>
            <ConnectionBadge />
        </header>
        <Show
            when=move || events.paired.get() != Some(false)
            fallback=|| view! { <main><PairingRequired /></main> }
        >
            <main>{page}</main>
            <TabBar route=route />
        </Show>
    }
}
