//! The relay's configuration: command-line flags with environment fallbacks.
//! Nothing else in the program reads the environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use url::Url;

/// Where ComfyUI listens by default (`python main.py`).
pub const DEFAULT_COMFYUI_URL: &str = "http://127.0.0.1:8188";
/// Where the ComfyUI desktop app listens.
pub const DESKTOP_COMFYUI_URL: &str = "http://127.0.0.1:8000";

/// Comfy Relay: drive ComfyUI from a phone or any browser on the LAN.
#[derive(Debug, Parser)]
#[command(
    name = "comfy-relay",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// What to do; without one, the relay serves.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// How to serve.
    #[command(flatten)]
    pub serve: Config,
}

/// The other things `comfy-relay` does.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs one API-format workflow from the terminal: shows what it does, asks, queues it,
    /// follows its progress, and downloads its pictures. Ctrl+C interrupts it in ComfyUI.
    /// Exit codes: 0 done, 1 the run failed, 2 bad usage or a workflow ComfyUI refuses,
    /// 130 interrupted.
    Run(RunArgs),
    /// Lists the devices paired with this relay, or revokes one.
    Devices {
        /// Where the relay keeps its access token and paired devices.
        #[arg(long, env = "COMFY_RELAY_DATA_DIR", default_value_os_t = default_data_dir())]
        data_dir: PathBuf,
        /// What to do with them.
        #[command(subcommand)]
        action: Option<DevicesAction>,
    },
    /// Lists the most recent jobs from the job database, newest first; works while the relay
    /// serves.
    Jobs {
        /// Where the relay keeps its job database.
        #[arg(long, env = "COMFY_RELAY_DATA_DIR", default_value_os_t = default_data_dir())]
        data_dir: PathBuf,
        /// How many to list.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
}

/// `comfy-relay run ...`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// The workflow, as saved by ComfyUI's Workflow → Export (API).
    pub workflow: PathBuf,

    /// Sets an input first: NODE.INPUT=VALUE, where NODE is a node's id or title and VALUE is
    /// JSON when it reads as JSON (42, 7.5, true), else text. Repeatable.
    #[arg(long = "set", value_name = "NODE.INPUT=VALUE")]
    pub set: Vec<String>,

    /// Uploads a picture into the workflow's LoadImage first; NODE=PATH picks one of several.
    #[arg(long, value_name = "[NODE=]PATH")]
    pub image: Option<String>,

    /// The Comfy Relay or ComfyUI to run it on.
    #[arg(long, env = "COMFY_RELAY_SERVER", default_value = DEFAULT_COMFYUI_URL)]
    pub server: Url,

    /// The relay's access token (a bare ComfyUI needs none).
    #[arg(long, env = "COMFY_RELAY_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// Where to write the pictures it makes.
    #[arg(long, default_value = ".")]
    pub out: PathBuf,

    /// Queue without asking.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

/// `comfy-relay devices ...`.
#[derive(Debug, Subcommand)]
pub enum DevicesAction {
    /// Lists paired devices (the default).
    List,
    /// Unpairs a device, from its next request on; give its id or the start of it.
    Revoke {
        /// The device's id, or enough of its start to tell it from the others.
        id: String,
    },
}

/// How the relay serves.
#[derive(Debug, Clone, Parser)]
#[command(name = "comfy-relay", version, about)]
pub struct Config {
    /// Address and port to listen on. 0.0.0.0 makes the relay reachable from the LAN.
    #[arg(long, env = "COMFY_RELAY_LISTEN", default_value = "0.0.0.0:8189")]
    pub listen: SocketAddr,

    /// Serve HTTPS with the relay's own certificate authority (`local`), made once in the data
    /// directory; phones trust it once (the relay's /tls page says how). Plain HTTP on the same
    /// port then redirects to HTTPS.
    #[arg(long, env = "COMFY_RELAY_TLS", value_enum, default_value_t = TlsMode::Off)]
    pub tls: TlsMode,

