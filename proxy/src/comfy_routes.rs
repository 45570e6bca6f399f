//! ComfyUI's routes as the relay serves them: each one it relays, at `/` and under `/api` as
//! ComfyUI serves them, with the ComfyUI path it builds; refusals, with the reason, for
//! ComfyUI's dangerous and unknown routes; and the routes the operator opted in with
//! `--allow-route`, registered as routes of their own.
//!
//! ComfyUI has no authentication: whoever reaches it can read its logs, change its settings,
//! clear everyone's history and queue, and with ComfyUI-Manager install code. Nothing reaches
//! ComfyUI but through a route registered here, and no route passes on the path it was asked
//! for: each builds ComfyUI's path from fixed text and checked segments ([`crate::comfy_path`]).

use std::collections::BTreeMap;

use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, any, get, on, post};
use axum::{Extension, Router};

use crate::comfy::ComfyClient;
use crate::comfy_path::{self, Segment};
use crate::error::ApiError;
use crate::state::AppState;
use crate::upload::UploadRoute;
use crate::{http_relay, object_info, prompt, raw, upload, ws_relay};

/// ComfyUI's routes the relay refuses, by path prefix, with the reason.
const BLOCKED: [(&str, &str); 10] = [
    (
        "/manager",
        "ComfyUI-Manager can install and run code on the ComfyUI machine",
    ),
    (
        "/customnode",
        "ComfyUI-Manager can install and run code on the ComfyUI machine",
    ),
    (
        "/snapshot",
        "ComfyUI-Manager can install and run code on the ComfyUI machine",
    ),
    (
        "/externalmodel",
        "ComfyUI-Manager downloads models onto the ComfyUI machine",
    ),
    (
        "/userdata",
        "it reads and writes files of the ComfyUI machine's users",
    ),
    (
        "/v2/userdata",
        "it reads and writes files of the ComfyUI machine's users",
    ),
    ("/users", "it manages ComfyUI's users"),
    ("/settings", "it reads and changes ComfyUI's settings"),
    ("/free", "it unloads models and frees memory for everyone"),
    ("/internal", "it hands out ComfyUI's logs and files"),
];

/// ComfyUI's other roots, whose unlisted sub-routes are refused as unknown.
const OTHER_ROOTS: [&str; 4] = ["/upload", "/embeddings", "/models", "/extensions"];

/// Why a route is not relayed.
const UNKNOWN: &str = "it is not a route the app, the CLI or the automation API uses";

/// A rule of `--allow-route`: "METHOD /path", "/path" (any method), or "/prefix/" for
/// everything below it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedRoute {
    method: Option<Method>,
    path: String,
    below: bool,
}

impl std::str::FromStr for AllowedRoute {
    type Err = String;

    fn from_str(rule: &str) -> Result<Self, String> {
        let (method, path) = match rule.trim().split_once(' ') {
            Some((method, path)) => {
                let method = Method::from_bytes(method.trim().to_ascii_uppercase().as_bytes())
                    .ok()
                    .filter(|method| MethodFilter::try_from(method.clone()).is_ok())
                    .ok_or_else(|| format!("\"{method}\" is not an HTTP method"))?;
                (Some(method), path.trim())
            }
            None => (None, rule.trim()),
        };
        let below = path.len() > 1 && path.ends_with('/');
        let path = path.trim_end_matches('/');
        let segments: Vec<&str> = path.split('/').skip(1).collect();
        let plain = path.starts_with('/')
            && segments.iter().all(|segment| {
                Segment::parse(segment).is_ok() && !segment.contains(['{', '}', '*', '?', '#'])
            });
        if !plain || segments.is_empty() {
            return Err(format!(
                "\"{rule}\" is not a route: give \"METHOD /path\", \"/path\" or \"/prefix/\""
            ));
        }
        Ok(Self {
            method,
            path: path.to_owned(),
            below,
        })
    }
}

/// Registers `route` at `path` and at `/api{path}`.
fn both(router: Router<AppState>, path: &str, route: MethodRouter<AppState>) -> Router<AppState> {
    router
        .route(&format!("/api{path}"), route.clone())
        .route(path, route)
}

/// Relays a GET to a fixed ComfyUI path, keeping the query.
fn fixed(path: &'static str) -> MethodRouter<AppState> {
    get(
        move |State(comfy): State<ComfyClient>, request: Request| async move {
            let target = with_query(path, &request);
            http_relay::forward(&comfy, &target, request).await
        },
    )
}

fn with_query(path: &str, request: &Request) -> String {
    let query = request.uri().query();
    let mut target = String::with_capacity(path.len() + query.map_or(0, |q| q.len() + 1));
    target.push_str(path);
    if let Some(query) = query {
        target.push('?');
        target.push_str(query);
    }
    target
}

/// `GET /object_info/{class}`.
async fn object_info_class(
    State(state): State<AppState>,
    Path(class): Path<String>,
    request: Request,
) -> Response {
    let class = match Segment::parse(&class) {
        Ok(class) => class,
        Err(why) => return comfy_path::refusal("node class", &class, why).into_response(),
    };
    let target = comfy_path::path("/object_info", &[&class]);
    http_relay::forward(state.jobs.comfy(), &target, request)
        .await
        .into_response()
}

/// The 403 for a refused route, saying why and how to allow it.
fn refusal(method: &Method, path: &str, why: &str) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        format!(
            "Comfy Relay does not pass {method} {path} on to ComfyUI: {why}. The operator can \
             allow it with --allow-route \"{method} {path}\"."
        ),
    )
}

