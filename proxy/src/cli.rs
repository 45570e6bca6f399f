//! The `comfy-relay` command line: serves (the default), or runs one of its subcommands.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

use crate::config::{Cli, Command, Config};
use crate::{AppState, banner, commands, shutdown};

/// Reads the command line and does what it says; the exit code says how it went.
pub async fn main() -> ExitCode {
    let cli = Cli::parse();
    // The relay logs what it does; the terminal runner prints for people, and logs only trouble.
    let default_level = if matches!(cli.command, Some(Command::Run(_))) {
        "warn"
    } else {
        "info"
    };
    tracing_subscriber::fmt()
        .with_env_filter(log_filter(default_level))
        .init();
    let result = match cli.command {
        Some(Command::Run(args)) => return commands::run::run(args).await,
        Some(Command::Devices { data_dir, action }) => {
            commands::devices::run(&data_dir, action, &mut std::io::stdout())
        }
        Some(Command::Jobs { data_dir, limit }) => {
            commands::jobs::run(&data_dir, limit, &mut std::io::stdout())
        }
        None => serve(cli.serve).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("Error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// What is logged: `RUST_LOG`, else `default_level`; never the WebSocket library's traces,
/// which print whole handshakes and frames (the relay's ComfyUI client id, a browser's cookie).
pub fn log_filter(default_level: &str) -> EnvFilter {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    filter.add_directive("tungstenite=info".parse().expect("a valid directive"))
}

/// Open files the relay needs besides its connections: ComfyUI's side, the data directory.
const FILES_BESIDES_CONNECTIONS: u64 = 256;

/// Raises the limit on open files as far as the system allows, and keeps the connection cap
/// within it: each connection can hold two files (its own, and one to ComfyUI), and running out
/// would refuse connections with errors instead of a clear 503.
fn fit_to_file_limit(config: &mut Config) {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => {
            let room = usize::try_from(limit.saturating_sub(FILES_BESIDES_CONNECTIONS) / 2)
                .unwrap_or(usize::MAX)
                .max(16);
            if config.max_connections > room {
                tracing::warn!(
                    "this system allows {limit} open files: serving at most {room} connections \
                     instead of {}",
                    config.max_connections
                );
                config.max_connections = room;
            }
        }
        Err(error) => tracing::warn!(%error, "cannot read the limit on open files"),
    }
}

async fn serve(mut config: Config) -> anyhow::Result<()> {
    fit_to_file_limit(&mut config);
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let state = AppState::new(&config)?;
    if !config.static_dir.join("index.html").is_file() {
        tracing::warn!(
            "no built web app in {}; build it with `trunk build --release` (scripts/start does)",
            config.static_dir.display()
        );
    }
    let pairing = state.auth.required.then(|| state.auth.pairing_path());
    if !state.auth.required && !config.listen.ip().is_loopback() {
        tracing::warn!("--no-auth: anyone who reaches this relay can use ComfyUI through it");
    }
    banner::print(
        listener.local_addr()?,
        pairing.as_deref(),
        state.tls.as_deref(),
    );
    crate::run(listener, state, shutdown::signal())
        .await
        .context("the server stopped with an error")
}
