//! Relays a browser's WebSocket to ComfyUI's `/ws`, frame for frame.
//!
//! ComfyUI sends a prompt's events to the socket of the client id that queued it, and a newer
//! socket with the same id silently takes the stream over. So a raw client never opens ComfyUI's
//! socket under the id it asks for: it gets its device's own id for it
//! ([`DeviceId::comfy_client_id`]), which no other device and not the relay can have. The
//! `executed` messages it receives tell the relay which files its prompts made, so that `/view`
//! serves them to it. Its socket closes when its device is revoked.
//!
//! The upstream socket is opened first, so a ComfyUI that is down gives the browser a clear 502
//! instead of a socket that opens and dies. Then two pumps copy frames, one per direction. Each
//! pump awaits every send before it reads the next frame: that is the backpressure. A slow phone
//! makes the pump wait, the wait fills the TCP window from ComfyUI, and nothing queues up in the
//! relay. Binary frames (previews) pass through untouched.

use std::collections::HashMap;
use std::sync::Arc;

use crate::device::DeviceId;
use crate::device_sockets::SocketToken;
use crate::error::RelayError;
use crate::server::ConnectionSlot;
use crate::state::AppState;
use axum::Extension;
use axum::extract::ws::{self, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::{IntoResponse as _, Response};
use bytes::Bytes;
use futures_util::future::ready;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use shared::comfy::ServerMessage;
use tokio_tungstenite::tungstenite;

/// Close code sent to browsers when the relay shuts down (RFC 6455 "going away").
const GOING_AWAY: u16 = 1001;
/// Close code sent to the browser when ComfyUI's side vanished without a close frame.
const UPSTREAM_GONE: u16 = 1011;
/// Browsers send little on ComfyUI's socket; a small read buffer keeps idle sockets cheap.
const BROWSER_READ_BUFFER: usize = 8 * 1024;

/// One frame crossing the relay, whichever library framed it.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// A text frame.
    Text(String),
    /// A binary frame, forwarded without copying.
    Binary(Bytes),
    /// A close frame, with its code and reason when it has them.
    Close(Option<(u16, String)>),
}

