//! `comfy-relay run workflow_api.json`: the Python executor's single-shot mode. Loads and checks
//! the workflow, shows what it does, asks, queues it on a relay or on ComfyUI itself, follows
//! its progress on ComfyUI's socket, interrupts it on Ctrl+C, and downloads its pictures.

mod display;
mod edits;
mod server;
mod summary;

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use futures_util::StreamExt as _;
use shared::comfy::{ExecutionSuccess, Output, ServerMessage, Verdict, verdict};
use shared::progress::Outcome;
use shared::schema::check_workflow;
use shared::workflow::Workflow;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;

use crate::comfy::ComfySocket;
use crate::config::RunArgs;
use display::Display;
use edits::{Edit, ImageTarget, image_target};
use server::Server;

/// How often ComfyUI is asked about the prompt once its socket is gone.
const POLL_EVERY: Duration = Duration::from_secs(1);

/// Why a run did not succeed; each has its exit code.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A bad command line, a workflow that cannot be read, or one the server refuses: 2.
    #[error("{0}")]
    Usage(String),
    /// The server cannot be reached or answered strangely: 1.
    #[error("{0}")]
    Unreachable(String),
    /// A node raised: 1.
    #[error("{0}")]
    Failed(String),
    /// Ctrl+C, or someone interrupted it in ComfyUI: 130.
    #[error("{0}")]
    Interrupted(String),
}

impl RunError {
    /// The process's exit code.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Self::Usage(_) => ExitCode::from(2),
            Self::Unreachable(_) | Self::Failed(_) => ExitCode::FAILURE,
            Self::Interrupted(_) => ExitCode::from(130),
        }
    }
}

/// Runs `comfy-relay run` and says how it went.
pub async fn run(args: RunArgs) -> ExitCode {
    match execute(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{error}");
            error.exit_code()
        }
    }
}

/// Reads the workflow file: API format as it is, the editor's format converted with the
/// server's node classes.
async fn load(path: &PathBuf, server: &Server) -> Result<Workflow, RunError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        RunError::Usage(format!(
            "Cannot read {}: {e}. Give the path of a workflow saved from ComfyUI (Save, or \
             Export (API)).",
            path.display()
        ))
    })?;
    let usage = |e: &dyn std::fmt::Display| RunError::Usage(format!("{}: {e}", path.display()));
    let editor: Option<serde_json::Value> = serde_json::from_str(&text)
        .ok()
        .filter(shared::editor::is_editor_format);
    let Some(editor) = editor else {
        return Workflow::parse(&text).map_err(|e| usage(&e));
    };
    let schemas = server.all_schemas().await?;
    let prompt = shared::editor::to_api(&editor, &schemas).map_err(|e| usage(&e))?;
    eprintln!(
        "{}: converted from ComfyUI's editor format, as ComfyUI's editor would queue it.",
        path.display()
    );
    Workflow::from_value(serde_json::Value::Object(prompt)).map_err(|e| usage(&e))
}

/// Asks on the terminal; refuses rather than wait for an answer that cannot come.
async fn confirm(server: &Server) -> Result<bool, RunError> {
    if !std::io::stdin().is_terminal() {
        return Err(RunError::Usage(
            "Not queued: there is no terminal to confirm on. Pass --yes to queue without asking."
                .to_owned(),
        ));
    }
    eprint!("Queue it on {}? [y/N] ", server.base());
    let _ = std::io::stderr().flush();
    let answer = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).map(|_| line)
    })
    .await
    .map_err(|e| RunError::Usage(e.to_string()))?
    .map_err(|e| RunError::Usage(format!("Cannot read the answer: {e}")))?;
    Ok(matches!(answer.trim().to_lowercase().as_str(), "y" | "yes"))
}

