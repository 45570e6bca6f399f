//! Prompts queued through the raw `POST /prompt` relay, remembered while they wait in ComfyUI's
//! queue so that they count towards their device's cap on waiting jobs, as jobs do.
//!
//! Their events go to the sending client's own socket, never to the relay's, so the relay
//! learns that they started only from ComfyUI's queue: every look at `/queue` forgets the ones
//! no longer pending. What is kept is therefore never more than ComfyUI's own pending queue.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use shared::comfy::Queue;

use crate::device::DeviceId;

/// The raw prompts still pending in ComfyUI, by prompt id, with the device that sent each.
#[derive(Default)]
pub struct Relayed(Mutex<HashMap<String, DeviceId>>);

impl Relayed {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, DeviceId>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Remembers a prompt ComfyUI accepted from `device`.
    pub fn add(&self, device: DeviceId, prompt_id: String) {
        self.lock().insert(prompt_id, device);
    }

    /// How many of `device`'s raw prompts wait, as far as the last look at the queue knows.
    pub fn waiting(&self, device: &DeviceId) -> usize {
        self.lock().values().filter(|d| *d == device).count()
    }

    /// Whether none is remembered.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Forgets every prompt that is no longer pending in `queue`: running, finished or gone.
    pub fn retain_pending(&self, queue: &Queue) {
        self.lock().retain(|prompt_id, _| {
            queue
                .queue_pending
                .iter()
                .any(|item| item.prompt_id() == prompt_id)
        });
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;
    use shared::comfy::QueueItem;

    use super::*;

    fn queue(pending: &[&str]) -> Queue {
        let item = |(n, id): (usize, &&str)| {
            let number = i64::try_from(n).expect("a small number");
            QueueItem(
                number,
                (*id).to_owned(),
                Value::Null,
                Value::Null,
                Vec::new(),
            )
        };
        Queue {
            queue_running: Vec::new(),
            queue_pending: pending.iter().enumerate().map(item).collect(),
        }
    }

    #[test]
    fn counts_per_device_and_forgets_what_left_the_pending_queue() {
        let relayed = Relayed::default();
        let phone = DeviceId::parse("0123456789abcdef").expect("an id");
        relayed.add(phone.clone(), "a".to_owned());
        relayed.add(phone.clone(), "b".to_owned());
        relayed.add(DeviceId::scripts(), "c".to_owned());
        assert_eq!(relayed.waiting(&phone), 2);
        assert_eq!(relayed.waiting(&DeviceId::scripts()), 1);

        relayed.retain_pending(&queue(&["b", "c"]));
        assert_eq!(relayed.waiting(&phone), 1);
        relayed.retain_pending(&queue(&[]));
        assert!(relayed.is_empty());
    }
}