    /// Serve HTTPS with this certificate chain (PEM), one the operator has (from Tailscale or
    /// mkcert, say); reloaded when the file changes.
    #[arg(long, env = "COMFY_RELAY_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The private key (PEM) of `--tls-cert`.
    #[arg(long, env = "COMFY_RELAY_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Who runs this relay, as push services want to know (a `mailto:` or `https:` URL on a
    /// public domain: Apple refuses `@localhost` and local names); sent with every
    /// notification. The default is a placeholder every push service takes.
    #[arg(
        long,
        env = "COMFY_RELAY_PUSH_CONTACT",
        default_value = "mailto:comfy-relay@example.com",
        value_parser = push_contact
    )]
    pub push_contact: String,

    /// Also trust this certificate authority (PEM) when sending notifications to a push
    /// service.
    #[arg(long, env = "COMFY_RELAY_PUSH_CA")]
    pub push_ca: Option<PathBuf>,

    /// Let notifications go to a push service on this machine or the LAN (a self-hosted one).
    /// Without it, push services must be on the internet, so a paired device cannot make the
    /// relay post to ComfyUI or anything else on its network.
    #[arg(long, env = "COMFY_RELAY_PUSH_ALLOW_PRIVATE")]
    pub push_allow_private: bool,

    /// ComfyUI's base URL; repeat it (or give a comma-separated list) to run jobs on several
    /// ComfyUI servers, the first being the one raw clients reach. Without it the relay uses
    /// http://127.0.0.1:8188, or http://127.0.0.1:8000 (the desktop app) when only that one
    /// answers.
    #[arg(long, env = "COMFY_RELAY_COMFYUI_URL", value_delimiter = ',')]
    pub comfyui_url: Vec<Url>,

    /// When a ComfyUI server stops answering while it runs a job, queue the job again for
    /// another server instead of marking it lost.
    #[arg(long, env = "COMFY_RELAY_REQUEUE_LOST")]
    pub requeue_lost: bool,

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

    /// How many finished jobs the relay keeps in memory and lists; every job stays in the job
    /// database (`jobs.sqlite3` in the data directory) whatever this says.
    #[arg(long, env = "COMFY_RELAY_MAX_FINISHED_JOBS", default_value_t = 200)]
    pub max_finished_jobs: usize,

    /// Forget finished jobs this many days after they ended, unless starred (checked at start
    /// and hourly). Without it every job is kept. ComfyUI keeps the files they made.
    #[arg(long, env = "COMFY_RELAY_KEEP_DAYS", value_parser = clap::value_parser!(u32).range(1..))]
    pub keep_days: Option<u32>,

    /// Where the relay keeps its access token and paired devices.
    #[arg(long, env = "COMFY_RELAY_DATA_DIR", default_value_os_t = default_data_dir())]
    pub data_dir: PathBuf,

    /// The access token (default: generated on first start and kept in the data directory).
    #[arg(long, env = "COMFY_RELAY_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// Let anyone who reaches the relay use it, without pairing. Only for trusted networks.
    #[arg(long, env = "COMFY_RELAY_NO_AUTH")]
    pub no_auth: bool,

    /// Require pairing even when listening on loopback only.
    #[arg(long, env = "COMFY_RELAY_REQUIRE_TOKEN", conflicts_with = "no_auth")]
    pub require_token: bool,

    /// Another host name browsers may use to reach the relay (a DNS name, say). IP addresses,
    /// localhost and this machine's name are always accepted. Repeatable.
    #[arg(
        long = "allowed-host",
        env = "COMFY_RELAY_ALLOWED_HOSTS",
        value_delimiter = ','
    )]
    pub allowed_hosts: Vec<String>,

    /// Also relay a ComfyUI route the relay blocks, as "METHOD /path" or "/path" (any method);
    /// a path ending in "/" covers everything below it. Repeatable.
    #[arg(
        long = "allow-route",
        env = "COMFY_RELAY_ALLOW_ROUTES",
        value_delimiter = ','
    )]
    pub allowed_routes: Vec<crate::comfy_routes::AllowedRoute>,

    /// The largest image upload accepted, in bytes.
    #[arg(long, env = "COMFY_RELAY_MAX_UPLOAD_BYTES", default_value_t = 100 * 1024 * 1024)]
    pub max_upload_bytes: u64,

    /// Devices may only run the saved workflows (managed on disk, in the data directory's
    /// `workflows/`): they send values, not graphs, and cannot change the library.
    #[arg(long, env = "COMFY_RELAY_LOCKED_WORKFLOWS")]
    pub locked_workflows: bool,

    /// A saved workflow that runs as soon as a picture is uploaded into it through
    /// `POST /api/workflows/{name}/image` (a request's `?run=` overrides); `*` for all.
    /// Repeatable.
    #[arg(long = "auto-run", env = "COMFY_RELAY_AUTO_RUN", value_delimiter = ',')]
    pub auto_run: Vec<String>,

    /// How many jobs (and raw `/prompt` requests) one device may have waiting at once, held by
    /// the relay or in ComfyUI's queue.
    #[arg(long, env = "COMFY_RELAY_MAX_PENDING_JOBS", default_value_t = 10)]
    pub max_pending_jobs: usize,

    /// How many prompts the relay gives ComfyUI at once (one running, one ready by default);
    /// the other jobs wait in the relay, where devices take turns.
    #[arg(long, env = "COMFY_RELAY_IN_FLIGHT", default_value_t = 2,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub in_flight: u16,

    /// How many connections the relay holds at once; more get 503 until some close.
    #[arg(long, env = "COMFY_RELAY_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,

    /// How many connections one client address may hold before it has sent an authenticated
    /// request on them (an unpaired host); more get 503.
    #[arg(
        long,
        env = "COMFY_RELAY_MAX_CONNECTIONS_PER_ADDRESS",
        default_value_t = 32
    )]
    pub max_connections_per_address: usize,

    /// How many WebSockets (event sockets and raw ComfyUI sockets) one device may hold open.
    #[arg(long, env = "COMFY_RELAY_MAX_SOCKETS_PER_DEVICE", default_value_t = 64)]
    pub max_sockets_per_device: usize,

    /// Every image a device may fetch with `/view` from ComfyUI's input folder, not only the
    /// ones it uploaded or its saved workflows name.
    #[arg(long, env = "COMFY_RELAY_SHARE_INPUTS")]
    pub share_inputs: bool,
}

