//! The images this device's jobs produced, every one the relay keeps, loaded as the grid is
//! scrolled (the Jobs page lists the starred ones on demand).

use leptos::prelude::*;
use shared::api::HistoryQuery;

use crate::api;
use crate::archive::Archive;
use crate::components::more_pages::MorePages;
use crate::components::viewer::Viewer;
use crate::events::Events;
use crate::model::gallery::shots;

/// A grid of every image, newest first; a tap opens the viewer.
#[component]
pub fn GalleryPage() -> impl IntoView {
    let events = expect_context::<Events>();
    let only_outputs = HistoryQuery {
        with_outputs: true,
        ..HistoryQuery::default()
    };
    let archive = Archive::new(only_outputs, events.jobs);
    provide_context(archive);
    let shots = Memo::new(move |_| shots(&archive.list()));
    let open = RwSignal::new(None::<usize>);
    view! {
        <h2 class="section-title">"Gallery"</h2>
        <p class="muted empty" data-testid="gallery-empty"
            hidden=move || !shots.with(Vec::is_empty) || archive.loading.get() || !archive.ended()>
            "Your images appear here when your jobs finish."
        </p>
        <div class="grid" data-testid="gallery">
            {move || shots.get().into_iter().enumerate().map(|(index, shot)| view! {
                <button class="tile" data-testid="gallery-item"
                    aria-label=format!("Open {}", shot.image.filename)
                    on:click=move |_| open.set(Some(index))>
                    <img alt=shot.image.filename.clone() src=api::view_url(&shot.image) loading="lazy" />
                </button>
            }).collect_view()}
        </div>
        <MorePages archive=archive />
        {move || open.get().is_some().then(|| view! { <Viewer shots=shots open=open /> })}
    }
}
