//! The team's workflow library: open one, import, rename, delete.

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api;
use crate::components::device_link::DeviceLink;
use crate::components::workflow_import::WorkflowImport;
use crate::model::route::Route;
use crate::task;
use shared::api::SavedWorkflow;

/// One saved workflow, with its actions.
#[component]
fn LibraryEntry(
    /// The workflow.
    workflow: SavedWorkflow,
    /// Whether only the operator may change the library.
    locked: bool,
    /// Called after a change, to list again.
    changed: Callback<()>,
) -> impl IntoView {
    let name = workflow.name.clone();
    let failure = RwSignal::new(None::<String>);
    let rename = {
        let name = name.clone();
        move |_| {
            let Some(to) = window()
                .prompt_with_message_and_default("New name", &name)
                .ok()
                .flatten()
            else {
                return;
            };
            let name = name.clone();
            spawn_local(async move {
                match api::rename_workflow(&name, to.trim()).await {
                    Ok(_) => changed.run(()),
                    Err(error) => failure.set(Some(error.to_string())),
                }
            });
        }
    };
    let delete = {
        let name = name.clone();
        move |_| {
            let question = format!("Delete \"{name}\" for everyone?");
            if !window().confirm_with_message(&question).unwrap_or(false) {
                return;
            }
            let name = name.clone();
            spawn_local(async move {
                match api::delete_workflow(&name).await {
                    Ok(()) => changed.run(()),
                    Err(error) => failure.set(Some(error.to_string())),
                }
            });
        }
    };
    let href = Route::Workflow(name.clone()).hash();
    view! {
        <li class="entry" data-testid="library-entry">
            <a class="entry-name" href=href>
                <strong>{name.clone()}</strong>
                <span class="muted">{format!(" · {} nodes", workflow.nodes)}</span>
            </a>
            {(!locked).then(|| view! {
                <button class="button secondary small" data-testid="rename-workflow" on:click=rename>"Rename"</button>
                <button class="button secondary small" data-testid="delete-workflow" on:click=delete>"Delete"</button>
            })}
            {move || failure.get().map(|message| view! { <p class="error" role="alert">{message}</p> })}
        </li>
    }
}

/// The library, the importer and the device link.
#[component]
pub fn LibraryPage() -> impl IntoView {
    let library = task::fetch(api::workflows());
    let changed = Callback::new(move |()| task::refetch(library, api::workflows()));
    // Only whether the library is locked decides the importer: the list loading or changing
    // must not rebuild it and drop what is being pasted or dropped into it.
    let locked = Memo::new(move |_| {
        library.with(|r| {
            r.as_ref()
                .and_then(|r| r.as_ref().ok())
                .is_some_and(|l| l.locked)
        })
    });
    view! {
        <section aria-labelledby="library-heading">
            <h2 id="library-heading" class="section-title">"Workflows"</h2>
            {move || match library.get() {
                None => view! { <p class="muted empty">"Loading…"</p> }.into_any(),
                Some(result) => match result {
                    Ok(library) if library.workflows.is_empty() => view! {
                        <p class="muted empty" data-testid="library-empty">"No workflow yet: import one below."</p>
                    }.into_any(),
                    Ok(library) => {
                        let locked = library.locked;
                        view! {
                            <ul class="card entries" data-testid="library">
                                {library.workflows.into_iter().map(|workflow| view! {
                                    <LibraryEntry workflow=workflow locked=locked changed=changed />
                                }).collect_view()}
                            </ul>
                            <p class="muted empty" hidden=!locked>"The operator manages the workflows on the relay's machine."</p>
                        }.into_any()
                    }
                    Err(error) => view! { <p class="error card" role="alert">{error.to_string()}</p> }.into_any(),
                },
            }}
        </section>
        {move || (!locked.get()).then(|| view! { <WorkflowImport /> })}
        <DeviceLink />
    }
}
