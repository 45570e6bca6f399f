//! Folding ComfyUI's execution events into one run's progress and result.
//!
//! ComfyUI reports progress per node (`progress_state`, or `executing` + `progress` on older
//! versions). A run's overall progress is the mean over the nodes that will actually run (every
//! node of the workflow minus those `execution_cached` skips, which count as done), each
//! weighted by its `steps` when the workflow gives them as a value: a sampler's steps are most
//! of a run's time, so a sampler 60% through is not a run 20% through. The weights are known
//! before the run starts, so the figure never runs backwards. The run ends with
//! `execution_success`, `execution_error`, `execution_interrupted`, or `executing {node: null}`
//! for its prompt id, never with an empty queue.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::comfy::{NodeState, Output, ServerMessage};
use crate::workflow::{Node, Workflow};

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Every output node ran.
    Succeeded,
    /// A node raised.
    Failed {
        /// The node that raised.
        node_id: String,
        /// Its class.
        node_type: String,
        /// The exception, as ComfyUI reported it.
        message: String,
    },
    /// Someone interrupted it.
    Interrupted,
}

/// One run's progress, fed with every message ComfyUI sends about it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunProgress {
    prompt_id: String,
    /// Every node of the workflow, with its share of the run's time.
    weights: BTreeMap<String, f64>,
    started: bool,
    cached: BTreeSet<String>,
    node_fraction: BTreeMap<String, f64>,
    current_node: Option<String>,
    outputs: Vec<Output>,
    outcome: Option<Outcome>,
}

impl RunProgress {
    /// Starts following `prompt_id`, a run of `workflow`.
    pub fn new(prompt_id: impl Into<String>, workflow: &Workflow) -> Self {
        Self {
            prompt_id: prompt_id.into(),
            weights: workflow
                .nodes_in_display_order()
                .into_iter()
                .map(|(id, node)| (id.to_owned(), weight(node)))
                .collect(),
            started: false,
            cached: BTreeSet::new(),
            node_fraction: BTreeMap::new(),
            current_node: None,
            outputs: Vec::new(),
            outcome: None,
        }
    }

    /// Records that the run made `outputs` already: a job the relay reloads after a restart.
    pub fn restore_outputs(&mut self, outputs: Vec<Output>) {
        self.outputs = outputs;
    }

    /// The prompt followed.
    pub fn prompt_id(&self) -> &str {
        &self.prompt_id
    }

    /// Applies one message; messages about other prompts are ignored. Returns whether anything
    /// changed.
    pub fn apply(&mut self, message: &ServerMessage) -> bool {
        if message.prompt_id() != Some(self.prompt_id.as_str()) || self.outcome.is_some() {
            return false;
        }
        let before = self.clone();
        match message {
            ServerMessage::ExecutionStart(_) => self.started = true,
            ServerMessage::ExecutionCached(cached) => {
                self.started = true;
                self.cached.extend(cached.nodes.iter().cloned());
            }
            ServerMessage::ProgressState(state) => {
                self.started = true;
                for (node_id, node) in &state.nodes {
                    let fraction = match node.state {
                        NodeState::Finished => 1.0,
                        _ => ratio(node.value, node.max),
                    };
                    self.set_fraction(node_id, fraction);
                }
            }
            ServerMessage::Executing(executing) => match &executing.node {
                Some(node) => {
                    self.started = true;
                    if let Some(previous) = self.current_node.replace(node.clone())
                        && previous != *node
                    {
                        self.set_fraction(&previous, 1.0);
                    }
                    self.node_fraction.entry(node.clone()).or_insert(0.0);
                }
                None => self.finish(Outcome::Succeeded),
            },
            ServerMessage::Progress(progress) => {
                if let Some(node) = &progress.node {
                    self.set_fraction(node, ratio(progress.value, progress.max));
                }
            }
            ServerMessage::Executed(executed) => {
                for output in executed.output.outputs() {
                    if !self.outputs.contains(&output) {
                        self.outputs.push(output);
                    }
                }
            }
            ServerMessage::ExecutionSuccess(_) => self.finish(Outcome::Succeeded),
            ServerMessage::ExecutionError(error) => self.finish(Outcome::Failed {
                node_id: error.node_id.clone(),
                node_type: error.node_type.clone(),
                message: format!(
                    "{}: {}",
                    error.exception_type,
                    error.exception_message.trim_end()
                ),
            }),
            ServerMessage::ExecutionInterrupted(_) => self.finish(Outcome::Interrupted),
            ServerMessage::Status(_)
            | ServerMessage::FeatureFlags(_)
            | ServerMessage::Unknown { .. } => {}
        }
        *self != before
    }

