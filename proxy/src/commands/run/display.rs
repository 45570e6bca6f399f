//! The run's progress in the terminal: a bar with the node running now, its steps and the
//! cached nodes, plus one line per node as it starts (the lines alone when stderr is not a
//! terminal, so logs stay readable).

use std::collections::HashMap;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use shared::comfy::ServerMessage;
use shared::progress::RunProgress;
use shared::workflow::Workflow;

/// A run's progress, drawn on stderr.
pub struct Display {
    bar: ProgressBar,
    progress: RunProgress,
    titles: HashMap<String, String>,
    /// The last step count reported, per node.
    steps: HashMap<String, (u64, u64)>,
    announced: Option<String>,
}

impl Display {
    /// Starts drawing the progress of `prompt_id`, a run of `workflow`.
    pub fn new(prompt_id: &str, workflow: &Workflow) -> Self {
        let bar = ProgressBar::with_draw_target(Some(1000), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{bar:30}] {percent:>3}% {msg}")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        bar.set_message("waiting in ComfyUI's queue");
        let titles = workflow
            .nodes_in_display_order()
            .into_iter()
            .map(|(id, node)| (id.to_owned(), format!("{} ({id})", node.title())))
            .collect();
        Self {
            bar,
            progress: RunProgress::new(prompt_id, workflow),
            titles,
            steps: HashMap::new(),
            announced: None,
        }
    }

    /// The run as followed so far.
    pub fn progress(&self) -> &RunProgress {
        &self.progress
    }

    fn title(&self, node_id: &str) -> String {
        self.titles
            .get(node_id)
            .cloned()
            .unwrap_or_else(|| format!("node {node_id}"))
    }

    /// Prints a line above the bar (or alone, without a terminal).
    pub fn line(&self, text: &str) {
        self.bar.suspend(|| eprintln!("{text}"));
    }

    /// Takes in one of ComfyUI's messages; others' prompts are ignored.
    pub fn apply(&mut self, message: &ServerMessage) {
        let cached_before = self.progress.cached_nodes().len();
        if message.prompt_id() == Some(self.progress.prompt_id()) {
            self.note_steps(message);
        }
        if !self.progress.apply(message) {
            return;
        }
        let cached = self.progress.cached_nodes();
        if cached.len() > cached_before {
            let names: Vec<String> = cached.iter().map(|id| self.title(id)).collect();
            self.line(&format!("cached    {}", names.join(", ")));
        }
        if let Some(node) = self.progress.current_node()
            && self.announced.as_deref() != Some(node)
        {
            self.announced = Some(node.to_owned());
            self.line(&format!("running   {}", self.title(node)));
        }
        self.bar
            .set_position((self.progress.fraction() * 1000.0).round() as u64);
        self.bar.set_message(self.status());
    }

    /// Keeps the step counts that `progress` (older ComfyUI) or `progress_state` reports.
    fn note_steps(&mut self, message: &ServerMessage) {
        // Step counts are whole numbers sent as floats.
        let steps = |value: f64, max: f64| (value.max(0.0) as u64, max.max(0.0) as u64);
        match message {
            ServerMessage::Progress(progress) => {
                if let Some(node) = &progress.node {
                    self.steps
                        .insert(node.clone(), steps(progress.value, progress.max));
                }
            }
            ServerMessage::ProgressState(state) => {
                for (node, progress) in &state.nodes {
                    // Nodes without steps report 0/1.
                    if progress.max > 1.0 {
                        self.steps
                            .insert(node.clone(), steps(progress.value, progress.max));
                    }
                }
            }
            _ => {}
        }
    }

    /// The bar's message: the node running now, its steps, and how many nodes were cached.
    fn status(&self) -> String {
        let mut parts = Vec::new();
        match self.progress.current_node() {
            Some(node) => {
                parts.push(self.title(node));
                if let Some((value, max)) = self.steps.get(node) {
                    parts.push(format!("step {value}/{max}"));
                }
            }
            None if self.progress.fraction() > 0.0 => parts.push("finishing".to_owned()),
            None if self.progress.started() => parts.push("starting".to_owned()),
            None => parts.push("waiting in ComfyUI's queue".to_owned()),
        }
        let cached = self.progress.cached_nodes().len();
        if cached > 0 {
            parts.push(format!("{cached} cached"));
        }
        parts.join(" · ")
    }

    /// Stops drawing, leaving the bar's last state on screen.
    pub fn finish(&self) {
        self.bar.abandon();
    }
}
