//! A device speaking the relay's API, as the web app (a cookie) or a script (the access token)
//! does: HTTP calls, and the event socket with the jobs it has learnt about.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use shared::api::{Event, Job};
use tokio_tungstenite::tungstenite::Message;

use crate::client::{self, Socket, http};

/// How a client proves who it is to the relay.
#[derive(Clone)]
enum Credential {
    /// A browser's device cookie, `name=value`: its own device, so its own jobs.
    Cookie(String),
    /// A script's access token, sent as a bearer: every script shares the `scripts` device.
    Bearer(String),
}

impl Credential {
    /// The header that carries it.
    fn header(&self) -> (&'static str, String) {
        match self {
            Self::Cookie(cookie) => ("cookie", cookie.clone()),
            Self::Bearer(token) => ("authorization", format!("Bearer {token}")),
        }
    }
}

/// One client of the relay: a browser with its cookie, or a script with the access token.
#[derive(Clone)]
pub struct Device {
    http: reqwest::Client,
    base: String,
    credential: Credential,
}

impl Device {
    /// A new device: its first request gets it a device cookie.
    pub async fn new(relay_url: &str) -> Self {
        let response = http()
            .get(format!("{relay_url}/api/jobs"))
            // As every browser does: without pairing, a browser gets a device of its own.
            .header("sec-fetch-mode", "cors")
            .send()
            .await
            .expect("the relay answers");
        let set_cookie = response
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .expect("a new device gets a cookie");
        let cookie = set_cookie.split(';').next().expect("name=value").to_owned();
        Self::with_cookie(relay_url, &cookie)
    }

    /// A browser paired through the pairing link with `token`, as a phone scanning the QR code
    /// is: redirected to the clean URL, with an HttpOnly, SameSite=Strict device cookie.
    pub async fn paired(relay_url: &str, token: &str) -> Self {
        let response = client::http_without_redirects()
            .get(format!("{relay_url}/pair?token={token}"))
            .header(
                "user-agent",
                "Mozilla/5.0 (Linux; Android 14) Chrome/156.0 Mobile Safari/537.36",
            )
            .send()
            .await
            .expect("the relay answers");
        assert_eq!(response.status(), 303);
        assert_eq!(
            response.headers()["location"],
            "/",
            "the clean URL, without the token"
        );
        let set_cookie = response.headers()["set-cookie"]
            .to_str()
            .expect("a text header");
        assert!(
            set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"),
            "{set_cookie}"
        );
        Self::with_cookie(relay_url, set_cookie.split(';').next().expect("name=value"))
    }

    /// A device presenting `cookie` (`name=value`).
    pub fn with_cookie(relay_url: &str, cookie: &str) -> Self {
        Self {
            http: http(),
            base: relay_url.to_owned(),
            credential: Credential::Cookie(cookie.to_owned()),
        }
    }

    /// A script presenting the access token as a bearer.
    pub fn script(relay_url: &str, token: &str) -> Self {
        Self {
            http: http(),
            base: relay_url.to_owned(),
            credential: Credential::Bearer(token.to_owned()),
        }
    }

    /// Its cookie, `name=value`; a script has none.
    pub fn cookie(&self) -> &str {
        match &self.credential {
            Credential::Cookie(cookie) => cookie,
            Credential::Bearer(_) => panic!("a script has no device cookie"),
        }
    }

