//! Which of ComfyUI's routes the relay passes on.
//!
//! ComfyUI has no authentication: whoever reaches it can read its logs, change its settings,
//! clear everyone's history and queue, and with ComfyUI-Manager install code. The relay passes
//! on only what the app, the CLI and the automation API use (the routes registered in `lib.rs`);
//! everything else under `/api`, and ComfyUI's known dangerous roots, answer 403 with the reason,
//! unless the operator allows them by name with `--allow-route`.

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use shared::api::ErrorBody;

use crate::http_relay;
use crate::state::AppState;

/// ComfyUI's routes that the relay refuses by default, by path prefix, with the reason.
pub const BLOCKED: [(&str, &str); 11] = [
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
    (
        "/upload/mask",
        "it writes into ComfyUI's folders without the relay's checks",
    ),
];

/// The paths of ComfyUI's own routes the relay knows (relayed or blocked), at the root; the
/// same exist under `/api`.
pub const COMFYUI_ROOTS: [&str; 13] = [
    "/prompt",
    "/upload",
    "/interrupt",
    "/view",
    "/history",
    "/queue",
    "/object_info",
    "/system_stats",
    "/features",
    "/ws",
    "/embeddings",
    "/models",
    "/extensions",
];

fn under(path: &str, prefix: &str) -> bool {
    path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// The route as ComfyUI serves it at its root: `/api/prompt` → `/prompt`.
fn without_api_prefix(path: &str) -> &str {
    path.strip_prefix("/api")
        .filter(|p| p.starts_with('/'))
        .unwrap_or(path)
}

/// Whether `path` is one of ComfyUI's routes (relayed or not), rather than the app's.
pub fn is_comfyui_path(path: &str) -> bool {
    let path = without_api_prefix(path);
    COMFYUI_ROOTS
        .iter()
        .chain(BLOCKED.iter().map(|(p, _)| p))
        .any(|root| under(path, root))
}

/// Why `path` is refused: the reason of its blocked prefix, or that it is unknown.
pub fn reason(path: &str) -> &'static str {
    let path = without_api_prefix(path);
    BLOCKED
        .iter()
        .find(|(prefix, _)| under(path, prefix))
        .map_or(
            "it is not a route the app, the CLI or the automation API uses",
            |(_, why)| why,
        )
}

/// Whether the operator allowed `method path` with `--allow-route` ("METHOD /path", "/path",
/// or a prefix ending in "/").
pub fn allowed(rules: &[String], method: &Method, path: &str) -> bool {
    rules.iter().any(|rule| {
        let (rule_method, rule_path) = match rule.trim().split_once(' ') {
            Some((m, p)) => (Some(m.trim()), p.trim()),
            None => (None, rule.trim()),
        };
        let method_ok = rule_method.is_none_or(|m| m.eq_ignore_ascii_case(method.as_str()));
        let path_ok = match rule_path.strip_suffix('/') {
            Some(prefix) => path.starts_with(rule_path) || path == prefix,
            None => path == rule_path,
        };
        method_ok && path_ok
    })
}

/// The 403 for a refused route, saying why and how to allow it.
pub fn refusal(method: &Method, path: &str, why: &str) -> Response {
    let body = ErrorBody {
        error: format!(
            "Comfy Relay does not pass {method} {path} on to ComfyUI: {why}. The operator can \
             allow it with --allow-route \"{method} {path}\"."
        ),
        detail: None,
    };
    (StatusCode::FORBIDDEN, Json(body)).into_response()
}

/// A route the relay does not relay by default: refused, unless the operator allowed it.
pub async fn refuse_or_relay(State(state): State<AppState>, request: Request) -> Response {
    let (method, path) = (request.method().clone(), request.uri().path().to_owned());
    if allowed(&state.allowed_routes, &method, &path) {
        tracing::info!(%method, %path, "relaying a route the operator allowed");
        return http_relay::relay(State(state), request)
            .await
            .into_response();
    }
    tracing::info!(%method, %path, "refused a route ComfyUI should not be asked for");
    refusal(&method, &path, reason(&path))
}

/// `POST /queue`: deleting named prompts passes; clearing everyone's queue does not (unless the
/// operator allowed `POST /queue`).
pub async fn edit_queue(State(state): State<AppState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, 64 * 1024).await else {
        return refusal(&parts.method, parts.uri.path(), "the request is too large");
    };
    let only_deletes = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.as_object().map(|o| o.keys().all(|k| k == "delete")))
        .unwrap_or(false);
    if !only_deletes && !allowed(&state.allowed_routes, &parts.method, parts.uri.path()) {
        return refusal(
            &parts.method,
            parts.uri.path(),
            "only deleting named prompts is allowed; clearing the queue cancels everyone's jobs",
        );
    }
    let request = Request::from_parts(parts, axum::body::Body::from(body));
    http_relay::relay(State(state), request)
        .await
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dangerous_roots_are_known_with_and_without_api_prefix() {
        assert!(reason("/api/internal/logs").contains("logs"));
        assert!(reason("/manager/queue/install").contains("install"));
        assert!(reason("/free").contains("unloads"));
        assert!(reason("/api/whatever").contains("not a route"));
        assert!(is_comfyui_path("/api/userdata/x.json"));
        assert!(is_comfyui_path("/view"));
        assert!(!is_comfyui_path("/jobs/123"));
        assert!(!is_comfyui_path("/frontend-1a2b.wasm"));
        assert!(!is_comfyui_path("/viewer"));
    }

    #[test]
    fn operator_rules_match_method_and_exact_path_or_prefix() {
        let rules = vec!["GET /internal/logs".to_owned(), "/userdata/".to_owned()];
        assert!(allowed(&rules, &Method::GET, "/internal/logs"));
        assert!(!allowed(&rules, &Method::POST, "/internal/logs"));
        assert!(!allowed(&rules, &Method::GET, "/internal/logs/raw"));
        assert!(allowed(&rules, &Method::POST, "/userdata/a/b.json"));
        assert!(allowed(&rules, &Method::GET, "/userdata"));
        assert!(!allowed(&[], &Method::GET, "/free"));
    }
}
