//! `comfy-relay`: parses the configuration, prints where to open the app, and serves.

use anyhow::Context as _;
use clap::Parser as _;
use proxy::{AppState, Config, banner, shutdown};
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let config = Config::parse();
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
    banner::print(listener.local_addr()?);
    proxy::run(listener, state, shutdown::signal())
        .await
        .context("the server stopped with an error")
}
