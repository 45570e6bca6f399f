//! The way in: what every request passes before it is routed, in order, and what every answer
//! carries back.
//!
//! One service around the whole router rather than a layer per check: each layer applied with
//! `Router::layer` wraps every method of every route, and a request then cloned the whole stack
//! once per layer (`scripts/bench`, case `bench-nginx`, has the figures).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::Request;
use axum::response::Response;
use tower::Service;
use tracing::Instrument as _;

use crate::auth::{self, Auth};
use crate::device::DeviceSecret;
use crate::limits;
use crate::log;
use crate::same_origin::{self, HostNames};

/// What the checks need: who may use the relay, the names it answers to, the largest body.
pub struct Checks {
    /// Devices, token and lockouts.
    pub auth: Arc<Auth>,
    /// The host names the relay answers to.
    pub host_names: Arc<HostNames>,
    /// The largest request body any route reads.
    pub body_cap: u64,
    /// Whether cookies are marked `Secure` (HTTPS is on).
    pub secure_cookies: bool,
}

/// The router behind the checks: a body over the cap is refused (413) and every other is
/// guarded on its stream; a cross-site or misaddressed request is refused (403); the request's
/// device is found (a wrong token is 401, a locked-out address 429). Every answer, refusals
/// too, gets `nosniff`. Each request runs in a span with its method and loggable path.
#[derive(Clone)]
pub struct Gate {
    checks: Arc<Checks>,
    router: Router,
}

impl Gate {
    /// `router` behind `checks`.
    pub fn new(checks: Checks, router: Router) -> Self {
        Self {
            checks: Arc::new(checks),
            router,
        }
    }
}

/// What [`Gate::answer`] returns: the answer to come.
pub type Answer = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl Gate {
    /// Checks `request`, routes it when it passes, and marks the answer. Takes `&self`, so a
    /// connection serves each request without cloning the stack.
    pub fn answer(&self, request: Request) -> Answer {
        let span = log::request_span(&request);
        let admitted = admit(&self.checks, request);
        let mut router = self.router.clone();
        let secure_cookies = self.checks.secure_cookies;
        let answer = async move {
            let started = Instant::now();
            let mut response = match admitted {
                Ok((request, issued)) => {
                    let Ok(mut response) = router.call(request).await;
                    auth::hand_out(issued, &mut response);
                    response
                }
                Err(refused) => *refused,
            };
            limits::no_sniff(&mut response);
            if secure_cookies {
                crate::tls::secure_cookies(&mut response);
            }
            log::answered(&response, started.elapsed());
            Ok(response)
        };
        Box::pin(answer.instrument(span))
    }
}

fn admit(
    checks: &Checks,
    request: Request,
) -> Result<(Request, Option<DeviceSecret>), Box<Response>> {
    let mut request = limits::guard_body(checks.body_cap, request)?;
    if let Some(refused) = same_origin::refusal(&checks.host_names, &request) {
        return Err(Box::new(refused));
    }
    let issued = auth::identify(&checks.auth, &mut request)?;
    Ok((request, issued))
}
