//! One job: its state, progress, live preview, results, and what can be done with it.

use leptos::prelude::*;
use leptos::task::spawn_local;
use shared::api::{Job, JobState, NodeRun};

use crate::api;
use crate::archive::Archive;
use crate::events::Events;
use crate::model::output_markup;

/// Overall progress in whole percent.
pub fn percent(job: &Job) -> u32 {
    (job.progress.clamp(0.0, 1.0) * 100.0).floor() as u32
}

/// A sentence for the job's state.
pub fn status_line(job: &Job) -> String {
    let title = |id: &str| {
        job.nodes
            .iter()
            .find(|node| node.id == id)
            .map_or_else(|| format!("node {id}"), |node| node.title.clone())
    };
    match job.state {
        JobState::Queued => {
            let waiting = if job.held {
                "Waiting in the relay"
            } else {
                "Waiting"
            };
            match job.queue_position {
                Some(0) | None => waiting.to_owned(),
                Some(1) => format!("{waiting} · 1 job ahead"),
                Some(ahead) => format!("{waiting} · {ahead} jobs ahead"),
            }
        }
        JobState::Running => match &job.current_node {
            Some(node) => format!("Running {} · {}%", title(node), percent(job)),
            None => format!("Running · {}%", percent(job)),
        },
        JobState::Succeeded => "Done".to_owned(),
        JobState::Interrupted => "Interrupted".to_owned(),
        JobState::Cancelled => "Cancelled before it started".to_owned(),
        JobState::Failed => match job.error.as_ref().and_then(|e| e.node_id.as_deref()) {
            Some(node) => format!("Failed in {}", title(node)),
            None => "Failed".to_owned(),
        },
        JobState::Lost => "Lost".to_owned(),
    }
}

fn state_class(state: JobState) -> &'static str {
    match state {
        JobState::Queued => "pill",
        JobState::Running => "pill pill-live",
        JobState::Succeeded => "pill pill-ok",
        JobState::Failed | JobState::Lost => "pill pill-bad",
        JobState::Interrupted | JobState::Cancelled => "pill pill-muted",
    }
}

fn node_state(state: NodeRun) -> &'static str {
    match state {
        NodeRun::Pending => "pending",
        NodeRun::Cached => "cached",
        NodeRun::Running => "running",
        NodeRun::Finished => "finished",
        NodeRun::Failed => "failed",
    }
}

fn node_mark(state: NodeRun) -> &'static str {
    match state {
        NodeRun::Pending => "○",
        NodeRun::Cached => "⟲",
        NodeRun::Running => "▶",
        NodeRun::Finished => "✓",
        NodeRun::Failed => "✗",
    }
}

/// What a job card's buttons ask the relay for.
#[derive(Clone, Copy)]
enum Action {
    /// Interrupt it, or take it off the queue.
    Cancel,
    /// Queue it again, as it was.
    Requeue,
    /// Make it the device's next waiting job.
    RunFirst,
    /// Star it, or take its star away.
    Star(bool),
    /// Forget it (only once it has ended).
    Delete,
}

