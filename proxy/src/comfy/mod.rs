//! The relay's one client of ComfyUI: relayed requests (streamed both ways), typed calls for its
//! own work (jobs, reconciliation, node schemas), uploads and the event socket. `comfy-relay run`
//! uses it too, with a fixed server and a bearer token.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, Response, Version};
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use serde::de::DeserializeOwned;
use shared::comfy::{
    History, HistoryEntry, InterruptRequest, PromptAccepted, PromptRejected, PromptRequest, Queue,
    QueueEdit,
};
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::error::{RelayError, error_chain};
use crate::upstream::{Target, Upstream};

mod pool;

pub use pool::SendError;
use pool::{Lease, Pool};

/// `/object_info/{class}`, the class percent-encoded as one path segment.
pub fn object_info_path(class: &str) -> String {
    let mut path = url::Url::parse("http://x/object_info/").expect("a valid URL");
    path.path_segments_mut()
        .expect("an http URL has segments")
        .pop_if_empty()
        .push(class);
    path.path().to_owned()
}

/// ComfyUI's event socket, as [`ComfyClient::connect_ws`] opens it.
pub type ComfySocket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// ComfyUI's frames are small but for previews; the read buffer grows for those when needed.
const SOCKET_READ_BUFFER: usize = 16 * 1024;

/// How long connecting to ComfyUI may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Calls ComfyUI wherever [`Upstream`] says it is.
///
/// Relayed requests go over hyper's HTTP/1 connections in the relay's own pool
/// ([`ComfyClient::forward`]): reqwest's URL parsing, redirect and retry layers were a fifth of
/// a relayed request's time, and hyper-util's general pool another tenth. The relay's
/// own calls (JSON, uploads, probes) use reqwest.
#[derive(Clone)]
pub struct ComfyClient {
    http: reqwest::Client,
    relay: Pool,
    upstream: Arc<Upstream>,
    timeout: Duration,
    /// Sent as `Authorization: Bearer` (by `comfy-relay run` to a relay that needs its token).
    bearer: Option<String>,
}

