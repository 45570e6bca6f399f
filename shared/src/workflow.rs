//! The API-format workflow (`workflow_api.json`): node id → `{class_type, inputs, _meta}`.
//!
//! An input's value is either a literal (string, number, bool) or a link to another node's
//! output, written `["node_id", output_index]`. Only literals are editable. People often export
//! the editor's UI format (`nodes` + `links`) by mistake; ComfyUI answers that with a bare 500,
//! so [`Workflow::parse`] recognises it and says how to export the right one.

use std::cmp::Ordering;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// An API-format workflow, in the order its file lists the nodes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Workflow {
    nodes: IndexMap<String, Node>,
}

/// One node of an API-format workflow.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Node {
    /// The node's class, a key of `/object_info`.
    pub class_type: String,
    /// Input name → literal value or link.
    #[serde(default)]
    pub inputs: Map<String, Value>,
    /// Editor metadata; `title` is what the user named the node.
    #[serde(rename = "_meta", default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<NodeMeta>,
    /// Any other key a newer ComfyUI writes, kept as is.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A node's `_meta`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct NodeMeta {
    /// The title shown in the editor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Any other metadata, kept as is.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

// Read by hand rather than derived: serde's `flatten` buffers every field through a generic
// `Content` tree, which costs the web app tens of kilobytes for nothing.
impl<'de> Deserialize<'de> for NodeMeta {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut extra = Map::<String, Value>::deserialize(deserializer)?;
        let title = match extra.remove("title") {
            Some(Value::String(title)) => Some(title),
            Some(other) => {
                extra.insert("title".to_owned(), other);
                None
            }
            None => None,
        };
        Ok(Self { title, extra })
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut extra = Map::<String, Value>::deserialize(deserializer)?;
        let class_type = match extra.remove("class_type") {
            Some(Value::String(class)) => class,
            _ => return Err(D::Error::missing_field("class_type")),
        };
        let inputs = match extra.remove("inputs") {
            Some(Value::Object(inputs)) => inputs,
            None => Map::new(),
            Some(_) => return Err(D::Error::custom("\"inputs\" is not an object")),
        };
        let meta = extra
            .remove("_meta")
            .map(|meta| NodeMeta::deserialize(meta).map_err(D::Error::custom))
            .transpose()?;
        Ok(Self {
            class_type,
            inputs,
            meta,
            extra,
        })
    }
}

impl Node {
    /// The user's title for the node, or its class when it has none.
    pub fn title(&self) -> &str {
        self.meta
            .as_ref()
            .and_then(|meta| meta.title.as_deref())
            .filter(|title| !title.is_empty())
            .unwrap_or(&self.class_type)
    }
}

/// Why a text is not a usable API-format workflow. Each message says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkflowError {
    /// Not JSON at all.
    #[error("This is not valid JSON: {message} at line {line}, column {column}.")]
    Malformed {
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// What the parser expected.
        message: String,
    },
    /// The editor's save format instead of the API format.
    #[error(
        "This is a workflow saved from ComfyUI's editor (it has \"nodes\" and \"links\"), not the \
         API format. Save it to the library, which converts it, or use Workflow → Export (API)."
    )]
    UiFormat,
    /// JSON, but not an object of nodes.
    #[error(
        "A workflow must be a JSON object of nodes, like {{\"3\": {{\"class_type\": \"KSampler\", \
         \"inputs\": {{...}}}}}}; this is {found}."
    )]
    NotAnObject {
        /// What the JSON is instead ("an array", "a string", ...).
        found: &'static str,
    },
    /// An empty object.
    #[error("The workflow has no nodes.")]
    Empty,
    /// A key whose value is not an API-format node.
    #[error("Node \"{node_id}\" is not an API-format node: {reason}.")]
    BadNode {
        /// The node's key.
        node_id: String,
        /// What is missing or wrong.
        reason: String,
    },
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Whether an input value is a link to another node's output: `["node_id", index]`.
pub fn is_link(value: &Value) -> bool {
    matches!(
        value.as_array().map(Vec::as_slice),
        Some([Value::String(_), Value::Number(_)])
    )
}

/// Orders node ids as people read them: `2` before `10`, `10:5` after `10`, numbers before
/// names.
pub fn compare_node_ids(a: &str, b: &str) -> Ordering {
    let part = |part: &str| part.parse::<u64>().map_err(|_| ());
    let (mut a_parts, mut b_parts) = (a.split(':'), b.split(':'));
    loop {
        match (a_parts.next(), b_parts.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let order = match (part(x), part(y)) {
                    (Ok(m), Ok(n)) => m.cmp(&n),
                    (Ok(_), Err(())) => Ordering::Less,
                    (Err(()), Ok(_)) => Ordering::Greater,
                    (Err(()), Err(())) => x.cmp(y),
                };
                if order != Ordering::Equal {
                    return order;
                }
            }
        }
    }
}

