//! The relay's and its ComfyUI servers' state: `GET /api/health` for scripts and monitoring
//! (the Python executor's `/system_stats` check), and `GET /servers`, the same for people,
//! linked from the app's connection badge.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Html;
use shared::api::{BackendHealth, Health};
use shared::html::escape;

use crate::state::AppState;

/// Asks every server now; the top-level `comfyui_*` fields describe the first, `backends`
/// each (its GPU, and the relay's jobs it runs and has waiting).
async fn gather(state: &AppState) -> Health {
    let jobs = &state.jobs;
    let asked = jobs.backends().iter().map(|backend| {
        let (running, waiting) = jobs.registry.load_of(backend.index);
        backend.health(&state.http, running, waiting)
    });
    let backends = futures_util::future::join_all(asked).await;
    let first = &backends[0];
    Health {
        ok: backends.iter().any(|backend| backend.up),
        relay_version: env!("CARGO_PKG_VERSION").to_owned(),
        comfyui_url: first.url.clone(),
        comfyui_version: first.version.clone(),
        comfyui_error: first.error.clone(),
        events_connected: jobs.comfyui_connected(),
        backends,
    }
}

/// `GET /api/health`: 200 when a ComfyUI server answers now, else 503; the body says which
/// part is down.
pub async fn health(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let health = gather(&state).await;
    let status = if health.ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(health))
}

/// `GET /servers`: every ComfyUI server as a small page that refreshes itself.
pub async fn page(State(state): State<AppState>) -> Html<String> {
    let health = gather(&state).await;
    let up = health.backends.iter().filter(|b| b.up).count();
    let summary = match (health.backends.len(), up) {
        (1, 1) => "ComfyUI answers.".to_owned(),
        (1, _) => "ComfyUI does not answer: jobs wait until it does.".to_owned(),
        (all, up) if up == all => format!("All {all} servers answer."),
        (all, 0) => format!("None of the {all} servers answers: jobs wait until one does."),
        (all, up) => format!("{up} of {all} servers answer; jobs go to those."),
    };
    let servers: String = health.backends.iter().map(server_item).collect();
    Html(format!(
        include_str!("servers_page.html"),
        summary = summary,
        servers = servers
    ))
}

/// One server as a list item, every value from it escaped.
fn server_item(server: &BackendHealth) -> String {
    let (class, state) = if server.up {
        let version = server
            .version
            .as_deref()
            .map(|v| format!("ComfyUI {}", escape(v)))
            .unwrap_or_else(|| "ComfyUI".to_owned());
        ("up", format!("{version} answers"))
    } else {
        let why = server.error.as_deref().unwrap_or("it does not answer");
        ("down", format!("Not answering: {}", escape(why)))
    };
    let gpu = match (&server.gpu, server.vram_total, server.vram_free) {
        (Some(name), Some(total), Some(free)) if total > 0 => format!(
            "<br><small>{} · {} of {} GB free</small>",
            escape(name),
            gigabytes(free),
            gigabytes(total)
        ),
        (Some(name), ..) => format!("<br><small>{}</small>", escape(name)),
        _ => String::new(),
    };
    format!(
        "<li><span class=\"url\">{url}</span><br><span class=\"{class}\">{state}</span>{gpu}\
         <br><small>{running} running, {waiting} waiting</small></li>\n",
        url = escape(server.url.trim_end_matches('/')),
        running = server.running,
        waiting = server.waiting,
    )
}

fn gigabytes(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / 1e9)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_server_says_of_itself_is_shown_as_text_never_as_markup() {
        let server = BackendHealth {
            url: "http://gpu-a:8188/".to_owned(),
            up: true,
            version: Some("0.3.64<script>".to_owned()),
            error: None,
            events_connected: true,
            running: 1,
            waiting: 2,
            gpu: Some("cuda:0 <img src=x onerror=alert(1)> & \"RTX\"".to_owned()),
            vram_total: Some(24_000_000_000),
            vram_free: Some(12_500_000_000),
        };
        let item = server_item(&server);
        assert!(
            !item.contains("<script") && !item.contains("<img"),
            "{item}"
        );
        assert!(item.contains("cuda:0 &lt;img src=x onerror=alert(1)&gt; &amp; &quot;RTX&quot;"));
        assert!(item.contains("12.5 of 24.0 GB free"), "{item}");
        assert!(item.contains("1 running, 2 waiting"));
        assert!(item.contains(">http://gpu-a:8188<"));
        let down = server_item(&BackendHealth {
            up: false,
            error: Some("connection refused <b>".to_owned()),
            gpu: None,
            ..server
        });
        assert!(down.contains("class=\"down\">Not answering: connection refused &lt;b&gt;"));
    }
}
