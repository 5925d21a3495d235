//! What both simulators share: the request log every test counts calls with, injected
//! faults (status codes, extra latency, answers lost or late after the work was done)
//! and the loopback server start-up.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

mod latency;

/// Largest request body the simulators keep in the log.
pub const MAX_LOGGED_BODY: usize = 64 * 1024;

/// One request as the simulator saw it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: Method,
    /// Path without the query string, e.g. `/services/data/v62.0/query`.
    pub path: String,
    /// Raw query string ("" when none).
    pub query: String,
    /// Request body as text (lossy UTF-8, truncated).
    pub body: String,
    /// Status the simulator answered with.
    pub status: u16,
    /// When the simulator took the request in, after its simulated latency: the moment
    /// its rate limits count the call (the simulator's clock, Tokio's `Instant`).
    pub at: tokio::time::Instant,
}

/// Every request a simulator received, in order.
#[derive(Debug, Default, Clone)]
pub struct RequestLog {
    entries: Arc<Mutex<Vec<RecordedRequest>>>,
}

impl RequestLog {
    /// A copy of everything recorded so far.
    pub fn all(&self) -> Vec<RecordedRequest> {
        self.entries.lock().expect("request log").clone()
    }

    /// Requests with this method whose path contains `path_part`.
    pub fn count(&self, method: &Method, path_part: &str) -> usize {
        self.entries
            .lock()
            .expect("request log")
            .iter()
            .filter(|r| r.method == *method && r.path.contains(path_part))
            .count()
    }

    /// Requests whose path contains `path_part`, any method.
    pub fn count_path(&self, path_part: &str) -> usize {
        self.entries
            .lock()
            .expect("request log")
            .iter()
            .filter(|r| r.path.contains(path_part))
            .count()
    }

    /// Requests matching a predicate.
    pub fn matching(&self, pred: impl Fn(&RecordedRequest) -> bool) -> Vec<RecordedRequest> {
        self.entries
            .lock()
            .expect("request log")
            .iter()
            .filter(|r| pred(r))
            .cloned()
            .collect()
    }

