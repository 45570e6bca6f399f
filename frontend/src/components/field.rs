//! One input of a workflow, edited with the control its type calls for and checked as typed.

use leptos::prelude::*;
use serde_json::Value;

use super::image_input::ImageInput;
use crate::model::form::{Field, FieldKind, parse, random_seed, text_of};

/// From this many choices on, a list is searched by typing rather than scrolled.
const SEARCHABLE_FROM: usize = 20;

/// A field's state on the page.
#[derive(Clone, Copy)]
pub struct FieldState {
    /// What the field is.
    pub field: StoredValue<Field>,
    /// What the user typed or chose, as text.
    pub text: RwSignal<String>,
    /// ComfyUI's (or the relay's) complaint about the last value queued.
    pub server_error: RwSignal<Option<String>>,
    /// Whether it is pinned to the top.
    pub pinned: RwSignal<bool>,
    /// For seeds: draw a new one for every run.
    pub randomize: RwSignal<bool>,
}

impl FieldState {
    /// A field showing `value`.
    pub fn new(field: Field, value: &Value, pinned: bool, randomize: bool) -> Self {
        Self {
            text: RwSignal::new(text_of(value)),
            field: StoredValue::new(field),
            server_error: RwSignal::new(None),
            pinned: RwSignal::new(pinned),
            randomize: RwSignal::new(randomize),
        }
    }

    /// The value to send, or what is wrong with what was typed.
    pub fn value(&self) -> Result<Value, String> {
        self.field
            .with_value(|field| self.text.with(|text| parse(&field.kind, text)))
    }

    /// Draws a new seed (for seed fields).
    pub fn reroll(&self) {
        if let FieldKind::Seed { min, max } = self.field.with_value(|f| f.kind.clone()) {
            self.text
                .set(random_seed(random_bits(), min, max).to_string());
        }
    }
}

/// 64 random bits from the browser (works on plain-http LAN pages, unlike randomUUID).
fn random_bits() -> u64 {
    let mut bytes = [0u8; 8];
    if let Some(crypto) = web_sys::window().and_then(|w| w.crypto().ok()) {
        let _ = crypto.get_random_values_with_u8_array(&mut bytes);
    }
    u64::from_le_bytes(bytes)
}

