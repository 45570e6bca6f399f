//! The form for a workflow: one typed field per literal input, grouped by node, checked as the
//! user types with the same rules ComfyUI applies.

use std::collections::BTreeMap;

use serde_json::Value;
use shared::schema::{InputKind, NodeSchema};
use shared::workflow::{Workflow, is_link};

/// How a field is edited.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldKind {
    /// Text; prompts are multi-line.
    Text {
        /// A text area rather than a line.
        multiline: bool,
    },
    /// A whole number (sizes, steps).
    Int {
        /// ComfyUI's rules for it.
        kind: InputKind,
    },
    /// A seed: a whole number up to `u64::MAX`, which can be randomised for every run.
    Seed {
        /// Smallest allowed.
        min: u64,
        /// Largest allowed.
        max: u64,
    },
    /// A decimal number.
    Float {
        /// ComfyUI's rules for it.
        kind: InputKind,
        /// The stepper increment, when ComfyUI gives one.
        step: Option<f64>,
    },
    /// On or off.
    Boolean,
    /// One of a list.
    Choice {
        /// The list, as text.
        options: Vec<String>,
    },
    /// An image in ComfyUI's input folder (LoadImage): picked, photographed or uploaded.
    Image,
}

/// One editable input.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    /// `node.input`: how the field is remembered and found.
    pub key: String,
    /// The node.
    pub node_id: String,
    /// The input's name.
    pub name: String,
    /// How it is edited.
    pub kind: FieldKind,
    /// Its value in the workflow as loaded.
    pub original: Value,
    /// ComfyUI's explanation, if any.
    pub tooltip: Option<String>,
}

/// A node's fields, under its title.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// The node.
    pub node_id: String,
    /// Its title.
    pub title: String,
    /// Its class.
    pub class_type: String,
    /// Its fields, in ComfyUI's input order.
    pub fields: Vec<Field>,
}

/// The field key of an input.
pub fn key(node_id: &str, input: &str) -> String {
    format!("{node_id}.{input}")
}

fn kind_of(spec: Option<&shared::schema::InputSpec>, value: &Value) -> FieldKind {
    let Some(spec) = spec else {
        // No schema (a node ComfyUI lacks, or an input it does not list): edit by JSON type.
        return match value {
            Value::Bool(_) => FieldKind::Boolean,
            Value::Number(n) if n.is_f64() => FieldKind::Float {
                kind: InputKind::Float {
                    min: None,
                    max: None,
                    step: None,
                    default: None,
                },
                step: None,
            },
            Value::Number(_) => FieldKind::Int {
                kind: InputKind::Int {
                    min: None,
                    max: None,
                    step: None,
                    default: None,
                },
            },
            _ => FieldKind::Text { multiline: false },
        };
    };
    match &spec.kind {
        InputKind::Int { min, max, .. } if spec.control_after_generate => FieldKind::Seed {
            min: min.and_then(|m| u64::try_from(m).ok()).unwrap_or(0),
            max: max.and_then(|m| u64::try_from(m).ok()).unwrap_or(u64::MAX),
        },
        kind @ InputKind::Int { .. } => FieldKind::Int { kind: kind.clone() },
        kind @ InputKind::Float { step, .. } => FieldKind::Float {
            kind: kind.clone(),
            step: *step,
        },
        InputKind::String { multiline, .. } => FieldKind::Text {
            multiline: *multiline,
        },
        InputKind::Boolean { .. } => FieldKind::Boolean,
        InputKind::Combo {
            image_upload: true, ..
        } => FieldKind::Image,
        InputKind::Combo { options, .. } => FieldKind::Choice {
            options: options.iter().map(text_of).collect(),
        },
        InputKind::Link(_) => FieldKind::Text { multiline: false },
    }
}

/// A value as the text a field shows.
pub fn text_of(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => shared::schema::json(other),
    }
}

/// A number as typed ("7,5", ".5") read by serde_json's parser, which the app carries anyway,
/// rather than Rust's float parser, which would add its own weight to the bundle.
fn number(text: &str) -> Option<serde_json::Number> {
    let text = text.trim().replace(',', ".");
    let text = match text.strip_prefix('.') {
        Some(rest) => format!("0.{rest}"),
        None => text,
    };
    serde_json::from_str::<serde_json::Number>(&text).ok()
}

