//! What the relay remembers about every job, fed by ComfyUI's events.
//!
//! Per job: its device, state, queue position, per-node and overall progress, the node running
//! now, the latest preview only, outputs and error details. Completion comes from ComfyUI's own
//! end events for that prompt id, never from an empty queue. Memory is bounded: finished jobs
//! beyond a configured count are forgotten, oldest first, and each job keeps one preview.
//!
//! The jobs the relay still holds (not yet handed to ComfyUI) wait in its [`FairQueue`]; their
//! queue positions are the relay's: what ComfyUI has in hand, then their turn.
//!
//! Every change is published to the [`Hub`] while the registry's lock is held, so subscribers
//! see changes in the order they happened.

use crate::clock::now_ms;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use shared::api::{Event, Job, JobError, JobState, NodeRun, NodeStatus};
use shared::comfy::{
    HistoryEntry, ImageRef, PreviewMetadata, PromptRequest, ServerMessage, with_metadata,
};
use shared::progress::{Outcome, RunProgress};
use tokio::sync::{Notify, broadcast};

use super::fair::{FairQueue, moved};
use super::hub::Hub;
use super::store::{Store, StoreError, StoredJob};
use crate::device::DeviceId;

/// Events about prompts the registry does not know yet are kept this long (by count): ComfyUI
/// can start a run before the relay has read its answer to `POST /prompt`.
const EARLY_MESSAGES: usize = 512;

/// A node as listed in a job.
#[derive(Debug, Clone)]
struct NodeInfo {
    id: String,
    title: String,
    class_type: String,
}

/// Everything about one job.
#[derive(Debug, Clone)]
pub struct JobRecord {
    id: String,
    number: i64,
    device: DeviceId,
    created_at: u64,
    finished_at: Option<u64>,
    state: JobState,
    queue_position: Option<u32>,
    run: RunProgress,
    nodes: Vec<NodeInfo>,
    preview: Option<Bytes>,
    error: Option<JobError>,
    prompt: PromptRequest,
    workflow_name: Option<String>,
    /// Given to ComfyUI; until then the relay holds it.
    handed: bool,
    /// The backend it was given to (an index into the relay's ComfyUI servers), when handed.
    backend: usize,
    /// When it was given to ComfyUI (ms since the epoch; 0 when before this process).
    handed_at: u64,
    /// Its order among its device's held jobs.
    rank: u64,
    /// Starred by its device.
    starred: bool,
}

impl JobRecord {
    /// A job the relay holds until ComfyUI has room for it; `workflow_name` names the saved
    /// workflow it runs.
    pub fn new(
        id: String,
        number: i64,
        device: DeviceId,
        prompt: PromptRequest,
        workflow_name: Option<String>,
    ) -> Self {
        let nodes = prompt
            .prompt
            .nodes_in_display_order()
            .into_iter()
            .map(|(id, node)| NodeInfo {
                id: id.to_owned(),
                title: node.title().to_owned(),
                class_type: node.class_type.clone(),
            })
            .collect();
        let created_at = now_ms();
        Self {
            run: RunProgress::new(id.clone(), &prompt.prompt),
            id,
            number,
            device,
            created_at,
            finished_at: None,
            state: JobState::Queued,
            queue_position: None,
            nodes,
            preview: None,
            error: None,
            prompt,
            workflow_name,
            handed: false,
            backend: 0,
            handed_at: 0,
            rank: created_at,
            starred: false,
        }
    }

    /// The id ComfyUI runs it under, which is its id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The same job under `id`, the one an old ComfyUI that ignores a given prompt id runs it
    /// under.
    pub fn renamed(mut self, id: String) -> Self {
        self.run = RunProgress::new(id.clone(), &self.prompt.prompt);
        self.id = id;
        self
    }

    /// Marks it given to backend `backend`.
    pub fn hand(&mut self, backend: usize) {
        self.handed = true;
        self.backend = backend;
        self.handed_at = now_ms();
    }

    /// The backend it was given to, while ComfyUI has it or after.
    pub fn backend(&self) -> Option<usize> {
        self.handed.then_some(self.backend)
    }

    /// A job as the store kept it, before a restart; `backend` is where it was handed.
    pub fn restore(stored: StoredJob, backend: usize) -> Self {
        let mut record = Self::new(
            stored.id,
            stored.number,
            stored.device,
            stored.prompt,
            stored.workflow_name,
        );
        record.run.restore_outputs(stored.outputs);
        record.created_at = stored.created_at;
        record.finished_at = stored.finished_at;
        record.state = stored.state;
        record.error = stored.error;
        record.handed = stored.handed;
        record.backend = backend;
        record.rank = stored.rank;
        record.starred = stored.starred;
        record
    }

    /// What the store keeps of it; `backends` name the relay's ComfyUI servers.
    fn stored(&self, backends: &[String]) -> StoredJob {
        StoredJob {
            id: self.id.clone(),
            number: self.number,
            device: self.device.clone(),
            created_at: self.created_at,
            finished_at: self.finished_at,
            state: self.state,
            workflow_name: self.workflow_name.clone(),
            prompt: self.prompt.clone(),
            outputs: self.run.outputs().to_vec(),
            error: self.error.clone(),
            handed: self.handed,
            backend: self
                .backend()
                .and_then(|index| backends.get(index).cloned()),
            rank: self.rank,
            starred: self.starred,
        }
    }

