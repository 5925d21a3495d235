//! Fault knob: answers far larger than any real one (design §3 rule 18), streamed.
//!
//! The token endpoint or a CometD `/meta/connect` answers with a body of a set size that
//! begins like the real answer (an OAuth error, a connect reply) and then goes on with
//! padding. The body is streamed from one static buffer, never allocated, so a 300 MB
//! answer costs the simulator nothing; it is sent chunked (no `Content-Length`), so the
//! client cannot refuse it by its declared length and must count what it reads. How much
//! was actually sent before the client stopped reading is recorded: a client that reads
//! under a cap hangs up long before the end.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::{to_bytes, Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Largest request body this layer reads to see which Bayeux channel a request is for
/// (Salesforce itself refuses CometD requests over 32,768 bytes).
const MAX_INSPECTED_BODY: usize = 64 * 1024;

/// The padding every oversized answer is made of, sent again and again.
static PADDING: [u8; 64 * 1024] = [b'x'; 64 * 1024];

/// Which answer an oversized body replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OversizedAnswer {
    /// `POST /services/oauth2/token`: HTTP 400, an OAuth error whose
    /// `error_description` never ends.
    TokenEndpoint,
    /// A CometD request carrying `/meta/connect`: HTTP 200, a connect reply whose padding
    /// never ends.
    CometdConnect,
}

impl OversizedAnswer {
    fn status(self) -> StatusCode {
        match self {
            OversizedAnswer::TokenEndpoint => StatusCode::BAD_REQUEST,
            OversizedAnswer::CometdConnect => StatusCode::OK,
        }
    }

    /// The real answer's beginning, and its end after the padding.
    fn frame(self) -> (&'static [u8], &'static [u8]) {
        match self {
            OversizedAnswer::TokenEndpoint => (
                b"{\"error\":\"invalid_grant\",\"error_description\":\"",
                b"\"}",
            ),
            OversizedAnswer::CometdConnect => (
                b"[{\"channel\":\"/meta/connect\",\"successful\":true,\"padding\":\"",
                b"\"}]",
            ),
        }
    }
}

#[derive(Debug)]
struct Armed {
    answer: OversizedAnswer,
    bytes: u64,
    remaining: usize,
}

/// The knob's state: armed answers, and what was sent.
#[derive(Debug, Default, Clone)]
pub struct Oversized {
    armed: Arc<Mutex<Vec<Armed>>>,
    sent: Arc<AtomicU64>,
    finished: Arc<AtomicUsize>,
}

impl Oversized {
    /// The next `times` matching requests get a `bytes`-long answer.
    pub(crate) fn arm(&self, answer: OversizedAnswer, bytes: u64, times: usize) {
        self.armed.lock().expect("oversized").push(Armed {
            answer,
            bytes,
            remaining: times,
        });
    }

    /// Bytes of oversized answers sent so far (what left the simulator, not what was asked).
    pub(crate) fn bytes_sent(&self) -> u64 {
        self.sent.load(Ordering::SeqCst)
    }

    /// Oversized answers that are over: sent to the end, or abandoned by the client.
    pub(crate) fn answers_finished(&self) -> usize {
        self.finished.load(Ordering::SeqCst)
    }

    fn take(&self, answer: OversizedAnswer) -> Option<u64> {
        let mut armed = self.armed.lock().expect("oversized");
        let pos = armed
            .iter()
            .position(|a| a.answer == answer && a.remaining > 0)?;
        armed[pos].remaining -= 1;
        let bytes = armed[pos].bytes;
        if armed[pos].remaining == 0 {
            armed.remove(pos);
        }
        Some(bytes)
    }

    fn is_armed(&self, answer: OversizedAnswer) -> bool {
        self.armed
            .lock()
            .expect("oversized")
            .iter()
            .any(|a| a.answer == answer && a.remaining > 0)
    }

    fn respond(&self, answer: OversizedAnswer, bytes: u64) -> Response {
        let (head, tail) = answer.frame();
        let padding = bytes.saturating_sub((head.len() + tail.len()) as u64);
        let progress = Progress {
            sent: self.sent.clone(),
            finished: self.finished.clone(),
        };
        let chunks = futures::stream::unfold(
            (Part::Head, padding, progress),
            move |(part, left, progress)| async move {
                let (chunk, next) = match part {
                    Part::Head => (Bytes::from_static(head), (Part::Padding, left)),
                    Part::Padding if left > 0 => {
                        let n = left.min(PADDING.len() as u64) as usize;
                        (
                            Bytes::from_static(&PADDING[..n]),
                            (Part::Padding, left - n as u64),
                        )
                    }
                    Part::Padding => (Bytes::from_static(tail), (Part::Done, 0)),
                    Part::Done => return None,
                };
                progress
                    .sent
                    .fetch_add(chunk.len() as u64, Ordering::SeqCst);
                Some((
                    Ok::<_, std::convert::Infallible>(chunk),
                    (next.0, next.1, progress),
                ))
            },
        );
        let mut response = Response::new(Body::from_stream(chunks));
        *response.status_mut() = answer.status();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json;charset=UTF-8"),
        );
        response
    }
}

#[derive(Clone, Copy)]
enum Part {
    Head,
    Padding,
    Done,
}

/// Counts an answer as over when its stream is dropped (sent to the end, or the client
/// hung up and the server let go of it).
struct Progress {
    sent: Arc<AtomicU64>,
    finished: Arc<AtomicUsize>,
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finished.fetch_add(1, Ordering::SeqCst);
    }
}

/// Axum middleware: answers an armed request with its oversized body instead of the
/// simulator's own answer.
pub(crate) async fn layer(State(knob): State<Oversized>, req: Request, next: Next) -> Response {
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    let path = req.uri().path();
    if path == "/services/oauth2/token" {
        if let Some(bytes) = knob.take(OversizedAnswer::TokenEndpoint) {
            return knob.respond(OversizedAnswer::TokenEndpoint, bytes);
        }
        return next.run(req).await;
    }
    if !path.starts_with("/cometd/") || !knob.is_armed(OversizedAnswer::CometdConnect) {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let Ok(bytes) = to_bytes(body, MAX_INSPECTED_BODY).await else {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    let is_connect = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v.as_array().cloned())
        .is_some_and(|messages| {
            messages
                .iter()
                .any(|m| m.get("channel").and_then(|c| c.as_str()) == Some("/meta/connect"))
        });
    if is_connect {
        if let Some(size) = knob.take(OversizedAnswer::CometdConnect) {
            return knob.respond(OversizedAnswer::CometdConnect, size);
        }
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

#[cfg(test)]
mod tests;