impl Workflow {
    /// Reads a `workflow_api.json`, explaining what is wrong when it is not one.
    pub fn parse(text: &str) -> Result<Self, WorkflowError> {
        let value: Value = serde_json::from_str(text).map_err(|e| WorkflowError::Malformed {
            line: e.line(),
            column: e.column(),
            message: e
                .to_string()
                .split(" at line ")
                .next()
                .unwrap_or_default()
                .to_owned(),
        })?;
        Self::from_value(value)
    }

    /// Checks already-parsed JSON the same way as [`Workflow::parse`].
    pub fn from_value(value: Value) -> Result<Self, WorkflowError> {
        let Value::Object(map) = value else {
            return Err(WorkflowError::NotAnObject {
                found: json_kind(&value),
            });
        };
        if map.get("nodes").is_some_and(Value::is_array) && map.contains_key("links") {
            return Err(WorkflowError::UiFormat);
        }
        if map.is_empty() {
            return Err(WorkflowError::Empty);
        }
        let mut nodes = IndexMap::with_capacity(map.len());
        for (node_id, node) in map {
            let bad = |reason: String| WorkflowError::BadNode {
                node_id: node_id.clone(),
                reason,
            };
            let Value::Object(fields) = &node else {
                return Err(bad(format!("it is {}", json_kind(&node))));
            };
            match fields.get("class_type") {
                Some(Value::String(_)) => {}
                Some(other) => {
                    return Err(bad(format!("its \"class_type\" is {}", json_kind(other))));
                }
                None => return Err(bad("it has no \"class_type\"".to_owned())),
            }
            if let Some(inputs) = fields.get("inputs").filter(|inputs| !inputs.is_object()) {
                return Err(bad(format!("its \"inputs\" is {}", json_kind(inputs))));
            }
            let node: Node = serde_json::from_value(node).map_err(|e| bad(e.to_string()))?;
            nodes.insert(node_id, node);
        }
        Ok(Self { nodes })
    }

    /// The node with this id.
    pub fn node(&self, node_id: &str) -> Option<&Node> {
        self.nodes.get(node_id)
    }

    /// How many nodes the workflow has.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the workflow has no nodes (only possible for `Workflow::default()`).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Nodes as people read them: by id, numerically.
    pub fn nodes_in_display_order(&self) -> Vec<(&str, &Node)> {
        let mut nodes: Vec<_> = self.nodes.iter().map(|(id, n)| (id.as_str(), n)).collect();
        nodes.sort_by(|a, b| compare_node_ids(a.0, b.0));
        nodes
    }

    /// The node classes it uses, sorted, each once.
    pub fn classes(&self) -> Vec<&str> {
        // Inserted one by one: sorting a list would cost the app a copy of the algorithm.
        let mut classes = std::collections::BTreeSet::new();
        for node in self.nodes.values() {
            classes.insert(node.class_type.as_str());
        }
        classes.into_iter().collect()
    }

    /// Which of `candidates` (the ids of the nodes that could take a value) a person means by
    /// `name`; with no name, the only candidate. The one rule the automation API and
    /// `comfy-relay run` follow; each words its errors for its own users.
    pub fn choose_node<'c>(
        &self,
        candidates: &[&'c str],
        name: Option<NodeName<'_>>,
    ) -> Result<&'c str, NodeChoiceError<'c>> {
        let named: Vec<&str> = match name {
            None => return only(candidates.to_vec(), NodeChoiceError::NoCandidate),
            Some(NodeName::Id(id)) => self.node(id).map(|_| vec![id]).unwrap_or_default(),
            Some(NodeName::Title(title)) => self.nodes_titled(title),
            Some(NodeName::IdOrTitle(name)) if self.node(name).is_some() => vec![name],
            Some(NodeName::IdOrTitle(name)) => self.nodes_titled(name),
        };
        if named.is_empty() {
            return Err(NodeChoiceError::Unknown);
        }
        let fitting = candidates
            .iter()
            .filter(|candidate| named.contains(candidate))
            .copied()
            .collect();
        only(fitting, NodeChoiceError::NotACandidate)
    }

    /// The ids of the nodes titled `title`, in display order.
    pub fn nodes_titled(&self, title: &str) -> Vec<&str> {
        self.nodes_in_display_order()
            .into_iter()
            .filter(|(_, node)| node.title() == title)
            .map(|(id, _)| id)
            .collect()
    }

