//! Headless Chromium driven over WebDriver (Debian's `chromium` and `chromium-driver`).
//!
//! Each [`Browser`] starts its own chromedriver on a free port with a fresh profile, at a phone
//! viewport (390x844, touch, mobile user agent) or a desktop one (1280x800). Screenshots go to
//! `target/browser-artifacts/`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

/// How long to wait for something to appear on the page.
pub const WAIT: Duration = Duration::from_secs(20);

/// The screen the page is shown on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Viewport {
    /// 390x844 CSS pixels, touch, a phone's user agent.
    Phone,
    /// 360x740: the narrowest phones in common use.
    SmallPhone,
    /// A 1280x800 window.
    Desktop,
}

impl Viewport {
    /// A short name for artefacts.
    pub fn name(self) -> &'static str {
        match self {
            Self::Phone => "phone",
            Self::SmallPhone => "phone360",
            Self::Desktop => "desktop",
        }
    }
}

/// A Chrome DevTools Protocol command, sent through chromedriver.
#[derive(Debug)]
struct Cdp {
    command: String,
    params: Value,
}

impl fantoccini::wd::WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!(
            "session/{}/goog/cdp/execute",
            session.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (axum::http::Method, Option<String>) {
        let body = json!({ "cmd": self.command, "params": self.params });
        (axum::http::Method::POST, Some(body.to_string()))
    }
}

/// A headless Chromium session.
pub struct Browser {
    /// The WebDriver client.
    pub client: Client,
    /// The viewport it emulates.
    pub viewport: Viewport,
    _driver: Child,
    _profile: tempfile::TempDir,
}

fn program(env: &str, default: &str) -> PathBuf {
    std::env::var_os(env).map_or_else(|| PathBuf::from(default), PathBuf::from)
}

/// The built web app the browser tests serve: `$COMFY_RELAY_DIST` or the workspace's `dist/`.
pub fn dist_dir() -> PathBuf {
    let dir = std::env::var_os("COMFY_RELAY_DIST").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist"),
        PathBuf::from,
    );
    assert!(
        dir.join("index.html").is_file(),
        "no built web app in {}: run scripts/test (or `trunk build --release`) first",
        dir.display()
    );
    dir
}

