//! `comfy-relay`'s subcommands besides serving.

pub mod devices;
pub mod run;