    fn set_fraction(&mut self, node_id: &str, fraction: f64) {
        let slot = self.node_fraction.entry(node_id.to_owned()).or_insert(0.0);
        // Progress never runs backwards: a late `progress` must not undo a `finished`.
        *slot = slot.max(fraction.clamp(0.0, 1.0));
    }

    fn finish(&mut self, outcome: Outcome) {
        if outcome == Outcome::Succeeded {
            for fraction in self.node_fraction.values_mut() {
                *fraction = 1.0;
            }
        }
        self.current_node = None;
        self.outcome = Some(outcome);
    }

    /// Whether ComfyUI has started running it.
    pub fn started(&self) -> bool {
        self.started
    }

    /// Overall progress from 0 to 1; exactly 1 once it succeeded.
    pub fn fraction(&self) -> f64 {
        if self.outcome == Some(Outcome::Succeeded) {
            return 1.0;
        }
        // Not `sum()`: an empty float sum is -0.0, which JSON would carry as "-0.0".
        let (mut done, mut to_run) = (0.0, 0.0);
        for (node, weight) in &self.weights {
            if !self.cached.contains(node) {
                done += weight * self.node_fraction(node);
                to_run += weight;
            }
        }
        if to_run > 0.0 {
            (done / to_run).min(1.0)
        } else {
            0.0
        }
    }

    /// The node running now.
    pub fn current_node(&self) -> Option<&str> {
        self.current_node.as_deref()
    }

    /// Step progress of a node, 0 to 1; a cached node is done.
    pub fn node_fraction(&self, node_id: &str) -> f64 {
        if self.cached.contains(node_id) {
            return 1.0;
        }
        self.node_fraction.get(node_id).copied().unwrap_or(0.0)
    }

    /// Nodes skipped because their outputs were cached.
    pub fn cached_nodes(&self) -> &BTreeSet<String> {
        &self.cached
    }

    /// What the run made so far, of every kind.
    pub fn outputs(&self) -> &[Output] {
        &self.outputs
    }

    /// How it ended, once it has.
    pub fn outcome(&self) -> Option<&Outcome> {
        self.outcome.as_ref()
    }
}

/// A node's share of a run's time: its `steps` when given as a value, else one.
fn weight(node: &Node) -> f64 {
    node.inputs
        .get("steps")
        .and_then(serde_json::Value::as_u64)
        .filter(|steps| *steps > 0)
        .map_or(1.0, |steps| steps as f64)
}

