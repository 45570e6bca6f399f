//! The tab's WebSocket to ComfyUI (through the relay), reconnecting with backoff.

use futures_util::{SinkExt, StreamExt};
use gloo_net::websocket::Message;
use gloo_net::websocket::futures::WebSocket;
use leptos::prelude::*;
use leptos::task::spawn_local;
use shared::comfy::{BinaryFrame, FeatureFlags, ServerMessage};

use shared::backoff::reconnect_delay;

/// The socket's state, shown to the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connection {
    /// Opening.
    Connecting,
    /// Open: events arrive.
    Open,
    /// Lost; the next attempt comes after a pause.
    Retrying,
}

/// What the socket delivers to the app.
#[derive(Debug, Clone)]
pub enum Incoming {
    /// A text frame.
    Message(Box<ServerMessage>),
    /// A live preview, as an object URL the receiver must revoke when done with it.
    Preview {
        /// The prompt it belongs to, when the frame says.
        prompt_id: Option<String>,
        /// `blob:` URL of the image.
        url: String,
    },
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

fn decode(message: Message) -> Option<Incoming> {
    match message {
        Message::Text(text) => ServerMessage::parse(&text)
            .ok()
            .map(|m| Incoming::Message(Box::new(m))),
        Message::Bytes(bytes) => match BinaryFrame::parse(&bytes).ok()? {
            BinaryFrame::Preview(preview) => Some(Incoming::Preview {
                prompt_id: preview.metadata.map(|m| m.prompt_id),
                url: image_url(preview.image, preview.mime.as_deref())?,
            }),
            BinaryFrame::Unknown { .. } => None,
        },
    }
}

/// Keeps a socket to ComfyUI open for `client_id`, forever, calling `on_incoming` for each
/// frame and keeping `state` current.
pub fn connect(
    client_id: String,
    state: RwSignal<Connection>,
    on_incoming: impl Fn(Incoming) + 'static,
) {
    let url = socket_url(&format!("/ws?clientId={client_id}"));
    spawn_local(async move {
        let mut attempt = 0;
        loop {
            state.set(Connection::Connecting);
            if let Ok(socket) = WebSocket::open(&url) {
                let (mut sink, mut stream) = socket.split();
                // The send completes once the socket is open.
                if sink
                    .send(Message::Text(FeatureFlags::client_hello()))
                    .await
                    .is_ok()
                {
                    state.set(Connection::Open);
                    attempt = 0;
                    while let Some(Ok(message)) = stream.next().await {
                        if let Some(incoming) = decode(message) {
                            on_incoming(incoming);
                        }
                    }
                }
            }
            state.set(Connection::Retrying);
            let delay = reconnect_delay(attempt, js_sys::Math::random());
            gloo_timers::future::sleep(delay).await;
            attempt = attempt.saturating_add(1);
        }
    });
}
