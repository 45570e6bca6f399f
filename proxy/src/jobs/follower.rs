//! The relay's persistent socket to each ComfyUI server, and what happens when it comes back.
//!
//! The socket asks for previews with metadata, feeds every event to the registry, and
//! reconnects with backoff when ComfyUI goes away. Each time it (re)connects, the unfinished jobs
//! ComfyUI was given are reconciled: events sent while the relay was not listening are gone for
//! good (ComfyUI buffers nothing), so a job's end is taken from `/history`, and a job ComfyUI no
//! longer knows at all (it restarted) is marked lost.

use std::hash::BuildHasher as _;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use shared::backoff::reconnect_delay;
use shared::comfy::{BinaryFrame, FeatureFlags, Queue, ServerMessage, Verdict, verdict};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::Jobs;
use crate::backend::Backend;
use crate::clock::now_ms;

/// How often ComfyUI's queue is looked at while the relay has unfinished jobs, whatever the
/// socket says.
const QUEUE_CHECK: Duration = Duration::from_secs(10);
/// How long the relay's socket may hear nothing while ComfyUI runs one of its jobs.
pub const SILENCE_BEFORE_RECONNECT: Duration = Duration::from_secs(60);
/// How long the socket must have heard no run's event for a job that ended unheard to mean
/// that the socket lost its stream, rather than that the end is just on its way.
const UNHEARD_END: Duration = Duration::from_secs(2);
/// A job handed to ComfyUI this recently may not be in a queue listing fetched meanwhile.
const MISSING_GRACE_MS: u64 = 1000;

/// A uniform number in `[0, 1)` for jitter, without a random-number crate.
fn jitter() -> f64 {
    let bits = std::collections::hash_map::RandomState::new().hash_one(std::time::Instant::now());
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// Follows `backend`'s events until `cancel`, reconnecting whenever the socket drops.
pub async fn follow(jobs: Arc<Jobs>, backend: Arc<Backend>, cancel: CancellationToken) {
    let mut attempt = 0u32;
    loop {
        let connected = tokio::select! {
            () = cancel.cancelled() => return,
            connected = backend.comfy.connect_ws(&jobs.client_id) => connected,
        };
        if let Ok(mut socket) = connected
            && socket
                .send(Message::text(FeatureFlags::client_hello()))
                .await
                .is_ok()
        {
            attempt = 0;
            jobs.set_connected(&backend, true);
            tracing::info!("following ComfyUI's events at {}", backend.upstream.base());
            backend.heard();
            // Reconciling needs HTTP calls; events keep flowing meanwhile.
            let reconciling = tokio::spawn(reconcile(jobs.clone(), backend.clone()));
            tokio::select! {
                () = cancel.cancelled() => {
                    let _ = socket.close(None).await;
                    reconciling.abort();
                    return;
                }
                () = read(&jobs, &backend, &mut socket) => {
                    tracing::warn!("lost the event socket of {}; reconnecting", backend.upstream.base());
                }
                () = backend.resubscribe.notified() => {
                    // A socket that hears nothing while ComfyUI runs our job was taken over
                    // (a client on ComfyUI's own machine reused the id) or is stuck: a new one
                    // takes the id back, and reconciling fills in what was missed.
                    tracing::warn!(
                        "ComfyUI's events stopped reaching the relay (silent for {} s while \
                         one of its jobs ran, or a job ended unheard); reconnecting its event \
                         socket",
                        SILENCE_BEFORE_RECONNECT.as_secs()
                    );
                    let _ = socket.close(None).await;
                }
            }
            reconciling.abort();
            jobs.set_connected(&backend, false);
        }
        let delay = reconnect_delay(attempt, jitter());
        attempt = attempt.saturating_add(1);
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
    }
}

async fn read<S>(jobs: &Jobs, backend: &Backend, socket: &mut S)
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    while let Some(Ok(message)) = socket.next().await {
        match message {
            Message::Text(text) => match ServerMessage::parse(text.as_str()) {
                Ok(message) => {
                    // Only a run's own events say the socket still gets the relay's stream:
                    // ComfyUI sends queue statuses to every socket.
                    if message.prompt_id().is_some() {
                        backend.heard();
                    }
                    if let ServerMessage::Status(status) = &message {
                        backend.queue_changed.notify_one();
                        // Every socket hears how much the server has queued, so prompts others
                        // queued there count even while it has none of the relay's jobs.
                        let remaining = usize::try_from(status.status.exec_info.queue_remaining)
                            .unwrap_or(usize::MAX);
                        let ours = jobs.registry.in_flight_on(backend.index);
                        jobs.registry
                            .set_foreign(backend.index, remaining.saturating_sub(ours));
                    }
                    jobs.registry.apply(backend.index, &message);
                }
                Err(error) => tracing::debug!(%error, "ignored a message from ComfyUI"),
            },
            Message::Binary(bytes) => {
                backend.heard();
                preview(jobs, backend.index, bytes);
            }
            Message::Close(_) => return,
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
        }
    }
}

fn preview(jobs: &Jobs, backend: usize, frame: Bytes) {
    match BinaryFrame::parse(&frame) {
        Ok(BinaryFrame::Preview(preview)) => match preview.metadata {
            Some(metadata) => {
                jobs.registry
                    .preview(backend, &metadata.prompt_id, frame.clone());
            }
            None => jobs.registry.legacy_preview(backend, preview.image),
        },
        Ok(BinaryFrame::Unknown { event_type }) => {
            tracing::debug!(event_type, "ignored a binary frame from ComfyUI");
        }
        Err(error) => tracing::debug!(%error, "ignored a malformed binary frame"),
    }
}

