//! `comfy-relay run` end to end, as a process, against the ComfyUI double (straight, and
//! through a relay with its token): confirmation in a pseudo-terminal, `--yes`, the progress
//! lines, Ctrl+C reaching ComfyUI as a targeted interrupt, a dropped socket or a ComfyUI restart
//! mid-run, each exit code, outputs written.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portable_pty::{CommandBuilder, PtySize, native_pty_system};
use serde_json::json;
use tempfile::TempDir;
use testkit::comfyui::{FakeComfyUi, Options};
use testkit::fixtures;
use testkit::stack::spawn_guarded_stack;
use tokio::io::{AsyncBufReadExt as _, BufReader, Lines};
use tokio::process::{ChildStderr, Command};

const CLI: &str = env!("CARGO_BIN_EXE_relay-cli");
const TOKEN: &str = "c0ffeec0ffeec0ffeec0ffeec0ffee00";

/// A folder holding the recorded workflows, where the command runs.
fn workdir() -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in [
        ("sd15.json", fixtures::SD15_TXT2IMG),
        ("invert.json", fixtures::INVERT_SLOW),
        ("ui.json", fixtures::UI_FORMAT),
    ] {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let foreign = fixtures::UI_FORMAT.replace("\"SaveImage\"", "\"ImageSaverPro\"");
    std::fs::write(dir.path().join("foreign-ui.json"), foreign).unwrap();
    std::fs::write(
        dir.path().join("every-kind.json"),
        fixtures::every_output_kind(),
    )
    .unwrap();
    std::fs::write(dir.path().join("broken.json"), "{\"3\": {\"class_type\": ").unwrap();
    std::fs::write(dir.path().join("phone.png"), fixtures::PHONE_PNG).unwrap();
    dir
}

async fn double(pace: f64) -> FakeComfyUi {
    FakeComfyUi::start_with(Options {
        pace,
        ..Options::default()
    })
    .await
}

/// How a run ended.
struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Ran {
    /// Asserts how the run ended: its exit code and words on stderr.
    fn assert_ended(&self, code: i32, says: &str) {
        assert_eq!(self.code, code, "{}", self.stderr);
        assert!(self.stderr.contains(says), "{}", self.stderr);
    }

    /// Asserts that it wrote one picture under `pictures/` in `dir`: the one ComfyUI made, whole.
    fn assert_wrote_the_picture(&self, comfyui: &FakeComfyUi, dir: &Path) {
        let written: Vec<&str> = self
            .stdout
            .lines()
            .filter(|l| l.starts_with("pictures/"))
            .collect();
        assert_eq!(written.len(), 1, "{}", self.stdout);
        let made = comfyui
            .files()
            .into_iter()
            .find(|f| f.kind == "output" && written[0].ends_with(&f.name))
            .expect("the double made this file");
        assert_eq!(
            std::fs::read(dir.join(written[0])).unwrap(),
            made.bytes.to_vec(),
            "the picture ComfyUI made, whole"
        );
    }
}

