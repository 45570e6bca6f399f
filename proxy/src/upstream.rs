//! Where ComfyUI is, whether it answers, and how requests are addressed to it.
//!
//! Without an explicit URL the relay tries ComfyUI's default port and then the desktop app's,
//! uses whichever answers, and keeps checking: a relay started before ComfyUI, or across a
//! ComfyUI restart, must never need restarting itself.

use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::http::uri::Authority;
use axum::http::{HeaderValue, Uri};
use shared::comfy::SystemStats;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::error::{RelayError, error_chain, root_cause};

/// How long a health probe may take; also how long a request may wait for an answer while the
/// last probe found ComfyUI down (it may have just come back).
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// What the last probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reachability {
    /// Not probed yet.
    Unknown,
    /// ComfyUI answered `/system_stats`.
    Up {
        /// Its version, when it says.
        version: Option<String>,
    },
    /// None of the candidates answered.
    Down {
        /// Why the preferred candidate did not answer.
        reason: String,
    },
}

/// ComfyUI's address as the relay knows it now.
#[derive(Debug)]
pub struct Upstream {
    candidates: Vec<Url>,
    current: RwLock<Arc<Address>>,
    reachability: watch::Sender<Reachability>,
    /// What it said of itself when it last answered.
    stats: RwLock<Option<SystemStats>>,
}

/// One candidate's address in both forms requests use: the URL for the relay's own calls, and
/// split up front for relayed requests, which then parse only their own path and query.
#[derive(Debug)]
pub struct Address {
    url: Url,
    /// `host:port` as the URL has it (no port when it is the scheme's default).
    authority: Authority,
    /// The URL's path without its trailing slash, put before every relayed path.
    prefix: String,
    /// The `Host` ComfyUI expects.
    host: HeaderValue,
}

impl Address {
    pub(crate) fn new(url: Url) -> Self {
        let authority = &url[url::Position::BeforeHost..url::Position::AfterPort];
        Self {
            authority: Authority::try_from(authority).expect("a URL's host and port are valid"),
            prefix: url.path().trim_end_matches('/').to_owned(),
            host: HeaderValue::try_from(authority).expect("a URL's host is a valid header"),
            url,
        }
    }

    /// The relayed request for `path_and_query`, checked to be a valid one.
    pub fn target(self: &Arc<Self>, path_and_query: &str) -> Result<Target, RelayError> {
        let mut path = String::with_capacity(self.prefix.len() + path_and_query.len());
        path.push_str(&self.prefix);
        path.push_str(path_and_query);
        let path = Uri::from_maybe_shared(bytes::Bytes::from(path)).map_err(|error| {
            RelayError::Failed {
                url: format!("{}{}{path_and_query}", self.origin(), self.prefix),
                detail: format!("{path_and_query} makes no valid address ({error})"),
            }
        })?;
        Ok(Target {
            address: Arc::clone(self),
            path,
        })
    }

    /// `scheme://host:port`.
    fn origin(&self) -> &str {
        &self.url[..url::Position::AfterPort]
    }

    /// Where to connect: the host (without an IPv6 address's brackets) and port, when the URL
    /// is plain HTTP, the only scheme the relaying client speaks.
    pub fn socket(&self) -> Option<(&str, u16)> {
        let host = self
            .url
            .host_str()?
            .trim_start_matches('[')
            .trim_end_matches(']');
        (self.url.scheme() == "http").then_some((host, self.url.port_or_known_default()?))
    }

    /// Identifies the server a kept-alive connection goes to.
    pub fn authority(&self) -> &Authority {
        &self.authority
    }
}

/// One relayed request's destination: ComfyUI's address and the path in origin form.
#[derive(Debug, Clone)]
pub struct Target {
    address: Arc<Address>,
    path: Uri,
}

impl Target {
    /// The address it goes to.
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// The request target as sent (`/comfy/prompt?x=1`).
    pub fn path(&self) -> &Uri {
        &self.path
    }

    /// The `Host` header to send with it.
    pub fn host(&self) -> &HeaderValue {
        &self.address.host
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", self.address.origin(), self.path)
    }
}

/// Why a probe failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// No connection or no answer.
    #[error("{0}")]
    Unreachable(String),
    /// Something answered, but not as ComfyUI does.
    #[error("it answered /system_stats with {0}; is this really ComfyUI?")]
    NotComfyUi(String),
}

/// `base` with a path and query appended to its own path, so a ComfyUI served under a path
/// prefix keeps it: (`http://box/comfy/`, `/prompt`) → `http://box/comfy/prompt`.
pub fn join(base: &Url, path_and_query: &str) -> Url {
    let mut url = base.clone();
    let (path, query) = path_and_query
        .split_once('?')
        .map_or((path_and_query, None), |(p, q)| (p, Some(q)));
    let prefix = url.path().trim_end_matches('/').to_owned();
    url.set_path(&format!("{prefix}{path}"));
    url.set_query(query);
    url
}

