//! Jobs: the relay queues prompts under its own ComfyUI client id, follows them on one
//! persistent socket per ComfyUI server, and remembers their state for every device.
//!
//! ComfyUI sends a run's events only to the socket of the client id that queued it, buffers
//! nothing, and lets a newer socket with the same id take over silently. So devices never
//! talk to ComfyUI's socket themselves: the relay does, once, and phones that sleep, reload or
//! lose Wi-Fi resume from the relay's memory ([`registry`]) through their event socket
//! ([`hub`], [`routes`]). When ComfyUI itself goes away, [`follower`] reconnects and
//! reconciles every unfinished job with `/history` and `/queue`.
//!
//! Each ComfyUI server ([`Backend`]) is given only `--in-flight` jobs at a time (one running,
//! one ready); the rest wait in the relay's [`fair`] queue, where devices take turns and each
//! orders its own. A job goes to a server that answers and has every node class and model it
//! names, the one with the least to do (ties: the one that ran that work last, whose models
//! are loaded). A server that stops answering is taken out: the jobs it had not started wait
//! for another, the one it ran is lost (or queued again with `--requeue-lost`).

pub mod fair;
pub mod files;
pub mod follower;
pub mod hub;
pub mod registry;
pub mod relayed;
pub mod routes;
pub mod store;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use shared::api::{HistoryPage, HistoryQuery, InputEdit, InputProblem, Job, JobError, JobState};
use shared::comfy::{ImageRef, PromptAccepted, PromptRejected, PromptRequest};
use shared::workflow::{InputError, Workflow, WorkflowError};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::backend::Backend;
use crate::comfy::{ComfyClient, QueueError};
use crate::config::{Config, PreviewMethod};
use crate::device::DeviceId;
use crate::error::RelayError;
use files::Files;
use hub::Hub;
use registry::{JobRecord, Registry};
use relayed::Relayed;
use store::{Filter, Store, StoreError};

/// Everything the relay keeps about jobs.
pub struct Jobs {
    /// The jobs.
    pub registry: Registry,
    /// The devices' event sockets.
    pub hub: Arc<Hub>,
    /// Prompts queued through the raw `/prompt` relay that still wait in ComfyUI's queue.
    pub relayed: Relayed,
    /// The ComfyUI servers; raw clients reach the first.
    backends: Vec<Arc<Backend>>,
    /// The files each device may fetch.
    pub files: Files,
    /// The relay's own ComfyUI client id, stable for the life of the process. No client ever
    /// learns it: raw clients get ids of their device's own ([`DeviceId::comfy_client_id`]),
    /// and it is taken out of every relayed answer ([`Jobs::hide_client_id`]).
    pub client_id: String,
    preview_method: PreviewMethod,
    max_pending: usize,
    /// How many prompts each ComfyUI server is given at once.
    max_in_flight: usize,
    /// Whether a job running on a server that stops answering is queued again, not lost.
    requeue_lost: bool,
    /// How long a server must not answer before the job it runs counts as lost: three health
    /// checks, so that a server slow to answer one (loading a model) does not lose it.
    lost_after: Duration,
    /// Held while a job is being given to ComfyUI: one hand-off at a time.
    handing: tokio::sync::Mutex<()>,
    /// Wakes the task that hands held jobs to ComfyUI.
    dispatch_wanted: Notify,
    /// Servers that were taken out and may still have prompts of jobs since handed elsewhere;
    /// those are deleted from their queue before they are given anything.
    to_clean: std::sync::Mutex<HashSet<usize>>,
    /// How long finished jobs are kept, if not for ever.
    keep_for: Option<Duration>,
}

/// Where a held job can go now.
enum Placement {
    /// To this backend.
    On(usize),
    /// Nowhere yet: the servers that can run it are busy or down.
    Wait,
    /// Nowhere, by the kept schemas: every server answered, and none has what it needs.
    Refused,
}

/// How often the retention is applied.
const PRUNE_EVERY: Duration = Duration::from_secs(60 * 60);

/// The most jobs a page of `GET /api/jobs/history` holds.
const HISTORY_PAGE: usize = 100;

/// How often held jobs are offered to ComfyUI again when nothing said there is room (ComfyUI
/// was down, or a raw prompt left its queue unseen).
const DISPATCH_RETRY: Duration = Duration::from_secs(5);