/// Upgrades the browser's request once ComfyUI has accepted a socket under the device's own id
/// for the `clientId` it asked for.
pub async fn relay(
    State(state): State<AppState>,
    Extension(device): Extension<DeviceId>,
    slot: Option<Extension<Arc<ConnectionSlot>>>,
    Query(query): Query<HashMap<String, String>>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, RelayError> {
    // Closed at shutdown, or when the device is revoked.
    let closed = match state.sockets.token_for(&device) {
        Ok(closed) => closed,
        Err(too_many) => return Ok(too_many.into_response()),
    };
    let client_id = device.comfy_client_id(query.get("clientId").map(String::as_str));
    let upstream = state.jobs.comfy().connect_ws(&client_id).await?;
    let tasks = state.tasks.clone();
    let files = state.jobs.clone();
    // Each frame is written out as soon as it is sent: the pumps' awaits are the backpressure.
    let upgrade = upgrade
        .read_buffer_size(BROWSER_READ_BUFFER)
        .write_buffer_size(0);
    Ok(upgrade.on_upgrade(move |browser| {
        // The connection's slot stays taken while the socket is open.
        let _slot = slot;
        let note_files = move |frame: &Frame| {
            if let Frame::Text(text) = frame
                && text.contains("\"executed\"")
                && let Ok(ServerMessage::Executed(executed)) = ServerMessage::parse(text)
            {
                files.files.grant_output(&device, &executed.output);
            }
        };
        // Tracked so that shutdown waits for the close frames to go out.
        tasks.track_future(async move {
            splice(browser, upstream, closed, note_files).await;
            drop(_slot);
        })
    }))
}

/// Runs both pumps until either side closes, or `closed` is cancelled (shutdown, revocation);
/// `seen` looks at each frame from ComfyUI on its way.
async fn splice<U>(browser: WebSocket, upstream: U, closed: SocketToken, seen: impl Fn(&Frame))
where
    U: Stream<Item = Result<tungstenite::Message, tungstenite::Error>>
        + Sink<tungstenite::Message, Error = tungstenite::Error>
        + Unpin,
{
    let (browser_tx, browser_rx) = browser.split();
    let (upstream_tx, upstream_rx) = upstream.split();
    // `ready` futures are Unpin, so the adapted halves can be pumped by reference.
    let mut browser_tx = browser_tx.with(|frame| ready(Ok::<_, axum::Error>(to_axum(frame))));
    let mut upstream_tx =
        upstream_tx.with(|frame| ready(Ok::<_, tungstenite::Error>(to_tungstenite(frame))));
    let mut browser_rx = browser_rx.filter_map(|message| ready(message.ok().and_then(from_axum)));
    let mut upstream_rx = upstream_rx
        .filter_map(|message| ready(message.ok().and_then(from_tungstenite)))
        .inspect(seen);

    tokio::select! {
        () = pump(&mut browser_rx, &mut upstream_tx, None) => {}
        () = pump(&mut upstream_rx, &mut browser_tx, Some(UPSTREAM_GONE)) => {}
        () = closed.cancelled() => {
            let reason = "Comfy Relay is shutting down, or this device was unpaired".to_owned();
            let _ = browser_tx.send(Frame::Close(Some((GOING_AWAY, reason)))).await;
            let _ = upstream_tx.send(Frame::Close(None)).await;
        }
    }
}

/// Copies frames from `from` to `to` until a close frame passed or either side is gone.
///
/// When `from` ends without a close frame, `to` is closed with `vanished_code` (if given), so
/// the other side learns why instead of waiting on a dead socket.
pub async fn pump<S, D>(from: &mut S, to: &mut D, vanished_code: Option<u16>)
where
    S: Stream<Item = Frame> + Unpin,
    D: Sink<Frame> + Unpin,
{
    while let Some(frame) = from.next().await {
        let closing = matches!(frame, Frame::Close(_));
        // Awaiting the send before reading on is the backpressure.
        if to.send(frame).await.is_err() || closing {
            return;
        }
    }
    let close = vanished_code.map(|code| (code, "the other side went away".to_owned()));
    let _ = to.send(Frame::Close(close)).await;
}

fn from_axum(message: ws::Message) -> Option<Frame> {
    match message {
        ws::Message::Text(text) => Some(Frame::Text(text.as_str().to_owned())),
        ws::Message::Binary(bytes) => Some(Frame::Binary(bytes)),
        ws::Message::Close(close) => Some(Frame::Close(
            close.map(|c| (c.code, c.reason.as_str().to_owned())),
        )),
        // Each hop answers its own pings.
        ws::Message::Ping(_) | ws::Message::Pong(_) => None,
    }
}

fn to_axum(frame: Frame) -> ws::Message {
    match frame {
        Frame::Text(text) => ws::Message::Text(text.into()),
        Frame::Binary(bytes) => ws::Message::Binary(bytes),
        Frame::Close(close) => ws::Message::Close(close.map(|(code, reason)| ws::CloseFrame {
            code,
            reason: reason.into(),
        })),
    }
}

fn from_tungstenite(message: tungstenite::Message) -> Option<Frame> {
    match message {
        tungstenite::Message::Text(text) => Some(Frame::Text(text.as_str().to_owned())),
        tungstenite::Message::Binary(bytes) => Some(Frame::Binary(bytes)),
        tungstenite::Message::Close(close) => Some(Frame::Close(
            close.map(|c| (u16::from(c.code), c.reason.as_str().to_owned())),
        )),
        tungstenite::Message::Ping(_)
        | tungstenite::Message::Pong(_)
        | tungstenite::Message::Frame(_) => None,
    }
}

fn to_tungstenite(frame: Frame) -> tungstenite::Message {
    match frame {
        Frame::Text(text) => tungstenite::Message::Text(text.into()),
        Frame::Binary(bytes) => tungstenite::Message::Binary(bytes),
        Frame::Close(close) => tungstenite::Message::Close(close.map(|(code, reason)| {
            tungstenite::protocol::CloseFrame {
                code: code.into(),
                reason: reason.into(),
            }
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_channel::mpsc;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn frames_pass_in_order_and_the_pump_stops_after_a_close() {
        let frames = vec![
            Frame::Text("{\"type\":\"status\"}".into()),
            Frame::Binary(Bytes::from_static(&[0, 0, 0, 4, 1, 2])),
            Frame::Close(Some((1000, "bye".into()))),
            Frame::Text("never sent".into()),
        ];
        let mut from = futures_util::stream::iter(frames.clone());
        let (mut to, received) = mpsc::unbounded();
        pump(&mut from, &mut to, Some(UPSTREAM_GONE)).await;
        drop(to);
        let received: Vec<_> = received.collect().await;
        assert_eq!(received, frames[..3]);
    }

    #[tokio::test]
    async fn a_source_that_vanishes_closes_the_other_side_with_a_reason() {
        let mut from = futures_util::stream::iter(vec![Frame::Text("x".into())]);
        let (mut to, received) = mpsc::unbounded();
        pump(&mut from, &mut to, Some(UPSTREAM_GONE)).await;
        drop(to);
        let received: Vec<_> = received.collect().await;
        assert!(matches!(
            received.last(),
            Some(Frame::Close(Some((1011, _))))
        ));
    }

    #[tokio::test]
    async fn a_reader_that_does_not_read_stops_the_pump_from_pulling_more() {
        let pulled = Arc::new(AtomicUsize::new(0));
        let counter = pulled.clone();
        let mut from = futures_util::stream::iter(0..1000).map(move |i| {
            counter.fetch_add(1, Ordering::SeqCst);
            Frame::Text(i.to_string())
        });
        // A channel with room for one frame, whose receiver never reads.
        let (mut to, _never_read) = mpsc::channel::<Frame>(0);
        let stalled = tokio::time::timeout(
            std::time::Duration::from_millis(200),
            pump(&mut from, &mut to, None),
        )
        .await;
        assert!(stalled.is_err(), "the pump must wait for the slow reader");
        assert!(
            pulled.load(Ordering::SeqCst) <= 3,
            "pulled {}",
            pulled.load(Ordering::SeqCst)
        );
    }

    #[test]
    fn frames_convert_both_ways_without_change() {
        let frames = [
            Frame::Text("héllo".into()),
            Frame::Binary(Bytes::from_static(b"\x00\x00\x00\x01jpeg")),
            Frame::Close(Some((1001, "going".into()))),
            Frame::Close(None),
        ];
        for frame in frames {
            assert_eq!(from_axum(to_axum(frame.clone())), Some(frame.clone()));
            assert_eq!(from_tungstenite(to_tungstenite(frame.clone())), Some(frame));
        }
    }
}