fn ratio(value: f64, max: f64) -> f64 {
    if max > 0.0 { value / max } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::comfy::fixtures;

    /// The workflow the transcripts ran: LoadImage, SlowProgress (4 steps), ImageInvert,
    /// SaveImage.
    fn recorded_workflow() -> Workflow {
        Workflow::parse(&fixtures::workflow_text("invert_slow")).unwrap()
    }

    fn workflow(nodes: serde_json::Value) -> Workflow {
        Workflow::from_value(nodes).unwrap()
    }

    fn apply(run: &mut RunProgress, texts: &[&str]) {
        for text in texts {
            run.apply(&ServerMessage::parse(text).unwrap());
        }
    }

    /// Replays one recorded transcript into a tracker and returns every fraction seen.
    fn replay(transcript: &str, prompt_id: &str) -> (RunProgress, Vec<f64>) {
        let mut run = RunProgress::new(prompt_id, &recorded_workflow());
        let mut seen = vec![run.fraction()];
        for (name, frame) in fixtures::ws_text_frames() {
            if name == transcript {
                run.apply(&ServerMessage::parse(&frame.to_string()).unwrap());
                seen.push(run.fraction());
            }
        }
        (run, seen)
    }

    #[test]
    fn a_recorded_successful_run_climbs_monotonically_to_one_with_its_image() {
        let (run, seen) = replay(
            "run_success_preview_metadata.jsonl",
            "99994df8-911a-42a4-994f-8b78e1d36f71",
        );
        assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
        assert!(
            seen[0].is_sign_positive(),
            "not -0.0, which JSON shows as \"-0.0\""
        );
        assert!(
            seen.iter().any(|f| *f > 0.3 && *f < 0.7),
            "a middle value: {seen:?}"
        );
        assert_eq!(run.fraction(), 1.0);
        assert_eq!(run.outcome(), Some(&Outcome::Succeeded));
        assert!(
            matches!(&run.outputs()[0], Output::Image(file) if file.filename == "run1_00001_.png")
        );
        assert_eq!(run.current_node(), None);
    }

    #[test]
    fn cached_nodes_do_not_count_towards_the_total() {
        let (run, seen) = replay(
            "run_partially_cached.jsonl",
            "009cf607-5be0-41e4-9597-a352dd9e4744",
        );
        assert_eq!(run.cached_nodes().len(), 3);
        assert_eq!(run.fraction(), 1.0);
        assert!(seen.contains(&0.0));
        for node in run.cached_nodes() {
            assert_eq!(
                run.node_fraction(node),
                1.0,
                "a cached node is done, not at 0%"
            );
        }
    }

    #[test]
    fn a_recorded_run_never_shows_less_overall_than_its_working_node_has_done_of_the_run() {
        let mut run =
            RunProgress::new("99994df8-911a-42a4-994f-8b78e1d36f71", &recorded_workflow());
        for (name, frame) in fixtures::ws_text_frames() {
            if name == "run_success_preview_metadata.jsonl" {
                run.apply(&ServerMessage::parse(&frame.to_string()).unwrap());
                // SlowProgress is 4 of the run's 7 weighted steps.
                let floor = run.node_fraction("2") * 4.0 / 7.0;
                assert!(
                    run.fraction() >= floor - 1e-9,
                    "{} < {floor}",
                    run.fraction()
                );
            }
        }
    }

    #[test]
    fn a_samplers_steps_weigh_in_the_overall_figure_from_the_start() {
        let mut run = RunProgress::new(
            "p",
            &workflow(serde_json::json!({
                "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "a.safetensors"}},
                "2": {"class_type": "KSampler", "inputs": {"model": ["1", 0], "steps": 20}},
                "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0]}},
            })),
        );
        apply(
            &mut run,
            &[
                r#"{"type":"executing","data":{"node":"1","prompt_id":"p"}}"#,
                r#"{"type":"executing","data":{"node":"2","prompt_id":"p"}}"#,
            ],
        );
        // The loader done, the sampler not begun: 1 of 22, not 1 of 3.
        assert_eq!(run.fraction(), 1.0 / 22.0);
        apply(
            &mut run,
            &[r#"{"type":"progress","data":{"value":12,"max":20,"prompt_id":"p","node":"2"}}"#],
        );
        assert_eq!(run.node_fraction("2"), 0.6);
        assert_eq!(run.fraction(), 13.0 / 22.0);
    }

    #[test]
    fn a_recorded_failure_names_the_node_and_the_exception() {
        let (run, _) = replay(
            "run_execution_error.jsonl",
            "69deaee4-15fa-482c-adc6-fbc748d8bf50",
        );
        let Some(Outcome::Failed {
            node_id,
            node_type,
            message,
        }) = run.outcome()
        else {
            panic!("{:?}", run.outcome())
        };
        assert_eq!(
            (node_id.as_str(), node_type.as_str()),
            ("2", "SlowProgress")
        );
        assert_eq!(
            message,
            "RuntimeError: SlowProgress failed on purpose at step 2"
        );
        assert!(run.fraction() < 1.0);
    }

    #[test]
    fn a_recorded_interrupt_ends_the_run_as_interrupted() {
        let (run, _) = replay(
            "run_interrupted_global.jsonl",
            "c8cb1f6b-8a78-415f-931e-02c529b97481",
        );
        assert_eq!(run.outcome(), Some(&Outcome::Interrupted));
    }

    #[test]
    fn messages_about_other_prompts_are_ignored() {
        let (run, seen) = replay("run_success_preview_metadata.jsonl", "someone-else");
        assert!(!run.started());
        assert!(seen.iter().all(|f| *f == 0.0));
    }

    #[test]
    fn legacy_executing_and_progress_alone_drive_progress() {
        let mut run = RunProgress::new(
            "p",
            &workflow(serde_json::json!({
                "1": {"class_type": "LoadImage", "inputs": {"image": "a.png"}},
                "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0]}},
            })),
        );
        for text in [
            r#"{"type":"executing","data":{"node":"1","prompt_id":"p"}}"#,
            r#"{"type":"progress","data":{"value":5,"max":10,"prompt_id":"p","node":"1"}}"#,
        ] {
            run.apply(&ServerMessage::parse(text).unwrap());
        }
        assert_eq!(run.fraction(), 0.25);
        run.apply(
            &ServerMessage::parse(r#"{"type":"executing","data":{"node":"2","prompt_id":"p"}}"#)
                .unwrap(),
        );
        assert_eq!(run.fraction(), 0.5);
        assert_eq!(run.current_node(), Some("2"));
        run.apply(
            &ServerMessage::parse(r#"{"type":"executing","data":{"node":null,"prompt_id":"p"}}"#)
                .unwrap(),
        );
        assert_eq!(run.outcome(), Some(&Outcome::Succeeded));
    }
}
