//! Paging through every job the relay keeps (`GET /api/jobs/history`) beside the live ones the
//! event socket brings: which page comes next, and one list of both.

use shared::api::{HistoryPage, HistoryQuery, Job};

/// How many jobs a page asks for.
pub const PAGE: usize = 30;

/// Where paging stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cursor {
    /// No page loaded yet.
    Start,
    /// The next page holds the jobs queued before this one.
    Before(String),
    /// Every page is loaded.
    End,
}

impl Cursor {
    /// The cursor after `page`.
    pub fn after(page: &HistoryPage) -> Self {
        page.next.clone().map_or(Self::End, Self::Before)
    }

    /// The query of the next page of `filter`, or `None` at the end. Jobs the socket brings
    /// (`live`, newest first, when the list shows them) are not asked for again: the first
    /// page starts below the oldest of them.
    pub fn next_query(&self, filter: &HistoryQuery, live: Option<&[Job]>) -> Option<HistoryQuery> {
        let before = match self {
            Self::End => return None,
            Self::Before(id) => Some(id.clone()),
            Self::Start => live.and_then(|live| live.last()).map(|job| job.id.clone()),
        };
        Some(HistoryQuery {
            before,
            limit: Some(PAGE),
            ..filter.clone()
        })
    }
}

/// Whether the list shows the socket's live jobs first: only when it is not filtered, since
/// the filters are the relay's to apply.
pub fn shows_live(filter: &HistoryQuery) -> bool {
    !filter.starred && filter.text.as_deref().is_none_or(str::is_empty)
}

/// The live jobs (newest first) then the older pages, each job once, as it is now: a job the
/// socket knows is shown as the socket has it. Pages never overlap (the cursor steps past each
/// job), so only the live jobs are looked through, once per paged job.
pub fn merged(live: &[Job], archived: &[Job], show_live: bool) -> Vec<Job> {
    let mut jobs: Vec<Job> = if show_live { live.to_vec() } else { Vec::new() };
    for job in archived {
        match live.iter().find(|l| l.id == job.id) {
            Some(_) if show_live => {}
            Some(current) => jobs.push(current.clone()),
            None => jobs.push(job.clone()),
        }
    }
    jobs
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::api::JobState;

    use crate::model::bare_job as job;

    #[test]
    fn the_first_page_starts_below_the_live_jobs_and_the_last_ends_paging() {
        let filter = HistoryQuery::default();
        let live = [job("c", JobState::Running), job("b", JobState::Succeeded)];
        let first = Cursor::Start.next_query(&filter, Some(&live)).unwrap();
        assert_eq!(first.before.as_deref(), Some("b"));
        assert_eq!(first.limit, Some(PAGE));
        assert_eq!(
            Cursor::Start.next_query(&filter, Some(&[])).unwrap().before,
            None
        );
        let searched = HistoryQuery {
            text: Some("fox".into()),
            ..HistoryQuery::default()
        };
        let query = Cursor::Start.next_query(&searched, None).unwrap();
        assert_eq!((query.before, query.text.as_deref()), (None, Some("fox")));

        let page = HistoryPage {
            jobs: vec![job("a", JobState::Succeeded)],
            next: Some("a".into()),
        };
        assert_eq!(Cursor::after(&page), Cursor::Before("a".into()));
        let last = HistoryPage {
            jobs: Vec::new(),
            next: None,
        };
        assert_eq!(Cursor::after(&last), Cursor::End);
        assert_eq!(Cursor::End.next_query(&filter, Some(&live)), None);
    }

    #[test]
    fn live_jobs_come_first_as_the_socket_has_them_and_each_job_once() {
        let live = [job("c", JobState::Running), job("b", JobState::Succeeded)];
        let archived = [job("b", JobState::Queued), job("a", JobState::Failed)];
        let ids = |jobs: Vec<Job>| {
            jobs.into_iter()
                .map(|j| (j.id, j.state))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            ids(merged(&live, &archived, true)),
            [
                ("c".to_owned(), JobState::Running),
                ("b".to_owned(), JobState::Succeeded),
                ("a".to_owned(), JobState::Failed)
            ]
        );
        assert_eq!(
            ids(merged(&live, &archived, false)),
            [
                ("b".to_owned(), JobState::Succeeded),
                ("a".to_owned(), JobState::Failed)
            ],
            "a search shows what it found, live where the socket knows it"
        );
    }

    #[test]
    fn only_an_unfiltered_list_shows_the_live_jobs() {
        assert!(shows_live(&HistoryQuery::default()));
        let outputs = HistoryQuery {
            with_outputs: true,
            text: Some(String::new()),
            ..HistoryQuery::default()
        };
        assert!(
            shows_live(&outputs),
            "the gallery keeps only jobs with outputs itself"
        );
        for filtered in [
            HistoryQuery {
                starred: true,
                ..HistoryQuery::default()
            },
            HistoryQuery {
                text: Some("fox".into()),
                ..HistoryQuery::default()
            },
        ] {
            assert!(!shows_live(&filtered), "{filtered:?}");
        }
    }
}
