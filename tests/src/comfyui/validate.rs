//! The double's `POST /prompt` checks, answering in ComfyUI's recorded 400 shapes.

use serde_json::{Map, Value, json};

use super::recorded::RECORDED;

/// Why a prompt is refused: the 400 body to send.
pub type Refusal = Value;

/// The schema the double validates against: the recorded `/object_info`, plus the files the
/// double holds (for LoadImage) and the checkpoints it pretends to have.
pub struct Schema<'a> {
    /// Class → schema, as `/object_info` answers.
    pub object_info: &'a Map<String, Value>,
    /// Images uploaded to the input folder.
    pub input_files: &'a [String],
}

/// Output nodes of `prompt` (classes with `output_node: true`), sorted by id.
pub fn output_nodes(prompt: &Map<String, Value>, object_info: &Map<String, Value>) -> Vec<String> {
    let mut outputs: Vec<String> = prompt
        .iter()
        .filter(|(_, node)| {
            node["class_type"]
                .as_str()
                .and_then(|class| object_info.get(class))
                .is_some_and(|schema| schema["output_node"] == true)
        })
        .map(|(id, _)| id.clone())
        .collect();
    outputs.sort_by_key(|id| order_key(id));
    outputs
}

/// A link as ComfyUI's `is_link` reads one: `[node id string, output index integer]`. Written
/// here, not taken from `shared`, so that the double does not agree with the relay by
/// construction.
fn is_link(value: &Value) -> bool {
    matches!(
        value.as_array().map(Vec::as_slice),
        Some([Value::String(_), Value::Number(index)]) if index.is_u64()
    )
}

/// The order the double visits nodes in: numeric ids by value, then any others by name.
fn order_key(id: &str) -> (bool, u64, String) {
    let number = id.parse::<u64>();
    (number.is_err(), number.unwrap_or(0), id.to_owned())
}

/// Nodes feeding the outputs, in an order ComfyUI could execute them (inputs first).
pub fn execution_order(prompt: &Map<String, Value>, outputs: &[String]) -> Vec<String> {
    fn visit(id: &str, prompt: &Map<String, Value>, order: &mut Vec<String>) {
        if order.iter().any(|done| done == id) {
            return;
        }
        let Some(inputs) = prompt.get(id).and_then(|n| n["inputs"].as_object()) else {
            return;
        };
        for value in inputs.values() {
            if is_link(value) {
                visit(value[0].as_str().unwrap_or_default(), prompt, order);
            }
        }
        order.push(id.to_owned());
    }
    let mut order = Vec::new();
    for output in outputs {
        visit(output, prompt, &mut order);
    }
    order
}

/// A Python-style `repr` of a JSON value, as ComfyUI's messages print values.
fn py_repr(value: &Value) -> String {
    match value {
        Value::String(s) => format!("'{s}'"),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(py_repr).collect::<Vec<_>>().join(", ")
        ),
        other => other.to_string(),
    }
}

fn error(kind: &str, message: String, details: String, extra_info: Value) -> Value {
    json!({ "type": kind, "message": message, "details": details, "extra_info": extra_info })
}

/// The options of a combo input in either recorded shape, or `None` if it is not a combo.
pub fn combo_options(spec: &Value) -> Option<Vec<Value>> {
    match &spec[0] {
        Value::Array(options) => Some(options.clone()),
        Value::String(kind) if kind == "COMBO" => {
            Some(spec[1]["options"].as_array().cloned().unwrap_or_default())
        }
        _ => None,
    }
}

