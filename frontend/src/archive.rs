//! One list's pages of every job the relay keeps (`GET /api/jobs/history`), loaded as the list
//! is scrolled, beside the live jobs of the event socket. A page provides it as context, so a
//! job card finds a job the socket no longer knows.

use leptos::prelude::*;
use leptos::task::spawn_local;
use shared::api::{HistoryQuery, Job};

use crate::api;
use crate::model::archive::{Cursor, merged, shows_live};

/// What the list holds and how far it has been paged.
#[derive(Debug, Clone)]
struct Paging {
    filter: HistoryQuery,
    cursor: Cursor,
    /// Counts filter changes, so a page asked for under an old filter is dropped.
    generation: u64,
}

/// The pages loaded so far for one filter.
#[derive(Clone, Copy)]
pub struct Archive {
    paging: RwSignal<Paging>,
    /// The jobs of the pages loaded, newest first.
    jobs: RwSignal<Vec<Job>>,
    /// The socket's jobs, newest first.
    live: RwSignal<Vec<Job>>,
    /// Whether a page is on its way.
    pub loading: RwSignal<bool>,
    /// Why the last page did not come.
    pub error: RwSignal<Option<String>>,
}

impl Archive {
    /// No page loaded yet of `filter`, beside `live`.
    pub fn new(filter: HistoryQuery, live: RwSignal<Vec<Job>>) -> Self {
        Self {
            paging: RwSignal::new(Paging {
                filter,
                cursor: Cursor::Start,
                generation: 0,
            }),
            jobs: RwSignal::new(Vec::new()),
            live,
            loading: RwSignal::new(false),
            error: RwSignal::new(None),
        }
    }

    /// What the list holds now.
    pub fn filter(&self) -> HistoryQuery {
        self.paging.with_untracked(|paging| paging.filter.clone())
    }

    /// Starts again with `filter`.
    pub fn set_filter(&self, filter: HistoryQuery) {
        self.jobs.set(Vec::new());
        self.loading.set(false);
        self.error.set(None);
        self.paging.update(|paging| {
            paging.filter = filter;
            paging.cursor = Cursor::Start;
            paging.generation += 1;
        });
    }

    /// The list as it is now (tracked): live jobs first when unfiltered, then the pages.
    pub fn list(&self) -> Vec<Job> {
        let show_live = self.paging.with(|paging| shows_live(&paging.filter));
        self.live
            .with(|live| self.jobs.with(|jobs| merged(live, jobs, show_live)))
    }

    /// Whether every page is loaded (tracked).
    pub fn ended(&self) -> bool {
        self.paging.with(|paging| paging.cursor == Cursor::End)
    }

    /// A job of the pages loaded (tracked).
    pub fn find(&self, id: &str) -> Option<Job> {
        self.jobs
            .with(|jobs| jobs.iter().find(|job| job.id == id).cloned())
    }

    /// Asks for the next page, unless one is on its way or none is left.
    pub fn load_more(&self) {
        if self.loading.get_untracked() {
            return;
        }
        let paging = self.paging.get_untracked();
        let live = shows_live(&paging.filter).then(|| self.live.get_untracked());
        let Some(query) = paging.cursor.next_query(&paging.filter, live.as_deref()) else {
            return;
        };
        self.loading.set(true);
        self.error.set(None);
        let this = *self;
        spawn_local(async move {
            let page = api::history(&query).await;
            // The list changed filter, or the page is gone: this page belongs to nobody.
            if this.paging.try_with_untracked(|now| now.generation) != Some(paging.generation) {
                return;
            }
            match page {
                Ok(page) => {
                    this.paging
                        .update(|paging| paging.cursor = Cursor::after(&page));
                    this.jobs.update(|jobs| jobs.extend(page.jobs));
                }
                Err(error) => this.error.set(Some(error.to_string())),
            }
            this.loading.set(false);
        });
    }

    /// Shows `job` as the relay now has it (after a star).
    pub fn replace(&self, job: Job) {
        self.jobs.update(|jobs| {
            if let Some(known) = jobs.iter_mut().find(|known| known.id == job.id) {
                *known = job;
            }
        });
    }

    /// Takes a deleted job out.
    pub fn remove(&self, id: &str) {
        self.jobs.update(|jobs| jobs.retain(|job| job.id != id));
    }
}
