//! Fans job changes out to the devices' event sockets without letting a slow reader cost memory
//! or time.
//!
//! Each socket has a mailbox that holds *which* jobs changed, not the changes: the socket's
//! writer takes one item at a time and reads that job's current state from the registry when
//! it gets to it. A reader that falls behind therefore skips intermediate progress but always
//! ends on the latest state, and a terminal state or an output, being the latest state, is
//! never lost. Previews are kept latest-only per job. Publishing never awaits a reader, so one
//! stuck phone delays nobody, and while its writer waits, further changes keep coalescing in
//! the mailbox: it never holds more than one entry and one preview per job of its device.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use indexmap::{IndexMap, IndexSet};
use tokio::sync::Notify;

use crate::device::DeviceId;

/// What a socket has yet to be told.
#[derive(Debug, Default)]
struct Pending {
    /// Jobs whose state changed since they were last sent.
    changed: IndexSet<String>,
    /// Jobs that were forgotten.
    removed: IndexSet<String>,
    /// The latest preview frame per job.
    previews: IndexMap<String, Bytes>,
    /// The relay's connection to ComfyUI, if it changed.
    comfyui: Option<bool>,
}

/// The next thing to tell a socket, in the order it should hear it.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    /// The relay's connection to ComfyUI came or went.
    Comfyui(bool),
    /// A job was forgotten.
    Removed(String),
    /// A job changed: send its current state.
    Changed(String),
    /// A job's latest preview frame.
    Preview(Bytes),
}

impl Pending {
    /// Bytes held by previews (the only part that can be large).
    fn preview_bytes(&self) -> usize {
        self.previews.values().map(Bytes::len).sum()
    }

    fn pop(&mut self) -> Option<Notice> {
        if let Some(connected) = self.comfyui.take() {
            return Some(Notice::Comfyui(connected));
        }
        if let Some(id) = self.removed.shift_remove_index(0) {
            return Some(Notice::Removed(id));
        }
        if let Some(id) = self.changed.shift_remove_index(0) {
            return Some(Notice::Changed(id));
        }
        self.previews
            .shift_remove_index(0)
            .map(|(_, frame)| Notice::Preview(frame))
    }
}

/// One event socket's mailbox.
pub struct Mailbox {
    device: DeviceId,
    pending: Mutex<Pending>,
    /// Wakes the socket's writer. A permit is stored if it is busy, so no change is missed.
    pub ready: Notify,
}

impl Mailbox {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending
            .lock()
            .expect("a mailbox lock is never poisoned")
    }

    /// Takes the next notice, if any.
    pub fn pop(&self) -> Option<Notice> {
        self.lock().pop()
    }

    /// How many notices wait, and the bytes of previews among them.
    pub fn backlog(&self) -> (usize, usize) {
        let pending = self.lock();
        let notices = pending.changed.len()
            + pending.removed.len()
            + pending.previews.len()
            + usize::from(pending.comfyui.is_some());
        (notices, pending.preview_bytes())
    }

    fn post(&self, change: impl FnOnce(&mut Pending)) {
        change(&mut self.lock());
        self.ready.notify_one();
    }
}

/// Every open event socket.
#[derive(Default)]
pub struct Hub {
    mailboxes: Mutex<HashMap<u64, Arc<Mailbox>>>,
    next_id: AtomicU64,
}

/// A registered mailbox; unregisters itself when dropped.
pub struct Subscription {
    hub: Arc<Hub>,
    id: u64,
    /// The mailbox to read.
    pub mailbox: Arc<Mailbox>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.lock().remove(&self.id);
    }
}

impl Hub {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Arc<Mailbox>>> {
        self.mailboxes
            .lock()
            .expect("the hub's lock is never poisoned")
    }

    /// Opens a mailbox for one socket of `device`.
    pub fn subscribe(self: &Arc<Self>, device: DeviceId) -> Subscription {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mailbox = Arc::new(Mailbox {
            device,
            pending: Mutex::new(Pending::default()),
            ready: Notify::new(),
        });
        self.lock().insert(id, mailbox.clone());
        Subscription {
            hub: self.clone(),
            id,
            mailbox,
        }
    }