/// Checks one node's literal inputs against its class schema.
fn node_errors(node: &Value, schema: &Value, files: &[String]) -> Vec<Value> {
    let mut errors = Vec::new();
    let inputs = node["inputs"].as_object().cloned().unwrap_or_default();
    let required = schema["input"]["required"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let optional = schema["input"]["optional"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    for name in required.keys() {
        if !inputs.contains_key(name) {
            errors.push(error(
                "required_input_missing",
                "Required input is missing".into(),
                name.clone(),
                json!({ "input_name": name }),
            ));
        }
    }
    for (name, value) in &inputs {
        let Some(spec) = required.get(name).or_else(|| optional.get(name)) else {
            continue;
        };
        if is_link(value) {
            continue;
        }
        let extra = |received: &Value| json!({ "input_name": name, "input_config": spec, "received_value": received });
        if node["class_type"] == "LoadImage" && name == "image" {
            let file = value.as_str().unwrap_or_default();
            if !files.iter().any(|f| f == file) {
                errors.push(error(
                    "custom_validation_failed",
                    "Custom validation failed for node".into(),
                    format!("image - Invalid image file: {file}"),
                    json!({ "input_name": name }),
                ));
            }
            continue;
        }
        if let Some(options) = combo_options(spec) {
            if !options.contains(value) {
                errors.push(error(
                    "value_not_in_list",
                    "Value not in list".into(),
                    format!(
                        "{name}: {} not in {}",
                        py_repr(value),
                        py_repr(&Value::Array(options))
                    ),
                    extra(value),
                ));
            }
            continue;
        }
        let kind = spec[0].as_str().unwrap_or_default();
        if kind != "INT" && kind != "FLOAT" {
            continue;
        }
        let Some(number) = value.as_f64() else {
            errors.push(error(
                "invalid_input_type",
                format!("Failed to convert an input value to a {kind} value"),
                format!(
                    "{name}, {}, invalid literal for {}() with base 10: {}",
                    value.as_str().unwrap_or_default(),
                    kind.to_lowercase(),
                    py_repr(value)
                ),
                extra(value),
            ));
            continue;
        };
        let limits = &spec[1];
        if limits["min"].as_f64().is_some_and(|min| number < min) {
            errors.push(error(
                "value_smaller_than_min",
                format!("Value {value} smaller than min of {}", limits["min"]),
                name.clone(),
                extra(value),
            ));
        } else if limits["max"].as_f64().is_some_and(|max| number > max) {
            errors.push(error(
                "value_bigger_than_max",
                format!("Value {value} bigger than max of {}", limits["max"]),
                name.clone(),
                extra(value),
            ));
        }
    }
    errors
}

/// Validates a prompt as ComfyUI does, returning the 400 body when it refuses it.
pub fn validate(prompt: &Map<String, Value>, schema: &Schema<'_>) -> Result<Vec<String>, Refusal> {
    let mut ids: Vec<&String> = prompt.keys().collect();
    ids.sort_by_key(|id| order_key(id));
    for id in &ids {
        let class = prompt[*id]["class_type"].as_str().unwrap_or_default();
        if !schema.object_info.contains_key(class) {
            let mut refusal = RECORDED.response_json("prompt_unknown_class");
            refusal["error"]["message"] = json!(format!(
                "Cannot execute because node {class} does not exist."
            ));
            refusal["error"]["details"] = json!(format!("Node ID '#{id}'"));
            return Err(refusal);
        }
    }
    let outputs = output_nodes(prompt, schema.object_info);
    if outputs.is_empty() {
        return Err(RECORDED.response_json("prompt_no_output_node"));
    }
    let mut refused = Map::new();
    for output in &outputs {
        for id in execution_order(prompt, std::slice::from_ref(output)) {
            let node = &prompt[&id];
            let class = node["class_type"].as_str().unwrap_or_default();
            let errors = node_errors(node, &schema.object_info[class], schema.input_files);
            if errors.is_empty() {
                continue;
            }
            let entry = refused.entry(id).or_insert_with(
                || json!({ "errors": errors, "dependent_outputs": [], "class_type": class }),
            );
            let dependents = entry["dependent_outputs"].as_array_mut().expect("an array");
            if !dependents.contains(&json!(output)) {
                dependents.push(json!(output));
            }
        }
    }
    if refused.is_empty() {
        return Ok(outputs);
    }
    let mut refusal = RECORDED.response_json("prompt_out_of_range");
    refusal["node_errors"] = Value::Object(refused);
    Err(refusal)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    fn prompt(text: &str) -> Map<String, Value> {
        serde_json::from_str(text).unwrap()
    }

    fn schema_with_model() -> Map<String, Value> {
        super::super::patched_object_info(&["phone.png".into()])
    }

    /// What the double answers to a recorded exchange's prompt, and what ComfyUI answered.
    fn answers(exchange: &str) -> (Value, Value) {
        let exchange: Value = serde_json::from_str(exchange).unwrap();
        let sent = exchange["request"]["json"]["prompt"]
            .as_object()
            .unwrap()
            .clone();
        let object_info = schema_with_model();
        let refusal = validate(
            &sent,
            &Schema {
                object_info: &object_info,
                input_files: &[],
            },
        )
        .unwrap_err();
        (refusal, exchange["response"]["json"].clone())
    }

    #[test]
    fn the_recorded_out_of_range_prompt_gets_the_recorded_answer() {
        let (refusal, recorded) = answers(include_str!(
            "../../fixtures/comfyui/http/prompt_out_of_range.json"
        ));
        assert_eq!(refusal, recorded);
    }

    #[test]
    fn the_recorded_missing_image_and_missing_inputs_match_the_recording() {
        for (name, exchange) in [
            (
                "prompt_load_missing_image",
                include_str!("../../fixtures/comfyui/http/prompt_load_missing_image.json"),
            ),
            (
                "prompt_missing_input",
                include_str!("../../fixtures/comfyui/http/prompt_missing_input.json"),
            ),
            (
                "prompt_unknown_class",
                include_str!("../../fixtures/comfyui/http/prompt_unknown_class.json"),
            ),
        ] {
            let (refusal, recorded) = answers(exchange);
            // ComfyUI lists a node's errors in Python set order; compare them sorted.
            assert_eq!(sorted_errors(refusal), sorted_errors(recorded), "{name}");
        }
    }

    fn sorted_errors(mut refusal: Value) -> Value {
        if let Some(nodes) = refusal["node_errors"].as_object_mut() {
            for node in nodes.values_mut() {
                if let Some(errors) = node["errors"].as_array_mut() {
                    errors.sort_by_key(|e| e.to_string());
                }
            }
        }
        refusal
    }

    #[test]
    fn the_recorded_workflows_validate_when_their_files_and_model_exist() {
        let object_info = schema_with_model();
        let files = ["example.png".to_owned()];
        for text in [
            fixtures::SD15_TXT2IMG,
            fixtures::INVERT_SLOW,
            fixtures::EMPTY_IMAGE,
        ] {
            let outputs = validate(
                &prompt(text),
                &Schema {
                    object_info: &object_info,
                    input_files: &files,
                },
            )
            .unwrap_or_else(|refusal| panic!("{refusal}"));
            assert!(!outputs.is_empty());
        }
    }

    #[test]
    fn execution_order_puts_inputs_first() {
        let sd15 = prompt(fixtures::SD15_TXT2IMG);
        let order = execution_order(&sd15, &["9".into()]);
        assert_eq!(order.len(), 7);
        let at = |id: &str| order.iter().position(|n| n == id).unwrap();
        for (id, node) in &sd15 {
            for value in node["inputs"].as_object().unwrap().values() {
                if is_link(value) {
                    assert!(at(value[0].as_str().unwrap()) < at(id), "{order:?}");
                }
            }
        }
        assert_eq!(order.last().map(String::as_str), Some("9"));
    }
}
