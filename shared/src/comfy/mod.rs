//! ComfyUI's wire protocol, as recorded from a real server (see `tests/fixtures/comfyui/`).
//!
//! Every type here tolerates fields it does not know, and [`ServerMessage::Unknown`] keeps
//! message types a newer ComfyUI may add, so a ComfyUI upgrade never breaks parsing.

pub mod http;
pub mod output;
pub mod preview;
pub mod ws;

pub use http::*;
pub use output::Output;
pub use preview::{BinaryFrame, PreviewError, PreviewImage, PreviewMetadata, with_metadata};
pub use ws::*;

#[cfg(test)]
pub(crate) mod fixtures;
