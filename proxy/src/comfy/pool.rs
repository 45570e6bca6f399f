//! Kept-alive connections to ComfyUI for relayed requests, as nginx's `upstream keepalive`.
//!
//! The relay talks to one ComfyUI at a time, so the pool is a stack of idle connections, the
//! last used on top, each marked with the server it goes to: after ComfyUI moves (another
//! candidate answers), connections to the old one are dropped as they come up. A connection
//! goes back only once its answer has been read to the end; one whose answer was cut short is
//! closed, as HTTP/1 cannot reuse it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::uri::Authority;
use axum::http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::CONNECT_TIMEOUT;
use crate::error::error_chain;
use crate::upstream::Address;

/// At most this many idle connections are kept; more are closed.
const MAX_IDLE: usize = 64;

/// How long an idle connection may take to finish its last exchange before another request
/// gives up on it (it has, in practice, always finished: its answer was read to the end).
const READY_WAIT: Duration = Duration::from_millis(250);

/// Idle connections to ComfyUI, shared by every clone.
#[derive(Clone, Default)]
pub struct Pool {
    idle: Arc<Mutex<Vec<Connection>>>,
}

struct Connection {
    authority: Authority,
    sender: SendRequest<Body>,
}

/// A connection lent for one exchange; [`Lease::give_back`] returns it to the pool.
pub struct Lease {
    pool: Pool,
    connection: Connection,
}

/// Why an exchange with ComfyUI failed.
#[derive(Debug)]
pub enum SendError {
    /// No connection could be made.
    Connect(String),
    /// The connection failed before a whole answer head came.
    Exchange(String),
}

impl Pool {
    /// Sends `request` (its URI in origin form, `Host` set) to `address` on an idle connection,
    /// or a new one when none is left. A request an idle connection could not take (ComfyUI
    /// had just closed it) comes back unsent and goes on the next.
    pub async fn send(
        &self,
        address: &Address,
        mut request: Request<Body>,
    ) -> Result<(Response<Incoming>, Lease), SendError> {
        while let Some(mut connection) = self.take(address.authority()).await {
            match connection.sender.try_send_request(request).await {
                Ok(response) => return Ok((response, self.lease(connection))),
                Err(mut failed) => match failed.take_message() {
                    Some(unsent) => request = unsent,
                    None => return Err(SendError::Exchange(error_chain(failed.error()))),
                },
            }
        }
        let mut connection = connect(address).await?;
        match connection.sender.send_request(request).await {
            Ok(response) => Ok((response, self.lease(connection))),
            Err(error) => Err(SendError::Exchange(error_chain(&error))),
        }
    }

    fn lease(&self, connection: Connection) -> Lease {
        Lease {
            pool: self.clone(),
            connection,
        }
    }

    /// The last idle connection to `authority` that is ready for a request.
    async fn take(&self, authority: &Authority) -> Option<Connection> {
        loop {
            let mut connection = self.idle.lock().expect("lock never poisoned").pop()?;
            if connection.authority != *authority || connection.sender.is_closed() {
                continue;
            }
            if connection.sender.is_ready()
                || matches!(
                    tokio::time::timeout(READY_WAIT, connection.sender.ready()).await,
                    Ok(Ok(()))
                )
            {
                return Some(connection);
            }
        }
    }
}

impl Lease {
    /// Returns the connection for the next request; call only once its answer has been read
    /// to the end.
    pub fn give_back(self) {
        if self.connection.sender.is_closed() {
            return;
        }
        let mut idle = self.pool.idle.lock().expect("lock never poisoned");
        if idle.len() < MAX_IDLE {
            idle.push(self.connection);
        }
    }
}

/// Opens a connection to `address` and runs it in its own task until the pool drops it.
async fn connect(address: &Address) -> Result<Connection, SendError> {
    let Some(socket) = address.socket() else {
        return Err(SendError::Connect(
            "the relay speaks plain HTTP to ComfyUI (an http:// URL)".to_owned(),
        ));
    };
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(socket)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => return Err(SendError::Connect(error_chain(&error))),
        Err(_) => {
            return Err(SendError::Connect(format!(
                "no connection within {} s",
                CONNECT_TIMEOUT.as_secs()
            )));
        }
    };
    // Small requests and answers must not wait for Nagle's algorithm.
    stream
        .set_nodelay(true)
        .map_err(|error| SendError::Connect(error_chain(&error)))?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|error| SendError::Connect(error_chain(&error)))?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(
                "a relaying connection to ComfyUI ended: {}",
                error_chain(&error)
            );
        }
    });
    Ok(Connection {
        authority: address.authority().clone(),
        sender,
    })
}

#[cfg(test)]
pub(super) mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::BodyExt as _;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpListener;

    use super::*;

    /// A server on loopback that answers `ok` to every request and, when `close_after` is
    /// set, closes each connection after its first answer, as a server whose keep-alive
    /// time ran out. Returns its address and how many connections it accepted.
    pub(in crate::comfy) async fn server(close_after: bool) -> (Arc<Address>, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&accepted);
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    let mut buffer = [0; 1024];
                    while let Ok(read @ 1..) = stream.read(&mut buffer).await {
                        seen.extend_from_slice(&buffer[..read]);
                        while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                            seen.drain(..end + 4);
                            let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                            stream.write_all(answer).await.unwrap();
                            if close_after {
                                return;
                            }
                        }
                    }
                });
            }
        });
        let url = format!("http://127.0.0.1:{port}/").parse().unwrap();
        (Arc::new(Address::new(url)), accepted)
    }

    fn get() -> Request<Body> {
        let mut request = Request::new(Body::empty());
        *request.uri_mut() = "/system_stats".parse().unwrap();
        request
            .headers_mut()
            .insert(axum::http::header::HOST, "127.0.0.1".parse().unwrap());
        request
    }

    /// One exchange read to the end, its connection given back; the body as text.
    async fn exchange(pool: &Pool, address: &Address) -> String {
        let (response, lease) = pool.send(address, get()).await.unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        lease.give_back();
        String::from_utf8(body.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn exchanges_read_to_the_end_share_one_connection() {
        let (address, accepted) = server(false).await;
        let pool = Pool::default();
        for _ in 0..5 {
            assert_eq!(exchange(&pool, &address).await, "ok");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_connection_the_server_closed_while_idle_is_replaced_without_failing_a_request() {
        let (address, accepted) = server(true).await;
        let pool = Pool::default();
        for _ in 0..3 {
            assert_eq!(exchange(&pool, &address).await, "ok");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_connection_whose_answer_was_not_read_is_never_reused() {
        let (address, accepted) = server(false).await;
        let pool = Pool::default();
        let (_unread, lease) = pool.send(&address, get()).await.unwrap();
        drop(lease);
        assert_eq!(exchange(&pool, &address).await, "ok");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn connections_to_a_server_comfyui_moved_from_are_not_used_for_the_new_one() {
        let (old, old_accepted) = server(false).await;
        let (new, new_accepted) = server(false).await;
        let pool = Pool::default();
        assert_eq!(exchange(&pool, &old).await, "ok");
        assert_eq!(exchange(&pool, &new).await, "ok");
        assert_eq!(exchange(&pool, &new).await, "ok");
        assert_eq!(old_accepted.load(Ordering::SeqCst), 1);
        assert_eq!(new_accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_server_that_is_not_there_is_a_connect_failure() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let address = Address::new(format!("http://127.0.0.1:{port}/").parse().unwrap());
        let failure = Pool::default().send(&address, get()).await.err().unwrap();
        assert!(matches!(failure, SendError::Connect(_)), "{failure:?}");
    }
}
