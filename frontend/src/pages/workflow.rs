//! One workflow's form: every input typed from ComfyUI's schemas, pinned ones first, the last
//! values remembered on this device; Queue, and the latest job of this workflow below.

use std::collections::BTreeSet;

use leptos::prelude::*;
use shared::api::InputEdit;
use shared::workflow::Workflow;
use web_sys::ScrollLogicalPosition;

use crate::api::{self, ApiError};
use crate::components::field::{FieldInput, FieldState};
use crate::components::job_card::JobCard;
use crate::events::Events;
use crate::model::form::{self, Group};
use crate::{storage, task};

/// The first input whose value is refused, else the message saying why Queue did nothing.
const FIRST_PROBLEM: &str = "[aria-invalid=true], [data-testid=queue-error]";

/// What the page needs before it can show the form.
#[derive(Clone)]
struct Loaded {
    groups: Vec<Group>,
    missing: Vec<String>,
    upload_limit: Option<u64>,
}

async fn load(name: String) -> Result<Loaded, ApiError> {
    let workflow: Workflow = api::workflow(&name).await?;
    let schemas = api::schemas(&workflow).await?;
    // Without ComfyUI's flags the relay's own limit still applies on upload.
    let upload_limit = api::features().await.ok().and_then(|f| f.max_upload_size);
    Ok(Loaded {
        groups: form::groups(&workflow, &schemas),
        missing: form::missing_classes(&workflow, &schemas),
        upload_limit,
    })
}

/// The page of workflow `name`.
#[component]
pub fn WorkflowPage(
    /// The saved workflow's name.
    name: String,
) -> impl IntoView {
    let title = name.clone();
    let loaded = task::fetch(load(name));
    view! {
        <h2 class="section-title" data-testid="workflow-title">{title.clone()}</h2>
        {move || match loaded.get() {
            None => view! { <p class="muted empty">"Loading the workflow and ComfyUI's nodes…"</p> }.into_any(),
            Some(Ok(loaded)) => view! { <WorkflowForm name=title.clone() loaded=loaded /> }.into_any(),
            Some(Err(error)) => view! { <p class="error card" role="alert">{error.to_string()}</p> }.into_any(),
        }}
    }
}

/// A group's fields under its node's title (only those `show` keeps).
fn group_view(
    group: &Group,
    states: &[FieldState],
    upload_limit: Option<u64>,
    show: fn(&FieldState) -> bool,
) -> impl IntoView + use<> {
    let fields: Vec<FieldState> = states
        .iter()
        .filter(|s| s.field.with_value(|f| f.node_id == group.node_id))
        .copied()
        .collect();
    let any = {
        let fields = fields.clone();
        move || fields.iter().any(show)
    };
    let title = group.title.clone();
    let class = group.class_type.clone();
    view! {
        <fieldset class="group" hidden=move || !any()>
            <legend>{title}<span class="muted">{format!(" · {class}")}</span></legend>
            {fields.iter().map(|state| {
                let state = *state;
                // Each field lives in one section at a time: pinned, or with the others.
                move || show(&state).then(|| view! { <FieldInput state=state upload_limit=upload_limit /> })
            }).collect_view()}
        </fieldset>
    }
}

