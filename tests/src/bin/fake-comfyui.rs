//! `fake-comfyui`: the ComfyUI double as a program, to try Comfy Relay without a GPU.
//!
//! `cargo run -p tests --bin fake-comfyui` listens on 127.0.0.1:8188 like ComfyUI; start
//! `comfy-relay` next to it and queue any of the recorded workflows from the app.

use clap::Parser;
use testkit::comfyui::{FakeComfyUi, Options};

/// A ComfyUI double that answers from recorded traffic and replays recorded runs.
#[derive(Parser)]
#[command(name = "fake-comfyui", version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8188")]
    listen: std::net::SocketAddr,
    /// Multiplies every recorded delay (3 makes a run last about 3.5 s).
    #[arg(long, default_value_t = 3.0)]
    pace: f64,
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt::init();
    let args = Args::parse();
    let options = Options {
        pace: args.pace,
        ..Options::default()
    };
    let double = FakeComfyUi::start_on(args.listen, options).await;
    println!(
        "fake ComfyUI (recorded 0.3.64) listening on {}",
        double.url()
    );
    let _ = tokio::signal::ctrl_c().await;
    double.stop().await;
}