/// The card of job `id`, kept current from the event socket (or, for a job the socket no
/// longer knows, as the list's [`Archive`] loaded it).
#[component]
pub fn JobCard(
    /// The job's id.
    id: String,
) -> impl IntoView {
    let events = expect_context::<Events>();
    let archive = use_context::<Archive>();
    let lookup = id.clone();
    let job = Memo::new(move |_| {
        events
            .jobs
            .with(|jobs| jobs.iter().find(|j| j.id == lookup).cloned())
            .or_else(|| archive.and_then(|archive| archive.find(&lookup)))
    });
    // Delete asks for a second tap.
    let confirm_delete = RwSignal::new(false);
    let preview_id = id.clone();
    let preview = Memo::new(move |_| {
        events.previews.with(|p| {
            p.iter()
                .find(|(job, _)| *job == preview_id)
                .map(|(_, url)| url.clone())
        })
    });
    let failure = RwSignal::new(None::<String>);
    let act = move |action: Action| {
        let id = id.clone();
        spawn_local(async move {
            let result = match action {
                Action::Cancel => api::cancel_job(&id).await.map(drop),
                Action::Requeue => api::requeue_job(&id).await.map(drop),
                Action::RunFirst => api::move_job(&id, 0).await.map(drop),
                Action::Star(starred) => api::star_job(&id, starred).await.map(|job| {
                    if let Some(archive) = archive {
                        archive.replace(job);
                    }
                }),
                Action::Delete => api::delete_job(&id).await.map(|()| {
                    if let Some(archive) = archive {
                        archive.remove(&id);
                    }
                }),
            };
            let _ = failure.try_set(result.err().map(|e| e.to_string()));
        });
    };
    move || {
        job.get().map(|job| {
            let finished = job.state.is_finished();
            let percent = percent(&job);
            let status = status_line(&job);
            let state = job.state.name();
            let error = job.error.map(|error| {
                view! { <p class="error" data-testid="job-error">{error.message}</p> }
            });
            let outputs: String = job
                .outputs
                .iter()
                .map(|output| output_markup::full(output, &job.id, "result", "job-output", true))
                .collect();
            let nodes = job
                .nodes
                .into_iter()
                .map(|node| {
                    view! {
                        <li data-node-state=node_state(node.state)>
                            <span aria-hidden="true">{node_mark(node.state)}</span>
                            {format!(" {} · {}%", node.title, (node.fraction.clamp(0.0, 1.0) * 100.0) as u32)}
                        </li>
                    }
                })
                .collect_view();
            let action = if finished {
                let act = act.clone();
                view! {
                    <button class="button secondary" data-testid="job-requeue" on:click=move |_| act(Action::Requeue)>
                        "Queue again"
                    </button>
                }
                .into_any()
            } else {
                let act = act.clone();
                view! {
                    <button class="button secondary" data-testid="job-cancel" on:click=move |_| act(Action::Cancel)>
                        "Cancel"
                    </button>
                }
                .into_any()
            };
            let starred = job.starred;
            let star = {
                let act = act.clone();
                view! {
                    <button class="button secondary" data-testid="job-star"
                        on:click=move |_| act(Action::Star(!starred))>
                        {if starred { "★ Starred" } else { "☆ Star" }}
                    </button>
                }
            };
            let delete = finished.then(|| {
                let act = act.clone();
                view! {
                    <button class="button secondary" data-testid="job-delete"
                        on:click=move |_| {
                            if confirm_delete.get_untracked() {
                                act(Action::Delete);
                            } else {
                                confirm_delete.set(true);
                            }
                        }>
                        {move || if confirm_delete.get() { "Tap again to delete" } else { "Delete" }}
                    </button>
                }
            });
            view! {
                <article class="job card" data-testid="job" data-job-id=job.id>
                    <header class="job-head">
                        <h3>{match &job.workflow_name {
                            Some(name) => format!("{name} · #{}", job.number),
                            None => format!("Job #{}", job.number),
                        }}</h3>
                        <span class=state_class(job.state) data-testid="job-state">{state}</span>
                    </header>
                    <p class="status" data-testid="job-status" role="status" aria-live="polite">
                        {status}
                    </p>
                    {(!finished).then(|| view! {
                        <div class="progress-row">
                            <progress max="100" value=percent aria-label="Progress"></progress>
                            <span data-testid="job-percent">{format!("{percent}%")}</span>
                        </div>
                    })}
                    {error}
                    {move || preview.get().filter(|_| !finished).map(|url| view! {
                        <img class="preview" data-testid="job-preview" alt="Live preview" src=url />
                    })}
                    <div class="results" inner_html=outputs></div>
                    <details class="nodes">
                        <summary>"Nodes"</summary>
                        <ul>{nodes}</ul>
                    </details>
                    <div class="job-actions">
                        {job.held.then(|| {
                            let act = act.clone();
                            view! {
                                <button class="button secondary" data-testid="job-first" on:click=move |_| act(Action::RunFirst)>
                                    "Run first"
                                </button>
                            }
                        })}
                        {action}
                        {star}
                        {delete}
                    </div>
                    {move || failure.get().map(|message| view! { <p class="error" role="alert">{message}</p> })}
                </article>
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::api::{JobError, NodeStatus};

    fn job(state: JobState) -> Job {
        Job {
            number: 3,
            workflow_name: Some("Portrait".into()),
            progress: 0.426,
            current_node: Some("2".into()),
            nodes: vec![NodeStatus {
                id: "2".into(),
                title: "KSampler".into(),
                class_type: "KSampler".into(),
                state: NodeRun::Running,
                fraction: 0.5,
            }],
            ..crate::model::bare_job("p", state)
        }
    }

    #[test]
    fn a_job_the_relay_holds_says_so_with_its_place() {
        let held = Job {
            state: JobState::Queued,
            held: true,
            queue_position: Some(3),
            ..job(JobState::Queued)
        };
        assert_eq!(status_line(&held), "Waiting in the relay · 3 jobs ahead");
        let given = Job {
            held: false,
            ..held
        };
        assert_eq!(status_line(&given), "Waiting · 3 jobs ahead");
    }

    #[test]
    fn a_running_job_names_its_node_and_percent() {
        assert_eq!(
            status_line(&job(JobState::Running)),
            "Running KSampler · 42%"
        );
    }

    #[test]
    fn a_waiting_job_says_how_many_are_ahead() {
        let mut waiting = job(JobState::Queued);
        waiting.queue_position = Some(2);
        assert_eq!(status_line(&waiting), "Waiting · 2 jobs ahead");
        waiting.queue_position = Some(1);
        assert_eq!(status_line(&waiting), "Waiting · 1 job ahead");
    }

    #[test]
    fn a_failure_names_the_node_by_its_title() {
        let mut failed = job(JobState::Failed);
        failed.error = Some(JobError {
            message: "boom".into(),
            node_id: Some("2".into()),
            node_type: None,
            traceback: Vec::new(),
        });
        assert_eq!(status_line(&failed), "Failed in KSampler");
    }

    #[test]
    fn a_job_cancelled_while_it_waited_is_named_once() {
        let cancelled = job(JobState::Cancelled);
        assert_eq!(status_line(&cancelled), "Cancelled before it started");
        assert_eq!(cancelled.state.name(), "cancelled");
        assert_eq!(status_line(&job(JobState::Interrupted)), "Interrupted");
    }

    #[test]
    fn percent_never_exceeds_a_hundred() {
        let mut done = job(JobState::Succeeded);
        done.progress = 1.2;
        assert_eq!(percent(&done), 100);
    }
}