/// The control for one field: label, typed input, pin, and its error when there is one.
#[component]
pub fn FieldInput(
    /// The field.
    state: FieldState,
    /// ComfyUI's upload limit, for image fields.
    upload_limit: Option<u64>,
) -> impl IntoView {
    let field = state.field.get_value();
    let id = format!("input-{}-{}", field.node_id, field.name);
    let error = Memo::new(move |_| state.server_error.get().or_else(|| state.value().err()));
    let text = state.text;
    let input_mode = |kind: &FieldKind| match kind {
        FieldKind::Float { .. } => "decimal",
        _ => "numeric",
    };
    let control = match &field.kind {
        FieldKind::Text { multiline: true } => view! {
            <textarea id=id.clone() data-testid=id.clone() rows="4" prop:value=move || text.get()
                on:input=move |ev| { text.set(event_target_value(&ev)); state.server_error.set(None); }></textarea>
        }
        .into_any(),
        FieldKind::Text { multiline: false } => view! {
            <input id=id.clone() data-testid=id.clone() type="text" enterkeyhint="done" autocomplete="off"
                prop:value=move || text.get()
                on:input=move |ev| { text.set(event_target_value(&ev)); state.server_error.set(None); } />
        }
        .into_any(),
        kind @ (FieldKind::Int { .. } | FieldKind::Float { .. } | FieldKind::Seed { .. }) => view! {
            <input id=id.clone() data-testid=id.clone() type="text" inputmode=input_mode(kind) enterkeyhint="done"
                autocomplete="off" aria-invalid=move || error.with(Option::is_some).to_string()
                prop:value=move || text.get()
                on:input=move |ev| { text.set(event_target_value(&ev)); state.server_error.set(None); } />
        }
        .into_any(),
        FieldKind::Boolean => view! {
            <label class="switch">
                <input id=id.clone() data-testid=id.clone() type="checkbox" role="switch"
                    prop:checked=move || text.get() == "true"
                    on:change=move |ev| text.set(event_target_checked(&ev).to_string()) />
                <span>{move || if text.get() == "true" { "On" } else { "Off" }}</span>
            </label>
        }
        .into_any(),
        FieldKind::Choice { options } if options.len() >= SEARCHABLE_FROM => {
            // A long list (checkpoints, LoRAs): typed into, with the browser's own suggestions.
            let list = format!("choices-{}-{}", field.node_id, field.name);
            let placeholder = format!("Search {} choices", options.len());
            let options = options.clone();
            view! {
                <input id=id.clone() data-testid=id.clone() type="search" list=list.clone() enterkeyhint="done"
                    autocomplete="off" placeholder=placeholder aria-invalid=move || error.with(Option::is_some).to_string()
                    prop:value=move || text.get()
                    on:input=move |ev| { text.set(event_target_value(&ev)); state.server_error.set(None); } />
                <datalist id=list>
                    {options.into_iter().map(|option| view! { <option value=option></option> }).collect_view()}
                </datalist>
            }
            .into_any()
        }
        FieldKind::Choice { options } => {
            let options = options.clone();
            let current = text.get_untracked();
            // A saved value this ComfyUI does not list stays visible and marked, above the list.
            let absent = (!current.is_empty() && !options.contains(&current)).then(|| {
                let label = format!("{current} (not installed here)");
                view! { <option value=current selected=true>{label}</option> }
            });
            view! {
                <select id=id.clone() data-testid=id.clone() prop:value=move || text.get()
                    on:change=move |ev| { text.set(event_target_value(&ev)); state.server_error.set(None); }>
                    {absent}
                    {options.into_iter().map(|option| {
                        let selected = option == text.get_untracked();
                        let label = option.clone();
                        view! { <option value=option selected=selected>{label}</option> }
                    }).collect_view()}
                </select>
            }
            .into_any()
        }
        FieldKind::Image => view! { <ImageInput id=id.clone() text=text error=state.server_error upload_limit=upload_limit /> }.into_any(),
    };
    let seed = matches!(field.kind, FieldKind::Seed { .. }).then(|| {
        let dice = format!("dice-{}-{}", field.node_id, field.name);
        let every_run = format!("randomize-{}-{}", field.node_id, field.name);
        view! {
            <div class="seed-tools">
                <button type="button" class="button secondary small" data-testid=dice aria-label="New random seed"
                    on:click=move |_| state.reroll()>"Random"</button>
                <label class="check">
                    <input type="checkbox" data-testid=every_run prop:checked=move || state.randomize.get()
                        on:change=move |ev| state.randomize.set(event_target_checked(&ev)) />
                    "New seed every run"
                </label>
            </div>
        }
    });
    let pin_id = format!("pin-{}-{}", field.node_id, field.name);
    let error_id = format!("error-{}-{}", field.node_id, field.name);
    view! {
        <div class="field" data-field=field.key.clone()>
            <div class="field-head">
                <label for=id>{field.name.clone()}</label>
                <button type="button" class="pin" data-testid=pin_id
                    aria-pressed=move || state.pinned.get().to_string()
                    aria-label=move || if state.pinned.get() { "Unpin" } else { "Pin to the top" }
                    on:click=move |_| state.pinned.update(|p| *p = !*p)>
                    {move || if state.pinned.get() { "★" } else { "☆" }}
                </button>
            </div>
            {control}
            {seed}
            {field.tooltip.map(|tip| view! { <p class="hint">{tip}</p> })}
            {move || error.get().map(|message| view! {
                <p class="error" data-testid=error_id.clone() role="alert">{message}</p>
            })}
        </div>
    }
}
