//! The editor format (what ComfyUI's "Save" writes: `nodes`, `links`, `widgets_values`) turned
//! into the API format ComfyUI runs, the way ComfyUI's own frontend does it (`graphToPrompt`),
//! with the node classes of `/object_info`.
//!
//! What the frontend does, as recorded in `tests/fixtures/comfyui/ui-api-pairs/` (frontend
//! 1.27.10), and so what this does:
//! - `widgets_values` fill a class's widget inputs (literal inputs not forced to sockets) in
//!   order; the `control_after_generate` value after a seed is skipped; values past the last
//!   widget (LoadImage's upload button, an audio player) belong to the editor.
//! - A widget or socket driven by a link takes `[source id, slot]`. Links are followed through
//!   `Reroute` nodes; a legacy `PrimitiveNode` is not a node of the API: its value is written
//!   into each input it drives.
//! - Muted nodes (mode 2) are left out, and inputs linked to them too. Bypassed nodes (mode 4)
//!   are left out and their consumers linked to the bypassed node's input of the same type,
//!   through chains of them; with none, the input is left out.
//! - Notes and other editor-only nodes are dropped; groups do nothing.
//! - Subgraphs are flattened: an inner node of instance `55` gets the id `55:12` (deeper ones
//!   more segments) and links across the boundary reach the real nodes on either side.
//! - `_meta.title` is the node's own title, else its class's display name.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::{Map, Value, json};

use crate::schema::NodeSchema;

/// Nodes that exist only in the editor.
const EDITOR_ONLY: [&str; 4] = ["Reroute", "PrimitiveNode", "Note", "MarkdownNote"];

/// A subgraph's input node, as its inner links name it.
const SUBGRAPH_INPUT: i64 = -10;

/// A node's mode: muted nodes never run, bypassed ones pass their inputs through.
const MUTED: i64 = 2;
const BYPASSED: i64 = 4;

/// Why an editor-format workflow could not be converted. Each message says what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    /// The workflow uses node classes this ComfyUI does not have.
    #[error(
        "This ComfyUI does not have the nodes this workflow uses: {}. Install them (for \
         example with ComfyUI-Manager) or open another workflow.",
        .classes.join(", ")
    )]
    MissingNodes {
        /// The classes, each once, sorted.
        classes: Vec<String>,
    },
    /// Something in the file is not as ComfyUI's editor writes it.
    #[error("This editor workflow cannot be read: {0}.")]
    Malformed(String),
    /// Every node is muted, bypassed or editor-only.
    #[error("Nothing in this workflow would run: every node is muted, bypassed or a note.")]
    Empty,
}

/// Whether `value` is in the editor format: an object with `nodes` and `links` arrays.
pub fn is_editor_format(value: &Value) -> bool {
    value.get("nodes").is_some_and(Value::is_array)
        && value.get("links").is_some_and(Value::is_array)
}

/// Converts an editor-format workflow to the API format, with the node classes of `schemas`.
pub fn to_api(
    workflow: &Value,
    schemas: &BTreeMap<String, NodeSchema>,
) -> Result<Map<String, Value>, ConvertError> {
    let mut subgraphs = HashMap::new();
    for definition in workflow["definitions"]["subgraphs"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let id = definition["id"]
            .as_str()
            .ok_or_else(|| malformed("a subgraph has no id"))?;
        subgraphs.insert(id.to_owned(), Graph::read(definition)?);
    }
    let top = Graph::read(workflow)?;
    let converter = Converter {
        schemas,
        subgraphs: &subgraphs,
    };
    let mut prompt = Map::new();
    let mut missing = BTreeSet::new();
    converter.emit(&Scope::top(&top), &mut prompt, &mut missing, &[])?;
    if !missing.is_empty() {
        return Err(ConvertError::MissingNodes {
            classes: missing.into_iter().collect(),
        });
    }
    if prompt.is_empty() {
        return Err(ConvertError::Empty);
    }
    Ok(prompt)
}

fn malformed(what: impl Into<String>) -> ConvertError {
    ConvertError::Malformed(what.into())
}

/// Subgraphs inside subgraphs deeper than this are refused; links are followed through at
/// most four times as many reroutes, bypassed nodes and subgraph borders.
const MAX_DEPTH: usize = 16;

/// One node as the editor saved it.
struct UiNode {
    id: i64,
    class: String,
    mode: i64,
    title: Option<String>,
    inputs: Vec<UiInput>,
    widgets_values: Value,
}

struct UiInput {
    name: String,
    kind: String,
    link: Option<i64>,
    widget: Option<String>,
}

/// A link: from a node's output slot to another's input slot.
#[derive(Clone, Copy)]
struct Link {
    origin: i64,
    origin_slot: usize,
}

/// The nodes and links of the workflow or of one subgraph definition; a definition also has
/// its inputs' names and its outputs' links.
struct Graph {
    nodes: Vec<UiNode>,
    links: HashMap<i64, (Link, String)>,
    inputs: Vec<String>,
    outputs: Vec<Vec<i64>>,
}

fn id_of(value: &Value) -> Option<i64> {
    value
        .as_i64()
        .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
}

