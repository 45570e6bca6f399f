//! `comfy-relay`: serves (the default), or runs one of its subcommands.

use anyhow::Context as _;
use clap::Parser as _;
use proxy::config::{Cli, Command, Config};
use proxy::{AppState, banner, commands, shutdown};
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Devices { data_dir, action }) => {
            commands::devices::run(&data_dir, action, &mut std::io::stdout())
        }
        None => serve(cli.serve).await,
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
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
    banner::print(listener.local_addr()?, pairing.as_deref());
    proxy::run(listener, state, shutdown::signal())
        .await
        .context("the server stopped with an error")
}
