//! `bench-nginx`: the relay against nginx `proxy_pass` in front of the same origin, as figures.
//!
//! Starts the ComfyUI double (the origin), the real `comfy-relay` binary (pairing required, so
//! every request passes the token check) and Debian's nginx (keep-alive to the origin, as a
//! tuned reverse proxy runs), then drives each with `wrk` in turn, several rounds alternating,
//! for a small JSON answer (`/system_stats`, 568 bytes). Prints each round, then the medians:
//! requests per second, p50 latency, and the relay/nginx ratio; then, with one connection (no
//! queueing), the p50 latency each proxy adds to the origin's own.
//!
//! A fourth target, `hyper`, is the floor of the relay's stack: this binary run again as a bare
//! proxy on the same hyper server and client the relay is built on, with none of the relay's
//! own code (no checks, routing, pool or logging). relay/hyper is what the relay's code costs;
//! hyper/nginx is what the stack allows.
//!
//! `scripts/bench` installs nginx and wrk (bench only), builds the release binaries and runs it.

use std::convert::Infallible;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::Mutex;

use testkit::relay_process::{RelayProcess, free_port};

const TOKEN: &str = "0123456789abcdef0123456789abcdef";

/// Measures the relay's small-request throughput and latency against nginx's.
#[derive(Parser)]
#[command(name = "bench-nginx", about)]
struct Args {
    /// Seconds each wrk run lasts.
    #[arg(long, default_value_t = 5)]
    seconds: u32,
    /// Rounds of (origin, nginx, bare hyper proxy, relay).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Connections wrk keeps open.
    #[arg(long, default_value_t = 32)]
    connections: u32,
    /// The nginx binary.
    #[arg(long, default_value = "/usr/sbin/nginx")]
    nginx: String,
    /// Serve as the bare hyper proxy on this loopback port (the bench starts itself so).
    #[arg(long, hide = true, requires = "bare_origin")]
    bare_port: Option<u16>,
    /// The origin (`host:port`) the bare hyper proxy relays to.
    #[arg(long, hide = true)]
    bare_origin: Option<String>,
}

/// What one wrk run measured.
#[derive(Clone, Copy)]
struct Run {
    per_second: f64,
    p50_us: f64,
}

/// Starts nginx in the foreground, proxying `127.0.0.1:port` to `origin` with pooled
/// keep-alive connections, with every file it writes under `dir`.
async fn start_nginx(binary: &str, dir: &Path, port: u16, origin: &str) -> Child {
    let d = dir.display();
    let config = format!(
        "worker_processes auto;\n\
         error_log {d}/error.log warn;\n\
         pid {d}/nginx.pid;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n\
           access_log off;\n\
           client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;\n\
           fastcgi_temp_path {d}/fastcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n\
           upstream origin {{ server {origin}; keepalive 64; }}\n\
           server {{\n\
             listen 127.0.0.1:{port};\n\
             location / {{\n\
               proxy_pass http://origin;\n\
               proxy_http_version 1.1;\n\
               proxy_set_header Connection \"\";\n\
             }}\n\
           }}\n\
         }}\n"
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, config).expect("the nginx config is written");
    let child = Command::new(binary)
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&path)
        .args(["-g", "daemon off;"])
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {binary} ({e}); run scripts/bench"));
    answering(port, &format!("nginx (see {d}/error.log)")).await;
    child
}

/// Starts this binary again as the bare hyper proxy on `port` in front of `origin`.
async fn start_bare(port: u16, origin: &str) -> Child {
    let child = Command::new(std::env::current_exe().expect("the bench knows where it is"))
        .arg(format!("--bare-port={port}"))
        .arg(format!("--bare-origin={origin}"))
        .kill_on_drop(true)
        .spawn()
        .expect("the bench starts itself");
    answering(port, "the bare hyper proxy").await;
    child
}

/// Waits until `127.0.0.1:port` answers `/system_stats`.
async fn answering(port: u16, what: &str) {
    let url = format!("http://127.0.0.1:{port}/system_stats");
    for _ in 0..100 {
        if reqwest::get(&url).await.is_ok_and(|r| r.status() == 200) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what} did not start");
}

/// The bare hyper proxy: each connection gets its own kept-alive connection to `origin`, and
/// every request goes there as it came, on hyper's HTTP/1 server and client as the relay
/// configures them (header read timer on, `TCP_NODELAY` both ways).
async fn serve_bare(port: u16, origin: String) {
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("the bare proxy's port is free");
    let origin: Arc<str> = origin.into();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let origin = Arc::clone(&origin);
        tokio::spawn(async move {
            let Ok(upstream) = TcpStream::connect(&*origin).await else {
                return;
            };
            let (Ok(()), Ok(())) = (stream.set_nodelay(true), upstream.set_nodelay(true)) else {
                return;
            };
            let Ok((sender, connection)) =
                hyper::client::conn::http1::handshake(TokioIo::new(upstream)).await
            else {
                return;
            };
            tokio::spawn(connection);
            let sender: Arc<Mutex<SendRequest<Incoming>>> = Arc::new(Mutex::new(sender));
            let relay = hyper::service::service_fn(move |request| {
                let sender = Arc::clone(&sender);
                async move {
                    let mut sender = sender.lock().await;
                    let answer = match sender.ready().await {
                        Ok(()) => sender.send_request(request).await,
                        Err(error) => Err(error),
                    };
                    Ok::<_, Infallible>(answer.unwrap_or_else(|error| {
                        panic!("the origin stopped answering the bare proxy: {error}")
                    }))
                }
            });
            let mut server = hyper::server::conn::http1::Builder::new();
            server.timer(TokioTimer::new());
            let _ = server.serve_connection(TokioIo::new(stream), relay).await;
        });
    }
}