/// Where screenshots are kept.
pub fn artifacts_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/browser-artifacts");
    std::fs::create_dir_all(&dir).expect("the artefacts dir can be created");
    dir
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Browser {
    /// Starts chromedriver and a headless Chromium at `viewport`.
    pub async fn launch(viewport: Viewport) -> Self {
        Self::launch_with(viewport, &[]).await
    }

    /// Starts chromedriver and a headless Chromium at `viewport` with more Chromium flags.
    pub async fn launch_with(viewport: Viewport, flags: &[String]) -> Self {
        let chromedriver = program("CHROMEDRIVER", "/usr/bin/chromedriver");
        let chromium = program("CHROMIUM", "/usr/bin/chromium");
        let port = free_port();
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} ({e}): install chromium-driver",
                    chromedriver.display()
                )
            });
        let profile = tempfile::tempdir().expect("a profile dir");
        let mut args = vec![
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        args.extend(flags.iter().cloned());
        let mut options = json!({ "binary": chromium, "args": [] });
        match viewport {
            Viewport::Phone | Viewport::SmallPhone => {
                let (width, height) = if viewport == Viewport::Phone {
                    (390, 844)
                } else {
                    (360, 740)
                };
                options["mobileEmulation"] = json!({
                    "deviceMetrics": { "width": width, "height": height, "pixelRatio": 3.0, "touch": true },
                    "userAgent": "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 \
                                  (KHTML, like Gecko) Chrome/156.0 Mobile Safari/537.36",
                });
            }
            Viewport::Desktop => args.push("--window-size=1280,800".to_owned()),
        }
        options["args"] = json!(args);
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("goog:chromeOptions".to_owned(), options);
        let webdriver = format!("http://127.0.0.1:{port}");
        let mut last_error = String::new();
        for _ in 0..100 {
            match ClientBuilder::new(HttpConnector::new())
                .capabilities(capabilities.clone())
                .connect(&webdriver)
                .await
            {
                Ok(client) => {
                    return Self {
                        client,
                        viewport,
                        _driver: driver,
                        _profile: profile,
                    };
                }
                Err(error) => last_error = error.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("chromedriver at {webdriver} did not start a session: {last_error}");
    }

    /// Opens `url`.
    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("the page loads");
    }

    /// Waits for the element matching `css`.
    pub async fn find(&self, css: &str) -> Element {
        self.client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css} within {WAIT:?}: {e}"))
    }

    /// The element with `data-testid="id"`.
    pub async fn by_test_id(&self, id: &str) -> Element {
        self.find(&format!("[data-testid=\"{id}\"]")).await
    }

    /// Scrolls `data-testid="id"` to the middle of the screen (clear of the fixed action bar, as
    /// a person would) and taps it.
    pub async fn tap(&self, id: &str) {
        self.tap_css(&format!("[data-testid=\"{id}\"]")).await;
    }

    /// Brings the element matching `css` to the middle of the screen and taps it. A tap that
    /// something else would receive (a picture above loaded and pushed the element under the
    /// tab bar) is tried again once the page has settled, as a person would.
    pub async fn tap_css(&self, css: &str) {
        let element = self.find(css).await;
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            self.scroll_to_css(css).await;
            match element.click().await {
                Ok(()) => return,
                Err(fantoccini::error::CmdError::Standard(e))
                    if e.error == fantoccini::error::ErrorStatus::ElementClickIntercepted
                        && tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("cannot tap {css}: {e}"),
            }
        }
    }

    /// Waits until the text of `data-testid="id"` satisfies `condition`; returns it.
    pub async fn wait_for_text(&self, id: &str, condition: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut last = String::new();
        while tokio::time::Instant::now() < deadline {
            if let Ok(element) = self
                .client
                .find(Locator::Css(&format!("[data-testid=\"{id}\"]")))
                .await
                && let Ok(text) = element.text().await
            {
                if condition(&text) {
                    return text;
                }
                last = text;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let shot = self.screenshot(&format!("failed-{id}")).await;
        panic!(
            "{id} never satisfied the condition; its text was {last:?} (screenshot: {})",
            shot.display()
        );
    }

    /// Waits until `script` (a function body) returns `true`; `what` says what was awaited
    /// when it never does.
    pub async fn wait_until(&self, what: &str, script: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while tokio::time::Instant::now() < deadline {
            if self.eval(script).await == Value::Bool(true) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let shot = self.screenshot("failed-wait").await;
        panic!("never {what} (screenshot: {})", shot.display());
    }

    /// Sends a Chrome DevTools Protocol command (CPU throttling, emulated media, ...).
    pub async fn cdp(&self, command: &str, params: Value) -> Value {
        self.client
            .issue_cmd(Cdp {
                command: command.to_owned(),
                params,
            })
            .await
            .unwrap_or_else(|e| panic!("{command} failed: {e}"))
    }

    /// Runs JavaScript in the page and returns its result.
    pub async fn eval(&self, script: &str) -> Value {
        self.client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Runs `body` as an async function in the page (it may `await`) and returns its result.
    pub async fn eval_async(&self, body: &str) -> Value {
        let script = format!(
            "const done = arguments[arguments.length - 1];
             (async () => {{ {body} }})().then(done, (e) => done('failed: ' + e));"
        );
        self.client
            .execute_async(&script, vec![])
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{body}"))
    }

    /// Scrolls `data-testid="id"` to the middle of the screen, then saves a screenshot.
    pub async fn screenshot_at(&self, id: &str, name: &str) -> PathBuf {
        self.scroll_to_css(&format!("[data-testid=\"{id}\"]")).await;
        self.screenshot(name).await
    }

    async fn scroll_to_css(&self, css: &str) {
        self.eval(&format!(
            "document.querySelector({}).scrollIntoView({{block: 'center'}});",
            serde_json::to_string(css).expect("a string serialises")
        ))
        .await;
    }

    /// Saves a screenshot as `target/browser-artifacts/{viewport}-{name}.png`.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("a screenshot");
        let path = artifacts_dir().join(format!("{}-{name}.png", self.viewport.name()));
        std::fs::write(&path, png).expect("the screenshot is written");
        path
    }

    /// Ends the session.
    pub async fn close(self) {
        let _ = self.client.close().await;
    }
}
