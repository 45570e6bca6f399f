//! "My jobs": this device's jobs, newest first: the live ones, then every older one the relay
//! keeps as the list is scrolled; searched by text, or only the starred ones.

use gloo_timers::callback::Timeout;
use leptos::prelude::*;
use shared::api::HistoryQuery;

use super::job_card::JobCard;
use super::more_pages::MorePages;
use crate::archive::Archive;
use crate::events::Events;

/// How long typing pauses before the search is asked for, in milliseconds.
const TYPING_PAUSE_MS: u32 = 300;

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
    let text = RwSignal::new(String::new());
    let starred = RwSignal::new(false);
    let refilter = move || {
        archive.set_filter(HistoryQuery {
            text: Some(text.get_untracked()).filter(|text| !text.trim().is_empty()),
            starred: starred.get_untracked(),
            ..HistoryQuery::default()
        });
    };
    let pending = StoredValue::new_local(None::<Timeout>);
    let on_text = move |value: String| {
        text.set(value);
        // Replacing the timer cancels the one before: one search per pause in typing.
        pending.set_value(Some(Timeout::new(TYPING_PAUSE_MS, refilter)));
    };
    let filtered = move || archive.filter.with(|f| f.text.is_some() || f.starred);
    view! {
        <section aria-labelledby="jobs-heading" data-testid="jobs">
            <h2 id="jobs-heading" class="section-title">"My jobs"</h2>
            <div class="list-filters">
                <input type="search" class="search" data-testid="jobs-search"
                    placeholder="Search prompts and values" aria-label="Search jobs"
                    prop:value=move || text.get()
                    on:input=move |ev| on_text(event_target_value(&ev)) />
                <label class="toggle">
                    <input type="checkbox" data-testid="jobs-starred"
                        prop:checked=move || starred.get()
                        on:change=move |ev| { starred.set(event_target_checked(&ev)); refilter(); } />
                    " Starred"
                </label>
            </div>
            <p class="muted empty" data-testid="jobs-empty"
                hidden=move || !ids.with(Vec::is_empty) || archive.loading.get() || !archive.ended()>
                {move || if filtered() { "No job matches." } else { "Nothing queued yet." }}
            </p>
            // Cards follow their job by themselves: the list changes only when a job comes or goes.
            <For each=move || ids.get() key=|id| id.clone() let:id>
                <JobCard id=id />
            </For>
            <MorePages archive=archive noun="jobs" />
        </section>
    }
}
