//! The workflow's editable text inputs.

use leptos::prelude::*;
use shared::workflow::TextInput;

/// One text area per text input, labelled with its node's title. Values go to `values` as the
/// user types; the text areas are uncontrolled so typing never fights re-rendering.
#[component]
pub fn TextInputs(
    /// The inputs, in display order.
    inputs: Vec<TextInput>,
    /// Their current values, same order.
    values: StoredValue<Vec<String>>,
) -> impl IntoView {
    inputs
        .into_iter()
        .enumerate()
        .map(|(index, input)| {
            let id = format!("input-{}-{}", input.node_id, input.name);
            let rows = if input.name == "text" { "4" } else { "1" };
            view! {
                <div class="field">
                    <label for=id.clone()>
                        {input.node_title.clone()}
                        <span class="muted">{format!(" · {} (#{})", input.name, input.node_id)}</span>
                    </label>
                    <textarea
                        id=id.clone()
                        data-testid=id
                        rows=rows
                        prop:value=input.value.clone()
                        on:input=move |ev| {
                            let text = event_target_value(&ev);
                            values.update_value(|values| values[index] = text);
                        }
                    ></textarea>
                </div>
            }
        })
        .collect_view()
}