    /// Total number of requests.
    pub fn len(&self) -> usize {
        self.entries.lock().expect("request log").len()
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forget everything recorded so far (a test's "from here on" marker).
    pub fn clear(&self) {
        self.entries.lock().expect("request log").clear();
    }

    fn push(&self, r: RecordedRequest) {
        self.entries.lock().expect("request log").push(r);
    }
}

/// A canned answer injected in place of the simulator's own.
#[derive(Debug, Clone)]
pub struct FaultResponse {
    pub status: u16,
    pub body: String,
    pub headers: Vec<(String, String)>,
}

/// "The next `times` requests matching `method` and `path_part` get `response`."
#[derive(Debug, Clone)]
struct Fault {
    method: Option<Method>,
    path_part: String,
    remaining: usize,
    response: FaultResponse,
}

/// "The next `remaining` requests matching `method` and `path_part` are carried out, and
/// then their answer is lost."
#[derive(Debug, Clone)]
struct LostAnswer {
    method: Option<Method>,
    path_part: String,
    remaining: usize,
}

/// "The next `remaining` requests matching `method` and `path_part` are carried out at
/// once, and their answer is sent `delay` later."
#[derive(Debug, Clone)]
struct SlowAnswer {
    method: Option<Method>,
    path_part: String,
    remaining: usize,
    delay: Duration,
}

/// Fault knobs shared by both simulators.
#[derive(Debug, Default, Clone)]
pub struct Faults {
    queue: Arc<Mutex<VecDeque<Fault>>>,
    lost: Arc<Mutex<Vec<LostAnswer>>>,
    slow: Arc<Mutex<Vec<SlowAnswer>>>,
    /// How many answers [`Faults::lose_answers`] has lost so far.
    lost_count: Arc<Mutex<usize>>,
    latency: Arc<Mutex<Duration>>,
}

impl Faults {
    /// The next `times` requests (any method if `method` is None) whose path contains
    /// `path_part` are answered with `status`, `body` and `headers` instead.
    pub fn inject(
        &self,
        method: Option<Method>,
        path_part: &str,
        times: usize,
        status: u16,
        body: &str,
        headers: &[(&str, &str)],
    ) {
        self.queue.lock().expect("faults").push_back(Fault {
            method,
            path_part: path_part.to_string(),
            remaining: times,
            response: FaultResponse {
                status,
                body: body.to_string(),
                headers: headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            },
        });
    }

    /// The next `times` requests (any method if `method` is None) whose path contains
    /// `path_part` are carried out as usual — the work is done — and then the connection
    /// is closed without a complete response, as when an answer is lost on the way back.
    pub fn lose_answers(&self, method: Option<Method>, path_part: &str, times: usize) {
        self.lost.lock().expect("faults").push(LostAnswer {
            method,
            path_part: path_part.to_string(),
            remaining: times,
        });
    }

    fn take_lost(&self, method: &Method, path: &str) -> bool {
        let mut lost = self.lost.lock().expect("faults");
        let Some(pos) = lost.iter().position(|l| {
            l.remaining > 0
                && l.method.as_ref().is_none_or(|m| m == method)
                && path.contains(&l.path_part)
        }) else {
            return false;
        };
        lost[pos].remaining -= 1;
        if lost[pos].remaining == 0 {
            lost.remove(pos);
        }
        *self.lost_count.lock().expect("faults") += 1;
        true
    }

    /// The next `times` requests (any method if `method` is None) whose path contains
    /// `path_part` are carried out at once — the work is done and the request is in the
    /// log — and their answer is sent `delay` later, as from a slow Lark (issue 21: a
    /// caller that gives up or is stopped meanwhile has changed Lark all the same).
    pub fn slow_answers(
        &self,
        method: Option<Method>,
        path_part: &str,
        times: usize,
        delay: Duration,
    ) {
        self.slow.lock().expect("faults").push(SlowAnswer {
            method,
            path_part: path_part.to_string(),
            remaining: times,
            delay,
        });
    }

    fn take_slow(&self, method: &Method, path: &str) -> Option<Duration> {
        let mut slow = self.slow.lock().expect("faults");
        let pos = slow.iter().position(|s| {
            s.remaining > 0
                && s.method.as_ref().is_none_or(|m| m == method)
                && path.contains(&s.path_part)
        })?;
        slow[pos].remaining -= 1;
        let delay = slow[pos].delay;
        if slow[pos].remaining == 0 {
            slow.remove(pos);
        }
        Some(delay)
    }

    /// Answers lost so far (the requests themselves are in the log, with the status the
    /// simulator meant to send).
    pub fn answers_lost(&self) -> usize {
        *self.lost_count.lock().expect("faults")
    }

    /// Adds this much latency to every request (default none).
    pub fn set_latency(&self, latency: Duration) {
        *self.latency.lock().expect("latency") = latency;
    }

    /// Current added latency.
    pub fn latency(&self) -> Duration {
        *self.latency.lock().expect("latency")
    }

    /// Removes every pending fault.
    pub fn clear(&self) {
        self.queue.lock().expect("faults").clear();
        self.lost.lock().expect("faults").clear();
        self.slow.lock().expect("faults").clear();
    }

    fn take(&self, method: &Method, path: &str) -> Option<FaultResponse> {
        let mut queue = self.queue.lock().expect("faults");
        let pos = queue.iter().position(|f| {
            f.remaining > 0
                && f.method.as_ref().is_none_or(|m| m == method)
                && path.contains(&f.path_part)
        })?;
        let fault = &mut queue[pos];
        fault.remaining -= 1;
        let response = fault.response.clone();
        if fault.remaining == 0 {
            queue.remove(pos);
        }
        Some(response)
    }
}

/// State of the recording middleware.
#[derive(Clone)]
pub struct Recorder {
    pub log: RequestLog,
    pub faults: Faults,
}

/// Axum middleware: applies latency, answers injected faults, records every request.
pub async fn record(State(rec): State<Recorder>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let (parts, body) = req.into_parts();
    let bytes = to_bytes(body, usize::MAX).await.unwrap_or_default();
    let logged_body =
        String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_LOGGED_BODY)]).into_owned();

    let latency = rec.faults.latency();
    if !latency.is_zero() {
        latency::wait(latency).await;
    }

    let at = tokio::time::Instant::now();
    let response = match rec.faults.take(&method, &path) {
        Some(fault) => fault_response(fault),
        None => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
    };
    let answer_lost = rec.faults.take_lost(&method, &path);
    let slow = rec.faults.take_slow(&method, &path);
    rec.log.push(RecordedRequest {
        method,
        path,
        query,
        body: logged_body,
        status: response.status().as_u16(),
        at,
    });
    if let Some(delay) = slow {
        tokio::time::sleep(delay).await;
    }
    if answer_lost {
        return lost_answer();
    }
    response
}

/// A response whose body fails before any of it is sent: the server drops the connection
/// mid-answer, so the client sees it closed without a (complete) response.
fn lost_answer() -> Response {
    let failing = futures::stream::once(async {
        Err::<axum::body::Bytes, std::io::Error>(std::io::Error::other("answer lost (simulated)"))
    });
    Response::new(Body::from_stream(failing))
}

fn fault_response(fault: FaultResponse) -> Response {
    let mut response = (
        StatusCode::from_u16(fault.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        fault.body,
    )
        .into_response();
    let headers = response.headers_mut();
    headers.insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=UTF-8"),
    );
    for (k, v) in fault.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(&v),
        ) {
            headers.insert(name, value);
        }
    }
    response
}

/// A simulator server running on loopback.
#[derive(Debug)]
pub struct RunningServer {
    pub addr: SocketAddr,
    pub task: JoinHandle<()>,
}

impl RunningServer {
    /// `http://127.0.0.1:PORT`
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds `127.0.0.1:port` (0 = any free port), wraps `router` with the recorder, serves.
pub async fn serve(
    router: Router,
    recorder: Recorder,
    port: u16,
) -> std::io::Result<RunningServer> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    let app = router.layer(axum::middleware::from_fn_with_state(recorder, record));
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "simulator server stopped");
        }
    });
    Ok(RunningServer { addr, task })
}