    /// Every editable text input (a string literal: a prompt, a file name prefix, ...), in
    /// display order.
    pub fn text_inputs(&self) -> Vec<TextInput> {
        let mut inputs = Vec::new();
        for (node_id, node) in self.nodes_in_display_order() {
            for (name, value) in &node.inputs {
                if let Value::String(text) = value {
                    inputs.push(TextInput {
                        node_id: node_id.to_owned(),
                        node_title: node.title().to_owned(),
                        class_type: node.class_type.clone(),
                        name: name.clone(),
                        value: text.clone(),
                    });
                }
            }
        }
        inputs
    }

    /// Sets a literal input. Refuses unknown nodes and inputs that are links, so an edit can
    /// never rewire the graph.
    pub fn set_input(&mut self, node_id: &str, name: &str, value: Value) -> Result<(), InputError> {
        let node = self
            .nodes
            .get_mut(node_id)
            .ok_or_else(|| InputError::NoSuchNode(node_id.to_owned()))?;
        if node.inputs.get(name).is_some_and(is_link) {
            return Err(InputError::IsLink {
                node_id: node_id.to_owned(),
                name: name.to_owned(),
            });
        }
        node.inputs.insert(name.to_owned(), value);
        Ok(())
    }
}

/// Why an input could not be set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// No node has this id.
    #[error("the workflow has no node \"{0}\"")]
    NoSuchNode(String),
    /// The input is wired to another node.
    #[error("input \"{name}\" of node \"{node_id}\" is connected to another node, not a value")]
    IsLink {
        /// The node.
        node_id: String,
        /// The input.
        name: String,
    },
}

/// A string input a person can edit, with what identifies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextInput {
    /// The node's id.
    pub node_id: String,
    /// The node's title (or class).
    pub node_title: String,
    /// The node's class.
    pub class_type: String,
    /// The input's name, e.g. `text`.
    pub name: String,
    /// Its current value.
    pub value: String,
}

