//! The relay's own HTTP server: a connection that cannot be held open, and a host that cannot
//! hold them all.
//!
//! axum's `serve` sets no timer, so a client that sends one header byte a second keeps its
//! connection forever, and a host that opens a thousand such connections exhausts the relay's
//! file descriptors for everyone. Here:
//! - headers must arrive whole within [`HEADER_READ_TIMEOUT`], which also ends idle keep-alive
//!   connections (hyper restarts that timer whenever it waits for the next request);
//! - a client address may hold at most `per_address` connections that have not yet carried an
//!   authenticated request (a paired phone's connections stop counting once they have), and
//!   the relay at most `total` connections; past either the connection gets a short 503 and is
//!   closed, so a flood from one address never stops another;
//! - request bodies are bounded and must keep flowing ([`crate::limits`]).
//!
//! Each accepted connection holds a [`ConnectionSlot`]; request extensions carry it so that
//! authentication can move it out of its address's unauthenticated count, and upgraded sockets
//! keep it, so a WebSocket counts towards the total for as long as it is open.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long a client may take to send a request's headers, and how long an idle keep-alive
/// connection stays open.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the relay waits for the request of a connection over the caps, and then tries to
/// write its 503.
const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long to wait after the system refused to accept (out of file descriptors, say).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// How many connections the relay holds.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Connections in all.
    pub total: usize,
    /// Connections of one client address that have not carried an authenticated request.
    pub per_address: usize,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    unauthenticated: HashMap<IpAddr, usize>,
}

/// The connections the relay holds now, counted against [`ConnectionLimits`].
#[derive(Debug)]
pub struct Connections {
    limits: ConnectionLimits,
    counts: Mutex<Counts>,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    Total,
    Address,
}

/// One open connection's place in the counts, given back when the last holder drops it.
#[derive(Debug)]
pub struct ConnectionSlot {
    address: SocketAddr,
    connections: Arc<Connections>,
    authenticated: AtomicBool,
}

impl Connections {
    /// No connections yet.
    pub fn new(limits: ConnectionLimits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            counts: Mutex::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn admit(self: &Arc<Self>, address: SocketAddr) -> Result<ConnectionSlot, Refusal> {
        let ip = address.ip();
        let mut counts = self.lock();
        if counts.total >= self.limits.total {
            return Err(Refusal::Total);
        }
        let of_address = counts.unauthenticated.entry(ip).or_default();
        if *of_address >= self.limits.per_address {
            return Err(Refusal::Address);
        }
        *of_address += 1;
        counts.total += 1;
        Ok(ConnectionSlot {
            address,
            connections: self.clone(),
            authenticated: AtomicBool::new(false),
        })
    }

    fn release_unauthenticated(counts: &mut Counts, ip: IpAddr) {
        if let Some(count) = counts.unauthenticated.get_mut(&ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.unauthenticated.remove(&ip);
            }
        }
    }

    #[cfg(test)]
    fn open(&self) -> usize {
        self.lock().total
    }
}

impl ConnectionSlot {
    /// The connection carried an authenticated request: it no longer counts towards its
    /// address's unauthenticated connections.
    pub fn authenticated(&self) {
        if !self.authenticated.swap(true, Ordering::SeqCst) {
            let mut counts = self.connections.lock();
            Connections::release_unauthenticated(&mut counts, self.address.ip());
        }
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut counts = self.connections.lock();
        counts.total = counts.total.saturating_sub(1);
        if !self.authenticated.load(Ordering::SeqCst) {
            Connections::release_unauthenticated(&mut counts, self.address.ip());
        }
    }
}

/// The most of a refused connection's request read before answering it.
const REFUSAL_READ: usize = 8 * 1024;

/// Answers a connection over the caps with 503 and closes it. Its request's head is read first
/// (briefly, and at most [`REFUSAL_READ`]), so that an HTTP client sees an answer to it.
async fn refuse(mut stream: TcpStream, refusal: Refusal) {
    let read_head = async {
        let mut head = Vec::with_capacity(1024);
        let mut buffer = [0u8; 1024];
        while head.len() < REFUSAL_READ && !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(read) => head.extend_from_slice(&buffer[..read]),
            }
        }
    };
    let _ = tokio::time::timeout(REFUSAL_WRITE_TIMEOUT, read_head).await;
    let why = match refusal {
        Refusal::Total => "Comfy Relay is serving as many connections as it may; try again soon.",
        Refusal::Address => {
            "This address has too many connections open without being paired; close some \
             or pair this device."
        }
    };
    let body = serde_json::to_string(&shared::api::ErrorBody {
        error: why.to_owned(),
        detail: None,
    })
    .expect("an error body serialises");
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nretry-after: 5\r\nx-content-type-options: nosniff\r\n\
         connection: close\r\n\r\n{body}",
        body.len()
    );
    let write = async {
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(REFUSAL_WRITE_TIMEOUT, write).await;
}

/// What the relay serves on its port.
pub struct Serving {
    /// The app.
    pub app: crate::App,
    /// With HTTPS on: what takes the handshakes (the app is then served over TLS only), and
    /// what plain HTTP connections get instead.
    pub tls: Option<(TlsAcceptor, crate::App)>,
}