impl Graph {
    fn read(graph: &Value) -> Result<Self, ConvertError> {
        let mut nodes = Vec::new();
        for node in graph["nodes"].as_array().into_iter().flatten() {
            let id = id_of(&node["id"]).ok_or_else(|| malformed("a node has no id"))?;
            let class = node["type"]
                .as_str()
                .ok_or_else(|| malformed(format!("node {id} has no type")))?
                .to_owned();
            let inputs = node["inputs"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|input| UiInput {
                    name: input["name"].as_str().unwrap_or_default().to_owned(),
                    kind: input["type"].as_str().unwrap_or_default().to_owned(),
                    link: input["link"].as_i64(),
                    widget: input["widget"]["name"].as_str().map(str::to_owned),
                })
                .collect();
            nodes.push(UiNode {
                id,
                class,
                mode: node["mode"].as_i64().unwrap_or(0),
                title: node["title"].as_str().map(str::to_owned),
                inputs,
                widgets_values: node["widgets_values"].clone(),
            });
        }
        let mut links = HashMap::new();
        for link in graph["links"].as_array().into_iter().flatten() {
            // Saved as `[id, origin, origin_slot, target, target_slot, type]`, or, inside
            // subgraph definitions, as an object with those names.
            let (id, origin, slot, kind) = match link {
                Value::Array(parts) => (&parts[0], &parts[1], &parts[2], parts.get(5)),
                _ => (
                    &link["id"],
                    &link["origin_id"],
                    &link["origin_slot"],
                    link.get("type"),
                ),
            };
            let (Some(id), Some(origin), Some(slot)) = (id_of(id), id_of(origin), slot.as_u64())
            else {
                return Err(malformed(format!(
                    "a link is not as the editor writes it: {link}"
                )));
            };
            let kind = kind.and_then(Value::as_str).unwrap_or_default().to_owned();
            let slot =
                usize::try_from(slot).map_err(|_| malformed("a link's slot is too large"))?;
            links.insert(
                id,
                (
                    Link {
                        origin,
                        origin_slot: slot,
                    },
                    kind,
                ),
            );
        }
        let outputs = graph["outputs"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|output| {
                output["linkIds"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_i64)
                    .collect()
            })
            .collect();
        let inputs = graph["inputs"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|input| input["name"].as_str().unwrap_or_default().to_owned())
            .collect();
        Ok(Self {
            nodes,
            links,
            inputs,
            outputs,
        })
    }

    fn node(&self, id: i64) -> Option<&UiNode> {
        self.nodes.iter().find(|node| node.id == id)
    }
}

/// Where a graph sits: the top, or inside a subgraph instance of an outer scope.
struct Scope<'g> {
    graph: &'g Graph,
    /// Prepended to the ids of its nodes (`55:` inside instance 55).
    prefix: String,
    outer: Option<(&'g Scope<'g>, &'g UiNode)>,
}

impl<'g> Scope<'g> {
    fn top(graph: &'g Graph) -> Self {
        Self {
            graph,
            prefix: String::new(),
            outer: None,
        }
    }
}

/// What an input linked in the editor becomes in the API.
enum Source {
    /// `[node id, slot]`.
    Output(String, usize),
    /// A legacy primitive's value.
    Value(Value),
}

struct Converter<'a> {
    schemas: &'a BTreeMap<String, NodeSchema>,
    subgraphs: &'a HashMap<String, Graph>,
}