/// The relay's reqwest client: bounded connect and read times (a stalled body fails instead of
/// hanging for ever), no redirects, no proxy.
pub fn http_client(read_timeout: Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(read_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
}

/// A response body from ComfyUI that fails once no frame has come for `limit`: a ComfyUI hung
/// mid-answer ends the relayed answer instead of holding it open for ever. The timer starts
/// only when a frame is not there at once: a small answer arrives whole and needs none.
///
/// It holds the connection's lease and gives it back once the answer has been read to the end.
struct SilenceGuard {
    body: hyper::body::Incoming,
    target: Target,
    limit: Duration,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    lease: Option<Lease>,
}

impl SilenceGuard {
    fn new(body: hyper::body::Incoming, target: Target, limit: Duration, lease: Lease) -> Self {
        let mut guard = Self {
            body,
            target,
            limit,
            deadline: None,
            lease: Some(lease),
        };
        guard.give_back_at_end();
        guard
    }

    fn give_back_at_end(&mut self) {
        if self.body.is_end_stream()
            && let Some(lease) = self.lease.take()
        {
            lease.give_back();
        }
    }
}

impl HttpBody for SilenceGuard {
    type Data = Bytes;
    type Error = RelayError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, RelayError>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.body).poll_frame(cx) {
            if let Some(deadline) = &mut this.deadline {
                deadline
                    .as_mut()
                    .reset(tokio::time::Instant::now() + this.limit);
            }
            if !matches!(frame, Some(Err(_))) {
                this.give_back_at_end();
            }
            return Poll::Ready(frame.map(|frame| {
                frame.map_err(|error| RelayError::Failed {
                    url: this.target.to_string(),
                    detail: error_chain(&error),
                })
            }));
        }
        let limit = this.limit;
        let deadline = this
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        ready!(deadline.as_mut().poll(cx));
        Poll::Ready(Some(Err(RelayError::Timeout {
            url: this.target.to_string(),
            seconds: this.limit.as_secs(),
        })))
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Why ComfyUI did not queue a prompt.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// ComfyUI's validation refused it (400 with `node_errors`).
    #[error("ComfyUI refused the workflow")]
    Rejected(PromptRejected),
    /// ComfyUI answered something else than it documents.
    #[error("ComfyUI answered {status}: {text}")]
    Unexpected {
        /// HTTP status.
        status: u16,
        /// Body, as text.
        text: String,
    },
    /// ComfyUI is down or slow.
    #[error(transparent)]
    Upstream(#[from] RelayError),
}

impl ComfyClient {
    /// A client using the relay's HTTP client and upstream.
    pub fn new(http: reqwest::Client, upstream: Arc<Upstream>, timeout: Duration) -> Self {
        Self {
            http,
            relay: Pool::default(),
            upstream,
            timeout,
            bearer: None,
        }
    }

    /// A client of the one server at `base` (ComfyUI, or a relay in front of it), sending
    /// `bearer` with every request when given; for `comfy-relay run`.
    pub fn fixed(
        base: url::Url,
        bearer: Option<String>,
        timeout: Duration,
    ) -> reqwest::Result<Self> {
        let client = Self::new(
            http_client(timeout)?,
            Arc::new(Upstream::new(vec![base])),
            timeout,
        );
        Ok(Self { bearer, ..client })
    }

    /// A request to `path` (with its query) on the server, with the bearer when there is one.
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.request_to(method, self.upstream.url_for(path))
    }

    /// The same for a URL already made (the typed calls keep it for their errors).
    fn request_to(&self, method: Method, url: url::Url) -> reqwest::RequestBuilder {
        let request = self.http.request(method, url);
        match &self.bearer {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        url: &url::Url,
    ) -> Result<reqwest::Response, RelayError> {
        self.upstream
            .answer_within(self.timeout, url, async {
                request
                    .timeout(self.timeout)
                    .send()
                    .await
                    .map_err(|e| RelayError::from_upstream(url, e, self.timeout.as_secs()))
            })
            .await
    }

    /// [`Self::send`], with any answer but a success an error naming its status.
    async fn send_ok(
        &self,
        request: reqwest::RequestBuilder,
        url: &url::Url,
    ) -> Result<reqwest::Response, RelayError> {
        let response = self.send(request, url).await?;
        match response.status() {
            status if status.is_success() => Ok(response),
            status => Err(RelayError::Failed {
                url: url.to_string(),
                detail: format!("status {status}"),
            }),
        }
    }

    /// `GET path`, its JSON answer read as `T`.
    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, RelayError> {
        let url = self.upstream.url_for(path);
        self.send_ok(self.request_to(Method::GET, url.clone()), &url)
            .await?
            .json()
            .await
            .map_err(|e| RelayError::from_upstream(&url, e, self.timeout.as_secs()))
    }

    /// `GET /view` of `file`, its bytes left to stream.
    pub async fn download(
        &self,
        file: &shared::comfy::ImageRef,
    ) -> Result<reqwest::Response, RelayError> {
        let url = self
            .upstream
            .url_for(&format!("/view?{}", file.view_query()));
        self.send_ok(self.request_to(Method::GET, url.clone()), &url)
            .await
    }

    async fn post_json(&self, path: &str, body: &impl serde::Serialize) -> Result<(), RelayError> {
        let url = self.upstream.url_for(path);
        self.send_ok(self.request_to(Method::POST, url.clone()).json(body), &url)
            .await?;
        Ok(())
    }

    /// Sends `request` (its method, headers and streamed body) to `path_and_query` over the
    /// relaying client, and returns ComfyUI's answer within the client's timeout. Its body
    /// streams on and fails if ComfyUI goes silent for that long mid-answer. The request goes
    /// as HTTP/1.1 whatever the browser spoke; its extensions (the relay's own notes) are not
    /// sent by hyper.
    pub async fn forward(
        &self,
        path_and_query: &str,
        mut request: Request<Body>,
    ) -> Result<Response<Body>, RelayError> {
        let address = self.upstream.address();
        let target = address.target(path_and_query)?;
        *request.uri_mut() = target.path().clone();
        *request.version_mut() = Version::HTTP_11;
        request
            .headers_mut()
            .insert(axum::http::header::HOST, target.host().clone());
        let answer = async {
            self.relay
                .send(&address, request)
                .await
                .map_err(|error| RelayError::from_relay(&target, error))
        };
        let (mut response, lease) = self
            .upstream
            .answer_within(self.timeout, &target, answer)
            .await?;
        // What hyper noted for itself (such as a reason phrase) is not the browser's.
        response.extensions_mut().clear();
        *response.version_mut() = Version::HTTP_11;
        Ok(response.map(|body| Body::new(SilenceGuard::new(body, target, self.timeout, lease))))
    }

    /// Streams a multipart form (`content_type` names its boundary) to `path` (`/upload/image`
    /// or `/upload/mask`). No deadline on the answer: ComfyUI answers once the whole picture
    /// has arrived, which from a phone on slow Wi-Fi may take minutes; a ComfyUI that stops
    /// answering still ends it.
    pub async fn upload(
        &self,
        path: &str,
        content_type: &str,
        body: reqwest::Body,
    ) -> Result<reqwest::Response, RelayError> {
        let url = self.upstream.url_for(path);
        let request = self
            .request_to(Method::POST, url.clone())
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body);
        self.upstream
            .answer_within(Duration::MAX, &url, async {
                request
                    .send()
                    .await
                    .map_err(|e| RelayError::from_upstream(&url, e, u64::MAX))
            })
            .await
    }

    /// Opens ComfyUI's event socket for `client_id`, within the client's timeout. The handshake
    /// carries ComfyUI's own Host and no Origin, so ComfyUI's origin guard lets it in.
    pub async fn connect_ws(&self, client_id: &str) -> Result<ComfySocket, RelayError> {
        let mut url = self.upstream.ws_url_for("/ws");
        url.query_pairs_mut().append_pair("clientId", client_id);
        // The URL without the client id, which is a secret of the client's.
        let shown = self.upstream.ws_url_for("/ws").to_string();
        let failed = |detail: String| RelayError::Failed {
            url: shown.clone(),
            detail,
        };
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|e| failed(e.to_string()))?;
        if let Some(token) = &self.bearer {
            let bearer = format!("Bearer {token}")
                .parse()
                .map_err(|_| failed("the token is not a valid header value".to_owned()))?;
            request.headers_mut().insert("authorization", bearer);
        }
        let config = WebSocketConfig::default().read_buffer_size(SOCKET_READ_BUFFER);
        let connect = tokio_tungstenite::connect_async_with_config(request, Some(config), false);
        match tokio::time::timeout(self.timeout, connect).await {
            Ok(Ok((socket, _))) => Ok(socket),
            Ok(Err(error)) => Err(RelayError::Unreachable {
                url: shown,
                detail: error.to_string(),
            }),
            Err(_elapsed) => Err(RelayError::Timeout {
                url: shown,
                seconds: self.timeout.as_secs(),
            }),
        }
    }

    /// `POST /prompt`.
    pub async fn queue_prompt(
        &self,
        request: &PromptRequest,
    ) -> Result<PromptAccepted, QueueError> {
        let url = self.upstream.url_for("/prompt");
        let response = self
            .send(
                self.request_to(Method::POST, url.clone()).json(request),
                &url,
            )
            .await?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| RelayError::from_upstream(&url, e, self.timeout.as_secs()))?;
        if status.is_success() {
            return serde_json::from_str(&text).map_err(|_| QueueError::Unexpected {
                status: status.as_u16(),
                text,
            });
        }
        match serde_json::from_str::<PromptRejected>(&text) {
            Ok(rejected) if status == reqwest::StatusCode::BAD_REQUEST => {
                Err(QueueError::Rejected(rejected))
            }
            _ => Err(QueueError::Unexpected {
                status: status.as_u16(),
                text,
            }),
        }
    }

    /// `GET /queue`.
    pub async fn queue(&self) -> Result<Queue, RelayError> {
        self.get_json("/queue").await
    }

    /// `GET /object_info`: every node class's schema.
    pub async fn object_info(
        &self,
    ) -> Result<serde_json::Map<String, serde_json::Value>, RelayError> {
        self.get_json("/object_info").await
    }

    /// `GET /object_info/{class}`: one class (`{}` when ComfyUI does not have it).
    pub async fn object_info_class(
        &self,
        class: &str,
    ) -> Result<serde_json::Map<String, serde_json::Value>, RelayError> {
        self.get_json(&object_info_path(class)).await
    }

    /// `GET /features`: what this ComfyUI supports.
    pub async fn features(&self) -> Result<shared::comfy::FeatureFlags, RelayError> {
        self.get_json("/features").await
    }

    /// `GET /history/{id}`: the entry, or `None` when ComfyUI does not know the prompt.
    pub async fn history(&self, prompt_id: &str) -> Result<Option<HistoryEntry>, RelayError> {
        let mut history: History = self.get_json(&format!("/history/{prompt_id}")).await?;
        Ok(history.remove(prompt_id))
    }

    /// `POST /interrupt {prompt_id}`: stops that prompt if it is the one running.
    pub async fn interrupt(&self, prompt_id: &str) -> Result<(), RelayError> {
        let body = InterruptRequest {
            prompt_id: Some(prompt_id.to_owned()),
        };
        self.post_json("/interrupt", &body).await
    }

    /// `POST /history {delete}`: forgets finished prompts.
    pub async fn delete_history(&self, prompt_ids: &[String]) -> Result<(), RelayError> {
        let body = QueueEdit {
            delete: prompt_ids.to_vec(),
            clear: false,
        };
        self.post_json("/history", &body).await
    }

    /// `POST /queue {delete}`: removes pending prompts.
    pub async fn delete_pending(&self, prompt_ids: &[&str]) -> Result<(), RelayError> {
        let body = QueueEdit {
            delete: prompt_ids.iter().map(|id| (*id).to_owned()).collect(),
            clear: false,
        };
        self.post_json("/queue", &body).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use http_body_util::BodyExt as _;

    use super::*;

    #[tokio::test]
    async fn relayed_answers_read_to_the_end_give_their_connection_back() {
        let (address, accepted) = pool::tests::server(false).await;
        let url = format!("http://{}/", address.authority()).parse().unwrap();
        let client = ComfyClient::fixed(url, None, Duration::from_secs(5)).unwrap();
        for _ in 0..3 {
            let request = Request::new(Body::empty());
            let answer = client.forward("/system_stats", request).await.unwrap();
            let body = answer.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(&body[..], b"ok");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }
}