/// The same address as a WebSocket URL (`ws://`, or `wss://` for `https://`).
pub fn websocket(mut url: Url) -> Url {
    let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
    url.set_scheme(scheme)
        .expect("ws and wss are valid schemes");
    url
}

/// Asks `base` for `/system_stats`, as the Python executor's health check did.
pub async fn probe(client: &reqwest::Client, base: &Url) -> Result<SystemStats, ProbeError> {
    let url = base
        .join("system_stats")
        .expect("a fixed relative path joins");
    let response = client
        .get(url)
        .timeout(PROBE_TIMEOUT)
        .send()
        .await
        .map_err(|e| ProbeError::Unreachable(root_cause(&e)))?;
    if !response.status().is_success() {
        return Err(ProbeError::NotComfyUi(format!(
            "status {}",
            response.status()
        )));
    }
    response
        .json::<SystemStats>()
        .await
        .map_err(|e| ProbeError::NotComfyUi(error_chain(&e)))
}

impl Upstream {
    /// Starts with the first candidate; [`Upstream::check`] moves to another that answers.
    pub fn new(candidates: Vec<Url>) -> Self {
        let first = candidates
            .first()
            .cloned()
            .expect("at least one ComfyUI URL");
        Self {
            candidates,
            current: RwLock::new(Arc::new(Address::new(first))),
            reachability: watch::Sender::new(Reachability::Unknown),
            stats: RwLock::new(None),
        }
    }

    /// The base URL requests go to now.
    pub fn base(&self) -> Url {
        self.current
            .read()
            .expect("lock never poisoned")
            .url
            .clone()
    }

