//! `bench-limits`: what the relay's limits cost and how fast they act, as figures.
//!
//! Runs the real `comfy-relay` binary as a child process (so its memory is its own), pairing
//! required, in front of the ComfyUI double, and measures its peak resident memory (`VmHWM`,
//! reset before each case through `/proc/PID/clear_refs`) while a paired script sends:
//! - a multipart form whose non-image field is `--huge-mb` (1.5 GB by default) long;
//! - an endless chunked body to `/prompt`;
//! - a 10 MB `/prompt` of tiny values (refused before parsing) and a 10 MB one of text;
//!
//! then times how long a client dripping one header byte a second keeps its connection, and
//! counts the half-open connections one unpaired address holds before the relay answers 503.
//!
//! `scripts/bench` builds the release binaries and runs it.

use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use testkit::relay_process::RelayProcess;

const TOKEN: &str = "0123456789abcdef0123456789abcdef";

/// Measures the memory and time the relay's limits cost.
#[derive(Parser)]
#[command(name = "bench-limits", about)]
struct Args {
    /// Size of the huge multipart field, in MB.
    #[arg(long, default_value_t = 1536)]
    huge_mb: u64,
}

/// A body of `prefix` then `total` bytes of `fill`, in 64 KiB chunks.
fn body(prefix: &'static str, fill: u8, total: u64) -> reqwest::Body {
    let chunk = Bytes::from(vec![fill; 64 * 1024]);
    let chunks = total.div_ceil(chunk.len() as u64);
    let stream = futures_util::stream::once(
        async move { Ok(Bytes::from_static(prefix.as_bytes())) },
    )
    .chain(futures_util::stream::iter(
        (0..chunks).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
    ));
    reqwest::Body::wrap_stream(stream)
}

/// Sends one case and prints its answer, time and the relay's peak memory above `start`.
async fn case(
    relay: &RelayProcess,
    name: &str,
    path: &str,
    content_type: &str,
    body: reqwest::Body,
) {
    relay.reset_peak();
    let start = relay.status_kib("VmRSS:");
    let started = Instant::now();
    let answer = reqwest::Client::new()
        .post(format!("{}{path}", relay.base))
        .bearer_auth(TOKEN)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await;
    let status = answer.map_or_else(
        |e| format!("connection cut ({e})"),
        |a| a.status().to_string(),
    );
    let peak = relay.status_kib("VmHWM:");
    println!(
        "{name}: {status} after {:.2} s; peak memory {} MiB above the {} MiB before",
        started.elapsed().as_secs_f64(),
        peak.saturating_sub(start) / 1024,
        start / 1024
    );
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let comfyui = testkit::comfyui::FakeComfyUi::start().await;
    let token = format!("--token={TOKEN}");
    let relay = RelayProcess::start(&comfyui.url(), &["--require-token", &token], "error").await;
    let port = relay.port;

    let huge = args.huge_mb << 20;
    case(
        &relay,
        &format!("multipart field of {} MB", args.huge_mb),
        "/upload/image",
        "multipart/form-data; boundary=b",
        body(
            "--b\r\nContent-Disposition: form-data; name=\"notes\"\r\n\r\n",
            b'x',
            huge,
        ),
    )
    .await;
    case(
        &relay,
        &format!("chunked /prompt body of {} MB", args.huge_mb),
        "/prompt",
        "application/json",
        body("{\"prompt\": \"", b'x', huge),
    )
    .await;
    let tiny_values = format!("{{\"prompt\": [{}0]}}", "0,".repeat(5 << 20));
    case(
        &relay,
        "10 MB /prompt of tiny values",
        "/prompt",
        "application/json",
        tiny_values.into(),
    )
    .await;
    let text = format!(
        "{{\"prompt\": {{\"1\": {{\"class_type\": \"PrimitiveNode\", \"inputs\": {{\"text\": \"{}\"}}}}}}}}",
        "x".repeat(10 << 20)
    );
    case(
        &relay,
        "10 MB /prompt of text",
        "/prompt",
        "application/json",
        text.into(),
    )
    .await;
    println!(
        "comfy-relay: {} MiB resident after all",
        relay.status_kib("VmRSS:") / 1024
    );

    // A header dripped one byte a second.
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("a connection");
    stream
        .write_all(b"GET / HTTP/1.1\r\nX-Slow: ")
        .await
        .expect("sent");
    let started = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut probe = [0u8; 64];
        let closed = matches!(
            tokio::time::timeout(Duration::from_millis(5), stream.read(&mut probe)).await,
            Ok(Ok(0) | Err(_))
        );
        if closed
            || stream.write_all(b"x").await.is_err()
            || started.elapsed() > Duration::from_secs(60)
        {
            break;
        }
    }
    println!(
        "a header dripped at 1 byte/s: connection closed after {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // Half-open connections from one unpaired address: those over the cap get a 503 (after a
    // moment given to send their request).
    let mut held = Vec::new();
    for _ in 0..64 {
        let mut stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("a connection");
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            .await
            .expect("sent");
        held.push(stream);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut refused = 0;
    for stream in &mut held {
        let mut answer = [0u8; 12];
        let read = tokio::time::timeout(Duration::from_millis(20), stream.read(&mut answer)).await;
        if matches!(read, Ok(Ok(n)) if answer[..n].starts_with(b"HTTP/1.1 503")) {
            refused += 1;
        }
    }
    println!(
        "half-open connections from one address: {} held, {refused} of 64 answered 503",
        64 - refused
    );
    drop(held);
    relay.stop().await;
}