/// Serves on `listener` until `shutdown` is cancelled, then lets open requests finish
/// (connections are told to close once idle); returns once the listener is closed. The tasks
/// serving connections are tracked by `tasks`.
pub async fn serve(
    listener: TcpListener,
    serving: Serving,
    connections: Arc<Connections>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let http = Arc::new(http);
    loop {
        let (stream, address) = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, or a connection reset before it was accepted:
                    // the listener itself is fine.
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        // Small answers and event frames go out at once, not after the last one's ACK (as
        // nginx's `tcp_nodelay`).
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "cannot turn off Nagle's algorithm");
        }
        let slot = match connections.admit(address) {
            Ok(slot) => Arc::new(slot),
            Err(refusal) => {
                tracing::warn!(ip = %address.ip(), ?refusal, "refused a connection over the caps");
                tasks.spawn(refuse(stream, refusal));
                continue;
            }
        };
        let (http, shutdown) = (Arc::clone(&http), shutdown.clone());
        let Some((acceptor, plain)) = serving.tls.clone() else {
            let service = ConnectionService {
                app: serving.app.clone(),
                slot,
            };
            tasks.spawn(serve_connection(http, stream, service, shutdown));
            continue;
        };
        let app = serving.app.clone();
        tasks.spawn(async move {
            // The first byte says what the client speaks; it must come as soon as headers must.
            let mut first = [0u8; 1];
            let peeked = tokio::time::timeout(HEADER_READ_TIMEOUT, stream.peek(&mut first)).await;
            if !matches!(peeked, Ok(Ok(1))) {
                return;
            }
            if first[0] != crate::tls::HANDSHAKE_RECORD {
                let service = ConnectionService { app: plain, slot };
                return serve_connection(http, stream, service, shutdown).await;
            }
            let handshake = tokio::time::timeout(HEADER_READ_TIMEOUT, acceptor.accept(stream));
            match handshake.await {
                Ok(Ok(stream)) => {
                    let service = ConnectionService { app, slot };
                    serve_connection(http, stream, service, shutdown).await;
                }
                Ok(Err(error)) => tracing::debug!(%error, %address, "a TLS handshake failed"),
                Err(_) => tracing::debug!(%address, "a TLS handshake took too long"),
            }
        });
    }
}

/// Serves one connection's requests until it ends, or until `shutdown` (then once the request
/// in hand is answered).
async fn serve_connection<S>(
    http: Arc<hyper::server::conn::http1::Builder>,
    stream: S,
    service: ConnectionService,
    shutdown: CancellationToken,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let address = service.slot.address;
    let connection = http
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(%error, %address, "connection ended with an error");
            }
            return;
        }
        () = shutdown.cancelled() => connection.as_mut().graceful_shutdown(),
    }
    let _ = connection.await;
}

/// What serves one connection's requests: each carries the connection's slot into the app.
struct ConnectionService {
    app: crate::App,
    slot: Arc<ConnectionSlot>,
}

impl hyper::service::Service<hyper::Request<hyper::body::Incoming>> for ConnectionService {
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = crate::gate::Answer;

    fn call(&self, request: hyper::Request<hyper::body::Incoming>) -> Self::Future {
        let mut request = request.map(axum::body::Body::new);
        request.extensions_mut().insert(Arc::clone(&self.slot));
        self.app.answer(request)
    }
}

/// The peer address of a request served by [`serve`].
pub fn peer(request: &axum::extract::Request) -> Option<SocketAddr> {
    request
        .extensions()
        .get::<Arc<ConnectionSlot>>()
        .map(|slot| slot.address)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, last], 1000 + u16::from(last)))
    }

    #[test]
    fn one_address_is_capped_before_it_authenticates_and_others_still_get_in() {
        let connections = Connections::new(ConnectionLimits {
            total: 10,
            per_address: 2,
        });
        let a1 = connections.admit(ip(1)).unwrap();
        let _a2 = connections.admit(ip(1)).unwrap();
        assert_eq!(connections.admit(ip(1)).unwrap_err(), Refusal::Address);
        let _b = connections.admit(ip(2)).unwrap();

        a1.authenticated();
        let _a3 = connections.admit(ip(1)).unwrap();
        assert_eq!(connections.admit(ip(1)).unwrap_err(), Refusal::Address);
        assert_eq!(connections.open(), 4);
        drop(a1);
        assert_eq!(connections.open(), 3);
        assert_eq!(connections.admit(ip(1)).unwrap_err(), Refusal::Address);
    }

    #[test]
    fn the_total_is_capped_and_slots_come_back_when_dropped() {
        let connections = Connections::new(ConnectionLimits {
            total: 2,
            per_address: 5,
        });
        let a = connections.admit(ip(1)).unwrap();
        let _b = connections.admit(ip(2)).unwrap();
        assert_eq!(connections.admit(ip(3)).unwrap_err(), Refusal::Total);
        drop(a);
        assert!(connections.admit(ip(3)).is_ok());
    }
}
