//! What `/object_info` says about a node class's inputs, typed, and the checks ComfyUI applies to
//! literal values: min/max for INT and FLOAT, membership for combos.
//!
//! Combos come in two recorded shapes: `[["a", "b"], {...}]` and `["COMBO", {"options": [...]}]`.
//! INT bounds are kept as `i128`, because seeds go up to 18446744073709551615 (`u64::MAX`), beyond
//! both `i64` and a JavaScript number.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::api::InputProblem;
use crate::workflow::{Workflow, is_link};

/// What kind of value an input takes.
#[derive(Debug, Clone, PartialEq)]
pub enum InputKind {
    /// A whole number.
    Int {
        /// Smallest allowed value.
        min: Option<i128>,
        /// Largest allowed value.
        max: Option<i128>,
        /// Increment for steppers.
        step: Option<i128>,
        /// Default value.
        default: Option<i128>,
    },
    /// A decimal number.
    Float {
        /// Smallest allowed value.
        min: Option<f64>,
        /// Largest allowed value.
        max: Option<f64>,
        /// Increment for steppers.
        step: Option<f64>,
        /// Default value.
        default: Option<f64>,
    },
    /// Text.
    String {
        /// Shown as a multi-line area (prompts).
        multiline: bool,
        /// Default value.
        default: Option<String>,
    },
    /// On or off.
    Boolean {
        /// Default value.
        default: Option<bool>,
    },
    /// One value of a list.
    Combo {
        /// The allowed values; may be empty (no models installed) or fetched elsewhere.
        options: Vec<Value>,
        /// An image the user can upload (LoadImage): the list is the input folder.
        image_upload: bool,
        /// The list is fetched from another route; what `/object_info` lists may be partial.
        remote: bool,
    },
    /// A connection type (`MODEL`, `IMAGE`, ...): only links, never literals.
    Link(String),
}

/// One input of a node class.
#[derive(Debug, Clone, PartialEq)]
pub struct InputSpec {
    /// Its name.
    pub name: String,
    /// What it takes.
    pub kind: InputKind,
    /// Whether ComfyUI requires it.
    pub required: bool,
    /// ComfyUI's explanation, if any.
    pub tooltip: Option<String>,
    /// A seed: the UI offers to change it after every run.
    pub control_after_generate: bool,
    /// Always a socket in ComfyUI's editor, even for a literal type (`forceInput`).
    pub force_input: bool,
}

impl InputSpec {
    /// Whether ComfyUI's editor shows it as a widget (a literal value saved in
    /// `widgets_values`) rather than as a socket only.
    pub fn is_widget(&self) -> bool {
        !self.force_input && !matches!(self.kind, InputKind::Link(_))
    }
}

/// A node class as `/object_info` describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSchema {
    /// The class, as in `class_type`.
    pub class: String,
    /// Its human name.
    pub display_name: String,
    /// Its inputs, in ComfyUI's order (required, then optional).
    pub inputs: Vec<InputSpec>,
    /// Whether it is an output node (SaveImage, PreviewImage, ...).
    pub output_node: bool,
}

fn as_i128(value: &Value) -> Option<i128> {
    value
        .as_i64()
        .map(i128::from)
        .or_else(|| value.as_u64().map(i128::from))
        .or_else(|| {
            value
                .as_f64()
                .filter(|f| f.fract() == 0.0)
                .map(|f| f as i128)
        })
}

fn input_kind(spec: &Value) -> InputKind {
    let options = spec.get(1).cloned().unwrap_or(Value::Null);
    let flag = |name: &str| options[name].as_bool().unwrap_or(false);
    match &spec[0] {
        Value::Array(list) => InputKind::Combo {
            options: list.clone(),
            image_upload: flag("image_upload"),
            remote: options.get("remote").is_some(),
        },
        Value::String(kind) => match kind.as_str() {
            "INT" => InputKind::Int {
                min: as_i128(&options["min"]),
                max: as_i128(&options["max"]),
                step: as_i128(&options["step"]),
                default: as_i128(&options["default"]),
            },
            "FLOAT" => InputKind::Float {
                min: options["min"].as_f64(),
                max: options["max"].as_f64(),
                step: options["step"].as_f64(),
                default: options["default"].as_f64(),
            },
            "STRING" => InputKind::String {
                multiline: flag("multiline"),
                default: options["default"].as_str().map(str::to_owned),
            },
            "BOOLEAN" => InputKind::Boolean {
                default: options["default"].as_bool(),
            },
            "COMBO" => InputKind::Combo {
                options: options["options"].as_array().cloned().unwrap_or_default(),
                image_upload: flag("image_upload"),
                remote: options.get("remote").is_some(),
            },
            other => InputKind::Link(other.to_owned()),
        },
        other => InputKind::Link(other.to_string()),
    }
}

