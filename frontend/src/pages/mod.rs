//! The app's pages, one per file: the library, a workflow's form, the jobs, the gallery.

pub mod gallery;
pub mod jobs;
pub mod library;
pub mod workflow;
