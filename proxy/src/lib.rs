//! Comfy Relay's server: serves the web app and relays ComfyUI's HTTP API and WebSocket so that
//! a phone on the LAN talks to one origin and ComfyUI never sees a foreign one.
//!
//! [`app`] builds the router and [`run`] serves it until a shutdown signal, so tests start the
//! real server on `127.0.0.1:0`.

pub mod allowlist;
pub mod auth;
pub mod automation;
pub mod banner;
pub mod cli;
pub mod clock;
pub mod comfy;
pub mod commands;
pub mod config;
pub mod device;
pub mod error;
pub mod guard;
pub mod headers;
pub mod health;
pub mod http_relay;
pub mod jobs;
pub mod library;
pub mod object_info;
pub mod prompt;
pub mod shutdown;
pub mod spa;
pub mod state;
pub mod upload;
pub mod upstream;
pub mod ws_relay;

use std::future::Future;
use std::time::Duration;

use std::net::SocketAddr;

use axum::extract::DefaultBodyLimit;
use axum::routing::{MethodRouter, any, get, post};
use axum::{Router, middleware};
use tokio::net::TcpListener;
use tower_http::trace::TraceLayer;

pub use config::Config;
pub use state::AppState;

/// How long shutdown waits for relayed sockets to close before giving up on them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// ComfyUI's routes that the relay forwards. ComfyUI serves each at `/` and under `/api`.
/// Everything else of ComfyUI's is refused by [`allowlist`].
fn comfyui_routes() -> Vec<(&'static str, MethodRouter<AppState>)> {
    let relay = http_relay::relay;
    vec![
        ("/prompt", get(relay).post(prompt::queue)),
        (
            "/upload/image",
            // The upload handler enforces its own limit, on the stream.
            post(upload::upload_image).layer(DefaultBodyLimit::disable()),
        ),
        ("/interrupt", post(relay)),
        ("/view", get(relay)),
        ("/history", get(relay).post(allowlist::refuse_or_relay)),
        ("/history/{prompt_id}", get(relay)),
        ("/queue", get(relay).post(allowlist::edit_queue)),
        ("/object_info", get(relay)),
        ("/object_info/{node_class}", get(relay)),
        ("/system_stats", get(relay)),
        ("/features", get(relay)),
        ("/ws", get(ws_relay::relay)),
    ]
}

/// The relay's own API: jobs and their event socket, the workflow library and its automation,
/// devices, pairing, node schemas, health.
fn relay_routes() -> Router<AppState> {
    use jobs::routes as job;
    Router::new()
        .route("/api/jobs", get(job::list).post(job::submit))
        .route("/api/jobs/{id}", get(job::get))
        .route("/api/jobs/{id}/preview", get(job::preview))
        .route("/api/jobs/{id}/cancel", post(job::cancel))
        .route("/api/jobs/{id}/requeue", post(job::requeue))
        .route("/api/interrupt", post(job::interrupt))
        .route("/api/health", get(health::health))
        .route("/api/events", get(job::events))
        .route("/api/object_info", get(object_info::serve))
        .route(
            "/api/object_info/{node_class}",
            get(object_info::serve_class),
        )
        .route("/api/workflows", get(library::list))
        .route(
            "/api/workflows/{name}",
            get(library::get).put(library::put).delete(library::delete),
        )
        .route("/api/workflows/{name}/rename", post(library::rename))
        .route(
            "/api/workflows/{name}/image",
            // The upload enforces its own limit, on the stream.
            post(automation::image).layer(DefaultBodyLimit::disable()),
        )
        .route("/api/workflows/{name}/prompt", post(automation::prompt))
        .route("/api/workflows/{name}/run", post(automation::run))
        .route("/api/session", get(auth::session))
        .route("/api/device/link", post(device::create_link))
        .route("/link/{code}", get(device::follow_link))
        .route("/pair", get(auth::pair))
}

/// The whole HTTP surface of the relay.
pub fn app(state: AppState) -> Router {
    let mut router = relay_routes();
    for (path, route) in comfyui_routes() {
        // Under /api, the relay answers /object_info itself, from its kept copy, and
        // /interrupt stops the device's own job, never someone else's.
        if !matches!(
            path,
            "/object_info" | "/object_info/{node_class}" | "/interrupt"
        ) {
            router = router.route(&format!("/api{path}"), route.clone());
        }
        router = router.route(path, route);
    }
    for (prefix, _) in allowlist::BLOCKED {
        for path in [prefix.to_owned(), format!("{prefix}/{{*rest}}")] {
            router = router
                .route(&path, any(allowlist::refuse_or_relay))
                .route(&format!("/api{path}"), any(allowlist::refuse_or_relay));
        }
    }
    router
        .route("/api/{*rest}", any(allowlist::refuse_or_relay))
        .fallback(spa::serve)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            guard::same_origin,
        ))
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
    let app = app(state).into_make_service_with_connect_info::<SocketAddr>();
    let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
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