    fn each(&self, device: Option<&DeviceId>, change: impl Fn(&mut Pending)) {
        for mailbox in self.lock().values() {
            if device.is_none_or(|d| *d == mailbox.device) {
                mailbox.post(&change);
            }
        }
    }

    /// A job of `device` changed.
    pub fn job_changed(&self, device: &DeviceId, id: &str) {
        self.each(Some(device), |pending| {
            pending.changed.insert(id.to_owned());
        });
    }

    /// A job of `device` was forgotten.
    pub fn job_removed(&self, device: &DeviceId, id: &str) {
        self.each(Some(device), |pending| {
            pending.changed.shift_remove(id);
            pending.previews.shift_remove(id);
            pending.removed.insert(id.to_owned());
        });
    }

    /// A new preview for a job of `device`; it replaces any not yet sent.
    pub fn preview(&self, device: &DeviceId, id: &str, frame: Bytes) {
        self.each(Some(device), |pending| {
            pending.previews.insert(id.to_owned(), frame.clone());
        });
    }

    /// The relay's connection to ComfyUI came or went.
    pub fn comfyui(&self, connected: bool) {
        self.each(None, |pending| pending.comfyui = Some(connected));
    }

    /// How many sockets have subscribed since the relay started.
    pub fn subscriptions_opened(&self) -> u64 {
        self.next_id.load(Ordering::Relaxed)
    }

    /// How many sockets are subscribed.
    pub fn subscribers(&self) -> usize {
        self.lock().len()
    }

    /// The largest backlog of any mailbox now, as (notices, preview bytes): what the slowest
    /// reader costs.
    pub fn largest_backlog(&self) -> (usize, usize) {
        self.lock()
            .values()
            .map(|mailbox| mailbox.backlog())
            .max()
            .unwrap_or((0, 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_that_never_reads_holds_one_entry_and_one_preview_per_job() {
        let hub = Arc::new(Hub::default());
        let device = crate::device::DeviceSecret::generate().device();
        let slow = hub.subscribe(device.clone());
        for step in 0..10_000u32 {
            hub.job_changed(&device, "job-1");
            hub.preview(&device, "job-1", Bytes::from(step.to_be_bytes().to_vec()));
        }
        assert_eq!(slow.mailbox.backlog(), (2, 4));
        assert_eq!(slow.mailbox.pop(), Some(Notice::Changed("job-1".into())));
        assert_eq!(
            slow.mailbox.pop(),
            Some(Notice::Preview(Bytes::from(
                9_999u32.to_be_bytes().to_vec()
            )))
        );
        assert_eq!(slow.mailbox.pop(), None);
    }

    #[test]
    fn each_device_hears_only_about_its_own_jobs_but_everyone_about_comfyui() {
        let hub = Arc::new(Hub::default());
        let (phone, laptop) = (
            crate::device::DeviceSecret::generate().device(),
            crate::device::DeviceSecret::generate().device(),
        );
        let phone_socket = hub.subscribe(phone.clone());
        let laptop_socket = hub.subscribe(laptop);
        hub.job_changed(&phone, "p1");
        hub.comfyui(false);
        assert_eq!(phone_socket.mailbox.pop(), Some(Notice::Comfyui(false)));
        assert_eq!(
            phone_socket.mailbox.pop(),
            Some(Notice::Changed("p1".into()))
        );
        assert_eq!(laptop_socket.mailbox.pop(), Some(Notice::Comfyui(false)));
        assert_eq!(laptop_socket.mailbox.pop(), None);
    }

    #[test]
    fn a_removed_job_replaces_its_pending_change() {
        let hub = Arc::new(Hub::default());
        let device = crate::device::DeviceSecret::generate().device();
        let socket = hub.subscribe(device.clone());
        hub.job_changed(&device, "p1");
        hub.preview(&device, "p1", Bytes::from_static(b"x"));
        hub.job_removed(&device, "p1");
        assert_eq!(socket.mailbox.pop(), Some(Notice::Removed("p1".into())));
        assert_eq!(socket.mailbox.pop(), None);
    }

    #[test]
    fn dropping_a_subscription_unregisters_it() {
        let hub = Arc::new(Hub::default());
        let socket = hub.subscribe(crate::device::DeviceSecret::generate().device());
        assert_eq!(hub.subscribers(), 1);
        drop(socket);
        assert_eq!(hub.subscribers(), 0);
    }
}