    /// What, changed, must be written to the store.
    fn durable(&self) -> Durable {
        Durable {
            state: self.state,
            outputs: self.run.outputs().len(),
            failed: self.error.is_some(),
            handed: self.handed,
            backend: self.backend,
            rank: self.rank,
            starred: self.starred,
        }
    }

    /// Stars or unstars it.
    pub fn star(&mut self, starred: bool) {
        self.starred = starred;
    }

    /// Whether the relay holds it: queued, not handed to ComfyUI.
    fn held(&self) -> bool {
        !self.handed && self.state == JobState::Queued
    }

    /// The saved workflow it runs, if it is one.
    pub fn workflow_name(&self) -> Option<&str> {
        self.workflow_name.as_deref()
    }

    /// The device that queued it.
    pub fn device(&self) -> &DeviceId {
        &self.device
    }

    /// Where it is.
    pub fn state(&self) -> JobState {
        self.state
    }

    /// The request it was queued with.
    pub fn prompt(&self) -> &PromptRequest {
        &self.prompt
    }

    /// Sets its queue position (only while queued).
    pub fn set_queue_position(&mut self, position: Option<u32>) {
        if self.state == JobState::Queued {
            self.queue_position = position;
        }
    }

    /// Marks it running (ComfyUI's queue says so, though its start event was missed).
    pub fn mark_running(&mut self) {
        if self.state == JobState::Queued {
            self.state = JobState::Running;
            self.queue_position = None;
        }
    }

    /// Ends it as `state`, with an optional reason.
    pub fn finish(&mut self, state: JobState, error: Option<JobError>) {
        if self.state.is_finished() {
            return;
        }
        self.state = state;
        self.error = error;
        self.queue_position = None;
        self.preview = None;
        self.finished_at = Some(now_ms());
    }

    /// Ends it as lost (the relay cannot tell how it ended), saying why.
    pub fn lose(&mut self, why: &str) {
        self.finish(
            JobState::Lost,
            Some(JobError {
                message: why.to_owned(),
                node_id: None,
                node_type: None,
                traceback: Vec::new(),
            }),
        );
    }

    /// Makes it wait to run from the start again (its server stopped answering before it
    /// ended): queued, with no progress.
    pub fn start_over(&mut self) {
        if self.state.is_finished() {
            return;
        }
        self.state = JobState::Queued;
        self.run = RunProgress::new(self.id.clone(), &self.prompt.prompt);
        self.preview = None;
    }

    /// Ends it as cancelled while it waited, before any of it ran.
    pub fn cancel_unstarted(&mut self) {
        self.finish(JobState::Cancelled, None);
    }

    /// Ends it from ComfyUI's history entry (after a reconnect missed its end events), by
    /// applying the outputs and events the history recorded.
    pub fn finish_from_history(&mut self, entry: &HistoryEntry) {
        for message in entry.replay(&self.id) {
            self.apply(&message);
        }
        if !self.state.is_finished() {
            // A history entry without an end event: trust its status.
            if entry.succeeded() {
                self.finish(JobState::Succeeded, None);
            } else {
                self.finish(
                    JobState::Failed,
                    Some(JobError {
                        message: "ComfyUI's history says this job failed.".to_owned(),
                        node_id: None,
                        node_type: None,
                        traceback: Vec::new(),
                    }),
                );
            }
        }
    }

    /// Applies one of ComfyUI's messages about this job.
    pub fn apply(&mut self, message: &ServerMessage) {
        if self.state.is_finished() {
            return;
        }
        self.run.apply(message);
        if self.run.started() {
            self.mark_running();
        }
        match self.run.outcome() {
            Some(Outcome::Succeeded) => self.finish(JobState::Succeeded, None),
            Some(Outcome::Interrupted) => self.finish(JobState::Interrupted, None),
            // Only `execution_error` fails a run, and it carries the details.
            Some(Outcome::Failed { .. }) => {
                let error = match message {
                    ServerMessage::ExecutionError(error) => Some(failure(error)),
                    _ => None,
                };
                self.finish(JobState::Failed, error);
            }
            None => {}
        }
    }

    /// The job as reported to devices.
    pub fn snapshot(&self) -> Job {
        let succeeded = self.state == JobState::Succeeded;
        let failed_node = self.error.as_ref().and_then(|e| e.node_id.as_deref());
        let nodes = self
            .nodes
            .iter()
            .map(|node| {
                let fraction = if succeeded {
                    1.0
                } else {
                    self.run.node_fraction(&node.id)
                };
                let state = if self.run.cached_nodes().contains(&node.id) {
                    NodeRun::Cached
                } else if failed_node == Some(node.id.as_str()) {
                    NodeRun::Failed
                } else if self.run.current_node() == Some(node.id.as_str()) {
                    NodeRun::Running
                } else if fraction >= 1.0 {
                    NodeRun::Finished
                } else {
                    NodeRun::Pending
                };
                NodeStatus {
                    id: node.id.clone(),
                    title: node.title.clone(),
                    class_type: node.class_type.clone(),
                    state,
                    fraction,
                }
            })
            .collect();
        Job {
            id: self.id.clone(),
            number: self.number,
            workflow_name: self.workflow_name.clone(),
            state: self.state,
            queue_position: self.queue_position,
            held: self.held(),
            // A job reloaded after a restart has its outputs but not its run's events.
            progress: if succeeded { 1.0 } else { self.run.fraction() },
            current_node: self.run.current_node().map(str::to_owned),
            nodes,
            has_preview: self.preview.is_some(),
            outputs: self.run.outputs().to_vec(),
            error: self.error.clone(),
            created_at: self.created_at,
            finished_at: self.finished_at,
            starred: self.starred,
        }
    }
}

