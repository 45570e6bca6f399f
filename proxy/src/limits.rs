//! Request bodies that are bounded and must keep moving.
//!
//! Every request body passes through [`GuardedBody`]: it fails once more than the relay's
//! largest accepted body has arrived (a chunked body declares no length, so only the stream can
//! tell), and it fails when the client, while the relay waits for more, delivers less than
//! [`MIN_BYTES_PER_WINDOW`] in [`BODY_WINDOW`]: one byte a second cannot hold a connection.
//! Only time spent waiting on the client counts, so a handler that reads slowly (an upload
//! waiting on ComfyUI) is never mistaken for a slow client. Handlers that buffer a body read
//! it with their own, smaller cap.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body::{Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::error::ApiError;

/// How long the relay waits on a client's body for [`MIN_BYTES_PER_WINDOW`].
const BODY_WINDOW: Duration = Duration::from_secs(10);
/// What a client must deliver per [`BODY_WINDOW`] of waiting: 100 bytes a second.
const MIN_BYTES_PER_WINDOW: u64 = 1000;

/// Why a guarded body stopped.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// More than the cap arrived.
    #[error("the request body is larger than {0} bytes")]
    TooLarge(u64),
    /// The client sent too little for too long.
    #[error(
        "the request body arrived slower than {MIN_BYTES_PER_WINDOW} bytes per {} s",
        BODY_WINDOW.as_secs()
    )]
    TooSlow,
}

/// A body with a total cap and a minimum pace (see the module's comment).
pub struct GuardedBody {
    inner: Body,
    cap: u64,
    received: u64,
    /// While waiting on the client: when the wait window ends, and what arrived since it began.
    window: Option<(Pin<Box<Sleep>>, u64)>,
    failed: bool,
}

impl GuardedBody {
    /// Guards `inner`: at most `cap` bytes, delivered at the minimum pace.
    pub fn new(inner: Body, cap: u64) -> Self {
        Self {
            inner,
            cap,
            received: 0,
            window: None,
            failed: false,
        }
    }

    fn fail(&mut self, error: BodyError) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        self.failed = true;
        tracing::info!(%error, "refused a request body");
        Poll::Ready(Some(Err(axum::Error::new(error))))
    }
}

impl HttpBody for GuardedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        if this.failed {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let len = frame.data_ref().map_or(0, |data| data.len() as u64);
                this.received = this.received.saturating_add(len);
                if this.received > this.cap {
                    return this.fail(BodyError::TooLarge(this.cap));
                }
                if let Some((_, arrived)) = &mut this.window {
                    *arrived += len;
                    if *arrived >= MIN_BYTES_PER_WINDOW {
                        this.window = None;
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(other) => {
                this.window = None;
                Poll::Ready(other)
            }
            Poll::Pending => {
                let (deadline, _) = this.window.get_or_insert_with(|| {
                    (
                        Box::pin(tokio::time::sleep_until(Instant::now() + BODY_WINDOW)),
                        0,
                    )
                });
                if deadline.as_mut().poll(cx).is_ready() {
                    return this.fail(BodyError::TooSlow);
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Guards the request's body with a total cap of `cap` bytes, or refuses a declared
/// `Content-Length` over it before anything is read. A request without a body is left as it is.
pub fn guard_body(cap: u64, request: Request) -> Result<Request, Box<Response>> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > cap) {
        return Err(Box::new(
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("The request body is larger than the relay accepts ({cap} bytes)."),
            )
            .into_response(),
        ));
    }
    if request.body().size_hint().exact() == Some(0) {
        return Ok(request);
    }
    Ok(request.map(|body| Body::new(GuardedBody::new(body, cap))))
}

/// `X-Content-Type-Options: nosniff`, so that no browser ever renders a relayed file as
/// anything but the type it is served as.
pub fn no_sniff(response: &mut Response) {
    response.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
}

/// Reads a whole body of at most `cap` bytes, for handlers that parse what they relay.
pub async fn read_capped(body: Body, cap: usize) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, cap)
        .await
        .map_err(|error| match body_error(&error) {
            Some(BodyError::TooSlow) => {
                ApiError::new(StatusCode::REQUEST_TIMEOUT, BodyError::TooSlow.to_string())
            }
            _ => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("The request body is larger than {} KB.", cap / 1024),
            ),
        })
}

/// The [`BodyError`] somewhere in an error's sources, if a guarded body failed.
fn body_error<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a BodyError> {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if let Some(found) = error.downcast_ref::<BodyError>() {
            return Some(found);
        }
        cause = error.source();
    }
    None
}

