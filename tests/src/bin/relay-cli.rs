//! The `comfy-relay` command for the end-to-end tests: the shipped binary's entry point, built
//! in this package so that its tests find it (`CARGO_BIN_EXE_relay-cli`).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    proxy::cli::main().await
}
