//! This device's jobs.

use leptos::prelude::*;

use crate::components::jobs_list::JobsList;

/// Every job of this device, newest first.
#[component]
pub fn JobsPage() -> impl IntoView {
    view! { <JobsList /> }
}
