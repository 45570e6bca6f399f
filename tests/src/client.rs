//! Clients for tests, speaking to the relay or the double as a browser would: HTTP, and a
//! WebSocket.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// An HTTP client that goes straight to loopback, whatever proxy the environment names.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("an HTTP client")
}

/// The same, but showing redirects instead of following them.
pub fn http_without_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("an HTTP client")
}

/// A connected test socket.
pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens `url` with extra handshake headers (an `Origin`, say).
pub async fn connect(url: &str, headers: &[(&str, &str)]) -> Result<Socket, tungstenite::Error> {
    let mut request = url.into_client_request()?;
    for (name, value) in headers {
        request.headers_mut().insert(
            tungstenite::http::HeaderName::from_bytes(name.as_bytes()).expect("a header name"),
            value.parse().expect("a header value"),
        );
    }
    let (socket, _) = tokio_tungstenite::connect_async(request).await?;
    Ok(socket)
}

/// Asks for previews with metadata, as ComfyUI's own frontend does first.
pub async fn negotiate_previews(socket: &mut Socket) {
    socket
        .send(Message::text(shared::comfy::FeatureFlags::client_hello()))
        .await
        .expect("the socket accepts the hello");
}

/// Reads frames until `done` returns true for a text frame (inclusive), or `limit` passes.
/// Returns every frame read; panics on timeout, with what was read so far.
pub async fn read_until(
    socket: &mut Socket,
    limit: Duration,
    mut done: impl FnMut(&Value) -> bool,
) -> Vec<Message> {
    let mut frames = Vec::new();
    let outcome = tokio::time::timeout(limit, async {
        while let Some(message) = socket.next().await {
            let message = message.expect("a readable frame");
            let finished = match &message {
                Message::Text(text) => {
                    done(&serde_json::from_str(text.as_str()).unwrap_or_default())
                }
                Message::Close(_) => true,
                _ => false,
            };
            frames.push(message);
            if finished {
                return;
            }
        }
    })
    .await;
    if outcome.is_err() {
        let texts: Vec<_> = frames
            .iter()
            .filter_map(|m| {
                m.to_text()
                    .ok()
                    .map(|t| t.chars().take(120).collect::<String>())
            })
            .collect();
        panic!(
            "timed out after {limit:?}; read {} frames: {texts:#?}",
            frames.len()
        );
    }
    frames
}

/// Whether a frame is `executing {node: null}` for `prompt_id`: the end of its run.
pub fn is_run_end(frame: &Value, prompt_id: &str) -> bool {
    frame["type"] == "executing"
        && frame["data"]["node"].is_null()
        && frame["data"]["prompt_id"] == prompt_id
}

/// The text frames among `frames`, parsed.
pub fn texts(frames: &[Message]) -> Vec<Value> {
    frames
        .iter()
        .filter_map(|m| match m {
            Message::Text(text) => serde_json::from_str(text.as_str()).ok(),
            _ => None,
        })
        .collect()
}

/// Opens a WebSocket with a tiny receive buffer and never reads it: the slowest phone there is.
/// The caller holds the returned socket for as long as it should stay stuck.
pub async fn connect_unread(url: &str, cookie: &str) -> WebSocketStream<TcpStream> {
    let mut request = url.into_client_request().expect("a WebSocket URL");
    request
        .headers_mut()
        .insert("cookie", cookie.parse().expect("a cookie header"));
    let authority = request
        .uri()
        .authority()
        .expect("a host")
        .as_str()
        .to_owned();
    let socket = tokio::net::TcpSocket::new_v4().expect("a TCP socket");
    socket
        .set_recv_buffer_size(2048)
        .expect("a small receive buffer");
    let stream = socket
        .connect(authority.parse().expect("host:port"))
        .await
        .expect("the relay accepts");
    let (socket, _) = tokio_tungstenite::client_async(request, stream)
        .await
        .expect("the handshake completes");
    socket
}
