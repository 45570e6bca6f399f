//! Comfy Relay's web app: pick an API-format workflow, edit its texts, queue it, watch it run.

pub mod api;
pub mod components;
pub mod session;
pub mod ws;

use leptos::prelude::*;
use shared::comfy::ServerMessage;
use shared::progress::RunProgress;
use shared::workflow::{TextInput, Workflow};

use components::connection_badge::ConnectionBadge;
use components::run_view::RunView;
use components::text_inputs::TextInputs;
use components::workflow_source::WorkflowSource;
use ws::{Connection, Incoming};

/// How many messages about not-yet-known prompts are kept: events can arrive before the
/// `/prompt` answer that tells the tab its prompt id.
const EARLY_MESSAGES: usize = 256;

/// A workflow the user loaded, with its editable texts.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    /// The workflow as loaded.
    pub workflow: Workflow,
    /// Its text inputs, in display order.
    pub texts: Vec<TextInput>,
}

impl Loaded {
    /// The workflow with the user's edits applied.
    pub fn edited(&self, values: &[String]) -> Workflow {
        let mut workflow = self.workflow.clone();
        for (input, value) in self.texts.iter().zip(values) {
            // The inputs come from this very workflow: they exist and are not links.
            let _ = workflow.set_input(&input.node_id, &input.name, value.clone().into());
        }
        workflow
    }
}

/// The app.
#[component]
pub fn App() -> impl IntoView {
    let client_id = StoredValue::new(session::tab_client_id());
    let connection = RwSignal::new(Connection::Connecting);
    let loaded = RwSignal::new(None::<Loaded>);
    let problem = RwSignal::new(None::<String>);
    let values = StoredValue::new(Vec::<String>::new());
    let run = RwSignal::new(None::<RunProgress>);
    let preview = RwSignal::new(None::<String>);
    let early = StoredValue::new(Vec::<ServerMessage>::new());

    let show_preview = move |url: String| {
        if let Some(old) = preview.get_untracked() {
            let _ = web_sys::Url::revoke_object_url(&old);
        }
        preview.set(Some(url));
    };
    ws::connect(
        client_id.get_value(),
        connection,
        move |incoming| match incoming {
            Incoming::Message(message) => {
                let known = run.with_untracked(|r| r.as_ref().map(|r| r.prompt_id().to_owned()));
                if message.prompt_id().is_some() && message.prompt_id() != known.as_deref() {
                    early.update_value(|early| {
                        early.push(*message);
                        let excess = early.len().saturating_sub(EARLY_MESSAGES);
                        early.drain(..excess);
                    });
                } else {
                    run.maybe_update(|r| r.as_mut().is_some_and(|r| r.apply(&message)));
                }
            }
            Incoming::Preview { prompt_id, url } => {
                let ours = run.with_untracked(|r| {
                    r.as_ref().is_some_and(|r| {
                        r.outcome().is_none()
                            && prompt_id.as_deref().is_none_or(|id| id == r.prompt_id())
                    })
                });
                if ours {
                    show_preview(url);
                } else {
                    let _ = web_sys::Url::revoke_object_url(&url);
                }
            }
        },
    );

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
        let workflow = loaded.with_untracked(|l| l.as_ref().map(|l| l.edited(&values.get_value())));
        async move {
            let Some(workflow) = workflow else { return };
            match api::queue_prompt(&workflow, &client_id.get_value()).await {
                Ok(accepted) => {
                    let mut progress = RunProgress::new(accepted.prompt_id, workflow.len());
                    let seen = early.try_update_value(std::mem::take).unwrap_or_default();
                    for message in &seen {
                        progress.apply(message);
                    }
                    queue_error.set(None);
                    if let Some(old) = preview.get_untracked() {
                        let _ = web_sys::Url::revoke_object_url(&old);
                    }
                    preview.set(None);
                    run.set(Some(progress));
                }
                Err(error) => queue_error.set(Some(error.to_string())),
            }
        }
    });
    let running_prompt = move || {
        run.with(|r| {
            r.as_ref()
                .filter(|r| r.outcome().is_none())
                .map(|r| r.prompt_id().to_owned())
        })
    };
    let interrupt = Action::new_local(move |prompt_id: &String| {
        let prompt_id = prompt_id.clone();
        async move {
            if let Err(error) = api::interrupt(&prompt_id).await {
                queue_error.set(Some(error.to_string()));
            }
        }
    });
    let workflow = Signal::derive(move || loaded.with(|l| l.as_ref().map(|l| l.workflow.clone())));

    view! {
        <header class="topbar">
            <h1>"Comfy Relay"</h1>
            <ConnectionBadge connection=connection />
        </header>
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
            <section class="card" aria-labelledby="run-heading">
                <h2 id="run-heading">"Run"</h2>
                <Show when=move || queue_error.with(Option::is_some)>
                    <p class="error" data-testid="queue-error" role="alert">
                        {move || queue_error.get()}
                    </p>
                </Show>
                <RunView run=run preview=preview workflow=workflow />
            </section>
        </main>
        <footer class="actions">
            <button
                class="button secondary"
                data-testid="interrupt"
                disabled=move || running_prompt().is_none()
                on:click=move |_| {
                    if let Some(prompt_id) = running_prompt() {
                        interrupt.dispatch(prompt_id);
                    }
                }
            >
                "Interrupt"
            </button>
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
    }
}