/// The form of `workflow`: every literal input, by node in display order, typed by `schemas`.
pub fn groups(workflow: &Workflow, schemas: &BTreeMap<String, NodeSchema>) -> Vec<Group> {
    let mut groups = Vec::new();
    for (node_id, node) in workflow.nodes_in_display_order() {
        let schema = schemas.get(&node.class_type);
        // In the schema's order, then what the schema does not name, as the workflow has it
        // (walked rather than sorted: a sort costs the bundle its own copy of the algorithm).
        let known =
            |name: &String| schema.is_some_and(|s| s.inputs.iter().any(|i| i.name == *name));
        let names: Vec<&String> = schema
            .into_iter()
            .flat_map(|s| &s.inputs)
            .filter_map(|input| node.inputs.get_key_value(&input.name).map(|(name, _)| name))
            .chain(node.inputs.keys().filter(|name| !known(name)))
            .collect();
        let fields: Vec<Field> = names
            .into_iter()
            .filter_map(|name| {
                let value = &node.inputs[name];
                if is_link(value) {
                    return None;
                }
                let spec = schema.and_then(|s| s.input(name));
                Some(Field {
                    key: key(node_id, name),
                    node_id: node_id.to_owned(),
                    name: name.clone(),
                    kind: kind_of(spec, value),
                    original: value.clone(),
                    tooltip: spec.and_then(|s| s.tooltip.clone()),
                })
            })
            .collect();
        if !fields.is_empty() {
            groups.push(Group {
                node_id: node_id.to_owned(),
                title: node.title().to_owned(),
                class_type: node.class_type.clone(),
                fields,
            });
        }
    }
    groups
}

/// The classes of `workflow` that `schemas` does not have: nodes ComfyUI lacks.
pub fn missing_classes(workflow: &Workflow, schemas: &BTreeMap<String, NodeSchema>) -> Vec<String> {
    workflow
        .classes()
        .into_iter()
        .filter(|class| !schemas.contains_key(*class))
        .map(str::to_owned)
        .collect()
}

/// The values of `groups` that name a choice this ComfyUI does not list (a model file the
/// workflow was made with, not installed here), each as `"value" (node title › input)`;
/// `text` is what a field holds now.
pub fn not_installed(groups: &[Group], text: impl Fn(&Field) -> String) -> Vec<String> {
    groups
        .iter()
        .flat_map(|group| group.fields.iter().map(move |field| (group, field)))
        .filter_map(|(group, field)| {
            let FieldKind::Choice { options } = &field.kind else {
                return None;
            };
            let value = text(field);
            (!value.is_empty() && !options.contains(&value))
                .then(|| format!("\"{value}\" ({} › {})", group.title, field.name))
        })
        .collect()
}

/// Reads what the user typed into a field as the value to send, or says what is wrong.
pub fn parse(kind: &FieldKind, text: &str) -> Result<Value, String> {
    let trimmed = text.trim();
    match kind {
        FieldKind::Text { .. } | FieldKind::Image => Ok(Value::from(text)),
        FieldKind::Boolean => match trimmed {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err("choose on or off".to_owned()),
        },
        FieldKind::Choice { options } => {
            if options.iter().any(|o| o == text) {
                Ok(Value::from(text))
            } else if text.is_empty() {
                Err("choose one of the list".to_owned())
            } else {
                Err(format!(
                    "\"{text}\" is not installed here: choose one of the list"
                ))
            }
        }
        FieldKind::Seed { min, max } => {
            let seed = number(trimmed)
                .and_then(|n| n.as_u64())
                .ok_or_else(|| "a whole number of 0 or more".to_owned())?;
            if seed < *min || seed > *max {
                return Err(format!("between {min} and {max}"));
            }
            Ok(Value::from(seed))
        }
        FieldKind::Int { kind } => {
            let value = number(trimmed)
                .filter(|n| !n.is_f64())
                .map(Value::Number)
                .ok_or_else(|| "a whole number".to_owned())?;
            kind.check(&value)?;
            Ok(value)
        }
        FieldKind::Float { kind, .. } => {
            let value = number(trimmed)
                .and_then(|n| n.as_f64())
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number)
                .ok_or_else(|| "a number, like 7.5".to_owned())?;
            kind.check(&value)?;
            Ok(value)
        }
    }
}

