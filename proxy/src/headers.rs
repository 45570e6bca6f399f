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
/// `also` names. In place: most answers lose nothing, and then nothing is copied.
fn remove_where(headers: &mut HeaderMap, also: impl Fn(&HeaderName) -> bool) {
    let listed = |name: &HeaderName| {
        headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .any(|listed| listed.trim().eq_ignore_ascii_case(name.as_str()))
    };
    let has_connection = headers.contains_key(header::CONNECTION);
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| HOP_BY_HOP.contains(name) || also(name) || (has_connection && listed(name)))
        .cloned()
        .collect();
    for name in doomed {
        headers.remove(name);
    }
}

/// The headers of a browser request as they go to ComfyUI.
pub fn to_upstream(mut headers: HeaderMap) -> HeaderMap {
    remove_where(&mut headers, |name| {
        BROWSER_CONTEXT.contains(name)
            || name.as_str().starts_with("sec-fetch-")
            || name.as_str().starts_with("sec-websocket-")
    });
    headers
}

/// The headers of ComfyUI's response as they go back to the browser.
pub fn to_downstream(mut headers: HeaderMap) -> HeaderMap {
    remove_where(&mut headers, |_| false);
    headers
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
        let sent = to_upstream(map(&[
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
        ]));
        let mut names: Vec<_> = sent.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["accept", "content-length", "content-type"]);
    }

    #[test]
    fn responses_keep_their_headers_but_not_hop_by_hop_ones() {
        let back = to_downstream(map(&[
            ("content-type", "image/png"),
            ("content-disposition", "filename=\"a.png\""),
            ("connection", "close"),
            ("keep-alive", "timeout=5"),
        ]));
        let mut names: Vec<_> = back.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["content-disposition", "content-type"]);
    }
}
