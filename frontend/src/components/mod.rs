//! The app's smaller parts, one component per file.

pub mod connection_badge;
pub mod device_link;
pub mod field;
pub mod image_input;
pub mod job_card;
pub mod jobs_list;
pub mod more_pages;
pub mod pairing_required;
pub mod tab_bar;
pub mod viewer;
pub mod workflow_import;
