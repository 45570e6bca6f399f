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
    /// What the list calls its items ("jobs", "results").
    noun: &'static str,
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
            {move || {
                if archive.loading.get() {
                    view! { <p class="muted">{format!("Loading older {noun}…")}</p> }.into_any()
                } else if let Some(error) = archive.error.get() {
                    view! {
                        <p class="error" role="alert">{error}</p>
                        <button class="button secondary" on:click=move |_| archive.load_more()>"Try again"</button>
                    }.into_any()
                } else if archive.ended() {
                    ().into_any()
                } else {
                    view! {
                        <button class="button secondary" data-testid="more-load" on:click=move |_| archive.load_more()>
                            {format!("Older {noun}")}
                        </button>
                    }.into_any()
                }
            }}
        </div>
    }
}