/// A seed drawn from 64 random bits, inside `min..=max`.
pub fn random_seed(bits: u64, min: u64, max: u64) -> u64 {
    match max.checked_sub(min).and_then(|span| span.checked_add(1)) {
        Some(count) => min + bits % count,
        // The whole u64 range.
        None => bits,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schemas() -> BTreeMap<String, NodeSchema> {
        let gz = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/comfyui/object_info_full.json.gz"
        ))
        .unwrap();
        let mut json = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(gz.as_slice()), &mut json)
            .unwrap();
        let info: serde_json::Map<String, Value> = serde_json::from_str(&json).unwrap();
        NodeSchema::parse_all(&info)
    }

    fn sd15() -> Workflow {
        Workflow::parse(include_str!(
            "../../../tests/fixtures/comfyui/workflows/sd15_txt2img.json"
        ))
        .unwrap()
    }

    #[test]
    fn the_sd15_form_has_every_literal_typed_in_comfyuis_order() {
        let groups = groups(&sd15(), &schemas());
        let ksampler = &groups[0];
        assert_eq!(
            (ksampler.node_id.as_str(), ksampler.title.as_str()),
            ("3", "KSampler")
        );
        let kinds: Vec<(&str, &str)> = ksampler
            .fields
            .iter()
            .map(|f| {
                let kind = match f.kind {
                    FieldKind::Seed { .. } => "seed",
                    FieldKind::Int { .. } => "int",
                    FieldKind::Float { .. } => "float",
                    FieldKind::Choice { .. } => "choice",
                    _ => "other",
                };
                (f.name.as_str(), kind)
            })
            .collect();
        assert_eq!(
            kinds,
            [
                ("seed", "seed"),
                ("steps", "int"),
                ("cfg", "float"),
                ("sampler_name", "choice"),
                ("scheduler", "choice"),
                ("denoise", "float")
            ]
        );
        let prompt = groups.iter().find(|g| g.node_id == "6").unwrap();
        assert_eq!(prompt.fields[0].kind, FieldKind::Text { multiline: true });
        let save = groups.iter().find(|g| g.node_id == "9").unwrap();
        assert_eq!(save.fields[0].kind, FieldKind::Text { multiline: false });
    }

    #[test]
    fn load_image_is_an_image_field() {
        let workflow = Workflow::parse(include_str!(
            "../../../tests/fixtures/comfyui/workflows/invert_slow.json"
        ))
        .unwrap();
        let groups = groups(&workflow, &schemas());
        assert_eq!(groups[0].fields[0].kind, FieldKind::Image);
    }

    #[test]
    fn missing_classes_are_named() {
        let workflow = Workflow::parse(r#"{"1":{"class_type":"FancyUpscaler","inputs":{"scale":2}},"2":{"class_type":"SaveImage","inputs":{}}}"#).unwrap();
        assert_eq!(missing_classes(&workflow, &schemas()), ["FancyUpscaler"]);
        let groups = groups(&workflow, &schemas());
        assert!(
            matches!(groups[0].fields[0].kind, FieldKind::Int { .. }),
            "still editable by type"
        );
    }

    #[test]
    fn typed_text_is_checked_as_comfyui_would() {
        let schemas = schemas();
        let fields: BTreeMap<String, Field> = groups(&sd15(), &schemas)
            .into_iter()
            .flat_map(|g| g.fields)
            .map(|f| (f.key.clone(), f))
            .collect();
        let kind = |key: &str| &fields[key].kind;
        assert_eq!(parse(kind("3.steps"), "30"), Ok(Value::from(30)));
        assert_eq!(
            parse(kind("3.steps"), "0"),
            Err("0 is smaller than the minimum, 1".to_owned())
        );
        assert_eq!(
            parse(kind("3.steps"), "twelve"),
            Err("a whole number".to_owned())
        );
        assert_eq!(parse(kind("3.cfg"), "7,5"), Ok(serde_json::json!(7.5)));
        assert_eq!(parse(kind("3.denoise"), ".5"), Ok(serde_json::json!(0.5)));
        assert_eq!(
            parse(kind("3.steps"), "2.5"),
            Err("a whole number".to_owned())
        );
        assert!(parse(kind("3.cfg"), "101").unwrap_err().contains("maximum"));
        assert_eq!(
            parse(kind("3.seed"), "18446744073709551615"),
            Ok(Value::from(u64::MAX))
        );
        assert!(parse(kind("3.seed"), "-1").is_err());
        assert_eq!(
            parse(kind("3.sampler_name"), "dpmpp_2m"),
            Ok(Value::from("dpmpp_2m"))
        );
        assert!(parse(kind("3.sampler_name"), "warp").is_err());
        assert_eq!(parse(&FieldKind::Boolean, "true"), Ok(Value::Bool(true)));
    }

    #[test]
    fn a_saved_choice_this_comfyui_does_not_list_is_named_not_installed() {
        // The recorded ComfyUI had no checkpoint installed.
        let groups = groups(&sd15(), &schemas());
        let original = |field: &Field| text_of(&field.original);
        assert_eq!(
            not_installed(&groups, original),
            ["\"v1-5-pruned-emaonly.safetensors\" (Load Checkpoint › ckpt_name)"]
        );
        let ckpt = groups
            .iter()
            .flat_map(|g| &g.fields)
            .find(|f| f.name == "ckpt_name");
        assert_eq!(
            parse(&ckpt.unwrap().kind, "v1-5-pruned-emaonly.safetensors"),
            Err(
                "\"v1-5-pruned-emaonly.safetensors\" is not installed here: choose one of the list"
                    .to_owned()
            )
        );
        let sampler = |field: &Field| match field.name.as_str() {
            "sampler_name" => "warp_drive".to_owned(),
            "ckpt_name" => String::new(),
            _ => original(field),
        };
        assert_eq!(
            not_installed(&groups, sampler),
            ["\"warp_drive\" (KSampler › sampler_name)"],
            "what is typed now counts; an empty choice is not a missing file"
        );
    }

    #[test]
    fn random_seeds_stay_in_range_and_can_use_all_64_bits() {
        assert_eq!(random_seed(u64::MAX, 0, u64::MAX), u64::MAX);
        assert_eq!(random_seed(12, 10, 14), 12);
        assert_eq!(random_seed(17, 10, 14), 12);
        assert_eq!(random_seed(5, 7, 7), 7);
    }
}
