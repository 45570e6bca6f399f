//! The relay's configuration: command-line flags with environment fallbacks.
//! Nothing else in the program reads the environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use url::Url;

/// Where ComfyUI listens by default (`python main.py`).
pub const DEFAULT_COMFYUI_URL: &str = "http://127.0.0.1:8188";
/// Where the ComfyUI desktop app listens.
pub const DESKTOP_COMFYUI_URL: &str = "http://127.0.0.1:8000";

/// Comfy Relay: drive ComfyUI from a phone or any browser on the LAN.
#[derive(Debug, Clone, Parser)]
#[command(name = "comfy-relay", version, about)]
pub struct Config {
    /// Address and port to listen on. 0.0.0.0 makes the relay reachable from the LAN.
    #[arg(long, env = "COMFY_RELAY_LISTEN", default_value = "0.0.0.0:8189")]
    pub listen: SocketAddr,

    /// ComfyUI's base URL. Without it the relay uses http://127.0.0.1:8188, or
    /// http://127.0.0.1:8000 (the desktop app) when only that one answers.
    #[arg(long, env = "COMFY_RELAY_COMFYUI_URL")]
    pub comfyui_url: Option<Url>,

    /// Directory holding the built web app (trunk's dist).
    #[arg(long, env = "COMFY_RELAY_STATIC_DIR", default_value = "dist")]
    pub static_dir: PathBuf,

    /// Seconds to wait for ComfyUI to start answering a request before giving up with 504.
    /// ComfyUI can take minutes to list many custom nodes in /object_info.
    #[arg(long, env = "COMFY_RELAY_UPSTREAM_TIMEOUT", default_value_t = 300)]
    pub upstream_timeout_secs: u64,

    /// Seconds between checks of whether ComfyUI answers.
    #[arg(long, env = "COMFY_RELAY_PROBE_INTERVAL", default_value_t = 5)]
    pub probe_interval_secs: u64,

    /// How ComfyUI renders live previews of the jobs the relay queues. Newer ComfyUI shows none
    /// unless a prompt asks.
    #[arg(long, env = "COMFY_RELAY_PREVIEW_METHOD", value_enum, default_value_t = PreviewMethod::Auto)]
    pub preview_method: PreviewMethod,

    /// How many finished jobs the relay remembers; older ones are forgotten first.
    #[arg(long, env = "COMFY_RELAY_MAX_FINISHED_JOBS", default_value_t = 200)]
    pub max_finished_jobs: usize,
}

/// ComfyUI's `extra_data.preview_method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PreviewMethod {
    /// ComfyUI picks (TAESD when installed, else latent2rgb).
    Auto,
    /// Fast, rough colours.
    Latent2rgb,
    /// Better previews; needs the TAESD models.
    Taesd,
    /// No previews.
    None,
    /// Do not ask: leave it to ComfyUI's `--preview-method`.
    Server,
}

impl PreviewMethod {
    /// The value for `extra_data.preview_method`, or `None` to send nothing.
    pub fn as_extra_data(self) -> Option<&'static str> {
        match self {
            Self::Auto => Some("auto"),
            Self::Latent2rgb => Some("latent2rgb"),
            Self::Taesd => Some("taesd"),
            Self::None => Some("none"),
            Self::Server => None,
        }
    }
}

impl Config {
    /// The ComfyUI URLs to try, in order of preference.
    pub fn comfyui_candidates(&self) -> Vec<Url> {
        match &self.comfyui_url {
            Some(url) => vec![url.clone()],
            None => [DEFAULT_COMFYUI_URL, DESKTOP_COMFYUI_URL]
                .iter()
                .map(|url| Url::parse(url).expect("built-in URLs are valid"))
                .collect(),
        }
    }

    /// How long ComfyUI may take to start answering.
    pub fn upstream_timeout(&self) -> Duration {
        Duration::from_secs(self.upstream_timeout_secs)
    }

    /// How often to check whether ComfyUI answers.
    pub fn probe_interval(&self) -> Duration {
        Duration::from_secs(self.probe_interval_secs.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_url_the_default_port_is_tried_before_the_desktop_app_port() {
        let config = Config::parse_from(["comfy-relay"]);
        let candidates: Vec<_> = config
            .comfyui_candidates()
            .iter()
            .map(Url::to_string)
            .collect();
        assert_eq!(
            candidates,
            ["http://127.0.0.1:8188/", "http://127.0.0.1:8000/"]
        );
        assert_eq!(config.listen.port(), 8189);
    }

    #[test]
    fn an_explicit_url_is_the_only_candidate() {
        let config = Config::parse_from(["comfy-relay", "--comfyui-url", "http://gpu-box:8188"]);
        assert_eq!(config.comfyui_candidates().len(), 1);
    }

    #[test]
    fn the_cli_definition_is_consistent() {
        use clap::CommandFactory;
        Config::command().debug_assert();
    }
}
