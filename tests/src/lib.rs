//! Comfy Relay's test kit, shared by the end-to-end tests in `tests/tests/`:
//!
//! - [`comfyui`]: a ComfyUI double, a real axum server that answers from recorded traffic,
//!   replays recorded run transcripts to the client that queued a prompt, enforces ComfyUI's
//!   origin guard, and keeps every request it received.
//! - [`stack`]: `spawn_stack()`, the double plus the real relay, both on port 0.
//! - [`app`]: driving the web app as a person does.
//! - [`browser`]: headless Chromium driven over WebDriver, at phone and desktop sizes.
//! - [`device`]: a device speaking the jobs API and following its event socket.
//! - [`client`]: a WebSocket client that speaks as a browser would.
//! - [`fixtures`]: recorded workflows and test images.
//! - [`push_service`]: a Web Push service double over HTTPS, and a browser's keys to read what
//!   it received.
//! - [`relay_process`]: the real `comfy-relay` binary as a child process, for benchmarks.

pub mod app;
pub mod browser;
pub mod client;
pub mod comfyui;
pub mod device;
pub mod fixtures;
pub mod push_service;
pub mod relay_process;
pub mod stack;