fn failure(error: &shared::comfy::ExecutionError) -> JobError {
    JobError {
        message: format!(
            "{} in {}: {}",
            error.exception_type,
            error.node_type,
            error.exception_message.trim_end()
        ),
        node_id: Some(error.node_id.clone()),
        node_type: Some(error.node_type.clone()),
        traceback: error.traceback.clone(),
    }
}

/// The parts of a job that the store must have when they change: where it is, what it made,
/// whether ComfyUI has it, its turn and its star.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Durable {
    state: JobState,
    outputs: usize,
    failed: bool,
    handed: bool,
    backend: usize,
    rank: u64,
    starred: bool,
}

/// A job, what devices were last told about it and what the store has.
struct Entry {
    record: JobRecord,
    /// `Event::Job` for the current state, serialised once for every subscriber; `None` after
    /// a change of queue position alone, until a subscriber asks for it.
    event: Option<Bytes>,
    saved: Durable,
}

impl Entry {
    fn new(record: JobRecord) -> Self {
        let event = Some(event_json(record.snapshot()));
        let saved = record.durable();
        Self {
            record,
            event,
            saved,
        }
    }
}

fn event_json(job: Job) -> Bytes {
    Bytes::from(serde_json::to_vec(&Event::Job { job: Box::new(job) }).expect("events serialise"))
}

#[derive(Default)]
struct Inner {
    jobs: HashMap<String, Entry>,
    /// Ids in the order they were queued.
    order: VecDeque<String>,
    /// Finished ids, oldest first, for eviction.
    finished: VecDeque<String>,
    /// The prompt each backend runs now, for previews that do not name theirs.
    running: HashMap<usize, String>,
    /// What backends said about prompts not known yet, with the backend that said it.
    early: VecDeque<(usize, ServerMessage)>,
    /// The jobs the relay holds.
    waiting: FairQueue,
    /// Prompts in each backend's queue that are not the relay's jobs, as last looked at.
    foreign: HashMap<usize, usize>,
}

/// All jobs, behind one lock.
pub struct Registry {
    inner: Mutex<Inner>,
    hub: Arc<Hub>,
    max_finished: usize,
    store: Store,
    /// The backends' URLs, as the store names them, by index.
    backends: Vec<String>,
    /// The next job's number.
    next_number: AtomicI64,
    /// Woken when a job ComfyUI had ends: there is room for a held one.
    freed: Notify,
    /// Every job that ends, with its device, for whoever listens (notifications).
    ended: broadcast::Sender<(DeviceId, Job)>,
}

/// How many ended jobs wait for a slow listener before it misses some.
const ENDED_BACKLOG: usize = 256;

impl Registry {
    /// A registry publishing to `hub`, keeping at most `max_finished` finished jobs in memory
    /// and every job in `store`; it starts with the jobs the store has (every unfinished one
    /// and the newest `max_finished` finished ones). `backends` are the URLs of the relay's
    /// ComfyUI servers: an unfinished job handed to one no longer among them is lost.
    pub fn new(
        hub: Arc<Hub>,
        max_finished: usize,
        store: Store,
        backends: Vec<String>,
    ) -> Result<Self, StoreError> {
        let mut inner = Inner::default();
        // Unfinished jobs handed to a server no longer configured.
        let mut orphans = Vec::new();
        for stored in store.load(max_finished)? {
            let backend = backend_index(&backends, stored.backend.as_deref());
            let record = JobRecord::restore(stored, backend.unwrap_or(0));
            if backend.is_none() && record.handed && !record.state.is_finished() {
                orphans.push(record.id.clone());
            }
            let id = record.id.clone();
            inner.order.push_back(id.clone());
            if record.state.is_finished() {
                inner.finished.push_back(id.clone());
            }
            if record.held() {
                inner.waiting.push(&record.device, record.rank, &id);
            }
            inner.jobs.insert(id, Entry::new(record));
        }
        let registry = Self {
            inner: Mutex::new(inner),
            hub,
            max_finished,
            next_number: AtomicI64::new(store.next_number()?),
            store,
            backends,
            freed: Notify::new(),
            ended: broadcast::channel(ENDED_BACKLOG).0,
        };
        registry.reposition_locked(&mut registry.lock());
        for id in orphans {
            registry.update(&id, |record| {
                record.lose(
                    "The ComfyUI server that had this job is no longer one of the relay's. \
                     Queue it again.",
                );
            });
        }
        Ok(registry)
    }

    /// A job as the store keeps it, on the backend the store names (the first when it names
    /// none, or one this relay no longer uses).
    pub fn restore(&self, stored: StoredJob) -> JobRecord {
        let backend = self.backend_of(stored.backend.as_deref());
        JobRecord::restore(stored, backend.unwrap_or(0))
    }

    /// The index of the backend the store names `key`; `None` for one this relay no longer
    /// uses.
    pub fn backend_of(&self, key: Option<&str>) -> Option<usize> {
        backend_index(&self.backends, key)
    }

    /// A number for a new job, one more than the last.
    pub fn next_number(&self) -> i64 {
        self.next_number.fetch_add(1, Ordering::Relaxed)
    }

