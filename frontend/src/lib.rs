//! Comfy Relay's web app: pick an API-format workflow, edit its texts, queue it, follow this
//! device's jobs live.

pub mod api;
pub mod components;
pub mod events;

use leptos::prelude::*;
use shared::api::InputEdit;
use shared::workflow::{TextInput, Workflow};

use components::connection_badge::ConnectionBadge;
use components::device_link::DeviceLink;
use components::jobs_list::JobsList;
use components::pairing_required::PairingRequired;
use components::text_inputs::TextInputs;
use components::workflow_source::WorkflowSource;
use events::Events;

/// A workflow the user loaded, with its editable texts.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    /// The workflow as loaded.
    pub workflow: Workflow,
    /// Its text inputs, in display order.
    pub texts: Vec<TextInput>,
}

impl Loaded {
    /// The user's edits, as values for the jobs API.
    pub fn edits(&self, values: &[String]) -> Vec<InputEdit> {
        self.texts
            .iter()
            .zip(values)
            .filter(|(input, value)| input.value != **value)
            .map(|(input, value)| InputEdit {
                node_id: input.node_id.clone(),
                input: input.name.clone(),
                value: value.clone().into(),
            })
            .collect()
    }
}

/// The app.
#[component]
pub fn App() -> impl IntoView {
    let events = Events::start();
    provide_context(events);
    let loaded = RwSignal::new(None::<Loaded>);
    let problem = RwSignal::new(None::<String>);
    let values = StoredValue::new(Vec::<String>::new());

    let on_text = move |text: String| {
        if text.trim().is_empty() {
            problem.set(None);
            loaded.set(None);
            return;
        }
        match Workflow::parse(&text) {
            Ok(workflow) => {
                let texts = workflow.text_inputs();
                values.set_value(texts.iter().map(|t| t.value.clone()).collect());
                problem.set(None);
                loaded.set(Some(Loaded { workflow, texts }));
            }
            Err(error) => {
                problem.set(Some(error.to_string()));
                loaded.set(None);
            }
        }
    };

    let queue_error = RwSignal::new(None::<String>);
    let queue = Action::new_local(move |(): &()| {
        let request = loaded.with_untracked(|l| {
            l.as_ref()
                .map(|l| (l.workflow.clone(), l.edits(&values.get_value())))
        });
        async move {
            let Some((workflow, edits)) = request else {
                return;
            };
            let result = api::submit_job(&workflow, edits).await;
            queue_error.set(result.err().map(|error| {
                let problems = error.problems();
                if problems.is_empty() {
                    error.to_string()
                } else {
                    problems
                        .iter()
                        .map(|p| {
                            let node = p
                                .node_title
                                .clone()
                                .unwrap_or_else(|| format!("node {}", p.node_id));
                            match &p.input {
                                Some(input) => format!("{node} · {input}: {}", p.message),
                                None => format!("{node}: {}", p.message),
                            }
                        })
                        .collect::<Vec<_>>()
                        .join("\n")
                }
            }));
        }
    });

    view! {
        <header class="topbar">
            <h1>"Comfy Relay"</h1>
            <ConnectionBadge />
        </header>
        <Show
            when=move || events.paired.get() != Some(false)
            fallback=|| view! { <main><PairingRequired /></main> }
        >
        <main>
            <section class="card" aria-labelledby="workflow-heading">
                <h2 id="workflow-heading">"Workflow"</h2>
                <WorkflowSource on_text=on_text />
                <Show when=move || problem.with(Option::is_some)>
                    <p class="error" data-testid="workflow-error" role="alert">
                        {move || problem.get()}
                    </p>
                </Show>
            </section>
            <Show when=move || loaded.with(Option::is_some)>
                <section class="card" aria-labelledby="inputs-heading" data-testid="inputs">
                    <h2 id="inputs-heading">"Texts"</h2>
                    {move || {
                        loaded
                            .get()
                            .map(|l| {
                                if l.texts.is_empty() {
                                    view! { <p class="muted">"This workflow has no text inputs."</p> }
                                        .into_any()
                                } else {
                                    view! { <TextInputs inputs=l.texts values=values /> }.into_any()
                                }
                            })
                    }}
                </section>
            </Show>
            <Show when=move || queue_error.with(Option::is_some)>
                <p class="error card" data-testid="queue-error" role="alert">
                    {move || queue_error.get()}
                </p>
            </Show>
            <JobsList />
            <DeviceLink />
        </main>
        <footer class="actions">
            <button
                class="button primary"
                data-testid="queue"
                disabled=move || loaded.with(Option::is_none) || queue.pending().get()
                on:click=move |_| {
                    queue.dispatch(());
                }
            >
                {move || if queue.pending().get() { "Queueing…" } else { "Queue" }}
            </button>
        </footer>
        </Show>
    }
}