/// A wrk latency figure (`812.00us`, `1.20ms`, `2.1s`) in microseconds.
fn micros(text: &str) -> Option<f64> {
    let (number, factor) = if let Some(n) = text.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1e3)
    } else {
        (text.strip_suffix('s')?, 1e6)
    };
    number.parse::<f64>().ok().map(|n| n * factor)
}

/// Runs wrk with `connections` against `url` and reads its figures.
async fn wrk(args: &Args, connections: u32, url: &str) -> Run {
    let output = Command::new("wrk")
        .args(["-t1", &format!("-c{connections}")])
        .arg(format!("-d{}s", args.seconds))
        .args(["--latency", "-H", &format!("Authorization: Bearer {TOKEN}")])
        .arg(url)
        .output()
        .await
        .expect("wrk runs; run scripts/bench");
    let text = String::from_utf8_lossy(&output.stdout);
    let field = |prefix: &str| {
        text.lines()
            .find_map(|line| line.trim().strip_prefix(prefix))
            .and_then(|rest| rest.split_whitespace().next())
            .map(str::to_owned)
    };
    let per_second = field("Requests/sec:").and_then(|n| n.parse().ok());
    let p50_us = field("50%").as_deref().and_then(micros);
    let non_2xx = text.contains("Non-2xx");
    match (per_second, p50_us) {
        (Some(per_second), Some(p50_us)) if !non_2xx => Run { per_second, p50_us },
        _ => panic!("wrk against {url} failed or got errors:\n{text}"),
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if let (Some(port), Some(origin)) = (args.bare_port, args.bare_origin.clone()) {
        return serve_bare(port, origin).await;
    }
    let comfyui = testkit::comfyui::FakeComfyUi::start().await;
    let origin = comfyui.url();
    let origin_address = origin.trim_start_matches("http://").trim_end_matches('/');
    let token = format!("--token={TOKEN}");
    let relay = RelayProcess::start(&origin, &["--require-token", &token], "warn").await;
    let dir = tempfile::tempdir().expect("a temporary dir");
    let nginx_port = free_port();
    let _nginx = start_nginx(&args.nginx, dir.path(), nginx_port, origin_address).await;
    let bare_port = free_port();
    let _bare = start_bare(bare_port, origin_address).await;

    let path = "/system_stats";
    let targets = [
        ("origin", format!("http://{origin_address}{path}")),
        ("nginx", format!("http://127.0.0.1:{nginx_port}{path}")),
        ("hyper", format!("http://127.0.0.1:{bare_port}{path}")),
        ("relay", format!("{}{path}", relay.base)),
    ];
    println!(
        "GET {path} (568-byte JSON), wrk -t1 -c{} -d{}s, {} rounds",
        args.connections, args.seconds, args.rounds
    );
    let mut runs: Vec<Vec<Run>> = vec![Vec::new(); targets.len()];
    let mut alone: Vec<Vec<f64>> = vec![Vec::new(); targets.len()];
    for round in 1..=args.rounds {
        for (((name, url), runs), alone) in targets.iter().zip(&mut runs).zip(&mut alone) {
            let run = wrk(&args, args.connections, url).await;
            let one = wrk(&args, 1, url).await;
            println!(
                "round {round} {name:>6}: {:>8.0} req/s, p50 {:>6.0} µs; one connection p50 {:>4.0} µs",
                run.per_second, run.p50_us, one.p50_us
            );
            runs.push(run);
            alone.push(one.p50_us);
        }
    }
    let medians: Vec<Run> = runs
        .iter()
        .zip(&alone)
        .map(|(runs, alone)| Run {
            per_second: median(runs.iter().map(|r| r.per_second).collect()),
            p50_us: median(alone.clone()),
        })
        .collect();
    let [origin, nginx, hyper, relay] = [medians[0], medians[1], medians[2], medians[3]];
    for (name, run) in [
        ("origin", origin),
        ("nginx", nginx),
        ("hyper", hyper),
        ("relay", relay),
    ] {
        println!(
            "median {name:>6}: {:>8.0} req/s; one connection p50 {:>4.0} µs",
            run.per_second, run.p50_us
        );
    }
    println!(
        "relay/nginx throughput: {:.2}",
        relay.per_second / nginx.per_second
    );
    println!(
        "relay/hyper throughput (the relay's own code): {:.2}; hyper/nginx (the stack's floor): {:.2}",
        relay.per_second / hyper.per_second,
        hyper.per_second / nginx.per_second
    );
    println!(
        "p50 added to the origin's, one connection: relay {:.0} µs, hyper {:.0} µs, nginx {:.0} µs",
        relay.p50_us - origin.p50_us,
        hyper.p50_us - origin.p50_us,
        nginx.p50_us - origin.p50_us
    );
}
