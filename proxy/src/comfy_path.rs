//! ComfyUI paths built from a route's matched parameters, never from the path a client sent.
//!
//! ComfyUI (aiohttp) reads `\` as `/`, resolves `.` and `..`, and decodes percent-escapes, so a
//! parameter such as `..\internal\logs` or `%2e%2e` that the relay passed on as sent would
//! reach a route the relay refuses. Each relayed route therefore names its ComfyUI path as
//! fixed text plus [`Segment`]s: one decoded path parameter each, refused when it could be read
//! as more than one segment in any form, and percent-encoded when written into the URL.

use axum::http::StatusCode;

use crate::error::ApiError;

/// The longest parameter accepted: prompt ids are 36 characters, node classes shorter than this.
const MAX_SEGMENT: usize = 512;

/// One path parameter, decoded, that names exactly one segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment(String);

/// Why a parameter is not one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadSegment {
    /// Nothing.
    #[error("it is empty")]
    Empty,
    /// `.`, `..` or only dots.
    #[error("it is a dot segment")]
    Dots,
    /// `/`, `\`, a control character, or `%` (an escape decoded twice would be one of those).
    #[error("it holds a path separator, a control character or an escape")]
    Separator,
    /// Longer than anything ComfyUI names.
    #[error("it is too long")]
    TooLong,
}

impl Segment {
    /// Checks a decoded parameter.
    pub fn parse(decoded: &str) -> Result<Self, BadSegment> {
        if decoded.is_empty() {
            return Err(BadSegment::Empty);
        }
        if decoded.len() > MAX_SEGMENT {
            return Err(BadSegment::TooLong);
        }
        if decoded.chars().all(|c| c == '.') {
            return Err(BadSegment::Dots);
        }
        if decoded
            .chars()
            .any(|c| matches!(c, '/' | '\\' | '%') || c.is_control())
        {
            return Err(BadSegment::Separator);
        }
        Ok(Self(decoded.to_owned()))
    }

    /// The parameter as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The 400 for a parameter that is not one segment.
pub fn refusal(name: &str, value: &str, why: BadSegment) -> ApiError {
    let shown: String = value.chars().take(80).collect();
    ApiError::new(
        StatusCode::BAD_REQUEST,
        format!("The {name} \"{shown}\" is not valid: {why}."),
    )
}

/// `fixed` followed by `segments`, each percent-encoded: `("/history", [id])` →
/// `/history/<id>`.
pub fn path(fixed: &str, segments: &[&Segment]) -> String {
    let mut url = url::Url::parse("http://comfyui/").expect("a valid base URL");
    {
        let mut parts = url.path_segments_mut().expect("an http URL has segments");
        parts.clear();
        parts.extend(fixed.split('/').filter(|part| !part.is_empty()));
        parts.extend(segments.iter().map(|segment| segment.as_str()));
    }
    url.path().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anything_that_could_be_read_as_more_than_one_segment_is_refused() {
        let cases = [
            ("", Err(BadSegment::Empty)),
            (".", Err(BadSegment::Dots)),
            ("..", Err(BadSegment::Dots)),
            ("...", Err(BadSegment::Dots)),
            ("..\\internal\\logs", Err(BadSegment::Separator)),
            ("a/b", Err(BadSegment::Separator)),
            ("%2e%2e", Err(BadSegment::Separator)),
            ("a\u{0}b", Err(BadSegment::Separator)),
            ("a\nb", Err(BadSegment::Separator)),
            ("5d1f1c9e-1b7a-4a57-9d1e-0f0a3e3c2b1a", Ok(())),
            ("CheckpointLoaderSimple", Ok(())),
            ("Image Blend (WAS) | v2+", Ok(())),
            ("..a", Ok(())),
        ];
        for (text, expected) in cases {
            assert_eq!(Segment::parse(text).map(|_| ()), expected, "{text:?}");
        }
        assert_eq!(
            Segment::parse(&"x".repeat(600)).unwrap_err(),
            BadSegment::TooLong
        );
    }

    #[test]
    fn segments_are_percent_encoded_after_the_fixed_part() {
        let class = Segment::parse("Image Blend (WAS) | v2+?#").unwrap();
        assert_eq!(
            path("/object_info", &[&class]),
            "/object_info/Image%20Blend%20(WAS)%20|%20v2+%3F%23"
        );
        assert_eq!(path("/history", &[]), "/history");
        let dots = Segment::parse("..a").unwrap();
        assert_eq!(path("/history", &[&dots]), "/history/..a");
    }
}
