//! What a workflow will do, in a few lines, shown before asking to queue it: its nodes by
//! class, the prompt texts, the seeds, the pictures it loads and the nodes that output.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;
use shared::schema::{InputKind, NodeSchema};
use shared::workflow::{Node, Workflow};

use super::edits::ImageTarget;

/// The longest prompt text shown in full.
const MAX_TEXT: usize = 160;

fn shorten(text: &str) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= MAX_TEXT {
        return flat;
    }
    let cut: String = flat.chars().take(MAX_TEXT).collect();
    format!("{cut}…")
}

fn is_prompt(schema: Option<&NodeSchema>, name: &str) -> bool {
    match schema.and_then(|s| s.input(name)).map(|i| &i.kind) {
        Some(InputKind::String { multiline, .. }) => *multiline,
        Some(_) => false,
        None => name == "text",
    }
}

fn is_seed(schema: Option<&NodeSchema>, name: &str) -> bool {
    schema
        .and_then(|s| s.input(name))
        .map_or(matches!(name, "seed" | "noise_seed"), |i| {
            i.control_after_generate
        })
}

fn label(id: &str, node: &Node) -> String {
    format!("{id} · {}", node.title())
}

/// The summary of `workflow` (read from `file`), given its classes' schemas and the picture
/// `--image` will upload into it.
pub fn summary(
    file: &str,
    workflow: &Workflow,
    schemas: &BTreeMap<String, NodeSchema>,
    image: Option<&ImageTarget>,
) -> String {
    let mut classes: BTreeMap<&str, usize> = BTreeMap::new();
    let (mut prompts, mut seeds, mut pictures, mut outputs) = (vec![], vec![], vec![], vec![]);
    for (id, node) in workflow.nodes_in_display_order() {
        *classes.entry(node.class_type.as_str()).or_default() += 1;
        let schema = schemas.get(&node.class_type);
        for (name, value) in &node.inputs {
            match value {
                Value::String(text) if is_prompt(schema, name) => {
                    prompts.push(format!("{}: {}", label(id, node), shorten(text)));
                }
                Value::Number(seed) if is_seed(schema, name) => {
                    seeds.push(format!("{} · {name}: {seed}", label(id, node)));
                }
                _ => {}
            }
        }
        if let Some(input) = schema.and_then(NodeSchema::image_input) {
            let now = node.inputs.get(input).and_then(Value::as_str).unwrap_or("");
            let picture = match image.filter(|i| i.node_id == id) {
                Some(upload) => format!("{now} → {} (uploaded first)", upload.path.display()),
                None => now.to_owned(),
            };
            pictures.push(format!("{}: {picture}", label(id, node)));
        }
        if schema.is_some_and(|s| s.output_node) {
            outputs.push(format!("{} ({})", label(id, node), node.class_type));
        }
    }
    let nodes: Vec<String> = classes
        .iter()
        .map(|(class, count)| match count {
            1 => (*class).to_owned(),
            n => format!("{class} ×{n}"),
        })
        .collect();
    let mut text = format!("Workflow  {file}: {} nodes\n", workflow.len());
    let _ = writeln!(text, "Nodes     {}", nodes.join(", "));
    for (heading, lines) in [
        ("Prompt", prompts),
        ("Seed", seeds),
        ("Image", pictures),
        ("Output", outputs),
    ] {
        for line in lines {
            let _ = writeln!(text, "{heading:<9} {line}");
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{recorded_schemas, sd15};
    use super::*;

    #[test]
    fn the_summary_lists_classes_prompts_seeds_and_outputs() {
        let text = summary("sd15.json", &sd15(), &recorded_schemas(), None);
        assert!(text.starts_with("Workflow  sd15.json: 7 nodes\n"), "{text}");
        assert!(text.contains("CLIPTextEncode ×2"), "{text}");
        assert!(
            text.contains("Prompt    6 · CLIP Text Encode (Prompt): beautiful scenery"),
            "{text}"
        );
        assert!(
            text.contains("Prompt    7 · CLIP Text Encode (Prompt): text, watermark"),
            "{text}"
        );
        assert!(
            text.contains("Seed      3 · KSampler · seed: 156680208700286"),
            "{text}"
        );
        assert!(
            text.contains("Output    9 · Save Image (SaveImage)"),
            "{text}"
        );
        assert!(!text.contains("filename_prefix"), "not a prompt: {text}");
    }

    #[test]
    fn long_prompts_are_shortened_to_one_line() {
        let long = format!("a\n{}", "b ".repeat(200));
        let short = shorten(&long);
        assert!(!short.contains('\n'));
        assert_eq!(short.chars().count(), MAX_TEXT + 1);
    }
}
