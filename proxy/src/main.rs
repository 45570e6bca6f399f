//! `comfy-relay`: serves (the default), or runs one of its subcommands.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    proxy::cli::main().await
}
