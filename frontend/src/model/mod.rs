//! The app's logic that needs no browser: forms from workflows and schemas, what a device
//! remembers, paging through kept jobs, the gallery, routes. Unit-tested natively
//! (`cargo test -p frontend`).

pub mod archive;
pub mod form;
pub mod gallery;
pub mod memory;
pub mod output_markup;
pub mod route;

/// A job of only `id` and `state`, for tests to fill in what they look at.
#[cfg(test)]
pub(crate) fn bare_job(id: &str, state: shared::api::JobState) -> shared::api::Job {
    shared::api::Job {
        id: id.to_owned(),
        number: 1,
        workflow_name: None,
        state,
        queue_position: None,
        held: false,
        progress: 0.0,
        current_node: None,
        nodes: Vec::new(),
        has_preview: false,
        outputs: Vec::new(),
        error: None,
        created_at: 0,
        finished_at: None,
        starred: false,
    }
}