/// How a person names a node.
#[derive(Debug, Clone, Copy)]
pub enum NodeName<'a> {
    /// By its id (`"6"`).
    Id(&'a str),
    /// By its title, as ComfyUI shows it.
    Title(&'a str),
    /// By either: an id if the workflow has one, else a title.
    IdOrTitle(&'a str),
}

/// Why [`Workflow::choose_node`] found no single node.
#[derive(Debug, PartialEq, Eq)]
pub enum NodeChoiceError<'c> {
    /// No node has that id or title.
    Unknown,
    /// Nodes have it, but none of them could take the value.
    NotACandidate,
    /// No node at all could take the value.
    NoCandidate,
    /// Several could; these.
    Several(Vec<&'c str>),
}

/// The one of `found`, or `none` when there is none.
fn only<'c>(
    found: Vec<&'c str>,
    none: NodeChoiceError<'c>,
) -> Result<&'c str, NodeChoiceError<'c>> {
    match found.as_slice() {
        [one] => Ok(one),
        [] => Err(none),
        _ => Err(NodeChoiceError::Several(found)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::comfy::fixtures;

    #[test]
    fn a_node_is_chosen_by_id_title_or_as_the_only_candidate_and_each_failure_is_named() {
        let workflow = Workflow::parse(&fixtures::workflow_text("sd15_txt2img")).unwrap();
        let prompts = ["6", "7"];
        let one = ["9"];
        type Case<'a> = (
            &'a [&'a str],
            Option<NodeName<'a>>,
            Result<&'a str, NodeChoiceError<'a>>,
        );
        let cases: [Case; 9] = [
            (&prompts, Some(NodeName::Id("7")), Ok("7")),
            (&prompts, Some(NodeName::IdOrTitle("6")), Ok("6")),
            (&one, Some(NodeName::IdOrTitle("Save Image")), Ok("9")),
            (&one, None, Ok("9")),
            (
                &prompts,
                Some(NodeName::Id("42")),
                Err(NodeChoiceError::Unknown),
            ),
            (
                &prompts,
                Some(NodeName::Title("nope")),
                Err(NodeChoiceError::Unknown),
            ),
            (
                &one,
                Some(NodeName::Id("6")),
                Err(NodeChoiceError::NotACandidate),
            ),
            (&[], None, Err(NodeChoiceError::NoCandidate)),
            (
                &prompts,
                Some(NodeName::Title("CLIP Text Encode (Prompt)")),
                Err(NodeChoiceError::Several(vec!["6", "7"])),
            ),
        ];
        for (candidates, name, expected) in cases {
            assert_eq!(workflow.choose_node(candidates, name), expected, "{name:?}");
        }
    }

    #[test]
    fn the_recorded_api_workflows_parse() {
        for name in ["sd15_txt2img", "invert_slow", "empty_image"] {
            let workflow = Workflow::parse(&fixtures::workflow_text(name))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(workflow.len() >= 3, "{name}");
        }
    }

    #[test]
    fn classes_are_listed_once_and_nodes_found_by_title() {
        let workflow = Workflow::parse(&fixtures::workflow_text("sd15_txt2img")).unwrap();
        let classes = workflow.classes();
        assert_eq!(classes.len(), 6, "{classes:?}");
        assert!(classes.windows(2).all(|w| w[0] < w[1]), "{classes:?}");
        assert_eq!(
            workflow.nodes_titled("CLIP Text Encode (Prompt)"),
            ["6", "7"]
        );
        assert_eq!(workflow.nodes_titled("KSampler"), ["3"]);
        assert!(workflow.nodes_titled("nobody").is_empty());
    }

    #[test]
    fn a_workflow_round_trips_without_losing_unknown_keys() {
        let text = r#"{"1":{"class_type":"X","inputs":{"a":1},"_meta":{"title":"T","color":"red"},"is_changed":["y"]}}"#;
        let workflow = Workflow::parse(text).unwrap();
        let back = serde_json::to_value(&workflow).unwrap();
        assert_eq!(back, serde_json::from_str::<Value>(text).unwrap());
    }

    #[test]
    fn a_ui_format_export_is_recognised_with_a_hint_to_export_api_format() {
        let error = Workflow::parse(&fixtures::workflow_text("ui_format_not_api")).unwrap_err();
        assert_eq!(error, WorkflowError::UiFormat);
        assert!(error.to_string().contains("Export (API)"));
    }

    #[test]
    fn malformed_json_says_where_it_breaks() {
        let error = Workflow::parse("{\n  \"3\": {\"class_type\": \"KSampler\",\n  }").unwrap_err();
        let WorkflowError::Malformed { line, column, .. } = &error else {
            panic!("{error:?}")
        };
        assert_eq!((*line, *column), (3, 3));
        assert!(error.to_string().contains("line 3, column 3"), "{error}");
    }

    #[test]
    fn json_that_is_not_a_node_map_is_refused_with_the_reason() {
        assert_eq!(
            Workflow::parse("[1,2]").unwrap_err(),
            WorkflowError::NotAnObject { found: "an array" }
        );
        assert_eq!(Workflow::parse("{}").unwrap_err(), WorkflowError::Empty);
        let error = Workflow::parse(r#"{"1":{"inputs":{}}}"#).unwrap_err();
        assert!(error.to_string().contains("no \"class_type\""), "{error}");
        let error = Workflow::parse(r#"{"1":{"class_type":"A","inputs":[]}}"#).unwrap_err();
        assert!(
            error.to_string().contains("\"inputs\" is an array"),
            "{error}"
        );
    }

    #[test]
    fn text_inputs_are_the_string_literals_labelled_by_node_title_in_id_order() {
        let workflow = Workflow::parse(&fixtures::workflow_text("sd15_txt2img")).unwrap();
        let inputs: Vec<_> = workflow
            .text_inputs()
            .into_iter()
            .map(|i| (i.node_id, i.node_title, i.name))
            .collect();
        assert_eq!(
            inputs,
            [
                ("3", "KSampler", "sampler_name"),
                ("3", "KSampler", "scheduler"),
                ("4", "Load Checkpoint", "ckpt_name"),
                ("6", "CLIP Text Encode (Prompt)", "text"),
                ("7", "CLIP Text Encode (Prompt)", "text"),
                ("9", "Save Image", "filename_prefix"),
            ]
            .map(|(a, b, c)| (a.to_owned(), b.to_owned(), c.to_owned()))
        );
    }

    #[test]
    fn setting_an_input_changes_only_that_value_and_never_a_link() {
        let mut workflow = Workflow::parse(&fixtures::workflow_text("sd15_txt2img")).unwrap();
        workflow
            .set_input("6", "text", Value::from("a red fox"))
            .unwrap();
        assert_eq!(workflow.node("6").unwrap().inputs["text"], "a red fox");
        assert_eq!(
            workflow.node("7").unwrap().inputs["text"],
            "text, watermark"
        );
        assert!(matches!(
            workflow.set_input("6", "clip", Value::from("x")),
            Err(InputError::IsLink { .. })
        ));
        assert_eq!(
            workflow.set_input("99", "text", Value::from("x")),
            Err(InputError::NoSuchNode("99".into()))
        );
    }

    #[test]
    fn seeds_beyond_a_js_number_survive_exactly() {
        let text = r#"{"3":{"class_type":"KSampler","inputs":{"seed":18446744073709551615}}}"#;
        let workflow = Workflow::parse(text).unwrap();
        assert_eq!(serde_json::to_string(&workflow).unwrap(), text);
    }

    #[test]
    fn node_ids_sort_numerically_with_subgraph_parts() {
        let mut ids = vec!["10", "9", "10:2", "10:10", "a", "1"];
        ids.sort_by(|a, b| compare_node_ids(a, b));
        assert_eq!(ids, ["1", "9", "10", "10:2", "10:10", "a"]);
    }
}
