//! Which headers cross the relay, in each direction.
//!
//! ComfyUI answers 403 to any request whose `Origin` differs from its loopback `Host`, and newer
//! versions to `Sec-Fetch-Site: cross-site`. A phone on the LAN always sends a foreign `Origin`,
//! so requests reach ComfyUI as if made on its own machine: `Host` is ComfyUI's (set by the HTTP
//! client from the URL), and the browser's `Origin`, `Referer` and `Sec-Fetch-*` stay behind, as
//! do the relay's own credentials.

use axum::http::{HeaderMap, HeaderName, header};

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1).
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Headers of the browser's context that ComfyUI must not see.
const BROWSER_CONTEXT: [HeaderName; 5] = [
    header::HOST,
    header::ORIGIN,
    header::REFERER,
    header::COOKIE,
    header::AUTHORIZATION,
];

/// Removes the hop-by-hop headers, those the `Connection` header lists included, and those
/// `also` names. In place and without allocating: most messages lose none or two.
fn remove_where(headers: &mut HeaderMap, also: impl Fn(&HeaderName) -> bool) {
    let has_connection = headers.contains_key(header::CONNECTION);
    // `Connection` goes last: until then it says which others go.
    let doomed = |headers: &HeaderMap, name: &HeaderName| {
        (HOP_BY_HOP.contains(name) && name != header::CONNECTION)
            || also(name)
            || (has_connection
                && headers
                    .get_all(header::CONNECTION)
                    .iter()
                    .filter_map(|value| value.to_str().ok())
                    .flat_map(|value| value.split(','))
                    .any(|listed| listed.trim().eq_ignore_ascii_case(name.as_str())))
    };
    while let Some(name) = headers.keys().find(|name| doomed(headers, name)).cloned() {
        headers.remove(name);
    }
    headers.remove(header::CONNECTION);
}

/// Takes from a browser request's headers what must not reach ComfyUI.
pub fn strip_for_upstream(headers: &mut HeaderMap) {
    remove_where(headers, |name| {
        BROWSER_CONTEXT.contains(name)
            || name.as_str().starts_with("sec-fetch-")
            || name.as_str().starts_with("sec-websocket-")
    });
}

/// Takes from ComfyUI's response headers what must not go back to the browser.
pub fn strip_for_downstream(headers: &mut HeaderMap) {
    remove_where(headers, |_| false);
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(n, v)| (HeaderName::from_static(n), HeaderValue::from_static(v)))
            .collect()
    }

    #[test]
    fn the_browser_context_and_hop_by_hop_headers_stay_behind() {
        let mut sent = map(&[
            ("host", "192.168.1.20:8189"),
            ("origin", "http://192.168.1.20:8189"),
            ("referer", "http://192.168.1.20:8189/"),
            ("sec-fetch-site", "same-origin"),
            ("sec-fetch-mode", "cors"),
            ("cookie", "comfy_relay_session=secret"),
            ("authorization", "Bearer secret"),
            ("connection", "keep-alive, x-custom"),
            ("x-custom", "1"),
            ("transfer-encoding", "chunked"),
            ("content-type", "application/json"),
            ("content-length", "42"),
            ("accept", "*/*"),
        ]);
        strip_for_upstream(&mut sent);
        let mut names: Vec<_> = sent.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["accept", "content-length", "content-type"]);
    }

    #[test]
    fn responses_keep_their_headers_but_not_hop_by_hop_ones() {
        let mut back = map(&[
            ("content-type", "image/png"),
            ("content-disposition", "filename=\"a.png\""),
            ("connection", "close"),
            ("keep-alive", "timeout=5"),
        ]);
        strip_for_downstream(&mut back);
        let mut names: Vec<_> = back.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["content-disposition", "content-type"]);
    }
}