    /// Woken when a job ComfyUI had ends.
    pub fn freed(&self) -> &Notify {
        &self.freed
    }

    /// Hears of every job that ends from now on, with its device.
    pub fn ended(&self) -> broadcast::Receiver<(DeviceId, Job)> {
        self.ended.subscribe()
    }

    /// The job database.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Writes `record` to the store. A failed write is logged: the job goes on in memory.
    fn save(&self, record: &JobRecord) {
        if let Err(error) = self.store.save(&record.stored(&self.backends)) {
            tracing::error!(job = %record.id, %error, "a job's change was not recorded");
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .expect("the registry's lock is never poisoned")
    }

    /// Changes a job with `change`; publishes and evicts as needed. Returns its new state.
    pub fn update(&self, id: &str, change: impl FnOnce(&mut JobRecord)) -> Option<Job> {
        let mut inner = self.lock();
        self.update_locked(&mut inner, id, change)
    }

    fn update_locked(
        &self,
        inner: &mut Inner,
        id: &str,
        change: impl FnOnce(&mut JobRecord),
    ) -> Option<Job> {
        let entry = inner.jobs.get_mut(id)?;
        let was_finished = entry.record.state.is_finished();
        change(&mut entry.record);
        let rank = entry.record.rank;
        let durable = entry.record.durable();
        if durable != entry.saved {
            entry.saved = durable;
            self.save(&entry.record);
        }
        let snapshot = entry.record.snapshot();
        let event = event_json(snapshot.clone());
        let device = entry.record.device.clone();
        if entry.event.as_ref() != Some(&event) {
            entry.event = Some(event);
            self.hub.job_changed(&device, id);
        }
        let backend = entry.record.backend;
        if snapshot.state == JobState::Running {
            inner.running.insert(backend, id.to_owned());
        }
        if !was_finished && snapshot.state.is_finished() {
            // Nobody listening is no error.
            let _ = self.ended.send((device.clone(), snapshot.clone()));
            if inner.running.get(&backend).map(String::as_str) == Some(id) {
                inner.running.remove(&backend);
            }
            inner.finished.push_back(id.to_owned());
            self.evict(inner);
            if !inner.waiting.remove(&device, rank, id) {
                // ComfyUI had it: there is room for a held job.
                self.freed.notify_one();
            }
            self.reposition_locked(inner);
        }
        Some(snapshot)
    }

    /// Sets every held job's queue position: what ComfyUI has in hand, then its turn.
    fn reposition_locked(&self, inner: &mut Inner) {
        if inner.waiting.is_empty() {
            return;
        }
        let ahead = inner.foreign.values().sum::<usize>() + in_comfyui(inner).count();
        let Inner { waiting, jobs, .. } = inner;
        for (turn, id) in waiting.order().into_iter().enumerate() {
            let position = u32::try_from(ahead + turn).unwrap_or(u32::MAX);
            // A new place changes nothing lasting: the record's place is set and its subscribers
            // told, and its event is made again only when one of them reads it.
            let Some(entry) = jobs.get_mut(id) else {
                continue;
            };
            if entry.record.state != JobState::Queued
                || entry.record.queue_position == Some(position)
            {
                continue;
            }
            entry.record.queue_position = Some(position);
            entry.event = None;
            self.hub.job_changed(&entry.record.device, id);
        }
    }

    /// Records how many prompts in `backend`'s queue are not the relay's jobs.
    pub fn set_foreign(&self, backend: usize, foreign: usize) {
        let mut inner = self.lock();
        if inner.foreign.insert(backend, foreign) != Some(foreign) {
            self.reposition_locked(&mut inner);
        }
    }

    /// How many prompts in `backend`'s queue are not the relay's jobs, as last looked at.
    pub fn foreign_on(&self, backend: usize) -> usize {
        self.lock().foreign.get(&backend).copied().unwrap_or(0)
    }

    /// How many of the relay's jobs `backend` runs, and how many wait in its queue.
    pub fn load_of(&self, backend: usize) -> (usize, usize) {
        let inner = self.lock();
        let on = in_comfyui(&inner).filter(|record| record.backend == backend);
        let (running, waiting): (Vec<_>, Vec<_>) =
            on.partition(|record| record.state == JobState::Running);
        (running.len(), waiting.len())
    }

    /// How many of the relay's jobs `backend` has and has not ended.
    pub fn in_flight_on(&self, backend: usize) -> usize {
        in_comfyui(&self.lock())
            .filter(|record| record.backend == backend)
            .count()
    }

    /// Whether the relay holds any job.
    pub fn holds_any(&self) -> bool {
        !self.lock().waiting.is_empty()
    }

    /// The held jobs, in the order of their turns.
    pub fn held_in_turn(&self) -> Vec<JobRecord> {
        let inner = self.lock();
        inner
            .waiting
            .order()
            .into_iter()
            .filter_map(|id| inner.jobs.get(id).map(|entry| entry.record.clone()))
            .collect()
    }

    /// Takes held job `id` and marks it handed to `backend` (recorded before it is sent, so a
    /// relay stopped meanwhile never sends it twice: ComfyUI either has it or it is lost).
    /// `None` when it is no longer held (cancelled meanwhile).
    pub fn take(&self, id: &str, backend: usize) -> Option<JobRecord> {
        let mut inner = self.lock();
        let (device, rank) = inner
            .jobs
            .get(id)
            .filter(|entry| entry.record.held())
            .map(|entry| (entry.record.device.clone(), entry.record.rank))?;
        inner.waiting.take(&device, rank, id);
        self.update_locked(&mut inner, id, |record| record.hand(backend));
        self.reposition_locked(&mut inner);
        inner.jobs.get(id).map(|entry| entry.record.clone())
    }

    /// Holds again a taken job ComfyUI could not be given, or one a backend that stopped
    /// answering had not started, at its old turn.
    pub fn give_back(&self, id: &str) {
        let mut inner = self.lock();
        let Some(record) = inner.jobs.get(id).map(|entry| &entry.record) else {
            return;
        };
        if record.state != JobState::Queued {
            return;
        }
        let (device, rank) = (record.device.clone(), record.rank);
        inner.waiting.push(&device, rank, id);
        self.update_locked(&mut inner, id, |record| record.handed = false);
        self.reposition_locked(&mut inner);
    }

    /// Ends a held job as cancelled; false when it is not held (ComfyUI has it).
    pub fn cancel_held(&self, id: &str) -> bool {
        let mut inner = self.lock();
        if !inner.jobs.get(id).is_some_and(|entry| entry.record.held()) {
            return false;
        }
        self.update_locked(&mut inner, id, JobRecord::cancel_unstarted);
        true
    }

    /// Moves held job `id` to `position` among its device's held jobs; `None` when it is not
    /// held.
    pub fn move_held(&self, id: &str, position: usize) -> Option<Job> {
        let mut inner = self.lock();
        let device = inner
            .jobs
            .get(id)
            .filter(|entry| entry.record.held())?
            .record
            .device
            .clone();
        let held = inner.waiting.of(&device);
        let ranked = moved(&held, id, position)?;
        for (rank, job) in &held {
            inner.waiting.remove(&device, *rank, job);
        }
        for (rank, job) in ranked {
            inner.waiting.push(&device, rank, &job);
            self.update_locked(&mut inner, &job, |record| record.rank = rank);
        }
        self.reposition_locked(&mut inner);
        inner.jobs.get(id).map(|entry| entry.record.snapshot())
    }

    /// Gives job `from` the id `to` that ComfyUI runs it under (an old ComfyUI that ignores a
    /// given prompt id), applying what ComfyUI already said under that id.
    pub fn rename(&self, from: &str, to: &str) {
        let mut inner = self.lock();
        let Some(mut entry) = inner.jobs.remove(from) else {
            return;
        };
        if let Err(error) = self.store.rename(from, to) {
            tracing::error!(job = from, %error, "a job's new id was not recorded");
        }
        entry.record = entry.record.renamed(to.to_owned());
        let device = entry.record.device.clone();
        let inner_ref = &mut *inner;
        for id in inner_ref
            .order
            .iter_mut()
            .chain(inner_ref.finished.iter_mut())
        {
            if id == from {
                to.clone_into(id);
            }
        }
        inner.jobs.insert(to.to_owned(), entry);
        self.hub.job_removed(&device, from);
        self.apply_early_locked(&mut inner, to);
    }

    /// Applies the messages ComfyUI sent about job `id` before the registry knew it.
    fn apply_early_locked(&self, inner: &mut Inner, id: &str) -> Option<Job> {
        let backend = inner.jobs.get(id)?.record.backend();
        let (early, others): (VecDeque<_>, VecDeque<_>) = std::mem::take(&mut inner.early)
            .into_iter()
            .partition(|(_, m)| m.prompt_id() == Some(id));
        inner.early = others;
        self.update_locked(inner, id, |record| {
            for (from, message) in &early {
                if Some(*from) == backend {
                    record.apply(message);
                }
            }
        })
    }

    fn evict(&self, inner: &mut Inner) {
        while inner.finished.len() > self.max_finished {
            let Some(oldest) = inner.finished.pop_front() else {
                break;
            };
            self.drop_locked(inner, &oldest);
        }
    }

    /// Forgets finished job `id` (deleted, or past the retention): its devices are told it is
    /// gone. False when it is not in memory or has not ended.
    pub fn forget(&self, id: &str) -> bool {
        let mut inner = self.lock();
        if !inner
            .jobs
            .get(id)
            .is_some_and(|entry| entry.record.state.is_finished())
        {
            return false;
        }
        inner.finished.retain(|kept| kept != id);
        self.drop_locked(&mut inner, id);
        true
    }

    /// Takes job `id` out of memory (not out of the finished list) and tells its device.
    fn drop_locked(&self, inner: &mut Inner, id: &str) {
        if let Some(entry) = inner.jobs.remove(id) {
            inner.order.retain(|kept| kept != id);
            self.hub.job_removed(&entry.record.device, id);
        }
    }

    /// Adds a job, held or accepted by ComfyUI, applying whatever ComfyUI already said about
    /// it.
    pub fn insert(&self, record: JobRecord) -> Job {
        let mut inner = self.lock();
        let id = record.id.clone();
        let device = record.device.clone();
        self.save(&record);
        inner.order.push_back(id.clone());
        if record.held() {
            inner.waiting.push(&device, record.rank, &id);
        } else if record.handed {
            inner.waiting.serve(&device);
        }
        inner.jobs.insert(id.clone(), Entry::new(record));
        self.hub.job_changed(&device, &id);
        self.reposition_locked(&mut inner);
        self.apply_early_locked(&mut inner, &id)
            .expect("just inserted")
    }

    /// Routes one of `backend`'s messages to its job, if that job is on that backend: a
    /// backend that was given up on keeps no say over the jobs handed elsewhere since.
    pub fn apply(&self, backend: usize, message: &ServerMessage) {
        let Some(prompt_id) = message.prompt_id() else {
            return;
        };
        let mut inner = self.lock();
        if let Some(entry) = inner.jobs.get(prompt_id) {
            if entry.record.backend() == Some(backend) {
                self.update_locked(&mut inner, prompt_id, |record| record.apply(message));
            }
        } else {
            inner.early.push_back((backend, message.clone()));
            if inner.early.len() > EARLY_MESSAGES {
                inner.early.pop_front();
            }
        }
    }

    /// Keeps the latest preview of a job on `backend` (a type-4 frame naming it) and passes
    /// it on as is.
    pub fn preview(&self, backend: usize, prompt_id: &str, frame: Bytes) {
        let mut inner = self.lock();
        if inner
            .jobs
            .get(prompt_id)
            .is_some_and(|entry| entry.record.backend() == Some(backend))
        {
            self.preview_locked(&mut inner, prompt_id, frame);
        }
    }

    /// A legacy preview, which does not say whose it is: it belongs to the job running now, and
    /// is passed on as a type-4 frame naming that job and node.
    pub fn legacy_preview(&self, backend: usize, image: &[u8]) {
        let mut inner = self.lock();
        let Some(id) = inner.running.get(&backend).cloned() else {
            return;
        };
        let Some(node_id) = inner
            .jobs
            .get(&id)
            .and_then(|entry| entry.record.run.current_node().map(str::to_owned))
        else {
            return;
        };
        let metadata = PreviewMetadata {
            display_node_id: Some(node_id.clone()),
            real_node_id: Some(node_id.clone()),
            node_id,
            prompt_id: id.clone(),
            parent_node_id: None,
            image_type: Some("image/jpeg".to_owned()),
        };
        let frame = Bytes::from(with_metadata(&metadata, image));
        self.preview_locked(&mut inner, &id, frame);
    }

    fn preview_locked(&self, inner: &mut Inner, id: &str, frame: Bytes) {
        let Some(entry) = inner.jobs.get_mut(id) else {
            return;
        };
        if entry.record.state.is_finished() {
            return;
        }
        let had_preview = entry.record.preview.is_some();
        entry.record.preview = Some(frame.clone());
        let device = entry.record.device.clone();
        self.hub.preview(&device, id, frame);
        if !had_preview {
            // `has_preview` changed.
            self.update_locked(inner, id, |_| {});
        }
    }

    /// A job and its owner.
    pub fn get(&self, id: &str) -> Option<(DeviceId, Job)> {
        let inner = self.lock();
        inner
            .jobs
            .get(id)
            .map(|entry| (entry.record.device.clone(), entry.record.snapshot()))
    }

    /// The device that queued a job.
    pub fn owner(&self, id: &str) -> Option<DeviceId> {
        self.lock()
            .jobs
            .get(id)
            .map(|entry| entry.record.device.clone())
    }

    /// A copy of a job's record.
    pub fn record(&self, id: &str) -> Option<JobRecord> {
        self.lock().jobs.get(id).map(|entry| entry.record.clone())
    }

    /// The serialised `Event::Job` for a job's current state.
    pub fn event_json(&self, id: &str) -> Option<Bytes> {
        let mut inner = self.lock();
        let entry = inner.jobs.get_mut(id)?;
        let record = &entry.record;
        Some(
            entry
                .event
                .get_or_insert_with(|| event_json(record.snapshot()))
                .clone(),
        )
    }

    /// A device's jobs, newest first.
    pub fn list(&self, device: &DeviceId) -> Vec<Job> {
        let inner = self.lock();
        inner
            .order
            .iter()
            .rev()
            .filter_map(|id| inner.jobs.get(id))
            .filter(|entry| entry.record.device == *device)
            .map(|entry| entry.record.snapshot())
            .collect()
    }

    /// The latest previews of a device's unfinished jobs.
    pub fn previews(&self, device: &DeviceId) -> Vec<Bytes> {
        let inner = self.lock();
        inner
            .jobs
            .values()
            .filter(|entry| entry.record.device == *device)
            .filter_map(|entry| entry.record.preview.clone())
            .collect()
    }

    /// The latest preview of a job.
    pub fn latest_preview(&self, id: &str) -> Option<(DeviceId, Bytes)> {
        let inner = self.lock();
        let entry = inner.jobs.get(id)?;
        Some((entry.record.device.clone(), entry.record.preview.clone()?))
    }

    /// Ids of jobs `backend` was given before `before_ms` (since the epoch) and has not
    /// ended, with whether each runs.
    pub fn on_backend_before(&self, backend: usize, before_ms: u64) -> Vec<(String, bool)> {
        let inner = self.lock();
        in_comfyui(&inner)
            .filter(|record| record.backend == backend && record.handed_at < before_ms)
            .map(|record| (record.id.clone(), record.state == JobState::Running))
            .collect()
    }

    /// Ids of jobs `backend` was given and has not ended.
    pub fn on_backend(&self, backend: usize) -> Vec<String> {
        self.on_backend_before(backend, u64::MAX)
            .into_iter()
            .map(|(id, _)| id)
            .collect()
    }

    /// The backend that ran `device`'s newest job in memory that made `file` (job `job`, when
    /// given). Servers name their outputs alone, so two of them may each make a file of the
    /// same name: only the device's own jobs say which one it means.
    pub fn made_on(&self, device: &DeviceId, file: &ImageRef, job: Option<&str>) -> Option<usize> {
        let inner = self.lock();
        inner.order.iter().rev().find_map(|id| {
            let record = &inner.jobs.get(id)?.record;
            (record.device == *device
                && job.is_none_or(|job| record.id == job)
                && record.run.outputs().iter().any(|o| o.file() == Some(file)))
            .then(|| record.backend())
            .flatten()
        })
    }

    /// A device's jobs by id, with when each was queued (milliseconds since the epoch).
    pub fn queued_by(&self, device: &DeviceId) -> Vec<(String, u64)> {
        let inner = self.lock();
        inner
            .jobs
            .values()
            .filter(|entry| entry.record.device == *device)
            .map(|entry| (entry.record.id.clone(), entry.record.created_at))
            .collect()
    }

    /// Whether one of `device`'s jobs made `file`.
    pub fn made(&self, device: &DeviceId, file: &ImageRef) -> bool {
        self.lock().jobs.values().any(|entry| {
            entry.record.device == *device
                && entry
                    .record
                    .run
                    .outputs()
                    .iter()
                    .any(|o| o.file() == Some(file))
        })
    }

    /// How many jobs are remembered.
    pub fn len(&self) -> usize {
        self.lock().jobs.len()
    }

    /// Whether no job is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The index in `backends` of the one named `key`: a job kept by a relay that knew one ComfyUI
/// names none, and ran on the first.
fn backend_index(backends: &[String], key: Option<&str>) -> Option<usize> {
    match key {
        None => Some(0),
        Some(key) => backends.iter().position(|b| b == key),
    }
}

/// The jobs ComfyUI was given and has not ended.
fn in_comfyui(inner: &Inner) -> impl Iterator<Item = &JobRecord> {
    inner
        .jobs
        .values()
        .map(|entry| &entry.record)
        .filter(|record| record.handed && !record.state.is_finished())
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::comfy::ExecutionStart;
    use shared::workflow::Workflow;

    /// A registry of jobs on two backends.
    fn registry(max_finished: usize) -> Registry {
        let backends = vec![
            "http://gpu-a:8188/".to_owned(),
            "http://gpu-b:8188/".to_owned(),
        ];
        Registry::new(
            Arc::new(Hub::default()),
            max_finished,
            Store::in_memory(),
            backends,
        )
        .unwrap()
    }

    /// A job handed to the first backend.
    fn record(id: &str, device: &DeviceId) -> JobRecord {
        let workflow = Workflow::parse(
            r#"{"1":{"class_type":"LoadImage","inputs":{"image":"a.png"},"_meta":{"title":"Load"}},
                "2":{"class_type":"SaveImage","inputs":{"images":["1",0],"filename_prefix":"x"}}}"#,
        )
        .unwrap();
        let mut record = JobRecord::new(
            id.to_owned(),
            1,
            device.clone(),
            PromptRequest {
                prompt: workflow,
                client_id: Some("relay".into()),
                extra_data: serde_json::Map::new(),
                prompt_id: None,
            },
            None,
        );
        record.hand(0);
        record
    }

    fn message(text: &str) -> ServerMessage {
        ServerMessage::parse(text).unwrap()
    }

    #[test]
    fn events_that_arrive_before_the_job_is_known_are_applied_when_it_is() {
        let registry = registry(10);
        registry.apply(
            0,
            &ServerMessage::ExecutionStart(ExecutionStart {
                prompt_id: "p".into(),
                timestamp: None,
            }),
        );
        registry.apply(
            0,
            &message(r#"{"type":"execution_cached","data":{"nodes":["1"],"prompt_id":"p"}}"#),
        );
        let job = registry.insert(record(
            "p",
            &crate::device::DeviceSecret::generate().device(),
        ));
        assert_eq!(job.state, JobState::Running);
        assert_eq!(job.nodes[0].state, NodeRun::Cached);
        assert_eq!(job.nodes[0].fraction, 1.0, "a cached node is done");
    }

    #[test]
    fn finished_jobs_beyond_the_limit_are_forgotten_oldest_first() {
        let registry = registry(2);
        let device = crate::device::DeviceSecret::generate().device();
        for id in ["a", "b", "c"] {
            registry.insert(record(id, &device));
            registry.apply(
                0,
                &message(&format!(
                    r#"{{"type":"execution_success","data":{{"prompt_id":"{id}"}}}}"#
                )),
            );
        }
        registry.insert(record("d", &device));
        let ids: Vec<_> = registry.list(&device).into_iter().map(|j| j.id).collect();
        assert_eq!(
            ids,
            ["d", "c", "b"],
            "a was evicted; the unfinished d is kept"
        );
    }

    #[test]
    fn a_failure_keeps_the_traceback_and_names_the_node() {
        let registry = registry(10);
        registry.insert(record(
            "p",
            &crate::device::DeviceSecret::generate().device(),
        ));
        registry.apply(0, &message(
            r#"{"type":"execution_error","data":{"prompt_id":"p","node_id":"2","node_type":"SaveImage",
               "exception_message":"disk full\n","exception_type":"OSError","traceback":["line 1"]}}"#,
        ));
        let (_, job) = registry.get("p").unwrap();
        assert_eq!(job.state, JobState::Failed);
        let error = job.error.unwrap();
        assert_eq!(error.message, "OSError in SaveImage: disk full");
        assert_eq!(error.traceback, ["line 1"]);
        assert_eq!(error.node_id.as_deref(), Some("2"));
        let states: Vec<_> = job.nodes.iter().map(|n| (n.id.as_str(), n.state)).collect();
        assert!(
            states.contains(&("2", NodeRun::Failed)),
            "the failing node is marked, not left pending: {states:?}"
        );
    }

