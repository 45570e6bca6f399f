//! The app's components, one per file.

pub mod connection_badge;
pub mod run_view;
pub mod text_inputs;
pub mod workflow_source;
