//! Prompts queued through the raw `POST /prompt` relay: which device sent each (so that raw
//! `/queue`, `/history` and `/view` show a device only its own), and which still wait in
//! ComfyUI's queue (so that they count towards the device's cap on waiting jobs, as jobs do).
//!
//! Their events go to the sending client's own socket, never to the relay's, so the relay
//! learns that they started only from ComfyUI's queue: every look at `/queue` forgets, as
//! waiting, the ones no longer pending.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard};

use shared::comfy::Queue;

use crate::clock::now_ms;
use crate::device::DeviceId;

/// Raw prompts remembered at most (the oldest are forgotten first): who sent a prompt decides
/// who may see its history and files, long after it ran.
const MAX_REMEMBERED: usize = 50_000;

#[derive(Default)]
struct Inner {
    /// Who sent each, and when (milliseconds since the epoch).
    owners: HashMap<String, (DeviceId, u64)>,
    /// Prompt ids, oldest first, for forgetting and for listing a device's history.
    order: VecDeque<String>,
    pending: HashSet<String>,
}

/// The raw prompts the relay passed to ComfyUI: who sent each, and which still wait.
#[derive(Default)]
pub struct Relayed(Mutex<Inner>);

impl Relayed {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Remembers a prompt ComfyUI accepted from `device`.
    pub fn add(&self, device: DeviceId, prompt_id: String) {
        let mut inner = self.lock();
        if inner
            .owners
            .insert(prompt_id.clone(), (device, now_ms()))
            .is_none()
        {
            inner.order.push_back(prompt_id.clone());
        }
        inner.pending.insert(prompt_id);
        while inner.order.len() > MAX_REMEMBERED {
            if let Some(oldest) = inner.order.pop_front() {
                inner.owners.remove(&oldest);
                inner.pending.remove(&oldest);
            }
        }
    }

    /// The device that sent a raw prompt.
    pub fn owner(&self, prompt_id: &str) -> Option<DeviceId> {
        self.lock()
            .owners
            .get(prompt_id)
            .map(|(device, _)| device.clone())
    }

    /// `device`'s raw prompts with when each was queued, oldest first.
    pub fn prompts_of(&self, device: &DeviceId) -> Vec<(String, u64)> {
        let inner = self.lock();
        inner
            .order
            .iter()
            .filter_map(|id| match inner.owners.get(id) {
                Some((owner, queued)) if owner == device => Some((id.clone(), *queued)),
                _ => None,
            })
            .collect()
    }

    /// How many of `device`'s raw prompts wait, as far as the last look at the queue knows.
    pub fn waiting(&self, device: &DeviceId) -> usize {
        let inner = self.lock();
        inner
            .pending
            .iter()
            .filter(|id| {
                inner
                    .owners
                    .get(*id)
                    .is_some_and(|(owner, _)| owner == device)
            })
            .count()
    }

    /// How many raw prompts wait, as far as the last look at the queue knows.
    pub fn waiting_total(&self) -> usize {
        self.lock().pending.len()
    }

    /// Whether none is known to wait.
    pub fn none_waiting(&self) -> bool {
        self.lock().pending.is_empty()
    }

    /// Forgets, as waiting, every prompt that is no longer pending in `queue`.
    pub fn retain_pending(&self, queue: &Queue) {
        let pending: HashSet<&str> = queue
            .queue_pending
            .iter()
            .map(|item| item.prompt_id())
            .collect();
        self.lock()
            .pending
            .retain(|id| pending.contains(id.as_str()));
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
        assert!(relayed.none_waiting());
        assert_eq!(relayed.owner("a"), Some(phone.clone()));
        let ids: Vec<String> = relayed
            .prompts_of(&phone)
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(ids, ["a", "b"]);
    }
}
