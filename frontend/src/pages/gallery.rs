//! What this device's jobs made, every one the relay keeps, loaded as the grid is scrolled
//! (the Jobs page lists the starred ones on demand), filtered by kind when there are several.

use leptos::prelude::*;
use shared::api::HistoryQuery;

use crate::archive::Archive;
use crate::components::more_pages::MorePages;
use crate::components::viewer::Viewer;
use crate::events::Events;
use crate::model::gallery::shots;
use crate::model::output_markup;

/// A grid of every output, newest first; a tap opens the viewer.
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
        // The filter is the stylesheet's: the checked kind hides the other tiles (`:has`), and
        // it shows once there is more than pictures. No signal, no code per choice.
        <fieldset class="kinds" data-testid="gallery-kinds">
            <legend>"Show"</legend>
            <label><input type="radio" name="kind" value="" checked />"All"</label>
            <label><input type="radio" name="kind" value="image" />"Pictures"</label>
            <label><input type="radio" name="kind" value="video" />"Videos"</label>
            <label><input type="radio" name="kind" value="audio" />"Sounds"</label>
            <label><input type="radio" name="kind" value="text" />"Texts"</label>
            <label><input type="radio" name="kind" value="file" />"Files"</label>
        </fieldset>
        <p class="muted empty" data-testid="gallery-empty"
            hidden=move || !shots.with(Vec::is_empty) || archive.loading.get() || !archive.ended()>
            "What your jobs make appears here when they finish."
        </p>
        <div class="grid" data-testid="gallery">
            {move || shots.get().into_iter().enumerate().map(|(index, shot)| view! {
                <button class="tile" data-testid="gallery-item" data-media=shot.output.media()
                    aria-label=format!("Open {}", output_markup::label(&shot.output))
                    inner_html=output_markup::tile(&shot.output, &shot.job_id)
                    on:click=move |_| open.set(Some(index))>
                </button>
            }).collect_view()}
        </div>
        <MorePages archive=archive />
        {move || open.get().is_some().then(|| view! { <Viewer shots=shots open=open /> })}
    }
}