/// Runs `comfy-relay` with `args` in `dir`, without a terminal.
async fn run(dir: &Path, args: &[&str]) -> Ran {
    let output = Command::new(CLI)
        .args(args)
        .current_dir(dir)
        .env_remove("COMFY_RELAY_TOKEN")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    Ran {
        code: output.status.code().expect("an exit code, not a signal"),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

#[tokio::test]
async fn yes_queues_at_once_shows_progress_and_downloads_the_pictures() {
    let comfyui = double(1.0).await;
    let dir = workdir();
    let ran = run(
        dir.path(),
        &[
            "run",
            "sd15.json",
            "--server",
            &comfyui.url(),
            "--yes",
            "--out",
            "pictures",
            "--set",
            "6.text=a red fox in the snow",
            "--set",
            "KSampler.seed=18446744073709551615",
        ],
    )
    .await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert!(
        ran.stdout
            .contains("Prompt    6 · CLIP Text Encode (Prompt): a red fox in the snow")
    );
    assert!(
        ran.stdout
            .contains("Seed      3 · KSampler · seed: 18446744073709551615")
    );
    assert!(
        ran.stderr.contains("running   KSampler (3)"),
        "{}",
        ran.stderr
    );
    let queued = &comfyui.queued_prompts()[0]["prompt"];
    assert_eq!(queued["6"]["inputs"]["text"], "a red fox in the snow");
    assert_eq!(queued["3"]["inputs"]["seed"], json!(u64::MAX));

    ran.assert_wrote_the_picture(&comfyui, dir.path());
}

#[tokio::test]
async fn a_workflow_saved_from_comfyuis_editor_is_converted_and_runs() {
    let comfyui = double(1.0).await;
    let dir = workdir();
    let ran = run(
        dir.path(),
        &[
            "run",
            "ui.json",
            "--server",
            &comfyui.url(),
            "--yes",
            "--out",
            "pictures",
        ],
    )
    .await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert!(
        ran.stderr
            .contains("converted from ComfyUI's editor format"),
        "{}",
        ran.stderr
    );
    let queued = &comfyui.queued_prompts()[0]["prompt"];
    assert_eq!(queued["1"]["class_type"], "EmptyImage");
    assert_eq!(queued["1"]["inputs"]["width"], 64);
    assert_eq!(queued["2"]["inputs"]["images"], json!(["1", 0]));
    // The double replays a recorded run whatever the graph; what matters is that it ran.
    assert!(ran.stdout.contains("pictures/"), "{}", ran.stdout);
}

#[tokio::test]
async fn run_saves_every_kind_of_output_and_prints_texts() {
    let comfyui = double(0.2).await;
    let dir = workdir();
    let ran = run(
        dir.path(),
        &[
            "run",
            "every-kind.json",
            "--server",
            &comfyui.url(),
            "--yes",
            "--out",
            "made",
        ],
    )
    .await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let mut saved: Vec<String> = std::fs::read_dir(dir.path().join("made"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    saved.sort();
    let endings: Vec<&str> = saved
        .iter()
        .map(|name| name.rsplit_once('.').unwrap().1)
        .collect();
    assert_eq!(
        endings,
        ["flac", "flac", "latent", "mp4", "webp"],
        "{saved:?}"
    );
    for name in &saved {
        assert!(ran.stdout.contains(name.as_str()), "{}", ran.stdout);
    }
    // PreviewAny's text, as the node showed it, on its own lines.
    assert!(ran.stdout.contains("hello\nworld\n"), "{}", ran.stdout);
}

/// The command in a pseudo-terminal: everything it wrote, and a way to type.
struct Terminal {
    screen: Arc<Mutex<String>>,
    typing: Box<dyn std::io::Write + Send>,
    child: Box<dyn portable_pty::Child + Send + Sync>,
    /// The terminal's other end, open while the command runs.
    _master: Box<dyn portable_pty::MasterPty + Send>,
}

impl Terminal {
    fn spawn(dir: &Path, args: &[&str]) -> Self {
        let pty = native_pty_system()
            .openpty(PtySize {
                rows: 40,
                cols: 160,
                pixel_width: 0,
                pixel_height: 0,
            })
            .unwrap();
        let mut command = CommandBuilder::new(CLI);
        command.args(args);
        command.cwd(dir);
        command.env("TERM", "xterm-256color");
        command.env_remove("COMFY_RELAY_TOKEN");
        let child = pty.slave.spawn_command(command).unwrap();
        drop(pty.slave);
        let mut reader = pty.master.try_clone_reader().unwrap();
        let screen = Arc::new(Mutex::new(String::new()));
        let written = screen.clone();
        std::thread::spawn(move || {
            let mut buffer = [0; 4096];
            while let Ok(n @ 1..) = reader.read(&mut buffer) {
                written
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buffer[..n]));
            }
        });
        let typing = pty.master.take_writer().unwrap();
        Self {
            screen,
            typing,
            child,
            _master: pty.master,
        }
    }

    fn screen(&self) -> String {
        self.screen.lock().unwrap().clone()
    }

    async fn wait_for(&self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.screen().contains(text) {
            assert!(
                Instant::now() < deadline,
                "no {text:?} in:\n{}",
                self.screen()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn answer(&mut self, line: &str) {
        self.typing
            .write_all(format!("{line}\n").as_bytes())
            .unwrap();
        self.typing.flush().unwrap();
    }

    async fn exit_code(&mut self) -> u32 {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.exit_code();
            }
            assert!(
                Instant::now() < deadline,
                "still running:\n{}",
                self.screen()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test]
async fn in_a_terminal_it_shows_the_summary_and_queues_only_after_yes() {
    let comfyui = double(2.0).await;
    let dir = workdir();
    let url = comfyui.url();
    let args = [
        "run",
        "invert.json",
        "--server",
        url.as_str(),
        "--out",
        "out",
    ];

    let mut declined = Terminal::spawn(dir.path(), &args);
    declined.wait_for("[y/N]").await;
    declined.answer("n");
    declined.wait_for("Not queued.").await;
    assert_eq!(declined.exit_code().await, 0);
    assert!(
        comfyui.queued_prompts().is_empty(),
        "nothing queued after no"
    );

    let mut terminal = Terminal::spawn(dir.path(), &args);
    terminal.wait_for("[y/N]").await;
    let summary = terminal.screen();
    assert!(
        summary.contains("Workflow  invert.json: 4 nodes"),
        "{summary}"
    );
    assert!(
        summary.contains("Image     1 · Load Image: example.png"),
        "{summary}"
    );
    assert!(
        summary.contains("Output    4 · Save Image (SaveImage)"),
        "{summary}"
    );
    assert!(
        comfyui.queued_prompts().is_empty(),
        "nothing queued before the answer"
    );
    terminal.answer("yes");
    let code = terminal.exit_code().await;
    let screen = terminal.screen();
    assert_eq!(code, 0, "{screen}");
    // The bar: the node running now, with its steps; then every node ran.
    assert!(
        screen.contains("Slow Progress (test) (2) · step"),
        "{screen}"
    );
    assert!(screen.contains("100%"), "{screen}");
    assert!(screen.contains("out/capture_"), "{screen}");
    assert_eq!(comfyui.queued_prompts().len(), 1);
}

#[tokio::test]
async fn without_a_terminal_or_yes_it_refuses_instead_of_hanging() {
    let comfyui = double(1.0).await;
    let dir = workdir();
    let ran = run(
        dir.path(),
        &["run", "invert.json", "--server", &comfyui.url()],
    )
    .await;
    assert_eq!(ran.code, 2);
    assert!(ran.stderr.contains("Pass --yes"), "{}", ran.stderr);
    assert!(comfyui.queued_prompts().is_empty());
}

/// A run started without a terminal, its stderr read up to a given line.
struct Started {
    child: tokio::process::Child,
    lines: Lines<BufReader<ChildStderr>>,
    /// The stderr lines read so far.
    seen: Vec<String>,
}

impl Started {
    /// Starts `comfy-relay` with `args` in `dir` and reads its stderr up to a line starting
    /// with `until`.
    async fn until(dir: &Path, args: &[&str], until: &str) -> Self {
        let mut child = Command::new(CLI)
            .args(args)
            .current_dir(dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut seen = Vec::new();
        while let Some(line) = lines.next_line().await.unwrap() {
            let reached = line.starts_with(until);
            seen.push(line);
            if reached {
                return Self { child, lines, seen };
            }
        }
        panic!("the run ended before {until:?}: {seen:#?}");
    }

    /// Waits for the end.
    async fn end(mut self) -> Ran {
        while let Some(line) = self.lines.next_line().await.unwrap() {
            self.seen.push(line);
        }
        let output = self.child.wait_with_output().await.unwrap();
        Ran {
            code: output.status.code().expect("an exit code, not a signal"),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: self.seen.join("\n"),
        }
    }
}

#[tokio::test]
async fn ctrl_c_interrupts_that_prompt_in_comfyui_and_exits_130() {
    let comfyui = double(8.0).await;
    let dir = workdir();
    let args = ["run", "invert.json", "--yes", "--server", &comfyui.url()];
    let started = Started::until(dir.path(), &args, "running   Slow Progress").await;
    let prompt_id = comfyui.running_prompt().expect("the prompt runs");
    let pid = started.child.id().unwrap().to_string();
    let killed = Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    started.end().await.assert_ended(130, "Interrupted");
    let interrupts = comfyui.requests_to("POST", "/interrupt");
    assert_eq!(interrupts.len(), 1);
    assert_eq!(
        interrupts[0].json(),
        json!({ "prompt_id": prompt_id }),
        "targeted"
    );
}

#[tokio::test]
async fn when_its_socket_drops_mid_run_the_result_comes_from_comfyuis_history() {
    let comfyui = double(4.0).await;
    let dir = workdir();
    let args = [
        "run",
        "invert.json",
        "--yes",
        "--server",
        &comfyui.url(),
        "--out",
        "pictures",
    ];
    let started = Started::until(dir.path(), &args, "running   Slow Progress").await;
    // The network fails and stays down for sockets: ComfyUI replays nothing, so only its
    // history can tell how the run ended.
    comfyui.refuse_sockets(true);
    comfyui.drop_sockets();
    let ran = started.end().await;
    ran.assert_ended(0, "The connection to ComfyUI dropped");
    assert!(
        comfyui
            .requests()
            .iter()
            .any(|r| r.method == "GET" && r.route().starts_with("/history/")),
        "asked ComfyUI's history"
    );
    ran.assert_wrote_the_picture(&comfyui, dir.path());
}

#[tokio::test]
async fn a_comfyui_restart_that_forgets_the_prompt_is_a_failure_that_says_so() {
    let mut comfyui = double(8.0).await;
    let dir = workdir();
    let args = ["run", "invert.json", "--yes", "--server", &comfyui.url()];
    let started = Started::until(dir.path(), &args, "running   Slow Progress").await;
    comfyui.restart().await;
    let ran = started.end().await;
    ran.assert_ended(1, "ComfyUI no longer knows prompt");
    assert!(
        !ran.stdout.lines().any(|l| l.starts_with("./")),
        "no picture written: {}",
        ran.stdout
    );
}

#[tokio::test]
async fn each_failure_has_its_exit_code_and_a_line_saying_what_to_do() {
    let comfyui = double(1.0).await;
    let dir = workdir();
    let url = comfyui.url();
    let cases: [(&[&str], i32, &str); 8] = [
        (&["run", "missing.json"], 2, "Cannot read missing.json"),
        (&["run", "broken.json"], 2, "not valid JSON"),
        (
            &["run", "foreign-ui.json", "--server", &url, "--yes"],
            2,
            "does not have the nodes this workflow uses: ImageSaverPro",
        ),
        (
            &[
                "run",
                "sd15.json",
                "--server",
                &url,
                "--yes",
                "--set",
                "3.cfg=101",
            ],
            2,
            "KSampler · cfg",
        ),
        (
            &[
                "run",
                "sd15.json",
                "--server",
                &url,
                "--yes",
                "--set",
                "3.nope=1",
            ],
            2,
            "no input \"nope\"",
        ),
        (
            &[
                "run",
                "sd15.json",
                "--server",
                &url,
                "--yes",
                "--image",
                "phone.png",
            ],
            2,
            "no LoadImage",
        ),
        (
            &[
                "run",
                "invert.json",
                "--server",
                &url,
                "--yes",
                "--set",
                "2.fail_at_step=2",
            ],
            1,
            "Failed in node 2 (SlowProgress): RuntimeError",
        ),
        (
            &[
                "run",
                "invert.json",
                "--server",
                "http://127.0.0.1:9",
                "--yes",
            ],
            1,
            "Cannot reach",
        ),
    ];
    for (args, code, message) in cases {
        let ran = run(dir.path(), args).await;
        assert_eq!(ran.code, code, "{args:?}: {}", ran.stderr);
        assert!(ran.stderr.contains(message), "{args:?}: {}", ran.stderr);
    }
    assert_eq!(
        comfyui.queued_prompts().len(),
        1,
        "only the run that fails in a node was queued"
    );
}

#[tokio::test]
async fn through_a_relay_it_needs_the_token_and_uploads_the_picture() {
    let stack = spawn_guarded_stack(TOKEN, &[], 1.0).await;
    let dir = workdir();
    let relay = stack.relay_url();
    let refused = run(
        dir.path(),
        &["run", "invert.json", "--server", &relay, "--yes"],
    )
    .await;
    refused.assert_ended(2, "needs its access token");

    let ran = run(
        dir.path(),
        &[
            "run",
            "invert.json",
            "--server",
            &relay,
            "--token",
            TOKEN,
            "--yes",
            "--image",
            "phone.png",
            "--out",
            "out",
        ],
    )
    .await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert!(
        ran.stderr.contains("uploaded  phone.png as phone.png"),
        "{}",
        ran.stderr
    );
    let queued = &stack.comfyui.queued_prompts()[0]["prompt"];
    assert_eq!(queued["1"]["inputs"]["image"], "phone.png");
    assert!(
        stack
            .comfyui
            .files()
            .iter()
            .any(|f| f.kind == "input" && f.name == "phone.png"),
        "the picture went through the relay to ComfyUI"
    );
    assert!(
        ran.stdout.lines().any(|l| l.starts_with("out/capture_")),
        "{}",
        ran.stdout
    );
}
