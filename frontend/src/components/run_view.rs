//! The current run: status, progress, live preview and results.

use leptos::prelude::*;
use shared::progress::{Outcome, RunProgress};
use shared::workflow::Workflow;

use crate::api;

/// A sentence for the run's state; `title` names a node.
pub fn status_line(run: &RunProgress, title: impl Fn(&str) -> String) -> String {
    let percent = percent(run);
    match run.outcome() {
        Some(Outcome::Succeeded) => "Done".to_owned(),
        Some(Outcome::Interrupted) => "Interrupted".to_owned(),
        Some(Outcome::Failed {
            node_id, message, ..
        }) => {
            format!("Failed in {}: {message}", title(node_id))
        }
        None => match run.current_node() {
            Some(node) => format!("Running {} · {percent}%", title(node)),
            None if run.started() => format!("Running · {percent}%"),
            None => "Queued".to_owned(),
        },
    }
}

/// Overall progress in whole percent.
pub fn percent(run: &RunProgress) -> u32 {
    (run.fraction() * 100.0).floor() as u32
}

/// The run's status line, progress bar, latest preview and result images.
#[component]
pub fn RunView(
    /// The run followed, if any.
    run: RwSignal<Option<RunProgress>>,
    /// The latest preview's object URL.
    preview: RwSignal<Option<String>>,
    /// The workflow, to name nodes by their titles.
    workflow: Signal<Option<Workflow>>,
) -> impl IntoView {
    let title = move |node: &str| {
        workflow.with(|w| {
            w.as_ref()
                .and_then(|w| w.node(node))
                .map_or_else(|| format!("node {node}"), |n| n.title().to_owned())
        })
    };
    let status = move || run.with(|r| r.as_ref().map(|r| status_line(r, title)));
    let value = move || run.with(|r| r.as_ref().map_or(0, percent));
    let images = move || run.with(|r| r.as_ref().map(|r| r.images().to_vec()).unwrap_or_default());
    view! {
        <Show when=move || run.with(Option::is_some)>
            <p class="status" data-testid="run-status" role="status" aria-live="polite">
                {status}
            </p>
            <div class="progress-row">
                <progress
                    data-testid="progress"
                    max="100"
                    prop:value=value
                    aria-label="Progress"
                ></progress>
                <span data-testid="progress-percent">{move || format!("{}%", value())}</span>
            </div>
        </Show>
        <Show when=move || preview.with(Option::is_some)>
            <img
                class="preview"
                data-testid="preview"
                alt="Live preview"
                src=move || preview.get().unwrap_or_default()
            />
        </Show>
        <div class="results" data-testid="results">
            <For each=images key=|image| image.clone() let:image>
                <a href=api::view_url(&image) target="_blank" rel="noopener">
                    <img
                        data-testid="result-image"
                        alt=image.filename.clone()
                        src=api::view_url(&image)
                        loading="lazy"
                    />
                </a>
            </For>
        </div>
    }
}