    /// Waits for ComfyUI's answer to a request sent to `url`, for at most `timeout`, and less
    /// when ComfyUI is found not to answer: a request waiting when a health check fails (a
    /// stopped ComfyUI keeps accepting connections but never answers) ends with a 504 at once,
    /// and one sent while the last check failed waits only as long as a check would.
    pub async fn answer_within<T>(
        &self,
        timeout: Duration,
        url: &impl std::fmt::Display,
        answer: impl Future<Output = Result<T, RelayError>>,
    ) -> Result<T, RelayError> {
        let is_down = |r: &Reachability| matches!(r, Reachability::Down { .. });
        let mut reachability = self.reachability.subscribe();
        let already_down = is_down(&reachability.borrow_and_update());
        let deadline = if already_down {
            timeout.min(PROBE_TIMEOUT)
        } else {
            timeout
        };
        let goes_down = async {
            if already_down || reachability.wait_for(is_down).await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        let stalled = || RelayError::Stalled {
            url: url.to_string(),
        };
        tokio::select! {
            biased;
            answer = answer => answer,
            () = goes_down => Err(stalled()),
            () = tokio::time::sleep(deadline) => Err(if already_down {
                stalled()
            } else {
                RelayError::Timeout { url: url.to_string(), seconds: timeout.as_secs() }
            }),
        }
    }

    /// ComfyUI's URL for a path and query as the browser sent them (`/prompt`, `/api/view?...`).
    pub fn url_for(&self, path_and_query: &str) -> Url {
        join(&self.base(), path_and_query)
    }

    /// The address relayed requests go to now.
    pub fn address(&self) -> Arc<Address> {
        Arc::clone(&self.current.read().expect("lock never poisoned"))
    }

    /// The WebSocket URL for a path and query (`ws://` or `wss://`).
    pub fn ws_url_for(&self, path_and_query: &str) -> Url {
        websocket(self.url_for(path_and_query))
    }

    /// Probes the current URL, then the other candidates, switches to the first that answers,
    /// and records the result.
    pub async fn check(&self, client: &reqwest::Client) -> Reachability {
        let current = self.base();
        let ordered = std::iter::once(current.clone())
            .chain(self.candidates.iter().filter(|c| **c != current).cloned());
        let mut first_failure = None;
        let mut found = None;
        for candidate in ordered {
            match probe(client, &candidate).await {
                Ok(stats) => {
                    found = Some((candidate, stats));
                    break;
                }
                Err(error) => {
                    first_failure.get_or_insert(error.to_string());
                }
            }
        }
        let now = match found {
            Some((url, stats)) => {
                *self.current.write().expect("lock never poisoned") = Arc::new(Address::new(url));
                let version = stats.system.comfyui_version.clone();
                *self.stats.write().expect("lock never poisoned") = Some(stats);
                Reachability::Up { version }
            }
            None => Reachability::Down {
                reason: first_failure.unwrap_or_default(),
            },
        };
        self.reachability.send_replace(now.clone());
        now
    }

    /// The base URL requests go to now as people read it: no trailing slash.
    pub fn shown(&self) -> String {
        self.base().as_str().trim_end_matches('/').to_owned()
    }

    /// What ComfyUI said of itself (devices, memory) when it last answered.
    pub fn stats(&self) -> Option<SystemStats> {
        self.stats.read().expect("lock never poisoned").clone()
    }

    /// Describes the candidates for a person: "http://a or http://b".
    fn candidates_text(&self) -> String {
        self.candidates
            .iter()
            .map(|url| url.as_str().trim_end_matches('/').to_owned())
            .collect::<Vec<_>>()
            .join(" or ")
    }

    /// Checks every `interval` until cancelled, telling the operator when ComfyUI comes or goes,
    /// and `on_change` whether it answers after every change.
    pub async fn watch(
        &self,
        client: reqwest::Client,
        interval: Duration,
        cancel: CancellationToken,
        on_change: impl Fn(bool),
    ) {
        // What this watch last reported: a check made meanwhile by someone else (`/api/health`)
        // must not hide a change from it.
        let mut reported: Option<(bool, Url)> = None;
        loop {
            let now = self.check(&client).await;
            let up = matches!(now, Reachability::Up { .. });
            let seen = Some((up, self.base()));
            if seen != reported {
                reported = seen;
                on_change(up);
                match now {
                    Reachability::Up { version } => tracing::info!(
                        "ComfyUI {} answers at {}",
                        version.as_deref().unwrap_or("(unknown version)"),
                        self.shown()
                    ),
                    Reachability::Down { reason } => tracing::warn!(
                        "No ComfyUI answers at {} ({reason}); retrying every {} s. Start \
                         ComfyUI, or pass --comfyui-url.",
                        self.candidates_text(),
                        interval.as_secs()
                    ),
                    Reachability::Unknown => {}
                }
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(url: &str) -> Upstream {
        Upstream::new(vec![Url::parse(url).unwrap()])
    }

    #[test]
    fn paths_and_queries_are_kept_as_the_browser_sent_them() {
        let upstream = upstream("http://127.0.0.1:8188");
        assert_eq!(
            upstream
                .url_for("/api/view?filename=a%20b.png&type=output")
                .as_str(),
            "http://127.0.0.1:8188/api/view?filename=a%20b.png&type=output"
        );
        assert_eq!(
            upstream.ws_url_for("/ws?clientId=abc").as_str(),
            "ws://127.0.0.1:8188/ws?clientId=abc"
        );
    }

    #[test]
    fn a_comfyui_behind_a_path_prefix_keeps_its_prefix() {
        let upstream = upstream("https://gpu.example/comfy/");
        assert_eq!(
            upstream.url_for("/prompt").as_str(),
            "https://gpu.example/comfy/prompt"
        );
        assert_eq!(
            upstream.ws_url_for("/ws").as_str(),
            "wss://gpu.example/comfy/ws"
        );
    }

    #[test]
    fn relayed_requests_are_addressed_as_the_url_says() {
        // (base URL, path sent, request target, Host, where to connect, shown as)
        let cases = [
            (
                "http://127.0.0.1:8188",
                "/view?filename=a%20b.png",
                "/view?filename=a%20b.png",
                "127.0.0.1:8188",
                Some(("127.0.0.1", 8188)),
                "http://127.0.0.1:8188/view?filename=a%20b.png",
            ),
            (
                "http://box:80/comfy/",
                "/prompt",
                "/comfy/prompt",
                "box",
                Some(("box", 80)),
                "http://box/comfy/prompt",
            ),
            (
                "http://[::1]:8188/",
                "/queue",
                "/queue",
                "[::1]:8188",
                Some(("::1", 8188)),
                "http://[::1]:8188/queue",
            ),
            (
                "https://gpu.example/",
                "/queue",
                "/queue",
                "gpu.example",
                None,
                "https://gpu.example/queue",
            ),
        ];
        for (base, path, target, host, socket, shown) in cases {
            let address = upstream(base).address();
            let relayed = address.target(path).unwrap();
            assert_eq!(relayed.path(), target, "{base}");
            assert_eq!(relayed.host(), host, "{base}");
            assert_eq!(address.socket(), socket, "{base}");
            assert_eq!(relayed.to_string(), shown, "{base}");
        }
    }

    #[test]
    fn a_path_that_makes_no_valid_request_target_is_refused_with_its_address() {
        let address = upstream("http://127.0.0.1:8188/comfy").address();
        let refused = address.target("/view?name=a b").unwrap_err();
        assert!(
            matches!(&refused, RelayError::Failed { url, .. } if url == "http://127.0.0.1:8188/comfy/view?name=a b"),
            "{refused:?}"
        );
    }

    #[tokio::test]
    async fn when_nothing_answers_the_check_says_down_and_keeps_the_first_candidate() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", closed.local_addr().unwrap());
        drop(closed);
        let upstream = upstream(&url);
        let now = upstream.check(&reqwest::Client::new()).await;
        assert!(matches!(now, Reachability::Down { .. }), "{now:?}");
        assert_eq!(upstream.shown(), url);
    }
}
