//! The way in: what every request passes before it is routed, in order, and what every answer
//! carries back.
//!
//! One middleware around the whole router rather than a layer per check: each layer applied
//! with `Router::layer` wraps every method of every route, and a request then cloned the whole
//! stack once per layer (`scripts/bench`, case `bench-nginx`, has the figures).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::auth::{self, Auth};
use crate::device::DeviceSecret;
use crate::limits;
use crate::same_origin::{self, HostNames};

/// What the checks need: who may use the relay, the names it answers to, the largest body.
pub struct Gate {
    /// Devices, token and lockouts.
    pub auth: Arc<Auth>,
    /// The host names the relay answers to.
    pub host_names: Arc<HostNames>,
    /// The largest request body any route reads.
    pub body_cap: u64,
}

/// Middleware: a body over the cap is refused (413) and every other is guarded on its stream;
/// a cross-site or misaddressed request is refused (403); the request's device is found (a wrong
/// token is 401, a locked-out address 429). Every answer, refusals too, gets `nosniff`.
pub async fn check(State(gate): State<Arc<Gate>>, request: Request, next: Next) -> Response {
    let mut response = match admit(&gate, request) {
        Ok((request, issued)) => {
            let mut response = next.run(request).await;
            auth::hand_out(issued, &mut response);
            response
        }
        Err(refused) => *refused,
    };
    limits::no_sniff(&mut response);
    response
}

fn admit(gate: &Gate, request: Request) -> Result<(Request, Option<DeviceSecret>), Box<Response>> {
    let mut request = limits::guard_body(gate.body_cap, request)?;
    if let Some(refused) = same_origin::refusal(&gate.host_names, &request) {
        return Err(Box::new(refused));
    }
    let issued = auth::identify(&gate.auth, &mut request)?;
    Ok((request, issued))
}
