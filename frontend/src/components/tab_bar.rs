//! The bottom navigation, within thumb reach.

use leptos::prelude::*;

use crate::events::Events;
use crate::model::route::Route;

/// Workflows, Jobs (with how many run or wait) and Gallery.
#[component]
pub fn TabBar(
    /// The page shown.
    route: RwSignal<Route>,
) -> impl IntoView {
    let events = expect_context::<Events>();
    let active = move |jobs: bool| {
        events
            .jobs
            .with(|list| list.iter().filter(|j| !j.state.is_finished()).count())
            > 0
            && jobs
    };
    let tab = move |target: Route, label: &'static str, test_id: &'static str| {
        let href = target.hash();
        let current = target.clone();
        let is_jobs = target == Route::Jobs;
        view! {
            <a
                class="tab"
                href=href
                data-testid=test_id
                aria-current=move || {
                    let here = route.with(|r| std::mem::discriminant(r) == std::mem::discriminant(&current));
                    if here { "page" } else { "false" }
                }
            >
                {label}
                <span class="dot" aria-label="running" hidden=move || !active(is_jobs)></span>
            </a>
        }
    };
    view! {
        <nav class="tabbar" aria-label="Pages">
            {tab(Route::Library, "Workflows", "tab-workflows")}
            {tab(Route::Jobs, "Jobs", "tab-jobs")}
            {tab(Route::Gallery, "Gallery", "tab-gallery")}
        </nav>
    }
}
