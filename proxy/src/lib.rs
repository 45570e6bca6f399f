//! Comfy Relay's server: serves the web app and relays ComfyUI's HTTP API and WebSocket so that
//! a phone on the LAN talks to one origin and ComfyUI never sees a foreign one.
//!
//! [`app`] builds the router and [`run`] serves it until a shutdown signal, so tests start the
//! real server on `127.0.0.1:0`.

pub mod banner;
pub mod comfy;
pub mod config;
pub mod device;
pub mod error;
pub mod headers;
pub mod http_relay;
pub mod jobs;
pub mod shutdown;
pub mod spa;
pub mod state;
pub mod upstream;
pub mod ws_relay;

use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::routing::{MethodRouter, any, get, post};
use tokio::net::TcpListener;
use tower_http::trace::TraceLayer;

pub use config::Config;
use error::RelayError;
pub use state::AppState;

/// How long shutdown waits for relayed sockets to close before giving up on them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// ComfyUI's routes that the relay forwards. ComfyUI serves each at `/` and under `/api`.
fn comfyui_routes() -> Vec<(&'static str, MethodRouter<AppState>)> {
    let relay = http_relay::relay;
    vec![
        ("/prompt", get(relay).post(relay)),
        ("/upload/image", post(relay)),
        ("/interrupt", post(relay)),
        ("/view", get(relay)),
        ("/history", get(relay)),
        ("/history/{prompt_id}", get(relay)),
        ("/queue", get(relay).post(relay)),
        ("/object_info", get(relay)),
        ("/object_info/{node_class}", get(relay)),
        ("/system_stats", get(relay)),
        ("/features", get(relay)),
        ("/ws", get(ws_relay::relay)),
    ]
}

/// An `/api/...` path that matched nothing: a JSON 404, never the app's page.
async fn no_such_api_route(request: Request) -> RelayError {
    RelayError::NoSuchRoute {
        method: request.method().to_string(),
        path: request.uri().path().to_owned(),
    }
}

/// The relay's own API: jobs, their event socket, device links.
fn relay_routes() -> Router<AppState> {
    use jobs::routes as job;
    Router::new()
        .route("/api/jobs", get(job::list).post(job::submit))
        .route("/api/jobs/{id}", get(job::get))
        .route("/api/jobs/{id}/preview", get(job::preview))
        .route("/api/jobs/{id}/cancel", post(job::cancel))
        .route("/api/jobs/{id}/requeue", post(job::requeue))
        .route("/api/events", get(job::events))
        .route("/api/device/link", post(device::create_link))
        .route("/link/{code}", get(device::follow_link))
}

/// The whole HTTP surface of the relay.
pub fn app(state: AppState) -> Router {
    let mut router = relay_routes();
    for (path, route) in comfyui_routes() {
        router = router
            .route(path, route.clone())
            .route(&format!("/api{path}"), route);
    }
    router
        .route("/api/{*rest}", any(no_such_api_route))
        .fallback(spa::serve)
        .layer(axum::middleware::from_fn(device::identify))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Serves `app(state)` on `listener`, with the background task that watches ComfyUI, until
/// `shutdown` resolves; then closes relayed sockets (close code 1001) and waits briefly for them.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let token = state.shutdown.clone();
    let tasks = state.tasks.clone();
    let (upstream, client, interval) = (
        state.upstream.clone(),
        state.http.clone(),
        state.probe_interval,
    );
    let cancel = token.clone();
    tasks.spawn(async move { upstream.watch(client, interval, cancel).await });
    tasks.spawn(jobs::upstream::follow(
        state.jobs.clone(),
        state.upstream.clone(),
        token.clone(),
    ));
    tasks.spawn(jobs::upstream::track_queue(
        state.jobs.clone(),
        token.clone(),
    ));
    let serve = axum::serve(listener, app(state)).with_graceful_shutdown(async move {
        shutdown.await;
        // Upgraded sockets are not connections axum waits for: tell them to close.
        token.cancel();
    });
    let result = serve.await;
    tasks.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("some relayed sockets did not close in time");
    }
    result
}