/// A route that refuses every method, saying why.
fn refuse(why: &'static str) -> MethodRouter<AppState> {
    any(move |request: Request| async move {
        tracing::info!(method = %request.method(), path = request.uri().path(), "refused a ComfyUI route");
        refusal(request.method(), request.uri().path(), why)
    })
}

/// Relays an operator-allowed route for `methods` (`None`: any): its fixed path `base`, and
/// below it the checked rest.
fn allowed_route(base: &str, methods: Option<MethodFilter>) -> MethodRouter<AppState> {
    let base = base.to_owned();
    let relay = move |State(state): State<AppState>,
                      rest: Option<Path<String>>,
                      request: Request| {
        let base = base.clone();
        async move {
            let mut segments = Vec::new();
            for part in rest
                .as_ref()
                .map_or("", |Path(rest)| rest.as_str())
                .split('/')
            {
                if part.is_empty() {
                    continue;
                }
                match Segment::parse(part) {
                    Ok(segment) => segments.push(segment),
                    Err(why) => return comfy_path::refusal("path", part, why).into_response(),
                }
            }
            let target = comfy_path::path(&base, &segments.iter().collect::<Vec<_>>());
            tracing::info!(method = %request.method(), path = %target, "relaying a route the operator allowed");
            let target = with_query(&target, &request);
            http_relay::forward(state.jobs.comfy(), &target, request)
                .await
                .into_response()
        }
    };
    let route = match methods {
        Some(methods) => on(methods, relay),
        None => any(relay),
    };
    let why = "only other methods of it are allowed";
    route.fallback(move |request: Request| async move {
        refusal(request.method(), request.uri().path(), why)
    })
}

/// Every ComfyUI route the relay knows: relayed, refused, or allowed by the operator.
pub fn router(allowed: &[AllowedRoute]) -> Router<AppState> {
    let mut router = Router::new();
    router = both(router, "/prompt", fixed("/prompt").post(prompt::queue));
    // The upload enforces its own limit, on the stream.
    for route in [UploadRoute::Image, UploadRoute::Mask] {
        let upload = move |State(state), Extension(device), request: Request| {
            upload::upload(route, state, device, request)
        };
        router = both(
            router,
            route.path(),
            post(upload).layer(DefaultBodyLimit::disable()),
        );
    }
    router = both(router, "/view", get(raw::view));
    router = both(
        router,
        "/history",
        get(raw::history).post(raw::edit_history),
    );
    router = both(router, "/history/{prompt_id}", get(raw::history_entry));
    router = both(router, "/queue", get(raw::queue).post(raw::edit_queue));
    router = both(router, "/system_stats", fixed("/system_stats"));
    router = both(router, "/features", fixed("/features"));
    router = both(router, "/ws", get(ws_relay::relay));
    // Under /api, the relay answers /object_info itself, from its kept copy, and /interrupt
    // stops the device's own job.
    router = router
        .route("/object_info", fixed("/object_info"))
        .route("/object_info/{node_class}", get(object_info_class))
        .route("/interrupt", post(raw::interrupt))
        .route("/api/object_info", get(object_info::serve))
        .route(
            "/api/object_info/{node_class}",
            get(object_info::serve_class),
        );

    // One route per pattern, for the methods of every rule that names it (`None`: any).
    let mut patterns: BTreeMap<String, (String, Option<MethodFilter>)> = BTreeMap::new();
    for rule in allowed {
        let filter = rule
            .method
            .clone()
            .map(|method| MethodFilter::try_from(method).expect("checked when the rule was read"));
        let mut named = vec![rule.path.clone()];
        if rule.below {
            named.push(format!("{}/{{*rest}}", rule.path));
        }
        for pattern in named {
            let entry = patterns
                .entry(pattern)
                .or_insert_with(|| (rule.path.clone(), filter));
            entry.1 = match (entry.1, filter) {
                (Some(known), Some(more)) => Some(known.or(more)),
                _ => None,
            };
        }
    }
    for (pattern, (base, methods)) in &patterns {
        router = both(router, pattern, allowed_route(base, *methods));
    }
    for (prefix, why) in BLOCKED
        .iter()
        .copied()
        .chain(OTHER_ROOTS.iter().map(|root| (*root, UNKNOWN)))
    {
        // Where an operator's rule names the same pattern, the rule decides.
        for pattern in [prefix.to_owned(), format!("{prefix}/{{*rest}}")] {
            if !patterns.contains_key(&pattern) {
                router = both(router, &pattern, refuse(why));
            }
        }
    }
    router.route(
        "/api/{*rest}",
        any(|request: Request| async move {
            refusal(request.method(), request.uri().path(), UNKNOWN)
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_rules_are_read_as_method_and_plain_path_or_prefix() {
        let rule: AllowedRoute = "GET /internal/logs".parse().unwrap();
        assert_eq!(rule.method, Some(Method::GET));
        assert_eq!((rule.path.as_str(), rule.below), ("/internal/logs", false));
        let rule: AllowedRoute = "/userdata/".parse().unwrap();
        assert_eq!(
            (rule.method, rule.path.as_str(), rule.below),
            (None, "/userdata", true)
        );
        for bad in [
            "", "/", "GET", "internal", "/a/../b", "/a/{x}", "/a/*", "G@T /x", "PURGE /x", "/a\\b",
        ] {
            assert!(bad.parse::<AllowedRoute>().is_err(), "{bad:?}");
        }
    }
}