impl Converter<'_> {
    /// Adds every node of `scope` that runs to `prompt`, flattening subgraph instances;
    /// classes without a schema go to `missing`.
    fn emit(
        &self,
        scope: &Scope<'_>,
        prompt: &mut Map<String, Value>,
        missing: &mut BTreeSet<String>,
        within: &[&str],
    ) -> Result<(), ConvertError> {
        if within.len() > MAX_DEPTH {
            return Err(malformed("its subgraphs are nested too deep"));
        }
        for node in &scope.graph.nodes {
            if node.mode == MUTED
                || node.mode == BYPASSED
                || EDITOR_ONLY.contains(&node.class.as_str())
            {
                continue;
            }
            if let Some(inner) = self.subgraphs.get(&node.class) {
                if within.contains(&node.class.as_str()) {
                    return Err(malformed(format!(
                        "subgraph {} contains itself",
                        node.class
                    )));
                }
                let within = [within, &[node.class.as_str()]].concat();
                let scope = Scope {
                    graph: inner,
                    prefix: format!("{}{}:", scope.prefix, node.id),
                    outer: Some((scope, node)),
                };
                self.emit(&scope, prompt, missing, &within)?;
                continue;
            }
            let Some(schema) = self.schemas.get(&node.class) else {
                missing.insert(node.class.clone());
                continue;
            };
            let inputs = self.inputs(scope, node, schema)?;
            let title = node
                .title
                .clone()
                .unwrap_or_else(|| schema.display_name.clone());
            prompt.insert(
                format!("{}{}", scope.prefix, node.id),
                json!({"inputs": inputs, "class_type": node.class, "_meta": {"title": title}}),
            );
        }
        Ok(())
    }

    /// A node's API inputs: its widgets' values (or what drives them), then its linked sockets.
    fn inputs(
        &self,
        scope: &Scope<'_>,
        node: &UiNode,
        schema: &NodeSchema,
    ) -> Result<Map<String, Value>, ConvertError> {
        let mut inputs = Map::new();
        let mut position = 0;
        let mut widgets = BTreeSet::new();
        for spec in schema.inputs.iter().filter(|spec| spec.is_widget()) {
            widgets.insert(spec.name.as_str());
            let saved = match &node.widgets_values {
                Value::Array(values) => values.get(position).cloned(),
                Value::Object(values) => values.get(&spec.name).cloned(),
                _ => None,
            };
            position += 1 + usize::from(spec.control_after_generate);
            let link = node
                .inputs
                .iter()
                .find(|input| input.widget.as_deref() == Some(spec.name.as_str()))
                .and_then(|input| input.link);
            let value = match link {
                Some(link) => self.resolve(scope, link, 0)?.map(Source::into_value),
                None => saved,
            };
            if let Some(value) = value {
                inputs.insert(spec.name.clone(), value);
            }
        }
        for input in &node.inputs {
            if widgets.contains(input.name.as_str()) {
                continue;
            }
            let Some(link) = input.link else { continue };
            if let Some(source) = self.resolve(scope, link, 0)? {
                inputs.insert(input.name.clone(), source.into_value());
            }
        }
        Ok(inputs)
    }

    /// What the link `link` of `scope` carries, followed to a node that runs; `None` when it
    /// comes from nothing that runs (a muted node, a dangling reroute).
    fn resolve(
        &self,
        scope: &Scope<'_>,
        link: i64,
        depth: usize,
    ) -> Result<Option<Source>, ConvertError> {
        if depth > MAX_DEPTH * 4 {
            return Err(malformed("its links go round in a circle"));
        }
        let Some((link, kind)) = scope.graph.links.get(&link) else {
            return Ok(None);
        };
        if link.origin == SUBGRAPH_INPUT {
            let Some((outer, instance)) = scope.outer else {
                return Ok(None);
            };
            return self.subgraph_input(scope.graph, outer, instance, link.origin_slot, depth);
        }
        let Some(origin) = scope.graph.node(link.origin) else {
            return Ok(None);
        };
        match origin.mode {
            MUTED => return Ok(None),
            BYPASSED => {
                let passed = origin
                    .inputs
                    .get(link.origin_slot)
                    .filter(|input| input.kind == *kind)
                    .or_else(|| origin.inputs.iter().find(|input| input.kind == *kind))
                    .and_then(|input| input.link);
                return match passed {
                    Some(passed) => self.resolve(scope, passed, depth + 1),
                    None => Ok(None),
                };
            }
            _ => {}
        }
        match origin.class.as_str() {
            "Reroute" => match origin.inputs.first().and_then(|input| input.link) {
                Some(before) => self.resolve(scope, before, depth + 1),
                None => Ok(None),
            },
            "PrimitiveNode" => Ok(origin.widgets_values.get(0).cloned().map(Source::Value)),
            class => match self.subgraphs.get(class) {
                Some(inner) => {
                    let Some(&inner_link) =
                        inner.outputs.get(link.origin_slot).and_then(|l| l.first())
                    else {
                        return Ok(None);
                    };
                    let inside = Scope {
                        graph: inner,
                        prefix: format!("{}{}:", scope.prefix, origin.id),
                        outer: Some((scope, origin)),
                    };
                    self.resolve(&inside, inner_link, depth + 1)
                }
                None => Ok(Some(Source::Output(
                    format!("{}{}", scope.prefix, origin.id),
                    link.origin_slot,
                ))),
            },
        }
    }
}

impl Converter<'_> {
    /// What input `slot` of the subgraph `inner` gets from its instance in `outer`: the link
    /// into the instance's input of that name, or else the instance's own widget value. The
    /// instance saves, in order, a value for each subgraph input that is not one of its
    /// sockets.
    fn subgraph_input(
        &self,
        inner: &Graph,
        outer: &Scope<'_>,
        instance: &UiNode,
        slot: usize,
        depth: usize,
    ) -> Result<Option<Source>, ConvertError> {
        let Some(name) = inner.inputs.get(slot) else {
            return Ok(None);
        };
        let input = instance.inputs.iter().find(|input| input.name == *name);
        if let Some(link) = input.and_then(|input| input.link) {
            return self.resolve(outer, link, depth + 1);
        }
        let sockets: BTreeSet<&str> = instance
            .inputs
            .iter()
            .filter(|input| input.widget.is_none())
            .map(|input| input.name.as_str())
            .collect();
        let position = inner
            .inputs
            .iter()
            .filter(|input| !sockets.contains(input.as_str()))
            .position(|input| input == name);
        Ok(position
            .and_then(|position| instance.widgets_values.get(position).cloned())
            .map(Source::Value))
    }
}

impl Source {
    fn into_value(self) -> Value {
        match self {
            Self::Output(node, slot) => json!([node, slot]),
            Self::Value(value) => value,
        }
    }
}

#[cfg(test)]
mod tests;
