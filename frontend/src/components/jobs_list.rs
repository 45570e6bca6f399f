//! "My jobs": this device's jobs, newest first.

use leptos::prelude::*;

use super::job_card::JobCard;
use crate::events::Events;

/// Every job of this device, as cards.
#[component]
pub fn JobsList() -> impl IntoView {
    let events = expect_context::<Events>();
    let ids = Memo::new(move |_| {
        events
            .jobs
            .with(|jobs| jobs.iter().map(|j| j.id.clone()).collect::<Vec<_>>())
    });
    view! {
        <section aria-labelledby="jobs-heading" data-testid="jobs">
            <h2 id="jobs-heading" class="section-title">"My jobs"</h2>
            <Show when=move || ids.with(Vec::is_empty)>
                <p class="muted empty">"Nothing queued yet."</p>
            </Show>
            <For each=move || ids.get() key=|id| id.clone() let:id>
                <JobCard id=id />
            </For>
        </section>
    }
}