    #[test]
    fn only_the_latest_preview_is_kept_and_it_goes_when_the_job_ends() {
        let registry = registry(10);
        let device = crate::device::DeviceSecret::generate().device();
        registry.insert(record("p", &device));
        registry.preview(0, "p", Bytes::from_static(b"one"));
        registry.preview(0, "p", Bytes::from_static(b"two"));
        assert_eq!(registry.previews(&device), [Bytes::from_static(b"two")]);
        registry.apply(0, &message(r#"{"type":"execution_interrupted","data":{"prompt_id":"p","node_id":"1","node_type":"X"}}"#));
        assert!(registry.previews(&device).is_empty());
        assert_eq!(registry.get("p").unwrap().1.state, JobState::Interrupted);
    }

    #[test]
    fn a_device_lists_only_its_own_jobs_newest_first() {
        let registry = registry(10);
        let (phone, laptop) = (
            crate::device::DeviceSecret::generate().device(),
            crate::device::DeviceSecret::generate().device(),
        );
        registry.insert(record("1", &phone));
        registry.insert(record("2", &laptop));
        registry.insert(record("3", &phone));
        let ids: Vec<_> = registry.list(&phone).into_iter().map(|j| j.id).collect();
        assert_eq!(ids, ["3", "1"]);
    }

    #[test]
    fn a_backend_speaks_only_for_the_jobs_it_was_given() {
        let registry = registry(10);
        let device = crate::device::DeviceSecret::generate().device();
        registry.insert(record("p", &device));
        let ended = r#"{"type":"execution_success","data":{"prompt_id":"p"}}"#;
        // The second backend still runs a copy (it was taken out, the job handed elsewhere).
        registry.apply(1, &message(ended));
        registry.preview(1, "p", Bytes::from_static(b"theirs"));
        let (_, job) = registry.get("p").unwrap();
        assert_eq!(job.state, JobState::Queued);
        assert!(!job.has_preview);
        registry.apply(0, &message(ended));
        assert_eq!(registry.get("p").unwrap().1.state, JobState::Succeeded);
    }

    #[test]
    fn a_job_taken_out_of_a_backend_waits_again_with_no_progress_and_is_handed_elsewhere() {
        let registry = registry(10);
        let device = crate::device::DeviceSecret::generate().device();
        let mut held = record("p", &device);
        held.handed = false;
        registry.insert(held);
        assert_eq!(registry.held_in_turn().len(), 1);
        assert_eq!(registry.take("p", 0).unwrap().backend(), Some(0));
        assert_eq!(registry.load_of(0), (0, 1));
        registry.apply(
            0,
            &message(r#"{"type":"execution_start","data":{"prompt_id":"p"}}"#),
        );
        assert_eq!(registry.load_of(0), (1, 0));
        registry.update("p", JobRecord::start_over);
        registry.give_back("p");
        let (_, job) = registry.get("p").unwrap();
        assert_eq!(
            (job.state, job.held, job.progress),
            (JobState::Queued, true, 0.0)
        );
        assert_eq!(registry.load_of(0), (0, 0));
        assert!(registry.take("p", 1).is_some());
        assert!(registry.take("p", 1).is_none(), "taken once");
        assert_eq!(registry.on_backend(1), ["p"]);
        assert!(registry.on_backend(0).is_empty());
    }

    #[test]
    fn jobs_keep_their_server_across_a_restart_and_one_on_a_server_no_longer_used_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (
            "http://gpu-a:8188/".to_owned(),
            "http://gpu-b:8188/".to_owned(),
        );
        let device = crate::device::DeviceSecret::generate().device();
        let open = |backends: Vec<String>| {
            let store = Store::open(dir.path()).unwrap();
            Registry::new(Arc::new(Hub::default()), 10, store, backends).unwrap()
        };
        {
            let registry = open(vec![a.clone(), b.clone()]);
            for (id, backend) in [("on-a", 0), ("on-b", 1)] {
                let mut job = record(id, &device);
                job.hand(backend);
                registry.insert(job);
            }
        }
        // Restarted with the servers in another order: each job is still where it was.
        let registry = open(vec![b.clone(), a.clone()]);
        assert_eq!(registry.on_backend(0), ["on-b"]);
        assert_eq!(registry.on_backend(1), ["on-a"]);
        drop(registry);
        // Restarted without the second server: its job is lost, with why.
        let registry = open(vec![a]);
        assert_eq!(registry.on_backend(0), ["on-a"]);
        let (_, lost) = registry.get("on-b").unwrap();
        assert_eq!(lost.state, JobState::Lost);
        assert!(
            lost.error
                .unwrap()
                .message
                .contains("no longer one of the relay's")
        );
    }
}
