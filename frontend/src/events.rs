//! The tab's one event socket (`/api/events`): the device's jobs, kept current.
//!
//! The socket reconnects with exponential backoff and jitter, and at once when the page comes
//! back to the foreground (`visibilitychange`, `pageshow`) or the network returns (`online`):
//! phones freeze sockets without closing them, so a socket that looks open may be dead. Every
//! connection starts with a snapshot, so reconnecting loses nothing.

use futures_util::future::{Either, select};
use futures_util::{SinkExt as _, StreamExt};
use gloo_net::websocket::Message;
use gloo_net::websocket::futures::WebSocket;
use leptos::prelude::*;
use leptos::task::spawn_local;
use shared::api::{Event, Job};
use shared::backoff::reconnect_delay;
use shared::comfy::BinaryFrame;
use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;

#[wasm_bindgen::prelude::wasm_bindgen]
extern "C" {
    /// `index.html`'s notifier: tells of a job that ended while the page is in the background
    /// and notifications are allowed, with the relay's words for it (the relay's push says the
    /// same when the app is closed).
    #[wasm_bindgen(js_name = comfyRelayNotify, catch)]
    fn notify(job: &str) -> Result<(), wasm_bindgen::JsValue>;
}

/// The socket's state, shown to the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connection {
    /// Opening.
    Connecting,
    /// Open: changes arrive.
    Open,
    /// Lost; the next attempt comes after a pause (or at once when the page wakes up).
    Retrying,
}

/// The device's jobs as the relay reports them, shared by the whole app.
#[derive(Clone, Copy)]
pub struct Events {
    /// Jobs, newest first.
    pub jobs: RwSignal<Vec<Job>>,
    /// The latest preview of each running job, as an object URL.
    pub previews: RwSignal<Vec<(String, String)>>,
    /// The socket's state.
    pub connection: RwSignal<Connection>,
    /// Whether the relay is connected to ComfyUI, once known.
    pub comfyui: RwSignal<Option<bool>>,
    /// `false` when the relay says this device must pair first.
    pub paired: RwSignal<Option<bool>>,
}

/// The socket URL for `path` on the origin that served the page (`ws:` or `wss:`).
pub fn socket_url(path: &str) -> String {
    let location = window().location();
    let scheme = if location.protocol().as_deref() == Ok("https:") {
        "wss"
    } else {
        "ws"
    };
    let host = location.host().unwrap_or_default();
    format!("{scheme}://{host}{path}")
}

/// An object URL for image bytes.
pub fn image_url(bytes: &[u8], mime: Option<&str>) -> Option<String> {
    let parts = js_sys::Array::of1(&js_sys::Uint8Array::from(bytes));
    let options = web_sys::BlobPropertyBag::new();
    if let Some(mime) = mime {
        options.set_type(mime);
    }
    let blob = web_sys::Blob::new_with_u8_array_sequence_and_options(&parts, &options).ok()?;
    web_sys::Url::create_object_url_with_blob(&blob).ok()
}

/// Sends `()` to `kick` whenever the page wakes up or the network comes back.
fn wake_ups(kick: futures_channel::mpsc::UnboundedSender<()>) {
    let listen = |target: &web_sys::EventTarget, name: &str, only_when_visible: bool| {
        let kick = kick.clone();
        let callback = Closure::<dyn Fn()>::new(move || {
            let visible = document().visibility_state() == web_sys::VisibilityState::Visible;
            if !only_when_visible || visible {
                let _ = kick.unbounded_send(());
            }
        });
        let _ = target.add_event_listener_with_callback(name, callback.as_ref().unchecked_ref());
        // The listeners live as long as the page.
        callback.forget();
    };
    listen(&document(), "visibilitychange", true);
    listen(&window(), "pageshow", false);
    listen(&window(), "online", false);
}

impl Events {
    /// Creates the service and starts its socket.
    pub fn start() -> Self {
        let events = Self {
            jobs: RwSignal::new(Vec::new()),
            previews: RwSignal::new(Vec::new()),
            connection: RwSignal::new(Connection::Connecting),
            comfyui: RwSignal::new(None),
            paired: RwSignal::new(None),
        };
        let (kick, kicks) = futures_channel::mpsc::unbounded();
        wake_ups(kick);
        spawn_local(events.run(kicks));
        events
    }

