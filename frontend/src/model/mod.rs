//! The app's logic that needs no browser: forms from workflows and schemas, what a device
//! remembers, paging through kept jobs, the gallery, routes. Unit-tested natively
//! (`cargo test -p frontend`).

pub mod archive;
pub mod form;
pub mod gallery;
pub mod memory;
pub mod route;
