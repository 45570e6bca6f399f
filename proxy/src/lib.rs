//! Comfy Relay's server: serves the web app and relays ComfyUI's HTTP API and WebSocket so that
//! a phone on the LAN talks to one origin and ComfyUI never sees a foreign one.
//!
//! [`app`] builds the router and [`run`] serves it until a shutdown signal, so tests start the
//! real server on `127.0.0.1:0`.

pub mod auth;
mod automation;
mod backend;
mod banner;
pub mod cli;
mod clock;
mod comfy;
mod comfy_path;
mod comfy_routes;
pub mod commands;
pub mod config;
pub mod device;
mod device_links;
mod device_sockets;
mod embedded_workflow;
mod error;
mod gate;
mod headers;
mod health;
mod http_relay;
mod image_check;
mod jobs;
mod library;
mod limits;
mod log;
mod object_info;
mod prompt;
mod push;
mod raw;
mod same_origin;
mod server;
mod shutdown;
mod spa;
mod state;
mod tls;
mod upload;
pub mod upstream;
mod ws_relay;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use tokio::net::TcpListener;

pub use config::Config;
pub use state::AppState;

/// How long shutdown waits for open requests and relayed sockets to end before giving up.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The relay's own API: jobs and their event socket, the workflow library and its automation,
/// devices, node schemas, health and the servers page. Every route needs a device.
fn relay_routes() -> Router<AppState> {
    jobs::routes::router()
        .merge(library::router())
        .merge(automation::router())
        .merge(push::router())
        .route("/api/health", get(health::health))
        .route("/servers", get(health::page))
        .route("/api/device/link", post(device_links::create_link))
}

/// What anyone may reach: the ways in (pairing, device links, who am I) and the app itself.
fn public_routes() -> Router<AppState> {
    Router::new()
        .route("/pair", get(auth::pair))
        .route(
            "/link/{code}",
            get(device_links::confirm_link).post(device_links::follow_link),
        )
        .route("/api/session", get(auth::session))
        .merge(tls::routes())
        .fallback(spa::serve)
}

/// The largest request body any route reads: an image upload with its form, or a prompt.
fn largest_body(state: &AppState) -> u64 {
    let upload = state.max_upload_bytes.saturating_add(upload::FORM_OVERHEAD);
    upload.max(prompt::MAX_PROMPT_BYTES as u64)
}

/// The relay as one service: what [`app`] builds and [`run`] serves.
pub type App = gate::Gate;

/// The whole HTTP surface of the relay. Which routes need a device is the router's shape: the
/// relay's API and every ComfyUI route are in the protected router, behind
/// [`auth::RequireDevice`]; only the public router's routes answer strangers.
pub fn app(state: AppState) -> App {
    let protected = relay_routes()
        .merge(comfy_routes::router(&state.allowed_routes))
        .route_layer(auth::RequireDevice);
    let checks = checks(&state);
    let routes = public_routes().merge(protected).with_state(state);
    gate::Gate::new(checks, routes)
}

/// What plain HTTP connections get once HTTPS is on: [`tls::plain_router`] behind the same
/// checks.
fn plain_app(state: AppState) -> App {
    gate::Gate::new(checks(&state), tls::plain_router().with_state(state))
}

fn checks(state: &AppState) -> gate::Checks {
    gate::Checks {
        auth: state.auth.clone(),
        host_names: state.host_names.clone(),
        body_cap: largest_body(state),
        secure_cookies: state.tls.is_some(),
    }
}

/// Serves `app(state)` on `listener`, with the background tasks that watch ComfyUI and revoked
/// devices, until `shutdown` resolves; then closes relayed sockets (close code 1001) and waits
/// briefly for them and for open requests.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let token = state.shutdown.clone();
    let tasks = state.tasks.clone();
    // Listening before the follower starts: a job it finds ended at start-up is pushed too.
    let ended = state.jobs.registry.ended();
    for backend in state.jobs.backends() {
        let (backend, client, interval, jobs, cancel) = (
            backend.clone(),
            state.http.clone(),
            state.probe_interval,
            state.jobs.clone(),
            token.clone(),
        );
        tasks.spawn(jobs::follower::follow(
            jobs.clone(),
            backend.clone(),
            token.clone(),
        ));
        tasks.spawn(jobs::follower::track_queue(
            jobs.clone(),
            backend.clone(),
            token.clone(),
        ));
        tasks.spawn(async move {
            backend
                .upstream
                .watch(client, interval, cancel, |up| {
                    jobs.set_reachable(&backend, up);
                })
                .await;
        });
    }
    tasks.spawn(jobs::Jobs::dispatch(state.jobs.clone(), token.clone()));
    tasks.spawn(jobs::Jobs::keep_pruning(state.jobs.clone(), token.clone()));
    tasks.spawn(push::deliver(
        state.push.clone(),
        ended,
        state.auth.clone(),
        tasks.clone(),
        token.clone(),
    ));
    tasks.spawn(device_sockets::close_revoked(
        state.sockets.clone(),
        state.auth.clone(),
        token.clone(),
    ));
    let connections = Arc::clone(&state.connections);
    let tls = state.tls.clone().map(|tls| {
        tasks.spawn(tls.clone().keep_current(token.clone()));
        (tls.acceptor(), plain_app(state.clone()))
    });
    let serving = server::Serving {
        app: app(state),
        tls,
    };
    let server = tokio::spawn(server::serve(
        listener,
        serving,
        connections,
        token.clone(),
        tasks.clone(),
    ));
    shutdown.await;
    // Upgraded sockets and open connections watch this token: tell them to close.
    token.cancel();
    let result = server.await.map_err(std::io::Error::other);
    tasks.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("some connections and relayed sockets did not close in time");
    }
    result
}
