//! "My jobs": this device's jobs, newest first: the live ones, then every older one the relay
//! keeps as the list is scrolled; searched by text, or only the starred ones.

use leptos::prelude::*;
use shared::api::HistoryQuery;

use super::job_card::JobCard;
use super::more_pages::MorePages;
use crate::archive::Archive;
use crate::events::Events;

/// Every job of this device, as cards.
#[component]
pub fn JobsList() -> impl IntoView {
    let events = expect_context::<Events>();
    let archive = Archive::new(HistoryQuery::default(), events.jobs);
    provide_context(archive);
    let ids = Memo::new(move |_| {
        archive
            .list()
            .into_iter()
            .map(|job| job.id)
            .collect::<Vec<_>>()
    });
    // The inputs keep their own values; each change asks again (a page is a millisecond's
    // work for the relay, and the answer to an older ask is dropped).
    let refilter = move |change: &dyn Fn(&mut HistoryQuery)| {
        let mut filter = archive.filter();
        change(&mut filter);
        archive.set_filter(filter);
    };
    view! {
        <section aria-labelledby="jobs-heading" data-testid="jobs">
            <h2 id="jobs-heading" class="section-title">"My jobs"</h2>
            <div class="list-filters">
                <input type="search" class="search" data-testid="jobs-search"
                    placeholder="Search prompts and values" aria-label="Search jobs"
                    on:input=move |ev| {
                        let text = event_target_value(&ev);
                        refilter(&|filter| filter.text = Some(text.clone()).filter(|t| !t.trim().is_empty()));
                    } />
                <label class="toggle">
                    <input type="checkbox" data-testid="jobs-starred"
                        on:change=move |ev| {
                            let starred = event_target_checked(&ev);
                            refilter(&|filter| filter.starred = starred);
                        } />
                    " Starred"
                </label>
            </div>
            <p class="muted empty" data-testid="jobs-empty"
                hidden=move || !ids.with(Vec::is_empty) || archive.loading.get() || !archive.ended()>
                "No jobs here."
            </p>
            // Cards follow their job by themselves: the list changes only when a job comes or goes.
            {move || ids.get().into_iter().map(|id| view! { <JobCard id=id /> }).collect_view()}
            <MorePages archive=archive />
        </section>
    }
}