/// Brings every unfinished job `backend` was given in line with what it knows now.
pub async fn reconcile(jobs: Arc<Jobs>, backend: Arc<Backend>) {
    let unfinished = jobs.registry.on_backend(backend.index);
    if unfinished.is_empty() {
        return;
    }
    let queue = match backend.comfy.queue().await {
        Ok(queue) => queue,
        Err(error) => {
            tracing::warn!(%error, "cannot reconcile jobs");
            return;
        }
    };
    reconcile_ids(&jobs, &backend, unfinished, &queue).await;
    apply_queue(&jobs, &backend, &queue);
}

/// Brings the jobs `ids` in line with `backend`'s history and `queue`: ended ones from their
/// history entry, forgotten ones as lost.
async fn reconcile_ids(jobs: &Jobs, backend: &Backend, ids: Vec<String>, queue: &Queue) {
    for id in ids {
        match backend.comfy.history(&id).await {
            Ok(entry) => match verdict(&id, entry.as_ref(), queue) {
                Verdict::Ended(entry) => {
                    jobs.registry
                        .update(&id, |record| record.finish_from_history(entry));
                    tracing::info!(job = %id, "finished from ComfyUI's history");
                }
                Verdict::Running => {
                    jobs.registry.update(&id, |record| record.mark_running());
                }
                Verdict::Waiting => {}
                Verdict::Forgotten => {
                    jobs.registry.update(&id, |record| {
                        record.lose(
                            "ComfyUI no longer knows this job (it was restarted, or the job was \
                             taken off its queue). Queue it again.",
                        );
                    });
                    tracing::warn!(job = %id, "ComfyUI forgot this job; marked lost");
                }
            },
            Err(error) => tracing::warn!(job = %id, %error, "cannot check ComfyUI's history"),
        }
    }
}

/// Sets queue positions (prompts ahead of each queued job) from `backend`'s queue, and on the
/// first server forgets the raw prompts that no longer wait.
fn apply_queue(jobs: &Jobs, backend: &Backend, queue: &Queue) {
    if backend.index == 0 {
        jobs.relayed.retain_pending(queue);
    }
    let foreign = queue
        .queue_running
        .iter()
        .chain(&queue.queue_pending)
        .filter(|item| jobs.registry.owner(item.prompt_id()).is_none())
        .count();
    jobs.registry.set_foreign(backend.index, foreign);
    let numbers: Vec<i64> = queue
        .queue_running
        .iter()
        .chain(&queue.queue_pending)
        .map(|item| item.0)
        .collect();
    let here = |record: &super::registry::JobRecord| record.backend() == Some(backend.index);
    for item in &queue.queue_running {
        jobs.registry.update(item.prompt_id(), |record| {
            if here(record) {
                record.mark_running();
            }
        });
    }
    for item in &queue.queue_pending {
        let ahead = numbers.iter().filter(|n| **n < item.0).count();
        let ahead = u32::try_from(ahead).unwrap_or(u32::MAX);
        jobs.registry.update(item.prompt_id(), |record| {
            if here(record) {
                record.set_queue_position(Some(ahead));
            }
        });
    }
}

/// Refreshes queue positions whenever ComfyUI's queue changes, and looks again every
/// [`QUEUE_CHECK`] while jobs are unfinished, until `cancel`. A job that left ComfyUI's queue
/// without the relay hearing of it (deleted by another client, or its events lost) is
/// reconciled from the history; a job ComfyUI runs while the relay's socket hears nothing for
/// [`SILENCE_BEFORE_RECONNECT`] makes the socket reconnect.
pub async fn track_queue(jobs: Arc<Jobs>, backend: Arc<Backend>, cancel: CancellationToken) {
    let mut check = tokio::time::interval(QUEUE_CHECK);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let first = backend.index == 0;
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = backend.queue_changed.notified() => {
                // Several status messages come together; one look at the queue serves them all.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            _ = check.tick() => {}
        }
        if jobs.registry.in_flight_on(backend.index) == 0 && (!first || jobs.relayed.none_waiting())
        {
            continue;
        }
        // Only jobs queued before this look can be missing from it.
        let looked_at = now_ms();
        let queue = match backend.comfy.queue().await {
            Ok(queue) => queue,
            Err(error) => {
                tracing::debug!(%error, "cannot read ComfyUI's queue");
                continue;
            }
        };
        apply_queue(&jobs, &backend, &queue);
        // Raw prompts may have left the queue: room for a held job.
        jobs.dispatch_wanted.notify_one();
        let listed = |id: &String| {
            queue
                .queue_running
                .iter()
                .chain(&queue.queue_pending)
                .any(|item| item.prompt_id() == id)
        };
        let missing: Vec<String> = jobs
            .registry
            .on_backend_before(backend.index, looked_at.saturating_sub(MISSING_GRACE_MS))
            .into_iter()
            .map(|(id, _)| id)
            .filter(|id| !listed(id))
            .collect();
        if !missing.is_empty() {
            reconcile_ids(&jobs, &backend, missing, &queue).await;
            // Their ends never came: unless an event of a run is just on its way, the socket
            // lost its stream (another socket took the id over), and a new one takes it back.
            if backend.silent_for() > UNHEARD_END {
                backend.resubscribe.notify_one();
            }
        }
        let ours_running = queue
            .queue_running
            .iter()
            .any(|item| jobs.registry.owner(item.prompt_id()).is_some());
        if ours_running && backend.silent_for() > SILENCE_BEFORE_RECONNECT {
            backend.resubscribe.notify_one();
        }
    }
}
