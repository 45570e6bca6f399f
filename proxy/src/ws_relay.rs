//! Relays a browser's WebSocket to ComfyUI's `/ws`, frame for frame.
//!
//! The upstream socket is opened first, so a ComfyUI that is down gives the browser a clear 502
//! instead of a socket that opens and dies. Then two pumps copy frames, one per direction. Each
//! pump awaits every send before it reads the next frame: that is the backpressure. A slow phone
//! makes the pump wait, the wait fills the TCP window from ComfyUI, and nothing queues up in the
//! relay. Binary frames (previews) pass through untouched.

use axum::extract::ws::{self, WebSocket, WebSocketUpgrade};
use axum::extract::{OriginalUri, State};
use axum::response::Response;
use bytes::Bytes;
use futures_util::future::ready;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest};
use tokio_util::sync::CancellationToken;

use crate::error::RelayError;
use crate::state::AppState;

/// Close code sent to browsers when the relay shuts down (RFC 6455 "going away").
const GOING_AWAY: u16 = 1001;
/// Close code sent to the browser when ComfyUI's side vanished without a close frame.
const UPSTREAM_GONE: u16 = 1011;
/// Browsers send little on ComfyUI's socket; a small read buffer keeps idle sockets cheap.
const BROWSER_READ_BUFFER: usize = 8 * 1024;
/// ComfyUI's frames are small but for previews; the buffer grows for those when needed.
const UPSTREAM_READ_BUFFER: usize = 16 * 1024;

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

/// Upgrades the browser's request once ComfyUI has accepted the same socket.
pub async fn relay(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    upgrade: WebSocketUpgrade,
) -> Result<Response, RelayError> {
    let path_and_query = uri.path_and_query().map_or("/ws", |pq| pq.as_str());
    let url = state.upstream.ws_url_for(path_and_query);
    // The handshake request carries ComfyUI's own Host and no Origin, so its guard lets it in.
    let request = url
        .as_str()
        .into_client_request()
        .map_err(|e| RelayError::UpstreamFailed {
            url: url.to_string(),
            detail: e.to_string(),
        })?;
    let config = WebSocketConfig::default().read_buffer_size(UPSTREAM_READ_BUFFER);
    let connect = tokio_tungstenite::connect_async_with_config(request, Some(config), false);
    let (upstream, _) = match tokio::time::timeout(state.upstream_timeout, connect).await {
        Ok(Ok(connected)) => connected,
        Ok(Err(error)) => {
            return Err(RelayError::UpstreamUnreachable {
                url: url.to_string(),
                detail: error.to_string(),
            });
        }
        Err(_elapsed) => {
            return Err(RelayError::UpstreamTimeout {
                url: url.to_string(),
                seconds: state.upstream_timeout.as_secs(),
            });
        }
    };
    let shutdown = state.shutdown.clone();
    let tasks = state.tasks.clone();
    // Each frame is written out as soon as it is sent: the pumps' awaits are the backpressure.
    let upgrade = upgrade
        .read_buffer_size(BROWSER_READ_BUFFER)
        .write_buffer_size(0);
    Ok(upgrade.on_upgrade(move |browser| {
        // Tracked so that shutdown waits for the close frames to go out.
        tasks.track_future(splice(browser, upstream, shutdown))
    }))
}

/// Runs both pumps until either side closes or the relay shuts down.
async fn splice<U>(browser: WebSocket, upstream: U, shutdown: CancellationToken)
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
    let mut upstream_rx =
        upstream_rx.filter_map(|message| ready(message.ok().and_then(from_tungstenite)));

    tokio::select! {
        () = pump(&mut browser_rx, &mut upstream_tx, None) => {}
        () = pump(&mut upstream_rx, &mut browser_tx, Some(UPSTREAM_GONE)) => {}
        () = shutdown.cancelled() => {
            let reason = "Comfy Relay is shutting down".to_owned();
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
