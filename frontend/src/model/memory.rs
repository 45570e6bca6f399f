//! What a device remembers per workflow: the last values, the pinned inputs, and which seeds to
//! randomise. Kept in localStorage as JSON, so it survives reloads but stays on the device.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

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