    fn apply(&self, event: Event) {
        match event {
            Event::Snapshot {
                jobs,
                comfyui_connected,
            } => {
                crate::mark("comfy-relay:live");
                self.comfyui.set(Some(comfyui_connected));
                self.forget_previews(|id| {
                    !jobs.iter().any(|j| j.id == id && !j.state.is_finished())
                });
                self.jobs.set(jobs);
            }
            Event::Job { job } => {
                if job.state.is_finished() {
                    self.forget_previews(|id| id == job.id);
                    let known = self.jobs.with_untracked(|jobs| {
                        jobs.iter()
                            .find(|j| j.id == job.id)
                            .map(|j| j.state.is_finished())
                    });
                    // Seen unfinished, or first heard of as it ends (before the answer that
                    // queued it came); not an old job starred again.
                    let ended_now = known.map_or_else(
                        || {
                            job.finished_at.is_some_and(|at| {
                                (js_sys::Date::now() as u64).abs_diff(at) < 120_000
                            })
                        },
                        |finished| !finished,
                    );
                    if ended_now {
                        // Without the page's notifier (an older cached page) nothing is shown.
                        let _ = notify(&job.id);
                    }
                }
                self.jobs
                    .update(|jobs| match jobs.iter_mut().find(|j| j.id == job.id) {
                        Some(known) => *known = *job,
                        None => jobs.insert(0, *job),
                    });
            }
            Event::Removed { id } => self.jobs.update(|jobs| jobs.retain(|j| j.id != id)),
            Event::Comfyui { connected } => self.comfyui.set(Some(connected)),
        }
    }

    fn forget_previews(&self, forget: impl Fn(&str) -> bool) {
        self.previews.update(|previews| {
            previews.retain(|(id, url)| {
                let keep = !forget(id);
                if !keep {
                    let _ = web_sys::Url::revoke_object_url(url);
                }
                keep
            });
        });
    }

    fn preview(&self, frame: &[u8]) {
        let Ok(BinaryFrame::Preview(preview)) = BinaryFrame::parse(frame) else {
            return;
        };
        let Some(id) = preview.metadata.map(|m| m.prompt_id) else {
            return;
        };
        let Some(url) = image_url(preview.image, preview.mime.as_deref()) else {
            return;
        };
        self.previews.update(
            |previews| match previews.iter_mut().find(|(job, _)| *job == id) {
                Some((_, old)) => {
                    let _ = web_sys::Url::revoke_object_url(old);
                    *old = url;
                }
                None => previews.push((id, url)),
            },
        );
    }

    async fn run(self, mut kicks: futures_channel::mpsc::UnboundedReceiver<()>) {
        let url = socket_url("/api/events");
        let mut attempt = 0;
        loop {
            let mut woken = false;
            self.connection.set(Connection::Connecting);
            let paired = crate::api::session().await;
            if paired.is_some() {
                self.paired.set(paired);
            }
            if paired == Some(false) {
                // Not paired: nothing to connect to yet; look again later or on wake-up.
            } else if let Ok(socket) = WebSocket::open(&url) {
                let (mut sink, mut stream) = socket.split();
                loop {
                    match select(stream.next(), kicks.next()).await {
                        Either::Left((Some(Ok(message)), _)) => {
                            self.connection.set(Connection::Open);
                            attempt = 0;
                            match message {
                                Message::Text(text) => {
                                    if let Ok(event) = serde_json::from_str(&text) {
                                        self.apply(event);
                                    }
                                }
                                Message::Bytes(frame) => self.preview(&frame),
                            }
                        }
                        // The page woke up: this socket may be a frozen corpse; start afresh.
                        Either::Right(_) => {
                            let _ = sink.close().await;
                            woken = true;
                            break;
                        }
                        Either::Left(_) => break,
                    }
                }
            }
            self.connection.set(Connection::Retrying);
            if woken {
                attempt = 0;
                continue;
            }
            let delay = reconnect_delay(attempt, js_sys::Math::random());
            attempt = attempt.saturating_add(1);
            let pause = gloo_timers::future::sleep(delay);
            futures_util::pin_mut!(pause);
            // A wake-up cuts the pause short.
            let _ = select(pause, kicks.next()).await;
        }
    }
}
