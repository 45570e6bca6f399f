//! The foot of a list of kept jobs: the next page loads when it scrolls into view (or on a
//! tap), with what is happening said in words.

use leptos::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;
use web_sys::{IntersectionObserver, IntersectionObserverEntry, IntersectionObserverInit};

use crate::archive::Archive;

/// How far below the screen the next page starts loading.
const AHEAD: &str = "0px 0px 600px 0px";

/// Loads `archive`'s next page whenever this foot comes near the screen.
#[component]
pub fn MorePages(
    /// The list's pages.
    archive: Archive,
) -> impl IntoView {
    let foot = NodeRef::<leptos::html::Div>::new();
    let observer =
        StoredValue::new_local(None::<(IntersectionObserver, Closure<dyn Fn(js_sys::Array)>)>);
    foot.on_load(move |element| {
        let seen = Closure::<dyn Fn(js_sys::Array)>::new(move |entries: js_sys::Array| {
            let near = entries.iter().any(|entry| {
                entry
                    .dyn_into::<IntersectionObserverEntry>()
                    .is_ok_and(|entry| entry.is_intersecting())
            });
            if near {
                archive.load_more();
            }
        });
        let options = IntersectionObserverInit::new();
        options.set_root_margin(AHEAD);
        if let Ok(watch) =
            IntersectionObserver::new_with_options(seen.as_ref().unchecked_ref(), &options)
        {
            watch.observe(&element);
            observer.set_value(Some((watch, seen)));
        }
    });
    // A page that did not push the foot off the screen: look again, so the next one comes.
    Effect::new(move |_| {
        if archive.loading.get() || archive.ended() {
            return;
        }
        observer.with_value(|observer| {
            if let (Some((watch, _)), Some(element)) = (observer, foot.get_untracked()) {
                watch.unobserve(&element);
                watch.observe(&element);
            }
        });
    });
    on_cleanup(move || {
        observer.with_value(|observer| {
            if let Some((watch, _)) = observer {
                watch.disconnect();
            }
        });
    });
    view! {
        <div class="more" node_ref=foot data-testid="more">
            // One button says it all: loading, why the last page failed (tap to try again), or there
            // is more (a
            // tap on it while a page loads does nothing).
            <button class="button secondary" data-testid="more-load" hidden=move || archive.ended()
                on:click=move |_| archive.load_more()>
                {move || match (archive.loading.get(), archive.error.get()) {
                    (true, _) => "Loading…".to_owned(),
                    (false, Some(error)) => error,
                    (false, None) => "Show older".to_owned(),
                }}
            </button>
        </div>
    }
}