/// The most JSON values (numbers, strings, arrays, objects...) the relay parses from one body:
/// a large workflow with its editor graph has tens of thousands.
const MAX_JSON_VALUES: usize = 250_000;
/// The deepest nesting accepted.
const MAX_JSON_DEPTH: usize = 64;

/// Why JSON is refused before it is parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JsonShapeError {
    /// Too many values.
    #[error("The JSON holds more than {MAX_JSON_VALUES} values; no workflow is that large.")]
    TooManyValues,
    /// Nested too deep.
    #[error("The JSON is nested deeper than {MAX_JSON_DEPTH} levels.")]
    TooDeep,
}

/// Refuses JSON whose parse would cost far more memory than its text: many tiny values (a
/// 10 MB body of `0,0,0,...` is five million values of 32 bytes or more each) or deep nesting.
/// One pass over the bytes, allocating nothing; malformed JSON is left to the parser to name.
pub fn check_json_shape(text: &[u8]) -> Result<(), JsonShapeError> {
    let delimits = |byte: u8| {
        matches!(
            byte,
            b' ' | b'\t' | b'\r' | b'\n' | b',' | b':' | b'[' | b']' | b'{' | b'}' | b'"'
        )
    };
    let (mut values, mut depth, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    // Inside a number, `true`, `false` or `null`: a scalar is counted at its first byte.
    let mut in_scalar = false;
    for &byte in text {
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        let starts_scalar = !in_scalar && !delimits(byte);
        in_scalar = !delimits(byte);
        match byte {
            b'"' => {
                in_string = true;
                values += 1;
            }
            b'[' | b'{' => {
                values += 1;
                depth += 1;
                if depth > MAX_JSON_DEPTH {
                    return Err(JsonShapeError::TooDeep);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ if starts_scalar => values += 1,
            _ => {}
        }
        if values > MAX_JSON_VALUES {
            return Err(JsonShapeError::TooManyValues);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    async fn collect(body: GuardedBody) -> Result<usize, String> {
        let mut stream = Body::new(body).into_data_stream();
        let mut total = 0;
        while let Some(chunk) = stream.next().await {
            total += chunk.map_err(|e| e.to_string())?.len();
        }
        Ok(total)
    }

    #[test]
    fn json_shape_counts_values_and_depth_but_not_what_strings_hold() {
        assert!(
            check_json_shape(br#"{"prompt": {"1": {"inputs": {"text": "[[[[,,,,"}}}}"#).is_ok()
        );
        let many = format!("[{}0]", "0,".repeat(MAX_JSON_VALUES));
        assert!(check_json_shape(many.as_bytes()).is_err());
        let few = format!("[{}0]", "0,".repeat(MAX_JSON_VALUES - 10));
        assert!(check_json_shape(few.as_bytes()).is_ok());
        let deep = format!("{}{}", "[".repeat(65), "]".repeat(65));
        assert!(check_json_shape(deep.as_bytes()).is_err());
        let escaped =
            r#"["a\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["]"#;
        assert!(check_json_shape(escaped.as_bytes()).is_ok());
        let long_text = format!("{{\"text\": \"{}\"}}", "x".repeat(10 << 20));
        assert!(check_json_shape(long_text.as_bytes()).is_ok());
    }

    #[tokio::test]
    async fn a_body_over_the_cap_fails_on_the_stream() {
        let chunks = futures_util::stream::iter(
            (0..10).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![0u8; 100]))),
        );
        let body = GuardedBody::new(Body::from_stream(chunks), 550);
        let error = collect(body).await.unwrap_err();
        assert!(error.contains("larger than 550"), "{error}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickle_fails_after_one_window_and_a_steady_body_does_not() {
        let trickle = futures_util::stream::unfold(0, |n| async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            (n < 100).then(|| (Ok::<_, std::io::Error>(Bytes::from_static(b"x")), n + 1))
        });
        let started = Instant::now();
        let error = collect(GuardedBody::new(Body::from_stream(trickle), 1 << 20))
            .await
            .unwrap_err();
        assert!(error.contains("slower"), "{error}");
        assert_eq!(started.elapsed().as_secs(), BODY_WINDOW.as_secs());

        let steady = futures_util::stream::unfold(0, |n| async move {
            tokio::time::sleep(Duration::from_secs(4)).await;
            (n < 5).then(|| (Ok::<_, std::io::Error>(Bytes::from(vec![0u8; 600])), n + 1))
        });
        assert_eq!(
            collect(GuardedBody::new(Body::from_stream(steady), 1 << 20)).await,
            Ok(3000)
        );
    }
}