/// `$XDG_DATA_HOME/comfy-relay`, else `~/.local/share/comfy-relay`, else `./comfy-relay-data`.
fn default_data_dir() -> PathBuf {
    std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/share")))
        .map_or_else(
            || PathBuf::from("comfy-relay-data"),
            |base| base.join("comfy-relay"),
        )
}

/// Where the relay's HTTPS certificate comes from, without `--tls-cert`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TlsMode {
    /// Plain HTTP.
    Off,
    /// The relay's own certificate authority.
    Local,
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
    /// Whether devices must pair: when listening beyond loopback, unless `--no-auth`.
    pub fn auth_required(&self) -> bool {
        !self.no_auth && (self.require_token || !self.listen.ip().is_loopback())
    }

    /// The ComfyUI servers, each as the URLs to try for it in order of preference: one per
    /// `--comfyui-url`, or without any the default port, then the desktop app's.
    pub fn comfyui_servers(&self) -> Vec<Vec<Url>> {
        if self.comfyui_url.is_empty() {
            return vec![
                [DEFAULT_COMFYUI_URL, DESKTOP_COMFYUI_URL]
                    .iter()
                    .map(|url| Url::parse(url).expect("built-in URLs are valid"))
                    .collect(),
            ];
        }
        let mut servers: Vec<Vec<Url>> = Vec::new();
        for url in &self.comfyui_url {
            // The same server named twice is one server.
            if !servers.iter().any(|server| server[0] == *url) {
                servers.push(vec![url.clone()]);
            }
        }
        servers
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

/// Checks `--push-contact`: the `sub` of the relay's VAPID claim, which Apple's push service
/// refuses (403 `BadJwtToken`, every notification lost) unless it is a `mailto:` or `https:`
/// address on a domain it can resolve.
fn push_contact(text: &str) -> Result<String, String> {
    let domain = if let Some(address) = text.strip_prefix("mailto:") {
        address
            .rsplit_once('@')
            .map(|(_, domain)| domain.to_owned())
    } else if text.starts_with("https://") {
        Url::parse(text).ok().and_then(|url| match url.host() {
            Some(url::Host::Domain(domain)) => Some(domain.to_owned()),
            _ => None,
        })
    } else {
        None
    };
    let domain = domain.unwrap_or_default().to_ascii_lowercase();
    let local = [".localhost", ".local", ".lan", ".internal", ".home.arpa"];
    let public = domain.contains('.')
        && !domain.ends_with('.')
        && !local.iter().any(|suffix| domain.ends_with(suffix));
    if public {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "{text:?} is not a contact push services take: give a mailto: or https: address on \
             a public domain (mailto:you@your-domain.com, https://your-site.com); Apple refuses \
             localhost and local names"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_push_contact_is_a_mailto_or_https_address_on_a_public_domain() {
        for good in [
            "mailto:comfy-relay@example.com",
            "mailto:Studio.Team@Render-Farm.co.uk",
            "https://relay.studio.example.com/about",
        ] {
            assert_eq!(push_contact(good), Ok(good.to_owned()), "{good}");
        }
        for bad in [
            "mailto:comfy-relay@localhost",
            "mailto:me@gpu-box",
            "mailto:me@gpu-box.local",
            "mailto:me@nas.home.arpa",
            "mailto:nobody",
            "me@example.com",
            "https://localhost/",
            "https://192.168.1.20/",
            "http://example.com/",
            "https://example.com./",
        ] {
            let refused = push_contact(bad).expect_err(bad);
            assert!(refused.contains("public domain"), "{bad}: {refused}");
        }
        let config = Config::parse_from(["comfy-relay"]);
        assert_eq!(config.push_contact, "mailto:comfy-relay@example.com");
        assert!(
            Config::try_parse_from(["comfy-relay", "--push-contact", "mailto:me@localhost"])
                .is_err()
        );
    }

    fn servers(config: &Config) -> Vec<Vec<String>> {
        config
            .comfyui_servers()
            .iter()
            .map(|urls| urls.iter().map(Url::to_string).collect())
            .collect()
    }

    #[test]
    fn without_a_url_the_default_port_is_tried_before_the_desktop_app_port() {
        let config = Config::parse_from(["comfy-relay"]);
        assert_eq!(
            servers(&config),
            [["http://127.0.0.1:8188/", "http://127.0.0.1:8000/"]]
        );
        assert_eq!(config.listen.port(), 8189);
    }

    #[test]
    fn each_explicit_url_is_a_server_of_its_own_and_a_repeated_one_counts_once() {
        let one = Config::parse_from(["comfy-relay", "--comfyui-url", "http://gpu-box:8188"]);
        assert_eq!(servers(&one), [["http://gpu-box:8188/"]]);
        let repeated = Config::parse_from([
            "comfy-relay",
            "--comfyui-url",
            "http://gpu-a:8188",
            "--comfyui-url=http://gpu-b:8188,http://gpu-a:8188/",
        ]);
        assert_eq!(
            servers(&repeated),
            [["http://gpu-a:8188/"], ["http://gpu-b:8188/"]]
        );
    }

    #[test]
    fn pairing_is_required_beyond_loopback_unless_turned_off() {
        let lan = Config::parse_from(["comfy-relay"]);
        assert!(lan.auth_required());
        let open = Config::parse_from(["comfy-relay", "--no-auth"]);
        assert!(!open.auth_required());
        let local = Config::parse_from(["comfy-relay", "--listen", "127.0.0.1:8189"]);
        assert!(!local.auth_required());
        let strict = Config::parse_from([
            "comfy-relay",
            "--listen",
            "127.0.0.1:8189",
            "--require-token",
        ]);
        assert!(strict.auth_required());
    }

    #[test]
    fn the_cli_definition_is_consistent() {
        use clap::CommandFactory;
        Config::command().debug_assert();
        Cli::command().debug_assert();
    }

    #[test]
    fn devices_is_a_subcommand_and_serving_is_the_default() {
        let cli = Cli::parse_from(["comfy-relay", "devices", "revoke", "ab12"]);
        assert!(matches!(
            cli.command,
            Some(Command::Devices { action: Some(DevicesAction::Revoke { ref id }), .. }) if id == "ab12"
        ));
        let cli = Cli::parse_from(["comfy-relay", "--listen", "127.0.0.1:9000"]);
        assert!(cli.command.is_none());
        assert_eq!(cli.serve.listen.port(), 9000);
    }
}
