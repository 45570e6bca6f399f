//! `--set NODE.INPUT=VALUE` and `--image [NODE=]PATH`: what the command line changes in a
//! workflow. A node is named by its id or, when unambiguous, its title.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;
use shared::schema::NodeSchema;
use shared::workflow::{NodeChoiceError, NodeName, Workflow};

/// One `--set`.
#[derive(Debug, Clone, PartialEq)]
pub struct Edit {
    /// The node's id or title, as given.
    pub node: String,
    /// The input's name.
    pub input: String,
    /// The value: JSON when the text reads as JSON, else the text.
    pub value: Value,
}

impl Edit {
    /// Reads `NODE.INPUT=VALUE`.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let usage = || format!("--set {spec}: write it as NODE.INPUT=VALUE, e.g. --set 3.seed=42");
        let (target, value) = spec.split_once('=').ok_or_else(usage)?;
        // Titles may hold dots; input names never do.
        let (node, input) = target.rsplit_once('.').ok_or_else(usage)?;
        if node.is_empty() || input.is_empty() {
            return Err(usage());
        }
        let value = serde_json::from_str(value).unwrap_or_else(|_| Value::from(value));
        Ok(Self {
            node: node.to_owned(),
            input: input.to_owned(),
            value,
        })
    }

    /// Applies it to `workflow`.
    pub fn apply(&self, workflow: &mut Workflow) -> Result<(), String> {
        let node_id = node_id(workflow, &self.node)?;
        let known = workflow
            .node(&node_id)
            .is_some_and(|n| n.inputs.contains_key(&self.input));
        if !known {
            return Err(format!(
                "--set: node {node_id} has no input \"{}\" in this workflow",
                self.input
            ));
        }
        workflow
            .set_input(&node_id, &self.input, self.value.clone())
            .map_err(|e| format!("--set: {e}"))
    }
}

/// The id of the node called `name` (an id, or a title only one node has).
pub fn node_id(workflow: &Workflow, name: &str) -> Result<String, String> {
    let every: Vec<&str> = workflow
        .nodes_in_display_order()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    match workflow.choose_node(&every, Some(NodeName::IdOrTitle(name))) {
        Ok(id) => Ok(id.to_owned()),
        Err(NodeChoiceError::Several(several)) => Err(format!(
            "several nodes are titled \"{name}\" ({}); use the id",
            several.join(", ")
        )),
        Err(_) => Err(format!(
            "the workflow has no node with id or title \"{name}\""
        )),
    }
}

/// `--image`: the picture, and where it goes.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageTarget {
    /// The LoadImage node's id.
    pub node_id: String,
    /// Its picture input.
    pub input: String,
    /// The file to upload.
    pub path: PathBuf,
}

/// Reads `[NODE=]PATH` and finds the LoadImage it goes into.
pub fn image_target(
    spec: &str,
    workflow: &Workflow,
    schemas: &BTreeMap<String, NodeSchema>,
) -> Result<ImageTarget, String> {
    let loaders: Vec<(&str, &str)> = workflow
        .nodes_in_display_order()
        .into_iter()
        .filter_map(|(id, node)| {
            let input = schemas.get(&node.class_type)?.image_input()?;
            Some((id, input))
        })
        .collect();
    let named = spec
        .split_once('=')
        .and_then(|(node, path)| node_id(workflow, node).ok().map(|id| (id, path)));
    let (wanted, path) = match named {
        Some((id, path)) => (Some(id), path),
        None => (None, spec),
    };
    let ids: Vec<&str> = loaders.iter().map(|(id, _)| *id).collect();
    let chosen = workflow
        .choose_node(&ids, wanted.as_deref().map(NodeName::Id))
        .map_err(|error| match (error, &wanted) {
            (NodeChoiceError::Several(several), _) => format!(
                "--image: the workflow has several LoadImage nodes ({}); say which with --image NODE=PATH",
                several.join(", ")
            ),
            (_, Some(id)) => {
                format!("--image: node {id} does not take a picture (it is not a LoadImage)")
            }
            (_, None) => "--image: the workflow has no LoadImage node".to_owned(),
        })?;
    let input = loaders
        .iter()
        .find_map(|(id, input)| (*id == chosen).then_some(*input))
        .expect("chosen among the loaders");
    let path = PathBuf::from(path);
    if !path.is_file() {
        return Err(format!("--image: cannot read {}", path.display()));
    }
    Ok(ImageTarget {
        node_id: chosen.to_owned(),
        input: input.to_owned(),
        path,
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_support::sd15 as workflow;
    use super::*;

    #[test]
    fn values_are_json_when_they_read_as_json_else_text() {
        let seed = Edit::parse("3.seed=18446744073709551615").unwrap();
        assert_eq!((seed.node.as_str(), seed.input.as_str()), ("3", "seed"));
        assert_eq!(seed.value, Value::from(u64::MAX));
        assert_eq!(Edit::parse("3.cfg=7.5").unwrap().value, Value::from(7.5));
        assert_eq!(
            Edit::parse("6.text=a fox = clever").unwrap().value,
            Value::from("a fox = clever")
        );
        let titled = Edit::parse("Load v1.5.ckpt_name=x").unwrap();
        assert_eq!(titled.node, "Load v1.5");
        for bad in ["3seed=1", "3.seed", ".seed=1", "3.=1"] {
            assert!(Edit::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn nodes_are_named_by_id_or_by_a_title_only_one_has() {
        let mut workflow = workflow();
        Edit::parse("KSampler.steps=4")
            .unwrap()
            .apply(&mut workflow)
            .unwrap();
        assert_eq!(workflow.node("3").unwrap().inputs["steps"], 4);
        let twice = Edit::parse("CLIP Text Encode (Prompt).text=x")
            .unwrap()
            .apply(&mut workflow)
            .unwrap_err();
        assert!(twice.contains("6, 7"), "{twice}");
        let unknown = Edit::parse("3.stpes=4").unwrap().apply(&mut workflow);
        assert!(unknown.unwrap_err().contains("no input \"stpes\""));
        let link = Edit::parse("3.model=1").unwrap().apply(&mut workflow);
        assert!(link.unwrap_err().contains("connected"));
        assert!(node_id(&workflow, "42").is_err());
    }
}
