//! Request bodies: the largest each call takes, and the slowest rate at which one may arrive.
//!
//! Every request passes [`guard`]: a body announced larger than the call's limit is refused
//! with 413 before a byte of it is read; any other body is read through [`Guarded`], which
//! fails once it passes the limit (413) or arrives slower than the minimum rate (408). The
//! handlers read bodies only after they know the caller (the object upload checks the token and
//! the machine first, `put_object`), so an unknown caller's body is never kept.
//!
//! A body left unread by an answer sent before it (401, 403, 404, an announced 413) is
//! discarded, at most [`DISCARD`] bytes within [`DISCARD_TIME`], so that a client still
//! sending it hears the answer instead of a connection reset; past that, the connection is
//! closed. Nothing of it is kept.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State as AxState};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ferry_api::human_size;
use http_body::{Frame, SizeHint};

use super::{ApiError, St};
use crate::verify;

/// Requests without a token of their own (registration, the dashboard's login) and the owner's
/// credentials call: a few small fields.
const SMALL_BODY: usize = 4 * 1024;
/// Every other JSON call (job reports, policies, import and device jobs).
const JSON_BODY: usize = 64 * 1024;

/// The most of a refused or unread body the vault reads and throws away (a pack of the default
/// size twice), and for how long.
const DISCARD: u64 = 16 << 20;
const DISCARD_TIME: Duration = Duration::from_secs(10);

/// Reads and throws away up to [`DISCARD`] bytes of `body` within [`DISCARD_TIME`], off the
/// request; then drops it (which closes the connection when the body is not at its end).
fn discard(mut body: Body) {
    tokio::spawn(async move {
        let mut seen = 0u64;
        let _ = tokio::time::timeout(DISCARD_TIME, async {
            while seen <= DISCARD {
                match std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
                    Some(Ok(frame)) => seen += frame.data_ref().map_or(0, |d| d.len() as u64),
                    _ => break,
                }
            }
        })
        .await;
    });
}

/// The largest body the call `method path` takes.
fn body_limit(method: &Method, path: &str) -> usize {
    let object =
        path.strip_prefix("/v1/machines/").and_then(|rest| rest.split_once('/')).is_some_and(|(_, rest)| rest.starts_with("objects/"));
    if object && method == Method::PUT {
        verify::MAX_OBJECT
    } else if matches!(path, "/login" | "/logout" | "/v1/register" | "/v1/credentials") {
        SMALL_BODY
    } else {
        JSON_BODY
    }
}

/// Reads a whole body into one buffer, allocated once when its size is announced (a pack
/// upload is held once, not collected in pieces and then copied).
pub(super) async fn read(mut body: Body) -> Result<Bytes, axum::Error> {
    let announced = body.size_hint().exact().unwrap_or(0);
    let mut buf = bytes::BytesMut::with_capacity(usize::try_from(announced).unwrap_or(0).min(verify::MAX_OBJECT));
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        if let Ok(data) = frame?.into_data() {
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

/// Why a body was refused while it was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    TooLarge,
    TooSlow,
}

/// The body limits of every call (a middleware on the whole router).
pub(super) async fn guard(AxState(state): St, req: Request, next: Next) -> Response {
    let limit = body_limit(req.method(), req.uri().path());
    let announced = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if announced.is_some_and(|n| n > limit as u64) {
        discard(req.into_body());
        return refusal(Verdict::TooLarge, limit, &state.limits);
    }
    let verdict = Arc::new(OnceLock::new());
    let min_per_window = state.limits.min_body_rate.saturating_mul(state.limits.body_window.as_secs().max(1));
    let req = req.map(|inner| {
        Body::new(Guarded {
            inner,
            limit,
            seen: 0,
            window: state.limits.body_window,
            min_per_window,
            in_window: 0,
            timer: None,
            verdict: verdict.clone(),
            ended: false,
        })
    });
    let answer = next.run(req).await;
    match verdict.get() {
        Some(v) => refusal(*v, limit, &state.limits),
        None => answer,
    }
}

/// The answer to a refused body; the connection is closed after it (the rest of the body is
/// not read).
fn refusal(v: Verdict, limit: usize, limits: &crate::Limits) -> Response {
    let e = match v {
        Verdict::TooLarge => ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is larger than this call's limit of {}", human_size(limit as u64, 0)),
        ),
        Verdict::TooSlow => ApiError(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request body arrived slower than {} bytes/s over {} s; the vault closed the connection",
                limits.min_body_rate,
                limits.body_window.as_secs()
            ),
        ),
    };
    let mut answer = e.into_response();
    answer.headers_mut().insert(header::CONNECTION, header::HeaderValue::from_static("close"));
    answer
}

/// A request body read within the call's limit and at the minimum rate.
struct Guarded {
    inner: Body,
    limit: usize,
    seen: usize,
    window: Duration,
    /// Bytes each window must bring (0: no minimum).
    min_per_window: u64,
    in_window: u64,
    /// The current window's end; started at the first read, so the time a handler takes before
    /// it reads the body does not count.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    verdict: Arc<OnceLock<Verdict>>,
    ended: bool,
}

/// A body its handler left unread (it answered first) is discarded.
impl Drop for Guarded {
    fn drop(&mut self) {
        if !self.ended && self.verdict.get().is_none() && !self.inner.is_end_stream() {
            discard(std::mem::take(&mut self.inner));
        }
    }
}

impl Guarded {
    fn fail(&self, v: Verdict) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let _ = self.verdict.set(v);
        let what = match v {
            Verdict::TooLarge => "the request body is larger than this call's limit",
            Verdict::TooSlow => "the request body arrives too slowly",
        };
        Poll::Ready(Some(Err(axum::Error::new(what))))
    }

    /// Ends the window if its time is up: false when it brought too little.
    fn next_window(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(timer) = self.timer.as_mut() else { return true };
        while timer.as_mut().poll(cx).is_ready() {
            if self.in_window < self.min_per_window {
                return false;
            }
            self.in_window = 0;
            timer.as_mut().reset(tokio::time::Instant::now() + self.window);
        }
        true
    }
}

impl HttpBody for Guarded {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        if this.timer.is_none() {
            this.timer = Some(Box::pin(tokio::time::sleep(this.window)));
        }
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.seen += data.len();
                    this.in_window += data.len() as u64;
                    if this.seen > this.limit {
                        return this.fail(Verdict::TooLarge);
                    }
                }
                if !this.next_window(cx) {
                    return this.fail(Verdict::TooSlow);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending if !this.next_window(cx) => this.fail(Verdict::TooSlow),
            Poll::Ready(None) => {
                this.ended = true;
                Poll::Ready(None)
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_call_has_its_limit() {
        let m = "0".repeat(32);
        assert_eq!(body_limit(&Method::PUT, &format!("/v1/machines/{m}/objects/data/00/x")), verify::MAX_OBJECT);
        assert_eq!(body_limit(&Method::GET, &format!("/v1/machines/{m}/objects/config")), JSON_BODY);
        assert_eq!(body_limit(&Method::PUT, &format!("/v1/machines/{m}/policy")), JSON_BODY);
        assert_eq!(body_limit(&Method::PUT, "/v1/machines/objects/x"), JSON_BODY);
        for small in ["/login", "/v1/register", "/v1/credentials"] {
            assert_eq!(body_limit(&Method::POST, small), SMALL_BODY);
        }
        assert_eq!(body_limit(&Method::POST, "/v1/import-jobs/j/transfer"), JSON_BODY);
    }
}
