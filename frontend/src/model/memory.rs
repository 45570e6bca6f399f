//! What a device remembers per workflow: the last values, the pinned inputs, and which seeds to
//! randomise. Kept in localStorage as JSON, so it survives reloads but stays on the device.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use shared::workflow::{Workflow, is_link};

use super::form::key;

/// One workflow's memory.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    /// Field key (`node.input`) → the last value queued.
    #[serde(default)]
    pub values: BTreeMap<String, Value>,
    /// Keys of pinned fields.
    #[serde(default)]
    pub pinned: BTreeSet<String>,
    /// Keys of seeds drawn anew for every run.
    #[serde(default)]
    pub randomize: BTreeSet<String>,
}

/// The localStorage key of a workflow's memory.
pub fn storage_key(workflow: &str) -> String {
    format!("comfy-relay.workflow.{workflow}")
}

impl Memory {
    /// Reads a stored memory; anything unreadable is forgotten rather than fatal.
    pub fn parse(text: Option<&str>) -> Self {
        text.and_then(|t| serde_json::from_str(t).ok())
            .unwrap_or_default()
    }

    /// As stored.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("memory serialises")
    }

    /// Takes the values `ran` was queued with, as Remix does: every literal input as it was
    /// sent, seeds included and none drawn anew until asked.
    pub fn remix(&mut self, ran: &Workflow) {
        self.values.clear();
        self.randomize.clear();
        for (node_id, node) in ran.nodes_in_display_order() {
            for (input, value) in &node.inputs {
                if !is_link(value) {
                    // Inserted one by one: collecting would sort, a copy of the algorithm more.
                    self.values.insert(key(node_id, input), value.clone());
                }
            }
        }
    }

    /// Pins or unpins a field.
    pub fn toggle_pin(&mut self, key: &str) {
        if !self.pinned.remove(key) {
            self.pinned.insert(key.to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remix_takes_every_value_the_job_ran_with_and_draws_no_seed() {
        let mut memory = Memory::default();
        memory.values.insert("9.gone".into(), Value::from(1));
        memory.randomize.insert("3.seed".into());
        memory.toggle_pin("6.text");
        let ran = Workflow::parse(
            r#"{"3": {"class_type": "KSampler", "inputs": {"seed": 18446744073709551615, "model": ["4", 0]}},
                "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a fox", "clip": ["4", 1]}}}"#,
        )
        .unwrap();
        memory.remix(&ran);
        let values: Vec<(&str, &Value)> =
            memory.values.iter().map(|(k, v)| (k.as_str(), v)).collect();
        assert_eq!(
            values,
            [
                ("3.seed", &Value::from(u64::MAX)),
                ("6.text", &Value::from("a fox"))
            ],
            "links are not values; what the job did not have is forgotten"
        );
        assert!(memory.randomize.is_empty(), "the seed stays as it ran");
        assert!(
            memory.pinned.contains("6.text"),
            "pins are the device's, not the job's"
        );
    }

    #[test]
    fn memory_round_trips_and_garbage_is_forgotten() {
        let mut memory = Memory::default();
        memory.values.insert("3.seed".into(), Value::from(u64::MAX));
        memory.toggle_pin("6.text");
        memory.randomize.insert("3.seed".into());
        let again = Memory::parse(Some(&memory.to_json()));
        assert_eq!(again, memory);
        assert_eq!(
            again.values["3.seed"],
            Value::from(u64::MAX),
            "u64 seeds survive exactly"
        );
        assert_eq!(Memory::parse(Some("{broken")), Memory::default());
        assert_eq!(Memory::parse(None), Memory::default());
    }

    #[test]
    fn pinning_twice_unpins() {
        let mut memory = Memory::default();
        memory.toggle_pin("6.text");
        memory.toggle_pin("6.text");
        assert!(memory.pinned.is_empty());
    }
}