impl NodeSchema {
    /// Reads one class's entry of `/object_info`.
    pub fn parse(class: &str, info: &Value) -> Self {
        let mut inputs = Vec::new();
        for (section, required) in [("required", true), ("optional", false)] {
            let Some(specs) = info["input"][section].as_object() else {
                continue;
            };
            // `input_order` is ComfyUI's display order; fall back to the object's own order.
            let order: Vec<String> = info["input_order"][section]
                .as_array()
                .map(|names| {
                    names
                        .iter()
                        .filter_map(|n| n.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_else(|| specs.keys().cloned().collect());
            for name in order {
                let Some(spec) = specs.get(&name) else {
                    continue;
                };
                let options = spec.get(1);
                inputs.push(InputSpec {
                    kind: input_kind(spec),
                    required,
                    tooltip: options
                        .and_then(|o| o["tooltip"].as_str())
                        .map(str::to_owned),
                    control_after_generate: options
                        .and_then(|o| o["control_after_generate"].as_bool())
                        .unwrap_or(false),
                    force_input: options
                        .and_then(|o| o["forceInput"].as_bool())
                        .unwrap_or(false),
                    name,
                });
            }
        }
        Self {
            class: class.to_owned(),
            display_name: info["display_name"].as_str().unwrap_or(class).to_owned(),
            inputs,
            output_node: info["output_node"].as_bool().unwrap_or(false),
        }
    }

    /// Every class of a whole `/object_info` answer.
    pub fn parse_all(object_info: &Map<String, Value>) -> BTreeMap<String, Self> {
        object_info
            .iter()
            .map(|(class, info)| (class.clone(), Self::parse(class, info)))
            .collect()
    }

    /// The input called `name`.
    pub fn input(&self, name: &str) -> Option<&InputSpec> {
        self.inputs.iter().find(|input| input.name == name)
    }

    /// The input that takes an uploaded picture (LoadImage's `image`), if the class has one.
    pub fn image_input(&self) -> Option<&str> {
        self.inputs.iter().find_map(|input| match input.kind {
            InputKind::Combo {
                image_upload: true, ..
            } => Some(input.name.as_str()),
            _ => None,
        })
    }
}

/// A float as JSON writes it ("100.0", "0.01").
fn format_float(value: f64) -> String {
    serde_json::Number::from_f64(value).map_or_else(|| "NaN".to_owned(), |n| json(&n.into()))
}

/// A value as JSON text. Messages use this rather than `Display`, so the web app carries one
/// JSON writer, not two (with `f64` formatting on top).
pub fn json(value: &Value) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

impl InputKind {
    /// Checks a literal value as ComfyUI's validation does, with a sentence when it fails.
    /// Combos whose list cannot be trusted here (uploaded images, remote lists) always pass.
    pub fn check(&self, value: &Value) -> Result<(), String> {
        match self {
            Self::Int { min, max, .. } => {
                let Some(number) = as_i128(value) else {
                    return Err(format!("{} is not a whole number", json(value)));
                };
                match (min, max) {
                    (Some(min), _) if number < *min => {
                        Err(format!("{number} is smaller than the minimum, {min}"))
                    }
                    (_, Some(max)) if number > *max => {
                        Err(format!("{number} is larger than the maximum, {max}"))
                    }
                    _ => Ok(()),
                }
            }
            Self::Float { min, max, .. } => {
                let Some(number) = value.as_f64() else {
                    return Err(format!("{} is not a number", json(value)));
                };
                match (min, max) {
                    (Some(min), _) if number < *min => Err(format!(
                        "{} is smaller than the minimum, {}",
                        format_float(number),
                        format_float(*min)
                    )),
                    (_, Some(max)) if number > *max => Err(format!(
                        "{} is larger than the maximum, {}",
                        format_float(number),
                        format_float(*max)
                    )),
                    _ => Ok(()),
                }
            }
            Self::Boolean { .. } if !value.is_boolean() => {
                Err(format!("{} is not true or false", json(value)))
            }
            Self::String { .. } if !value.is_string() => {
                Err(format!("{} is not text", json(value)))
            }
            Self::Combo {
                options,
                image_upload: false,
                remote: false,
            } if !options.contains(value) => {
                let shown: Vec<String> = options.iter().take(8).map(json).collect();
                let more = if options.len() > 8 { ", …" } else { "" };
                if options.is_empty() {
                    Err(format!(
                        "{value} is not available: ComfyUI lists no choices here (is the model installed?)"
                    ))
                } else {
                    Err(format!(
                        "{} is not one of {}{more}",
                        json(value),
                        shown.join(", ")
                    ))
                }
            }
            _ => Ok(()),
        }
    }
}

/// Every problem ComfyUI would find with a workflow's classes and literal values, checked
/// against `schema` (which returns `None` for a class ComfyUI does not have).
pub fn check_workflow<'a>(
    workflow: &Workflow,
    schema: impl Fn(&str) -> Option<&'a NodeSchema>,
) -> Vec<InputProblem> {
    let mut problems = Vec::new();
    for (node_id, node) in workflow.nodes_in_display_order() {
        let problem = |input: Option<&str>, message: String| InputProblem {
            node_id: node_id.to_owned(),
            node_title: Some(node.title().to_owned()),
            input: input.map(str::to_owned),
            message,
        };
        let Some(class) = schema(&node.class_type) else {
            problems.push(problem(
                None,
                format!(
                    "ComfyUI has no node \"{}\": install the custom node that provides it, or \
                     remove it from the workflow.",
                    node.class_type
                ),
            ));
            continue;
        };
        for (name, value) in &node.inputs {
            if is_link(value) {
                continue;
            }
            if let Some(spec) = class.input(name)
                && let Err(message) = spec.kind.check(value)
            {
                problems.push(problem(Some(name), message));
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::comfy::fixtures;

    fn schemas() -> BTreeMap<String, NodeSchema> {
        let info = fixtures::object_info();
        NodeSchema::parse_all(info.as_object().unwrap())
    }

    #[test]
    fn every_recorded_class_parses_with_its_inputs_in_comfyuis_order() {
        let schemas = schemas();
        assert_eq!(schemas.len(), 497);
        let names: Vec<_> = schemas["KSampler"]
            .inputs
            .iter()
            .map(|i| i.name.as_str())
            .collect();
        assert_eq!(
            names,
            [
                "model",
                "seed",
                "steps",
                "cfg",
                "sampler_name",
                "scheduler",
                "positive",
                "negative",
                "latent_image",
                "denoise"
            ]
        );
        assert!(schemas["SaveImage"].output_node);
    }

    #[test]
    fn seeds_keep_their_u64_maximum_and_are_marked_for_randomising() {
        let schemas = schemas();
        let seed = schemas["KSampler"].input("seed").unwrap();
        assert!(seed.control_after_generate);
        assert_eq!(
            seed.kind,
            InputKind::Int {
                min: Some(0),
                max: Some(18_446_744_073_709_551_615),
                step: None,
                default: Some(0)
            }
        );
        assert!(seed.kind.check(&Value::from(u64::MAX)).is_ok());
        assert!(seed.kind.check(&Value::from(-1)).is_err());
    }

    #[test]
    fn both_recorded_combo_shapes_are_read() {
        let schemas = schemas();
        let InputKind::Combo { options, .. } =
            &schemas["KSampler"].input("sampler_name").unwrap().kind
        else {
            panic!("a combo")
        };
        assert!(options.contains(&Value::from("euler")));
        let InputKind::Combo { options, .. } = &schemas["LatentConcat"].input("dim").unwrap().kind
        else {
            panic!("a COMBO")
        };
        assert_eq!(options.len(), 6);
        let load = &schemas["LoadImage"].input("image").unwrap().kind;
        assert!(matches!(
            load,
            InputKind::Combo {
                image_upload: true,
                ..
            }
        ));
        assert!(
            load.check(&Value::from("just-uploaded.png")).is_ok(),
            "uploads are not in the cached list"
        );
        assert_eq!(schemas["LoadImage"].image_input(), Some("image"));
        assert_eq!(schemas["KSampler"].image_input(), None);
    }

    #[test]
    fn values_outside_a_nodes_range_or_list_are_named() {
        let schemas = schemas();
        let mut workflow = Workflow::parse(&fixtures::workflow_text("sd15_txt2img")).unwrap();
        workflow.set_input("5", "width", Value::from(-5)).unwrap();
        workflow.set_input("3", "cfg", Value::from(101.5)).unwrap();
        workflow
            .set_input("3", "sampler_name", Value::from("warp_drive"))
            .unwrap();
        let problems = check_workflow(&workflow, |class| schemas.get(class));
        let described: Vec<String> = problems
            .iter()
            .map(|p| {
                format!(
                    "{} {}: {}",
                    p.node_id,
                    p.input.as_deref().unwrap_or("-"),
                    p.message
                )
            })
            .collect();
        assert!(
            described.contains(&"5 width: -5 is smaller than the minimum, 16".to_owned()),
            "{described:#?}"
        );
        assert!(
            described.contains(&"3 cfg: 101.5 is larger than the maximum, 100.0".to_owned()),
            "{described:#?}"
        );
        assert!(
            described
                .iter()
                .any(|d| d.starts_with("3 sampler_name: \"warp_drive\" is not one of \"euler\"")),
            "{described:#?}"
        );
        assert!(
            described.iter().any(|d| d.starts_with("4 ckpt_name:")),
            "no checkpoints installed: {described:#?}"
        );
    }

    #[test]
    fn an_unknown_class_is_named_before_anything_is_queued() {
        let schemas = schemas();
        let workflow = Workflow::parse(r#"{"1":{"class_type":"NoSuchNode","inputs":{}}}"#).unwrap();
        let problems = check_workflow(&workflow, |class| schemas.get(class));
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0]
                .message
                .contains("ComfyUI has no node \"NoSuchNode\"")
        );
    }

    #[test]
    fn wrong_types_are_refused() {
        let int = InputKind::Int {
            min: Some(1),
            max: None,
            step: None,
            default: None,
        };
        assert!(int.check(&Value::from("wide")).is_err());
        assert!(int.check(&Value::from(1.5)).is_err());
        assert!(
            InputKind::Boolean { default: None }
                .check(&Value::from(1))
                .is_err()
        );
    }
}
