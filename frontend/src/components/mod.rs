//! The app's components, one per file.

pub mod connection_badge;
pub mod device_link;
pub mod job_card;
pub mod jobs_list;
pub mod pairing_required;
pub mod text_inputs;
pub mod workflow_source;