    /// A request to the relay with the device's credential.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let (name, value) = self.credential.header();
        self.http
            .request(method, format!("{}{path}", self.base))
            .header(name, value)
    }

    /// Sends a request without a body; the relay's answer.
    pub async fn send(&self, method: reqwest::Method, path: &str) -> reqwest::Response {
        self.request(method, path)
            .send()
            .await
            .expect("the relay answers")
    }

    /// `POST` with a JSON body; the relay's answer.
    pub async fn post_json(&self, path: &str, body: Value) -> reqwest::Response {
        self.request(reqwest::Method::POST, path)
            .json(&body)
            .send()
            .await
            .expect("the relay answers")
    }

    /// `GET`, read as JSON.
    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> T {
        self.send(reqwest::Method::GET, path)
            .await
            .json()
            .await
            .expect("a JSON answer of the expected shape")
    }

    /// `POST /upload/image` of a PNG named `name`, expecting the stored file.
    pub async fn upload_png(&self, name: &str, png: &'static [u8]) -> shared::comfy::UploadedImage {
        let form = reqwest::multipart::Form::new().part(
            "image",
            reqwest::multipart::Part::bytes(png)
                .file_name(name.to_owned())
                .mime_str("image/png")
                .expect("a valid type"),
        );
        let response = self
            .request(reqwest::Method::POST, "/upload/image")
            .multipart(form)
            .send()
            .await
            .expect("the relay answers");
        assert_eq!(response.status(), 200);
        response.json().await.expect("the stored file")
    }

    /// `PUT /api/workflows/{name}` with a workflow's text; the relay's answer.
    pub async fn put_workflow(&self, name: &str, text: &str) -> reqwest::Response {
        self.request(reqwest::Method::PUT, &format!("/api/workflows/{name}"))
            .header("content-type", "application/json")
            .body(text.to_owned())
            .send()
            .await
            .expect("the relay answers")
    }

    /// `POST /api/jobs` with a workflow's text and edits.
    pub async fn submit(&self, workflow: &str, values: Value) -> reqwest::Response {
        let workflow: Value = serde_json::from_str(workflow).expect("the workflow is JSON");
        self.post_json(
            "/api/jobs",
            json!({ "workflow": workflow, "values": values }),
        )
        .await
    }

    /// `POST /api/jobs`, expecting 201.
    pub async fn submit_ok(&self, workflow: &str) -> Job {
        let response = self.submit(workflow, json!([])).await;
        let status = response.status();
        let text = response.text().await.expect("a body");
        assert_eq!(status, 201, "{text}");
        serde_json::from_str(&text).expect("a job")
    }

    /// `GET /api/jobs`.
    pub async fn jobs(&self) -> Vec<Job> {
        self.get_json("/api/jobs").await
    }

    /// `GET /api/jobs/{id}?wait=SECONDS`, the long poll, expecting 200.
    pub async fn long_poll(&self, id: &str, seconds: f64) -> Job {
        let path = format!("/api/jobs/{id}?wait={seconds}");
        let response = self.send(reqwest::Method::GET, &path).await;
        assert_eq!(response.status(), 200);
        response.json().await.expect("a job")
    }

    /// `POST /api/jobs/{id}/{action}` (`cancel`, `requeue`).
    pub async fn act(&self, id: &str, action: &str) -> reqwest::Response {
        self.send(reqwest::Method::POST, &format!("/api/jobs/{id}/{action}"))
            .await
    }

    /// Opens ComfyUI's raw socket through the relay, as ComfyUI's own frontend does.
    pub async fn raw_socket(&self, client_id: &str) -> Socket {
        let url = format!(
            "{}/ws?clientId={client_id}",
            self.base.replacen("http", "ws", 1)
        );
        let (name, value) = self.credential.header();
        client::connect(&url, &[(name, &value)])
            .await
            .expect("the raw socket opens")
    }

    /// Opens the event socket.
    pub async fn events(&self) -> Events {
        let url = format!("{}/api/events", self.base.replacen("http", "ws", 1));
        let (name, value) = self.credential.header();
        let socket = client::connect(&url, &[(name, &value)])
            .await
            .expect("the event socket opens");
        let mut events = Events {
            socket,
            jobs: HashMap::new(),
            previews: Vec::new(),
            comfyui_connected: None,
            removed: Vec::new(),
        };
        let first = events.next(Duration::from_secs(5)).await;
        assert!(
            matches!(first, Some(Event::Snapshot { .. })),
            "the first event is the snapshot"
        );
        events
    }
}

/// A device's event socket and what it has said so far.
pub struct Events {
    socket: Socket,
    /// Every job's latest state as told.
    pub jobs: HashMap<String, Job>,
    /// Every preview frame received.
    pub previews: Vec<Bytes>,
    /// The latest word on the relay's connection to ComfyUI.
    pub comfyui_connected: Option<bool>,
    /// Ids of jobs the relay forgot.
    pub removed: Vec<String>,
}

impl Events {
    /// The next text event (recording previews on the way), or `None` on close or timeout.
    pub async fn next(&mut self, limit: Duration) -> Option<Event> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let message = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .ok()??
                .ok()?;
            match message {
                Message::Text(text) => {
                    let event: Event =
                        serde_json::from_str(text.as_str()).expect("events are JSON");
                    match &event {
                        Event::Snapshot {
                            jobs,
                            comfyui_connected,
                        } => {
                            self.comfyui_connected = Some(*comfyui_connected);
                            self.jobs = jobs.iter().map(|j| (j.id.clone(), j.clone())).collect();
                        }
                        Event::Job { job } => {
                            self.jobs.insert(job.id.clone(), (**job).clone());
                        }
                        Event::Removed { id } => {
                            self.jobs.remove(id);
                            self.removed.push(id.clone());
                        }
                        Event::Comfyui { connected } => self.comfyui_connected = Some(*connected),
                    }
                    return Some(event);
                }
                Message::Binary(frame) => self.previews.push(frame),
                Message::Close(_) => return None,
                _ => {}
            }
        }
    }

    /// Reads until job `id` satisfies `condition`; panics after `limit` with its last state.
    pub async fn wait_for(
        &mut self,
        id: &str,
        limit: Duration,
        condition: impl Fn(&Job) -> bool,
    ) -> Job {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(job) = self.jobs.get(id).filter(|job| condition(job)) {
                return job.clone();
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() || self.next(left).await.is_none() {
                panic!(
                    "job {id} never got there; last seen: {:#?}",
                    self.jobs.get(id)
                );
            }
        }
    }

    /// Closes the socket abruptly, as a phone going to sleep does.
    pub fn drop_connection(self) {
        drop(self.socket);
    }
}
