//! The double's `/ws`: one client per client id, as ComfyUI keeps them.
//!
//! On connect a client gets `status` with its `sid`; if its first message is `feature_flags` it
//! gets the recorded `feature_flags` reply and type-4 previews from then on, otherwise legacy
//! type-1 previews. A second socket with the same client id replaces the first, which stays
//! open but hears nothing more (`same_client_id_*`). A client reconnecting while its prompt
//! runs gets a bare `executing {node}` (`sleep_after_reconnect`), and nothing it missed.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};

use super::{Shared, Socket};

/// A frame on its way to one client.
#[derive(Debug, Clone)]
pub enum Outgoing {
    /// A JSON text frame.
    Text(String),
    /// A preview, sent as type 4 or type 1 depending on what the client negotiated.
    Preview {
        /// The type-4 frame as recorded (prompt id already rewritten).
        with_metadata: Bytes,
    },
}

/// How many frames may wait for a slow client before the run waits for it (ComfyUI awaits
/// each send too).
const CLIENT_BUFFER: usize = 256;

/// `GET /ws?clientId=...`.
pub async fn connect(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
    upgrade: WebSocketUpgrade,
) -> Response {
    if shared.lock().refuse_sockets {
        return axum::http::StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let client_id = query
        .get("clientId")
        .cloned()
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    upgrade.on_upgrade(move |socket| serve(shared, client_id, socket))
}

/// Converts a type-4 preview frame into the legacy type-1 layout: `1`, `1` (JPEG), image.
fn legacy_preview(with_metadata: &[u8]) -> Bytes {
    let len = u32::from_be_bytes(with_metadata[4..8].try_into().expect("4 bytes")) as usize;
    let mut frame = vec![0, 0, 0, 1, 0, 0, 0, 1];
    frame.extend_from_slice(&with_metadata[8 + len..]);
    Bytes::from(frame)
}

async fn serve(shared: Arc<Shared>, client_id: String, socket: WebSocket) {
    let (tx, rx) = tokio::sync::mpsc::channel(CLIENT_BUFFER);
    let negotiated = Arc::new(AtomicBool::new(false));
    let (dropped, greeting) = {
        let mut state = shared.lock();
        state.sockets.insert(
            client_id.clone(),
            Socket {
                tx,
                negotiated: negotiated.clone(),
            },
        );
        let running = state.running.as_ref();
        let executing = running
            .filter(|r| r.job.client_id.as_deref() == Some(client_id.as_str()))
            .and_then(|r| r.current_node.clone());
        let queue_remaining = state.pending.len() + usize::from(running.is_some());
        let mut greeting = vec![json!({"type": "status", "data": {
            "status": {"exec_info": {"queue_remaining": queue_remaining}},
            "sid": client_id,
        }})];
        greeting.extend(executing.map(|node| json!({"type": "executing", "data": {"node": node}})));
        (state.drop_sockets.clone(), greeting)
    };
    talk(&shared, socket, rx, &negotiated, dropped, greeting).await;
    let mut state = shared.lock();
    if state
        .sockets
        .get(&client_id)
        .is_some_and(|socket| Arc::ptr_eq(&socket.negotiated, &negotiated))
    {
        state.sockets.remove(&client_id);
    }
}

/// Speaks to one client until it leaves or the double drops it: first the greeting frames,
/// then the run's frames, answering its `feature_flags`.
async fn talk(
    shared: &Shared,
    socket: WebSocket,
    mut rx: tokio::sync::mpsc::Receiver<Outgoing>,
    negotiated: &AtomicBool,
    dropped: tokio_util::sync::CancellationToken,
    greeting: Vec<Value>,
) {
    let (mut sink, mut stream) = socket.split();
    for frame in greeting {
        if sink
            .send(Message::Text(frame.to_string().into()))
            .await
            .is_err()
        {
            return;
        }
    }
    // A client replaced by a newer socket with its id stays open but hears nothing more.
    let mut replaced = false;
    loop {
        tokio::select! {
            () = dropped.cancelled() => return,
            outgoing = rx.recv(), if !replaced => {
                let Some(outgoing) = outgoing else {
                    replaced = true;
                    continue;
                };
                let message = match outgoing {
                    Outgoing::Text(text) => Message::Text(text.into()),
                    Outgoing::Preview { with_metadata } if negotiated.load(Ordering::SeqCst) => {
                        Message::Binary(with_metadata)
                    }
                    Outgoing::Preview { with_metadata } => Message::Binary(legacy_preview(&with_metadata)),
                };
                if sink.send(message).await.is_err() {
                    return;
                }
            }
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    let message: Value = serde_json::from_str(text.as_str()).unwrap_or_default();
                    if message["type"] == "feature_flags" {
                        negotiated.store(true, Ordering::SeqCst);
                        let reply = json!({"type": "feature_flags", "data": {
                            "supports_preview_metadata": true,
                            "max_upload_size": shared.options.max_upload_size,
                        }});
                        if sink.send(Message::Text(reply.to_string().into())).await.is_err() {
                            return;
                        }
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return,
            },
        }
    }
}

/// Sends a frame to one client id's socket, if connected, waiting while its buffer is full.
pub async fn send_to(shared: &Shared, client_id: &str, frame: Outgoing) {
    let socket = shared.lock().sockets.get(client_id).cloned();
    if let Some(socket) = socket {
        let _ = socket.tx.send(frame).await;
    }
}

/// Sends a frame to every connected client.
pub async fn broadcast(shared: &Shared, frame: Outgoing) {
    let sockets: Vec<Socket> = shared.lock().sockets.values().cloned().collect();
    for socket in sockets {
        let _ = socket.tx.send(frame.clone()).await;
    }
}