/// The form itself, once the workflow and its schemas are loaded.
#[component]
fn WorkflowForm(name: String, loaded: Loaded) -> impl IntoView {
    let events = expect_context::<Events>();
    let memory = storage::memory(&name);
    let states: Vec<FieldState> = loaded
        .groups
        .iter()
        .flat_map(|g| g.fields.iter())
        .map(|field| {
            // The last value queued from this device, if it still fits the field.
            let remembered = memory
                .values
                .get(&field.key)
                .filter(|v| form::parse(&field.kind, &form::text_of(v)).is_ok());
            let value = remembered.unwrap_or(&field.original);
            FieldState::new(
                field.clone(),
                value,
                memory.pinned.contains(&field.key),
                memory.randomize.contains(&field.key),
            )
        })
        .collect();
    let all = StoredValue::new(states.clone());
    let workflow_name = StoredValue::new(name.clone());

    // Pins and seed choices are kept as soon as they change.
    Effect::new(move |_| {
        let (pinned, randomize) = all.with_value(|states| {
            let keys = |pick: fn(&FieldState) -> bool| {
                // Inserted one by one: collecting would sort, a copy of the algorithm more.
                let mut keys = BTreeSet::new();
                for state in states.iter().filter(|s| pick(s)) {
                    keys.insert(state.field.with_value(|f| f.key.clone()));
                }
                keys
            };
            (keys(|s| s.pinned.get()), keys(|s| s.randomize.get()))
        });
        storage::update(&workflow_name.get_value(), |memory| {
            memory.pinned = pinned;
            memory.randomize = randomize;
        });
    });

    let latest = Memo::new(move |_| {
        let name = workflow_name.get_value();
        events.jobs.with(|jobs| {
            jobs.iter()
                .find(|j| j.workflow_name.as_deref() == Some(&name))
                .map(|j| j.id.clone())
        })
    });
    let problem = RwSignal::new(None::<String>);
    let queueing = RwSignal::new(false);
    let queue = move || {
        let name = workflow_name.get_value();
        let states = all.get_value();
        task::submit(queueing, async move {
            for state in states.iter().filter(|s| s.randomize.get_untracked()) {
                state.reroll();
            }
            let mut edits = Vec::new();
            let mut invalid = 0;
            for state in &states {
                state.server_error.set(None);
                match state.value() {
                    Ok(value) => state.field.with_value(|field| {
                        if value != field.original {
                            edits.push(InputEdit {
                                node_id: field.node_id.clone(),
                                input: field.name.clone(),
                                value,
                            });
                        }
                    }),
                    Err(_) => invalid += 1,
                }
            }
            if invalid > 0 {
                problem.set(Some(format!(
                    "{invalid} input(s) need a valid value first."
                )));
                gloo_timers::future::sleep(std::time::Duration::ZERO).await;
                crate::reveal(FIRST_PROBLEM, ScrollLogicalPosition::Center);
                return;
            }
            match api::submit_job(&name, edits.clone()).await {
                Ok(job) => {
                    problem.set(None);
                    // The new job's card replaces the last one once the relay says so (at
                    // once, or within a moment): then it is shown where the thumb is.
                    for _ in 0..40 {
                        if latest.get_untracked().as_deref() == Some(job.id.as_str()) {
                            break;
                        }
                        gloo_timers::future::sleep(std::time::Duration::from_millis(50)).await;
                    }
                    gloo_timers::future::sleep(std::time::Duration::ZERO).await;
                    crate::reveal("[data-testid=job]", ScrollLogicalPosition::Start);
                    storage::update(&name, |memory| {
                        memory.values = edits
                            .into_iter()
                            .map(|e| (form::key(&e.node_id, &e.input), e.value))
                            .collect();
                    });
                }
                Err(error) => {
                    let problems = error.problems();
                    let mut unplaced = Vec::new();
                    for p in &problems {
                        let key = p.input.as_deref().map(|input| form::key(&p.node_id, input));
                        let state = states
                            .iter()
                            .find(|s| Some(s.field.with_value(|f| f.key.clone())) == key);
                        match state {
                            Some(state) => state.server_error.set(Some(p.message.clone())),
                            None => unplaced.push(p.describe()),
                        }
                    }
                    problem.set(Some(if problems.is_empty() {
                        error.to_string()
                    } else if unplaced.is_empty() {
                        "ComfyUI refused some values: see the inputs marked below.".to_owned()
                    } else {
                        unplaced.join("\n")
                    }));
                    gloo_timers::future::sleep(std::time::Duration::ZERO).await;
                    crate::reveal(FIRST_PROBLEM, ScrollLogicalPosition::Center);
                }
            }
        });
    };

    // Saved values this ComfyUI does not list (models the workflow was made with), named
    // until each is changed to one it has.
    let groups = loaded.groups.clone();
    let not_installed = move || {
        let states = all.get_value();
        let text = |field: &form::Field| {
            states
                .iter()
                .find(|s| s.field.with_value(|f| f.key == field.key))
                .map(|s| s.text.get())
                .unwrap_or_default()
        };
        let named = form::not_installed(&groups, text);
        (!named.is_empty()).then(|| view! {
            <p class="error card" data-testid="not-installed" role="alert">
                {format!("Not installed here: {}. Choose what this ComfyUI has, or install them.", named.join(", "))}
            </p>
        })
    };
    let missing = loaded.missing.clone();
    let blocked = !missing.is_empty();
    let upload_limit = loaded.upload_limit;
    let has_pins = move || all.with_value(|s| s.iter().any(|s| s.pinned.get()));
    let pinned_groups = loaded
        .groups
        .iter()
        .map(|g| group_view(g, &states, upload_limit, |s| s.pinned.get()))
        .collect_view();
    let other_groups = loaded
        .groups
        .iter()
        .map(|g| group_view(g, &states, upload_limit, |s| !s.pinned.get()))
        .collect_view();
    view! {
        {blocked.then(|| view! {
            <p class="error card" data-testid="missing-nodes" role="alert">
                {format!(
                    "ComfyUI has no node {}: install the custom nodes that provide them, or fix the workflow.",
                    missing.iter().map(|m| format!("\"{m}\"")).collect::<Vec<_>>().join(", ")
                )}
            </p>
        })}
        {not_installed}
        <section class="card" aria-labelledby="pinned-heading" data-testid="pinned" hidden=move || !has_pins()>
            <h2 id="pinned-heading">"Pinned"</h2>
            {pinned_groups}
        </section>
        <details class="card inputs" open=move || !has_pins() data-testid="all-inputs">
            <summary>"All inputs"</summary>
            {other_groups}
        </details>
        {move || problem.get().map(|message| view! {
            <p class="error card" data-testid="queue-error" role="alert">{message}</p>
        })}
        {move || latest.get().map(|id| view! { <JobCard id=id /> })}
        <div class="actions">
            <button
                class="button primary"
                data-testid="queue"
                disabled=move || blocked || queueing.get()
                on:click=move |_| queue()
            >
                {move || if queueing.get() { "Queueing…" } else { "Queue" }}
            </button>
        </div>
    }
}
