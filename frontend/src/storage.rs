//! The device's localStorage: where per-workflow memory lives.

use crate::model::memory::{Memory, storage_key};

fn local_storage() -> Option<web_sys::Storage> {
    web_sys::window().and_then(|w| w.local_storage().ok().flatten())
}

/// A workflow's memory on this device.
pub fn memory(workflow: &str) -> Memory {
    let stored = local_storage().and_then(|s| s.get_item(&storage_key(workflow)).ok().flatten());
    Memory::parse(stored.as_deref())
}

/// Keeps a workflow's memory (silently skipped when storage is full or forbidden).
pub fn remember(workflow: &str, memory: &Memory) {
    if let Some(storage) = local_storage() {
        let _ = storage.set_item(&storage_key(workflow), &memory.to_json());
    }
}

/// Changes a workflow's memory in place.
pub fn update(workflow: &str, change: impl FnOnce(&mut Memory)) {
    let mut current = memory(workflow);
    change(&mut current);
    remember(workflow, &current);
}
