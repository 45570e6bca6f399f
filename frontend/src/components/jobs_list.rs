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
            <p class="muted empty" hidden=move || !ids.with(Vec::is_empty)>"Nothing queued yet."</p>
            // Cards follow their job by themselves: the list changes only when a job comes or goes.
            {move || ids.get().into_iter().map(|id| view! { <JobCard id=id /> }).collect_view()}
        </section>
    }
}
