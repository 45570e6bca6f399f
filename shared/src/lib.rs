//! The types both halves of Comfy Relay speak, compiled for native and wasm32.
//!
//! - [`comfy`]: what ComfyUI sends and accepts on the wire, modelled on recorded traffic.
//! - [`editor`]: the editor's save format converted to the API format, as ComfyUI's frontend does.
//! - [`workflow`]: the API-format workflow (`workflow_api.json`) and the inputs a person can edit.
//! - [`progress`]: folding ComfyUI's execution events into one run's progress.
//! - [`schema`]: node classes' inputs from `/object_info`, and the checks ComfyUI applies to values.
//! - [`api`]: Comfy Relay's own HTTP and WebSocket bodies.
//! - [`backoff`]: when to retry a dropped connection.

pub mod api;
pub mod backoff;
pub mod comfy;
pub mod editor;
pub mod html;
pub mod progress;
pub mod schema;
pub mod workflow;
