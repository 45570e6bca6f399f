//! The images this device's jobs produced.

use leptos::prelude::*;

use crate::api;
use crate::components::viewer::Viewer;
use crate::events::Events;
use crate::model::gallery::shots;

/// A grid of every image, newest first; a tap opens the viewer.
#[component]
pub fn GalleryPage() -> impl IntoView {
    let events = expect_context::<Events>();
    let shots = Memo::new(move |_| events.jobs.with(|jobs| shots(jobs)));
    let open = RwSignal::new(None::<usize>);
    view! {
        <h2 class="section-title">"Gallery"</h2>
        <p class="muted empty" data-testid="gallery-empty" hidden=move || !shots.with(Vec::is_empty)>
            "Your images appear here when your jobs finish."
        </p>
        <div class="grid" data-testid="gallery">
            {move || shots.get().into_iter().enumerate().map(|(index, shot)| view! {
                <button class="tile" data-testid="gallery-item" aria-label=format!("Open {}", shot.image.filename)
                    on:click=move |_| open.set(Some(index))>
                    <img alt=shot.image.filename.clone() src=api::view_url(&shot.image) loading="lazy" />
                </button>
            }).collect_view()}
        </div>
        {move || open.get().is_some().then(|| view! { <Viewer shots=shots open=open /> })}
    }
}
