//! The images this device's jobs produced, every one the relay keeps, loaded as the grid is
//! scrolled; or only the starred ones.

use leptos::prelude::*;
use shared::api::HistoryQuery;

use crate::api;
use crate::archive::Archive;
use crate::components::more_pages::MorePages;
use crate::components::viewer::Viewer;
use crate::events::Events;
use crate::model::gallery::shots;

/// The gallery's filter: jobs that made something, starred ones only when asked.
fn filter(starred: bool) -> HistoryQuery {
    HistoryQuery {
        with_outputs: true,
        starred,
        ..HistoryQuery::default()
    }
}

/// A grid of every image, newest first; a tap opens the viewer.
#[component]
pub fn GalleryPage() -> impl IntoView {
    let events = expect_context::<Events>();
    let archive = Archive::new(filter(false), events.jobs);
    provide_context(archive);
    let shots = Memo::new(move |_| shots(&archive.list()));
    let open = RwSignal::new(None::<usize>);
    let starred = RwSignal::new(false);
    view! {
        <h2 class="section-title">"Gallery"</h2>
        <div class="list-filters">
            <label class="toggle">
                <input type="checkbox" data-testid="gallery-starred"
                    prop:checked=move || starred.get()
                    on:change=move |ev| {
                        starred.set(event_target_checked(&ev));
                        open.set(None);
                        archive.set_filter(filter(starred.get_untracked()));
                    } />
                " Starred only"
            </label>
        </div>
        <p class="muted empty" data-testid="gallery-empty"
            hidden=move || !shots.with(Vec::is_empty) || archive.loading.get() || !archive.ended()>
            {move || if starred.get() { "No starred image yet." } else { "Your images appear here when your jobs finish." }}
        </p>
        <div class="grid" data-testid="gallery">
            {move || shots.get().into_iter().enumerate().map(|(index, shot)| view! {
                <button class="tile" data-testid="gallery-item" data-starred=shot.starred.to_string()
                    aria-label=format!("Open {}", shot.image.filename)
                    on:click=move |_| open.set(Some(index))>
                    <img alt=shot.image.filename.clone() src=api::view_url(&shot.image) loading="lazy" />
                    {shot.starred.then(|| view! { <span class="tile-star" aria-label="Starred">"★"</span> })}
                </button>
            }).collect_view()}
        </div>
        <MorePages archive=archive noun="results" />
        {move || open.get().is_some().then(|| view! { <Viewer shots=shots open=open /> })}
    }
}