async fn execute(args: RunArgs) -> Result<(), RunError> {
    let server = Server::new(args.server.clone(), args.token.clone())?;
    let mut workflow = load(&args.workflow, &server).await?;
    for spec in &args.set {
        Edit::parse(spec)
            .and_then(|edit| edit.apply(&mut workflow))
            .map_err(RunError::Usage)?;
    }
    let schemas = server.schemas(&workflow).await?;
    let image = args
        .image
        .as_deref()
        .map(|spec| image_target(spec, &workflow, &schemas))
        .transpose()
        .map_err(RunError::Usage)?;
    let problems: Vec<String> = check_workflow(&workflow, |class| schemas.get(class))
        .iter()
        // The picture is replaced by the upload.
        .filter(|p| {
            image.as_ref().is_none_or(|i| {
                p.node_id != i.node_id || p.input.as_deref() != Some(i.input.as_str())
            })
        })
        .map(|p| format!("  {}", p.describe()))
        .collect();
    if !problems.is_empty() {
        return Err(RunError::Usage(format!(
            "{} would refuse this workflow:\n{}",
            server.base(),
            problems.join("\n")
        )));
    }
    let file = args.workflow.display().to_string();
    print!(
        "{}",
        summary::summary(&file, &workflow, &schemas, image.as_ref())
    );
    let _ = std::io::stdout().flush();
    if !args.yes && !confirm(&server).await? {
        eprintln!("Not queued.");
        return Ok(());
    }
    std::fs::create_dir_all(&args.out).map_err(|e| {
        RunError::Usage(format!("--out: cannot create {}: {e}", args.out.display()))
    })?;
    if let Some(ImageTarget {
        node_id,
        input,
        path,
    }) = &image
    {
        let uploaded = server.upload(path).await?;
        eprintln!(
            "uploaded  {} as {}",
            path.display(),
            uploaded.load_image_value()
        );
        workflow
            .set_input(node_id, input, uploaded.load_image_value().into())
            .map_err(|e| RunError::Usage(e.to_string()))?;
    }
    // Ctrl+C is ours from here on: it must reach ComfyUI as an interrupt of this prompt.
    let (interrupted, mut ctrl_c) = oneshot::channel();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = interrupted.send(());
        }
    });
    let client_id = uuid::Uuid::new_v4().simple().to_string();
    // Connected before queueing, so not one event of the run is missed.
    let socket = server.connect(&client_id).await?;
    let prompt_id = server.queue(&workflow, &client_id).await?;
    eprintln!("queued    prompt {prompt_id}");
    let mut display = Display::new(&prompt_id, &workflow);
    let followed = tokio::select! {
        followed = follow(&server, socket, &mut display) => followed,
        _ = &mut ctrl_c => {
            display.finish();
            server.stop(&prompt_id).await?;
            return Err(RunError::Interrupted(format!(
                "Interrupted: ComfyUI was told to stop prompt {prompt_id}."
            )));
        }
    };
    display.finish();
    followed?;
    let progress = display.progress();
    match progress.outcome() {
        Some(Outcome::Succeeded) => {
            // Files as the paths written, texts as they are: what the run made, in order.
            for output in progress.outputs() {
                if let Output::Text(text) = output {
                    println!("{text}");
                } else if let Some(file) = output.file() {
                    let path = server.download(file, &args.out).await?;
                    println!("{}", path.display());
                }
            }
            Ok(())
        }
        Some(Outcome::Failed {
            node_id,
            node_type,
            message,
        }) => Err(RunError::Failed(format!(
            "Failed in node {node_id} ({node_type}): {message}"
        ))),
        Some(Outcome::Interrupted) => Err(RunError::Interrupted(format!(
            "Prompt {} was interrupted in ComfyUI.",
            progress.prompt_id()
        ))),
        None => unreachable!("follow returns once the run has ended"),
    }
}

/// Follows the run on the socket until it ends; if the socket goes (ComfyUI restarting, the
/// network), asks ComfyUI's history instead, since ComfyUI replays nothing.
async fn follow(
    server: &Server,
    mut socket: ComfySocket,
    display: &mut Display,
) -> Result<(), RunError> {
    while let Some(Ok(frame)) = socket.next().await {
        if let Message::Text(text) = frame
            && let Ok(message) = ServerMessage::parse(&text)
        {
            display.apply(&message);
            if display.progress().outcome().is_some() {
                return Ok(());
            }
        }
    }
    let prompt_id = display.progress().prompt_id().to_owned();
    display.line("The connection to ComfyUI dropped; waiting for the prompt's result.");
    loop {
        tokio::time::sleep(POLL_EVERY).await;
        // The queue first: a prompt that ends between the two looks is then in the history.
        let Ok(queue) = server.queue_state().await else {
            continue;
        };
        let Ok(history) = server.history(&prompt_id).await else {
            continue;
        };
        match verdict(&prompt_id, history.as_ref(), &queue) {
            Verdict::Ended(entry) => {
                for message in entry.replay(&prompt_id) {
                    display.apply(&message);
                }
                if display.progress().outcome().is_some() {
                    return Ok(());
                }
                // An entry without an end event: trust its status.
                if !entry.succeeded() {
                    return Err(RunError::Failed(format!(
                        "ComfyUI's history says prompt {prompt_id} failed."
                    )));
                }
                display.apply(&ServerMessage::ExecutionSuccess(ExecutionSuccess {
                    prompt_id,
                    timestamp: None,
                }));
                return Ok(());
            }
            Verdict::Running | Verdict::Waiting => {}
            Verdict::Forgotten => {
                return Err(RunError::Failed(format!(
                    "ComfyUI no longer knows prompt {prompt_id} (it restarted?); run it again."
                )));
            }
        }
    }
}

#[cfg(test)]
mod test_support {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use shared::schema::NodeSchema;
    use shared::workflow::Workflow;

    fn fixtures() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/comfyui")
    }

    /// The recorded SD 1.5 text-to-image workflow.
    pub fn sd15() -> Workflow {
        let text = std::fs::read_to_string(fixtures().join("workflows/sd15_txt2img.json"))
            .expect("the recorded workflow");
        Workflow::parse(&text).expect("an API workflow")
    }

    /// The schemas ComfyUI answered per class, as recorded.
    pub fn recorded_schemas() -> BTreeMap<String, NodeSchema> {
        let mut schemas = BTreeMap::new();
        for entry in std::fs::read_dir(fixtures().join("http")).expect("recorded exchanges") {
            let path = entry.expect("a readable dir").path();
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            if !name.starts_with("object_info_") {
                continue;
            }
            let exchange: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&path).expect("readable"))
                    .expect("recorded JSON");
            if let Some(classes) = exchange["response"]["json"].as_object() {
                schemas.extend(NodeSchema::parse_all(classes));
            }
        }
        schemas
    }
}