/// Why a job could not be queued, cancelled or found.
#[derive(Debug, thiserror::Error)]
pub enum JobsError {
    /// The request body is not JSON, or not the expected shape.
    #[error("The request is not valid: {0}")]
    BadRequest(String),
    /// The workflow is not an API-format workflow.
    #[error("{0}")]
    NotApiWorkflow(WorkflowError),
    /// A value does not fit the workflow.
    #[error("{0}")]
    BadInput(String, Vec<InputProblem>),
    /// The device has as many jobs waiting as it may.
    #[error("You already have {0} jobs waiting; queue more when some have started.")]
    TooManyWaiting(usize),
    /// ComfyUI's validation refused the workflow.
    #[error("ComfyUI refused the workflow: {}", .0.iter().map(|p| p.message.as_str()).collect::<Vec<_>>().join("; "))]
    Rejected(Vec<InputProblem>, Box<PromptRejected>),
    /// The job database could not be read.
    #[error("The job history cannot be read: {0}")]
    Store(#[from] StoreError),
    /// The relay only runs saved workflows.
    #[error(
        "This relay only runs saved workflows: send \"workflow_name\" and values, not a graph."
    )]
    Locked,
    /// The saved workflow could not be used.
    #[error(transparent)]
    Library(#[from] crate::library::LibraryError),
    /// ComfyUI answered in a way it does not document.
    #[error("ComfyUI could not queue the workflow (status {status}): {text}")]
    ComfyUi {
        /// ComfyUI's status.
        status: u16,
        /// ComfyUI's body.
        text: String,
    },
    /// No job with this id for this device.
    #[error("There is no job {0} for this device.")]
    NotFound(String),
    /// The job belongs to another device.
    #[error("Job {0} was queued by another device; only that device can change it.")]
    NotYours(String),
    /// The job has ended.
    #[error("Job {0} has already ended.")]
    Finished(String),
    /// The job has not ended.
    #[error("Job {0} has not ended yet: cancel it first.")]
    Unfinished(String),
    /// The job is in ComfyUI's queue, where it cannot be moved.
    #[error("Job {0} is already in ComfyUI's queue; only jobs the relay still holds can be moved.")]
    NotHeld(String),
    /// None of the device's jobs is running.
    #[error("None of your jobs is running now.")]
    NothingRunning,
    /// ComfyUI is down or slow.
    #[error(transparent)]
    Upstream(#[from] RelayError),
}

/// What a job runs, to send the same work back where it ran last: its saved workflow's name,
/// else its node classes.
fn work(record: &JobRecord) -> String {
    match record.workflow_name() {
        Some(name) => format!("saved:{name}"),
        None => record.prompt().prompt.classes().join(","),
    }
}

/// `problems` found on `backend`, each saying where.
fn located(backend: &Backend, problems: Vec<InputProblem>) -> impl Iterator<Item = InputProblem> {
    let url = backend.upstream.shown();
    problems.into_iter().map(move |mut problem| {
        problem.message = format!("{} (on {url})", problem.message);
        problem
    })
}

/// ComfyUI's validation errors, one problem per input, with node titles.
pub fn problems(rejected: &PromptRejected, workflow: &Workflow) -> Vec<InputProblem> {
    let mut problems = Vec::new();
    for (node_id, node) in &rejected.node_errors {
        for error in &node.errors {
            let details = if error.details.is_empty() {
                String::new()
            } else {
                format!(" ({})", error.details)
            };
            problems.push(InputProblem {
                node_id: node_id.clone(),
                node_title: workflow.node(node_id).map(|n| n.title().to_owned()),
                input: error.extra_info.input_name.clone(),
                message: format!("{}{details}", error.message),
            });
        }
    }
    if problems.is_empty() {
        let details = if rejected.error.details.is_empty() {
            String::new()
        } else {
            format!(" ({})", rejected.error.details)
        };
        problems.push(InputProblem {
            node_id: String::new(),
            node_title: None,
            input: None,
            message: format!("{}{details}", rejected.error.message),
        });
    }
    problems
}

fn input_problem(error: &InputError) -> InputProblem {
    let (node_id, input) = match error {
        InputError::NoSuchNode(node) => (node.clone(), None),
        InputError::IsLink { node_id, name } => (node_id.clone(), Some(name.clone())),
    };
    InputProblem {
        node_id,
        node_title: None,
        input,
        message: error.to_string(),
    }
}

impl Jobs {
    /// An empty job service on `backends` (at least one), configured by `config`.
    pub fn new(backends: Vec<Arc<Backend>>, config: &Config) -> Result<Self, StoreError> {
        let hub = Arc::new(Hub::default());
        let store = Store::open(&config.data_dir)?;
        let keys = backends.iter().map(|b| b.key().to_owned()).collect();
        Ok(Self {
            client_id: store.client_id()?,
            registry: Registry::new(hub.clone(), config.max_finished_jobs, store, keys)?,
            hub,
            relayed: Relayed::default(),
            files: Files::default(),
            backends,
            preview_method: config.preview_method,
            max_pending: config.max_pending_jobs,
            max_in_flight: usize::from(config.in_flight),
            requeue_lost: config.requeue_lost,
            lost_after: config.probe_interval() * 3,
            handing: tokio::sync::Mutex::new(()),
            dispatch_wanted: Notify::new(),
            to_clean: std::sync::Mutex::default(),
            keep_for: config
                .keep_days
                .map(|days| Duration::from_secs(u64::from(days) * 24 * 60 * 60)),
        })
    }

    /// One page of `device`'s kept jobs as `query` asks, newest first; a job still in memory
    /// as it is now (its progress), the others as the database has them.
    pub fn history(
        &self,
        device: &DeviceId,
        query: &HistoryQuery,
    ) -> Result<HistoryPage, JobsError> {
        let limit = query.limit.unwrap_or(HISTORY_PAGE).clamp(1, HISTORY_PAGE);
        let filter = Filter {
            before: query.before.as_deref(),
            state: query.state,
            workflow: query.workflow.as_deref(),
            text: query.text.as_deref().filter(|text| !text.is_empty()),
            starred: query.starred,
            with_outputs: query.with_outputs,
        };
        // One more than asked says whether a next page exists.
        let mut stored = self.registry.store().page(device, &filter, limit + 1)?;
        let more = stored.len() > limit;
        stored.truncate(limit);
        let next = more
            .then(|| stored.last().map(|job| job.id.clone()))
            .flatten();
        let jobs = stored
            .into_iter()
            .map(|job| match self.registry.get(&job.id) {
                Some((_, live)) => live,
                None => self.registry.restore(job).snapshot(),
            })
            .collect();
        Ok(HistoryPage { jobs, next })
    }

    /// The ComfyUI servers, in the order they were configured.
    pub fn backends(&self) -> &[Arc<Backend>] {
        &self.backends
    }

    /// The first ComfyUI server's client: the one raw clients reach.
    pub fn comfy(&self) -> &ComfyClient {
        &self.backends[0].comfy
    }

    /// The server pictures are uploaded to: the first, or while it does not take uploads,
    /// the first that does, so that jobs that load a picture can still run.
    pub fn landing(&self) -> &Arc<Backend> {
        self.backends
            .iter()
            .find(|backend| backend.takes_uploads())
            .unwrap_or(&self.backends[0])
    }

    /// A server that answers and holds uploaded picture `file` under that very name, the first
    /// such: where the picture is read from and copied from.
    fn holder_of(&self, file: &ImageRef) -> Option<&Arc<Backend>> {
        self.backends.iter().find(|backend| {
            backend.is_reachable() && backend.input_named(file).as_ref() == Some(file)
        })
    }

    /// The client of the server that has `device`'s `file`: the one where `job` (the app names
    /// the job whose output it shows) made it, else where the device's newest job that made it
    /// ran, else for an upload one that holds it, else the first (which raw clients reach). A
    /// `job` not the device's, or that did not make `file`, names nothing.
    pub fn comfy_for(&self, device: &DeviceId, file: &ImageRef, job: Option<&str>) -> &ComfyClient {
        let made_on = |job| {
            let kept = || match self.registry.store().made_on(device, file, job) {
                Ok(Some(key)) => self.registry.backend_of(key.as_deref()),
                Ok(None) => None,
                Err(error) => {
                    tracing::error!(%error, "cannot look up where a file was made");
                    None
                }
            };
            self.registry.made_on(device, file, job).or_else(kept)
        };
        let index = job
            .and_then(|job| made_on(Some(job)))
            .or_else(|| made_on(None))
            .or_else(|| self.holder_of(file).map(|backend| backend.index));
        &self.backends[index.unwrap_or(0)].comfy
    }

    /// The client of the server `record` was handed to (the first, for a job kept by a relay
    /// that knew one).
    fn comfy_of(&self, record: &JobRecord) -> &ComfyClient {
        &self.backends[record.backend().unwrap_or(0)].comfy
    }

    /// Whether ComfyUI's events reach the relay: some server's socket is open and it answers.
    pub fn comfyui_connected(&self) -> bool {
        self.backends.iter().any(|backend| backend.is_up())
    }

    /// Tells devices when ComfyUI's events start or stop reaching the relay.
    fn announce(&self, change: impl FnOnce()) {
        let before = self.comfyui_connected();
        change();
        let now = self.comfyui_connected();
        if before != now {
            self.hub.comfyui(now);
        }
    }

    fn set_connected(&self, backend: &Backend, connected: bool) {
        self.announce(|| backend.set_connected(connected));
        if connected {
            self.dispatch_wanted.notify_one();
        }
    }

    /// Records what a server's health check found. One that stops answering (a stopped process
    /// keeps its sockets open) is taken out: the jobs it had not started wait for another
    /// server at once, and the one it runs is lost (or queued again with `--requeue-lost`) if it
    /// stays silent for [`Jobs::lost_after`]. Devices are told when no server is left, or one
    /// is back.
    pub fn set_reachable(&self, backend: &Backend, reachable: bool) {
        let mut changed = false;
        self.announce(|| changed = backend.set_reachable(reachable));
        if reachable {
            self.dispatch_wanted.notify_one();
        } else if changed {
            self.take_out(backend);
        }
    }

    /// Takes the jobs `backend` had not started away from it: it stopped answering.
    fn take_out(&self, backend: &Backend) {
        let jobs = self.registry.on_backend_before(backend.index, u64::MAX);
        if jobs.is_empty() {
            return;
        }
        // It may come back with them still queued: they are deleted there before it is given
        // anything again.
        self.cleaning().insert(backend.index);
        for (id, running) in jobs {
            if !running {
                self.registry.give_back(&id);
                tracing::warn!(job = %id, backend = backend.key(), "its server stopped answering; held for another");
            }
        }
        self.dispatch_wanted.notify_one();
    }

    /// Ends (or, with `--requeue-lost`, queues again) the jobs running on servers that have not
    /// answered for [`Jobs::lost_after`].
    fn lose_stranded(&self) {
        for backend in &self.backends {
            if backend.down_for().is_none_or(|down| down < self.lost_after) {
                continue;
            }
            for (id, running) in self.registry.on_backend_before(backend.index, u64::MAX) {
                if running {
                    self.strand(backend, &id);
                }
            }
        }
    }

    /// Loses (or queues again) job `id`, which `backend` was running when it went silent.
    fn strand(&self, backend: &Backend, id: &str) {
        if self.requeue_lost {
            self.registry.update(id, JobRecord::start_over);
            self.registry.give_back(id);
            tracing::warn!(job = %id, backend = backend.key(), "its server went silent mid-run; queued again");
        } else {
            self.registry.update(id, |record| {
                record.lose(&format!(
                    "The ComfyUI server at {} stopped answering while it ran this job. Queue it \
                     again.",
                    backend.upstream.shown()
                ));
            });
            tracing::warn!(job = %id, backend = backend.key(), "its server went silent mid-run; marked lost");
        }
        self.dispatch_wanted.notify_one();
    }

    fn cleaning(&self) -> std::sync::MutexGuard<'_, HashSet<usize>> {
        self.to_clean
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Deletes from a server that was taken out the prompts of jobs it no longer has (they
    /// wait in the relay or went elsewhere), and interrupts one it runs; false when it cannot
    /// be asked.
    async fn clean(&self, backend: &Backend) -> bool {
        let queue = match backend.comfy.queue().await {
            Ok(queue) => queue,
            Err(error) => {
                tracing::debug!(%error, backend = backend.key(), "cannot clean a server's queue");
                return false;
            }
        };
        let elsewhere = |id: &str| {
            self.registry.record(id).is_some_and(|record| {
                record.backend() != Some(backend.index) || record.state().is_finished()
            })
        };
        let stale: Vec<&str> = queue
            .queue_pending
            .iter()
            .map(|item| item.prompt_id())
            .filter(|id| elsewhere(id))
            .collect();
        if !stale.is_empty() && backend.comfy.delete_pending(&stale).await.is_err() {
            return false;
        }
        for item in &queue.queue_running {
            if elsewhere(item.prompt_id())
                && backend.comfy.interrupt(item.prompt_id()).await.is_err()
            {
                return false;
            }
        }
        if !stale.is_empty() {
            tracing::info!(
                backend = backend.key(),
                deleted = stale.len(),
                "deleted prompts of jobs it no longer has"
            );
        }
        self.cleaning().remove(&backend.index);
        true
    }

    /// The device that queued a prompt through the relay, as a job or raw.
    pub fn owner_of(&self, prompt_id: &str) -> Option<DeviceId> {
        self.registry
            .owner(prompt_id)
            .or_else(|| self.relayed.owner(prompt_id))
    }

    /// Every prompt `device` queued that the relay remembers, jobs and raw prompts, oldest
    /// first.
    pub fn prompts_of(&self, device: &DeviceId) -> Vec<String> {
        let mut prompts = self.registry.queued_by(device);
        prompts.extend(self.relayed.prompts_of(device));
        prompts.sort_by_key(|(_, queued)| *queued);
        prompts.into_iter().map(|(id, _)| id).collect()
    }

    /// Whether `device` may fetch `file`: it was given it, or one of its jobs made it (one in
    /// memory, or one the database keeps).
    pub fn may_view(&self, device: &DeviceId, file: &ImageRef) -> bool {
        self.files.granted(device, file)
            || self.registry.made(device, file)
            || self
                .registry
                .store()
                .made(device, file)
                .unwrap_or_else(|error| {
                    tracing::error!(%error, "cannot look up who made a file");
                    false
                })
    }

    /// Takes the relay's own client id out of a prompt's `extra_data`, as `/queue` and
    /// `/history` list it, so that no client can open a socket under it.
    pub fn hide_client_id(&self, extra_data: &mut serde_json::Value) {
        if let Some(extra) = extra_data.as_object_mut()
            && extra.get("client_id").and_then(serde_json::Value::as_str)
                == Some(self.client_id.as_str())
        {
            extra.remove("client_id");
        }
    }

    /// Checks a job request into the prompt to queue: an API workflow with the values applied,
    /// whose classes and values ComfyUI will accept.
    pub async fn prepare(
        &self,
        mut workflow: Workflow,
        values: &[InputEdit],
    ) -> Result<PromptRequest, JobsError> {
        InputEdit::apply_all(values, &mut workflow)
            .map_err(|e| JobsError::BadInput(e.to_string(), vec![input_problem(&e)]))?;
        self.runnable(&workflow).await?;
        let mut extra_data = serde_json::Map::new();
        if let Some(method) = self.preview_method.as_extra_data() {
            // Newer ComfyUI sends no previews unless the prompt asks for them.
            extra_data.insert("preview_method".to_owned(), method.into());
        }
        Ok(PromptRequest {
            prompt: workflow,
            client_id: Some(self.client_id.clone()),
            extra_data,
            prompt_id: None,
        })
    }

    /// Checks that some server can run `workflow`: it has every class and value the workflow
    /// names. Otherwise the refusal names what is missing, and where when there are several
    /// servers. Servers that do not answer are not asked, unless none does. Every server is
    /// asked (at once), so each one's kept schemas learn the values new to them (a picture
    /// uploaded since, a model installed) that the hand-out then weighs.
    async fn runnable(&self, workflow: &Workflow) -> Result<(), JobsError> {
        let several = self.backends.len() > 1;
        let asked = self
            .backends
            .iter()
            .filter(|backend| !several || backend.is_reachable())
            .map(|backend| async move { (backend, backend.object_info.check(workflow).await) });
        let mut problems = Vec::new();
        let mut unreachable = None;
        for (backend, checked) in futures_util::future::join_all(asked).await {
            match checked {
                Ok(found) if found.is_empty() => return Ok(()),
                Ok(found) if several => problems.extend(located(backend, found)),
                Ok(found) => problems = found,
                Err(error) => {
                    unreachable.get_or_insert(error);
                }
            }
        }
        if problems.is_empty() {
            return Err(match unreachable {
                Some(error) => error.into(),
                None => RelayError::Stalled {
                    url: self.backends[0].upstream.base().to_string(),
                }
                .into(),
            });
        }
        let summary: Vec<String> = problems.iter().map(InputProblem::describe).collect();
        Err(JobsError::BadInput(summary.join("; "), problems))
    }

    /// Refuses another prompt from `device` when as many of its jobs (held by the relay or in
    /// ComfyUI's queue) and raw prompts wait as it may have waiting.
    pub async fn admit(&self, device: &DeviceId) -> Result<(), JobsError> {
        let jobs = self.registry.list(device);
        let queued = jobs.iter().filter(|job| job.state == JobState::Queued);
        let queued = queued.count();
        let mut relayed = self.relayed.waiting(device);
        if queued + relayed >= self.max_pending && relayed > 0 {
            // Raw prompts may have started since the relay last looked at the queue.
            self.relayed.retain_pending(&self.comfy().queue().await?);
            relayed = self.relayed.waiting(device);
        }
        let waiting = queued + relayed;
        if waiting >= self.max_pending {
            return Err(JobsError::TooManyWaiting(waiting));
        }
        Ok(())
    }

    /// Queues a prepared prompt for `device`; `workflow_name` names the saved workflow it is.
    /// When ComfyUI has room and no job is held, it is given to ComfyUI now (and ComfyUI's
    /// refusal is the answer); otherwise the relay holds it until its turn.
    pub async fn submit(
        &self,
        device: DeviceId,
        prompt: PromptRequest,
        workflow_name: Option<String>,
    ) -> Result<Job, JobsError> {
        self.admit(&device).await?;
        let _handing = self.handing.lock().await;
        let id = uuid::Uuid::new_v4().to_string();
        let number = self.registry.next_number();
        let mut record = JobRecord::new(id, number, device, prompt, workflow_name);
        let placement = if self.registry.holds_any() {
            Placement::Wait
        } else {
            self.place(&record, &HashSet::new()).await
        };
        if let Placement::On(backend) = placement {
            let accepted = self.give(backend, record.id(), record.prompt()).await?;
            if accepted.prompt_id != record.id() {
                record = record.renamed(accepted.prompt_id);
            }
            record.hand(backend);
            self.backends[backend].runs(work(&record));
            tracing::info!(
                job = record.id(),
                device = record.device().short(),
                "queued"
            );
        } else {
            tracing::info!(job = record.id(), device = record.device().short(), "held");
        }
        let backend = record.backend();
        let job = self.registry.insert(record);
        if let Some(backend) = backend {
            self.backends[backend].queue_changed.notify_one();
        }
        Ok(job)
    }

    /// How many prompts `backend` has from the relay: its jobs, and on the first the raw
    /// prompts waiting.
    fn in_flight(&self, backend: usize) -> usize {
        let raw = if backend == 0 {
            self.relayed.waiting_total()
        } else {
            0
        };
        self.registry.in_flight_on(backend) + raw
    }

    /// Where `record` can go now, `skip`ping servers that just failed to take a job. With one
    /// server there is no choice to make: it is given the job when it answers and has room,
    /// and its own validation is the judge.
    async fn place(&self, record: &JobRecord, skip: &HashSet<usize>) -> Placement {
        let open = |backend: &Backend| backend.is_reachable() && !skip.contains(&backend.index);
        if let [only] = self.backends.as_slice() {
            return if open(only) && self.in_flight(0) < self.max_in_flight {
                Placement::On(0)
            } else {
                Placement::Wait
            };
        }
        let workflow = &record.prompt().prompt;
        let work = work(record);
        let mut best: Option<(usize, bool, usize)> = None;
        let mut refused_by = 0;
        for backend in &self.backends {
            if !open(backend) {
                continue;
            }
            match backend.object_info.check_kept(workflow).await {
                Ok(found) if found.is_empty() => {
                    let ours = self.in_flight(backend.index);
                    // What it has to do: the relay's jobs, and prompts others (raw clients
                    // included) queued there, as its queue last showed.
                    let load = self.registry.in_flight_on(backend.index)
                        + self.registry.foreign_on(backend.index);
                    let key = (load, !backend.ran_last(&work), backend.index);
                    if ours < self.max_in_flight && best.is_none_or(|best| key < best) {
                        best = Some(key);
                    }
                }
                Ok(_) => refused_by += 1,
                Err(_) => {}
            }
        }
        match best {
            Some((_, _, index)) => Placement::On(index),
            None if refused_by == self.backends.len() => Placement::Refused,
            None => Placement::Wait,
        }
    }

    /// Sends job `id`'s prompt to `backend` under that id.
    async fn give(
        &self,
        backend: usize,
        id: &str,
        prompt: &PromptRequest,
    ) -> Result<PromptAccepted, JobsError> {
        let mut request = prompt.clone();
        request.prompt_id = Some(id.to_owned());
        let backend = &self.backends[backend];
        if self.cleaning().contains(&backend.index) && !self.clean(backend).await {
            return Err(JobsError::Upstream(RelayError::Stalled {
                url: backend.upstream.base().to_string(),
            }));
        }
        self.place_inputs(backend, &mut request.prompt).await?;
        backend
            .comfy
            .queue_prompt(&request)
            .await
            .map_err(|error| match error {
                QueueError::Rejected(rejected) => {
                    JobsError::Rejected(problems(&rejected, &prompt.prompt), Box::new(rejected))
                }
                QueueError::Unexpected { status, text } => JobsError::ComfyUi { status, text },
                QueueError::Upstream(error) => JobsError::Upstream(error),
            })
    }

    /// Copies to `backend` the uploaded pictures `workflow` loads that it is not known to hold
    /// (it was down when they were uploaded, the copy failed, or is under way), from a server
    /// that holds them, and has `workflow` load each under the name it has there (a server
    /// holding another picture of that name names the copy anew). A copy that fails counts as
    /// the server failing to take the job.
    async fn place_inputs(
        &self,
        backend: &Backend,
        workflow: &mut Workflow,
    ) -> Result<(), JobsError> {
        // Without schemas there is nothing to place by: ComfyUI is the judge.
        let Ok(image_inputs) = backend.object_info.image_inputs(workflow).await else {
            return Ok(());
        };
        let mut renamed = Vec::new();
        for (id, input) in image_inputs {
            let Some(file) = workflow
                .node(&id)
                .and_then(|node| node.inputs.get(&input))
                .and_then(serde_json::Value::as_str)
                .map(ImageRef::from_load_image_value)
            else {
                continue;
            };
            let named = match backend.input_named(&file) {
                Some(named) => named,
                None => {
                    // Pictures the relay did not upload, or none that answers holds, are
                    // ComfyUI's business.
                    let Some(holder) = self.holder_of(&file) else {
                        continue;
                    };
                    crate::upload::copy_input(holder, backend, &file)
                        .await
                        .map_err(|error| match error {
                            crate::upload::UploadError::Upstream(error) => error,
                            other => RelayError::Failed {
                                url: backend.upstream.base().to_string(),
                                detail: other.to_string(),
                            },
                        })?
                }
            };
            if named != file {
                renamed.push((id, input, named.load_image_value()));
            }
        }
        for (id, input, value) in renamed {
            workflow
                .set_input(&id, &input, value.into())
                .expect("a picture input of the workflow takes a picture's name");
        }
        Ok(())
    }

    /// Gives the servers held jobs, each at its turn, while one has room for it: a job no
    /// server can take now waits without holding up the ones behind it that another can. A job
    /// ComfyUI (or every server) refuses fails with the reason; a server that cannot be reached
    /// is skipped, and its job held again.
    pub async fn hand_out(&self) {
        let _handing = self.handing.lock().await;
        self.lose_stranded();
        // A server back after being taken out drops what went elsewhere at once, whether or
        // not it is given anything now.
        let to_clean: Vec<usize> = self.cleaning().iter().copied().collect();
        for index in to_clean {
            let backend = &self.backends[index];
            if backend.is_reachable() {
                self.clean(backend).await;
            }
        }
        let mut unreachable = HashSet::new();
        'pass: loop {
            // Nothing to weigh while every server that answers is full.
            let room = self.backends.iter().any(|backend| {
                backend.is_reachable()
                    && !unreachable.contains(&backend.index)
                    && self.in_flight(backend.index) < self.max_in_flight
            });
            if !room {
                return;
            }
            for record in self.registry.held_in_turn() {
                let backend = match self.place(&record, &unreachable).await {
                    Placement::On(backend) => backend,
                    Placement::Wait => continue,
                    // The kept schemas may predate a node or model installed since: the servers
                    // are asked again before the job fails.
                    Placement::Refused => match self.runnable(&record.prompt().prompt).await {
                        Err(error @ JobsError::BadInput(..)) => {
                            self.fail(&record, &error);
                            continue 'pass;
                        }
                        _ => continue,
                    },
                };
                let id = record.id();
                let Some(record) = self.registry.take(id, backend) else {
                    continue 'pass;
                };
                match self.give(backend, id, record.prompt()).await {
                    Ok(accepted) => {
                        if accepted.prompt_id != id {
                            tracing::warn!(
                                job = id,
                                comfyui = %accepted.prompt_id,
                                "this ComfyUI ignores a given prompt id; the job takes its id"
                            );
                            self.registry.rename(id, &accepted.prompt_id);
                        }
                        self.backends[backend].runs(work(&record));
                        tracing::info!(
                            job = %accepted.prompt_id,
                            device = record.device().short(),
                            backend = self.backends[backend].key(),
                            "handed to ComfyUI"
                        );
                        self.backends[backend].queue_changed.notify_one();
                    }
                    Err(JobsError::Upstream(error)) => {
                        tracing::warn!(job = id, %error, "ComfyUI cannot take a held job now");
                        self.registry.give_back(id);
                        unreachable.insert(backend);
                    }
                    Err(error) => self.fail(&record, &error),
                }
                continue 'pass;
            }
            return;
        }
    }

    /// Ends a held job that could not be handed as failed, with why.
    fn fail(&self, record: &JobRecord, error: &JobsError) {
        let node = match error {
            JobsError::Rejected(problems, _) | JobsError::BadInput(_, problems) => problems.first(),
            _ => None,
        };
        let failure = JobError {
            node_id: node.map(|problem| problem.node_id.clone()),
            node_type: node.and_then(|problem| {
                record
                    .prompt()
                    .prompt
                    .node(&problem.node_id)
                    .map(|node| node.class_type.clone())
            }),
            message: error.to_string(),
            traceback: Vec::new(),
        };
        tracing::warn!(job = record.id(), %error, "a held job was refused");
        self.registry.update(record.id(), |record| {
            record.finish(JobState::Failed, Some(failure))
        });
    }

    /// Hands held jobs to ComfyUI whenever it may have room, until `cancel`.
    pub async fn dispatch(jobs: Arc<Self>, cancel: CancellationToken) {
        loop {
            jobs.hand_out().await;
            tokio::select! {
                () = cancel.cancelled() => return,
                () = jobs.registry.freed().notified() => {}
                () = jobs.dispatch_wanted.notified() => {}
                () = tokio::time::sleep(DISPATCH_RETRY) => {}
            }
        }
    }

    /// Moves a held job of `device` to `position` among its held jobs (0 is next).
    pub fn move_job(&self, device: &DeviceId, id: &str, position: u32) -> Result<Job, JobsError> {
        let record = self.owned_record(device, id)?;
        if record.state().is_finished() {
            return Err(JobsError::Finished(id.to_owned()));
        }
        let position = usize::try_from(position).unwrap_or(usize::MAX);
        self.registry
            .move_held(id, position)
            .ok_or_else(|| JobsError::NotHeld(id.to_owned()))
    }

    /// A job of `device`, live from memory or as the database keeps it.
    pub fn get(&self, device: &DeviceId, id: &str) -> Result<Job, JobsError> {
        match self.registry.get(id) {
            Some((owner, job)) if owner == *device => Ok(job),
            Some(_) => Err(JobsError::NotFound(id.to_owned())),
            None => match self.kept_record(id)? {
                Some(record) if record.device() == device => Ok(record.snapshot()),
                _ => Err(JobsError::NotFound(id.to_owned())),
            },
        }
    }

    /// The API-format workflow a job of `device` ran, every value as it was sent (a seed drawn
    /// for the run included). Another device's job is not found, as with [`Self::get`].
    pub fn workflow(&self, device: &DeviceId, id: &str) -> Result<Workflow, JobsError> {
        match self.owned_record(device, id) {
            Ok(record) => Ok(record.prompt().prompt.clone()),
            Err(JobsError::NotYours(id)) => Err(JobsError::NotFound(id)),
            Err(error) => Err(error),
        }
    }

    /// Stars or unstars a job of `device`.
    pub fn star(&self, device: &DeviceId, id: &str, starred: bool) -> Result<Job, JobsError> {
        let mut record = self.owned_record(device, id)?;
        // In memory, the change is published and written; otherwise it is only written.
        if let Some(job) = self.registry.update(id, |record| record.star(starred)) {
            return Ok(job);
        }
        self.registry.store().set_starred(id, starred)?;
        record.star(starred);
        Ok(record.snapshot())
    }

    /// Deletes a finished job of `device`: the relay forgets it, and its files can no longer
    /// be fetched through the relay (ComfyUI keeps them: it has no route to delete outputs).
    pub fn delete(&self, device: &DeviceId, id: &str) -> Result<(), JobsError> {
        let record = self.owned_record(device, id)?;
        if !record.state().is_finished() {
            return Err(JobsError::Unfinished(id.to_owned()));
        }
        self.registry.store().delete(id)?;
        self.registry.forget(id);
        tracing::info!(job = id, device = device.short(), "deleted");
        Ok(())
    }

    /// Forgets the finished jobs that ended longer ago than the retention, unless starred;
    /// returns how many.
    fn prune(&self) -> Result<usize, JobsError> {
        let Some(keep_for) = self.keep_for else {
            return Ok(0);
        };
        let cutoff = crate::clock::now_ms()
            .saturating_sub(u64::try_from(keep_for.as_millis()).unwrap_or(u64::MAX));
        let pruned = self.registry.store().prune(cutoff)?;
        for id in &pruned {
            self.registry.forget(id);
        }
        Ok(pruned.len())
    }

    /// Applies the retention now and then every hour, until `cancel`.
    pub async fn keep_pruning(jobs: Arc<Self>, cancel: CancellationToken) {
        if jobs.keep_for.is_none() {
            return;
        }
        let mut every = tokio::time::interval(PRUNE_EVERY);
        loop {
            tokio::select! {
                _ = every.tick() => match jobs.prune() {
                    Ok(0) => {}
                    Ok(pruned) => tracing::info!(pruned, "forgot jobs past the retention"),
                    Err(error) => tracing::error!(%error, "the retention could not be applied"),
                },
                () = cancel.cancelled() => return,
            }
        }
    }

    /// A job of `device` once it has ended, or as it is after `timeout`.
    pub async fn wait(
        &self,
        device: &DeviceId,
        id: &str,
        timeout: Duration,
    ) -> Result<Job, JobsError> {
        // Subscribed before looking, so an ending in between still wakes us.
        let subscription = self.hub.subscribe(device.clone());
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let job = self.get(device, id)?;
            if job.state.is_finished() {
                return Ok(job);
            }
            while subscription.mailbox.pop().is_some() {}
            let woken = subscription.mailbox.ready.notified();
            if tokio::time::timeout_at(deadline, woken).await.is_err() {
                return self.get(device, id);
            }
        }
    }

    /// Interrupts the job of `device` that ComfyUI is running now.
    pub async fn interrupt_running(&self, device: &DeviceId) -> Result<Job, JobsError> {
        let running = self
            .registry
            .list(device)
            .into_iter()
            .find(|job| job.state == JobState::Running)
            .ok_or(JobsError::NothingRunning)?;
        self.cancel(device, &running.id).await
    }

    /// Job `id` as the database keeps it (for a job no longer in memory).
    fn kept_record(&self, id: &str) -> Result<Option<JobRecord>, JobsError> {
        let stored = self.registry.store().find(id)?;
        Ok(stored.map(|stored| self.registry.restore(stored)))
    }

    /// Job `id` of `device`, from memory or the database.
    fn owned_record(&self, device: &DeviceId, id: &str) -> Result<JobRecord, JobsError> {
        let record = match self.registry.record(id) {
            Some(record) => record,
            None => self
                .kept_record(id)?
                .ok_or_else(|| JobsError::NotFound(id.to_owned()))?,
        };
        if record.device() != device {
            return Err(JobsError::NotYours(id.to_owned()));
        }
        Ok(record)
    }

    /// Cancels a job of `device`: interrupts it if it runs, takes it off the queue if it waits.
    pub async fn cancel(&self, device: &DeviceId, id: &str) -> Result<Job, JobsError> {
        let record = self.owned_record(device, id)?;
        match record.state() {
            JobState::Running => self.comfy_of(&record).interrupt(id).await?,
            JobState::Queued => {
                // Not while it is being given to ComfyUI.
                let _handing = self.handing.lock().await;
                if self.registry.cancel_held(id) {
                    tracing::info!(job = id, device = device.short(), "cancelled while held");
                    return self.get(device, id);
                }
                // Where it is now: it may have been handed meanwhile.
                let comfy = self.comfy_of(&self.registry.record(id).unwrap_or(record));
                comfy.delete_pending(&[id]).await?;
                // It may have started between our look and the delete.
                let queue = comfy.queue().await?;
                if queue
                    .queue_running
                    .iter()
                    .any(|item| item.prompt_id() == id)
                {
                    comfy.interrupt(id).await?;
                } else if !queue
                    .queue_pending
                    .iter()
                    .any(|item| item.prompt_id() == id)
                {
                    self.registry.update(id, JobRecord::cancel_unstarted);
                }
            }
            _ => return Err(JobsError::Finished(id.to_owned())),
        }
        tracing::info!(job = id, device = device.short(), "cancel requested");
        self.get(device, id)
    }

    /// Queues a job of `device` again, as it was queued the first time.
    pub async fn requeue(&self, device: &DeviceId, id: &str) -> Result<Job, JobsError> {
        let record = self.owned_record(device, id)?;
        self.submit(
            device.clone(),
            record.prompt().clone(),
            record.workflow_name().map(str::to_owned),
        )
        .await
    }
}
