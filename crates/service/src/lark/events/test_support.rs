//! A scripted Lark for the long-connection tests: the bootstrap endpoint (axum) and a
//! WebSocket server (tokio-tungstenite) on loopback, each connection handed to the test
//! to drive frame by frame; and a sink the test can hold back or make fail.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Json, Router};
use futures::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::frame::{Frame, Header, HEADER_MESSAGE_ID, HEADER_SEQ, HEADER_SUM, HEADER_TRACE_ID};
use super::frame::{HEADER_TYPE, METHOD_CONTROL, METHOD_DATA, TYPE_EVENT, TYPE_PONG};
use super::{EventSink, LarkEvent, SinkError};
use crate::config::Settings;

/// The `service_id` the fake puts in its URLs.
pub(crate) const SERVICE_ID: i32 = 77;
/// Query values the client must never log.
pub(crate) const ACCESS_KEY: &str = "ak-SECRET-0123";
pub(crate) const TICKET: &str = "ticket-SECRET-4567";

/// What the fake's bootstrap endpoint saw and will answer.
#[derive(Default)]
struct Script {
    /// Answers to give before the default success, in order: (HTTP status, body).
    answers: VecDeque<(u16, serde_json::Value)>,
    /// `data.ClientConfig` of a success.
    client_config: serde_json::Value,
    /// Bodies of the bootstrap requests, in order.
    bodies: Vec<serde_json::Value>,
    /// Whether any bootstrap request carried an Authorization header.
    saw_authorization: bool,
    /// A WebSocket upgrade to refuse: the Handshake-* headers to answer with.
    refuse_upgrade: Option<Vec<(&'static str, String)>>,
}

/// The scripted Lark.
pub(crate) struct FakeLark {
    base_url: String,
    script: Arc<Mutex<Script>>,
    connections: mpsc::UnboundedReceiver<ServerConn>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for FakeLark {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl FakeLark {
    /// Starts both servers; successes hand out `client_config` (the server's JSON).
    pub(crate) async fn start(client_config: serde_json::Value) -> FakeLark {
        let ws_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ws_port = ws_listener.local_addr().unwrap().port();
        let http_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", http_listener.local_addr().unwrap());
        let script = Arc::new(Mutex::new(Script {
            client_config,
            ..Script::default()
        }));
        let app = Router::new()
            .route(super::ENDPOINT_PATH, post(bootstrap))
            .with_state((script.clone(), ws_port));
        let http = tokio::spawn(async move {
            let _ = axum::serve(http_listener, app).await;
        });
        let (tx, connections) = mpsc::unbounded_channel();
        let accept_script = script.clone();
        let ws = tokio::spawn(async move {
            let mut accepted = 0usize;
            while let Ok((stream, _)) = ws_listener.accept().await {
                accepted += 1;
                let refuse = accept_script.lock().unwrap().refuse_upgrade.clone();
                if let Some(conn) = accept(stream, accepted, refuse).await {
                    let _ = tx.send(conn);
                }
            }
        });
        FakeLark {
            base_url,
            script,
            connections,
            tasks: vec![http, ws],
        }
    }

    /// Settings whose `lark.base_url` points here.
    pub(crate) fn settings(&self, dir: &tempfile::TempDir) -> Settings {
        Settings::for_simulators(
            "http://127.0.0.1:9",
            &self.base_url,
            &dir.path().join("s.db"),
        )
        .unwrap()
    }

    /// The next bootstrap answers, before the default success.
    pub(crate) fn answer_next(&self, status: u16, body: serde_json::Value) {
        self.script
            .lock()
            .unwrap()
            .answers
            .push_back((status, body));
    }

    /// Refuse WebSocket upgrades with these `Handshake-*` headers from now on.
    pub(crate) fn refuse_upgrades(&self, headers: Vec<(&'static str, String)>) {
        self.script.lock().unwrap().refuse_upgrade = Some(headers);
    }

    /// Bootstrap requests received so far.
    pub(crate) fn bootstrap_calls(&self) -> usize {
        self.script.lock().unwrap().bodies.len()
    }

    /// The bodies of the bootstrap requests.
    pub(crate) fn bootstrap_bodies(&self) -> Vec<serde_json::Value> {
        self.script.lock().unwrap().bodies.clone()
    }

    /// Whether a bootstrap request carried an Authorization header.
    pub(crate) fn saw_authorization(&self) -> bool {
        self.script.lock().unwrap().saw_authorization
    }

    /// The next WebSocket the client opens.
    pub(crate) async fn next_connection(&mut self) -> ServerConn {
        within("a WebSocket connection", self.connections.recv())
            .await
            .expect("the fake's accept loop ended")
    }
}

async fn bootstrap(
    State((script, ws_port)): State<(Arc<Mutex<Script>>, u16)>,
    headers: HeaderMap,
    Json(body): Json<serde_json::Value>,
) -> (axum::http::StatusCode, Json<serde_json::Value>) {
    let mut script = script.lock().unwrap();
    script.bodies.push(body);
    script.saw_authorization |= headers.contains_key("authorization");
    if let Some((status, body)) = script.answers.pop_front() {
        return (
            axum::http::StatusCode::from_u16(status).unwrap(),
            Json(body),
        );
    }
    let n = script.bodies.len();
    let url = format!(
        "ws://127.0.0.1:{ws_port}/ws?fpid=493&device_id=dev-{n}&access_key={ACCESS_KEY}&service_id={SERVICE_ID}&ticket={TICKET}"
    );
    let answer = serde_json::json!({
        "code": 0,
        "msg": "ok",
        "data": {"URL": url, "ClientConfig": script.client_config},
    });
    (axum::http::StatusCode::OK, Json(answer))
}

// tungstenite's handshake callback returns its own (large) error response type.
#[allow(clippy::result_large_err)]
async fn accept(
    stream: TcpStream,
    n: usize,
    refuse: Option<Vec<(&'static str, String)>>,
) -> Option<ServerConn> {
    let device_id = Arc::new(Mutex::new(String::new()));
    let seen = device_id.clone();
    let callback = move |request: &Request, response: Response| {
        let query = request.uri().query().unwrap_or_default().to_string();
        *seen.lock().unwrap() = query;
        match &refuse {
            None => Ok(response),
            Some(headers) => {
                let mut refused = ErrorResponse::new(Some("refused".into()));
                *refused.status_mut() = axum::http::StatusCode::FORBIDDEN;
                for (name, value) in headers {
                    refused.headers_mut().insert(*name, value.parse().unwrap());
                }
                Err(refused)
            }
        }
    };
    let ws = tokio_tungstenite::accept_hdr_async(stream, callback)
        .await
        .ok()?;
    let query = device_id.lock().unwrap().clone();
    Some(ServerConn { ws, n, query })
}

/// One WebSocket the client opened, seen from Lark's side.
pub(crate) struct ServerConn {
    ws: WebSocketStream<TcpStream>,
    /// 1 for the first connection accepted, and so on.
    pub(crate) n: usize,
    /// The query the client connected with.
    pub(crate) query: String,
}

impl ServerConn {
    /// The next frame the client sends; None once it closed the connection.
    pub(crate) async fn recv(&mut self) -> Option<Frame> {
        within("a frame from the client", async {
            loop {
                match self.ws.next().await? {
                    Ok(Message::Binary(bytes)) => return Some(Frame::from_bytes(&bytes).unwrap()),
                    Ok(Message::Close(_)) | Err(_) => return None,
                    Ok(_) => continue,
                }
            }
        })
        .await
    }

    /// True when the client has sent nothing more (after letting every task run).
    pub(crate) async fn nothing_more(&mut self) -> bool {
        crate::lark::test_support::settle().await;
        let next = self.ws.next();
        let next = std::pin::pin!(next);
        matches!(futures::poll!(next), Poll::Pending)
    }

    /// The next frame that is not a ping.
    pub(crate) async fn recv_non_ping(&mut self) -> Option<Frame> {
        loop {
            let frame = self.recv().await?;
            if frame.header(HEADER_TYPE) != Some("ping") {
                return Some(frame);
            }
        }
    }

    /// Sends raw bytes as one binary message.
    pub(crate) async fn send_bytes(&mut self, bytes: Vec<u8>) {
        self.ws.send(Message::binary(bytes)).await.unwrap();
    }

    /// Sends a frame.
    pub(crate) async fn send(&mut self, frame: &Frame) {
        self.send_bytes(frame.to_bytes()).await;
    }

    /// Sends an event payload in one data frame (`seq_id` identifies it in the ack).
    pub(crate) async fn send_event(&mut self, seq_id: u64, payload: &[u8]) {
        let frame = data_frame(seq_id, &format!("msg-{seq_id}"), 1, 0, payload);
        self.send(&frame).await;
    }

    /// Sends a pong, with a ClientConfig payload if given.
    pub(crate) async fn send_pong(&mut self, config: Option<serde_json::Value>) {
        let frame = Frame {
            service: SERVICE_ID,
            method: METHOD_CONTROL,
            headers: vec![header(HEADER_TYPE, TYPE_PONG)],
            payload: config.map(|c| c.to_string().into_bytes()),
            ..Frame::ping(SERVICE_ID)
        };
        self.send(&frame).await;
    }

    /// Closes the connection from Lark's side.
    pub(crate) async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

fn header(key: &str, value: &str) -> Header {
    Header {
        key: key.into(),
        value: value.into(),
    }
}

/// A data frame as Lark sends it: an event (or fragment `seq` of `sum`).
pub(crate) fn data_frame(
    seq_id: u64,
    message_id: &str,
    sum: usize,
    seq: usize,
    payload: &[u8],
) -> Frame {
    Frame {
        seq_id,
        log_id: 1000 + seq_id,
        service: SERVICE_ID,
        method: METHOD_DATA,
        headers: vec![
            header(HEADER_TYPE, TYPE_EVENT),
            header(HEADER_MESSAGE_ID, message_id),
            header(HEADER_SUM, &sum.to_string()),
            header(HEADER_SEQ, &seq.to_string()),
            header(HEADER_TRACE_ID, "trace-1"),
        ],
        payload_encoding: None,
        payload_type: None,
        payload: Some(payload.to_vec()),
        log_id_new: None,
    }
}

/// A schema 2.0 envelope of `event_type` with event id `event_id` for meeting `meeting_no`.
pub(crate) fn envelope(event_id: &str, event_type: &str, meeting_no: &str) -> Vec<u8> {
    serde_json::json!({
        "schema": "2.0",
        "header": {
            "event_id": event_id,
            "event_type": event_type,
            "create_time": "1608725989000",
            "token": "verification-token",
            "app_id": lvb_simulators::LARK_APP_ID,
            "tenant_key": "tenant-1",
        },
        "event": {
            "meeting": {"id": "6911188411934433028", "meeting_no": meeting_no, "topic": "t"},
            "operator": {"id": {"open_id": "ou_host"}, "user_role": 2, "user_type": 1},
        },
    })
    .to_string()
    .into_bytes()
}

/// A sink the test can hold back (each record waits for a permit) or make fail.
#[derive(Clone, Default)]
pub(crate) struct TestSink(Arc<SinkState>);

#[derive(Default)]
struct SinkState {
    recorded: Mutex<Vec<LarkEvent>>,
    calls: AtomicUsize,
    fail: AtomicBool,
    gate: Mutex<Option<Arc<Semaphore>>>,
}

impl TestSink {
    /// A sink whose records wait until [`TestSink::release`] lets them through.
    pub(crate) fn gated() -> TestSink {
        let sink = TestSink::default();
        *sink.0.gate.lock().unwrap() = Some(Arc::new(Semaphore::new(0)));
        sink
    }

    /// Lets `n` held records finish.
    pub(crate) fn release(&self, n: usize) {
        if let Some(gate) = &*self.0.gate.lock().unwrap() {
            gate.add_permits(n);
        }
    }

    /// From now on, records fail (or succeed again).
    pub(crate) fn set_failing(&self, fail: bool) {
        self.0.fail.store(fail, Ordering::SeqCst);
    }

    /// Records started (finished or not).
    pub(crate) fn calls(&self) -> usize {
        self.0.calls.load(Ordering::SeqCst)
    }

    /// Events recorded successfully.
    pub(crate) fn recorded(&self) -> Vec<LarkEvent> {
        self.0.recorded.lock().unwrap().clone()
    }
}

impl EventSink for TestSink {
    fn record(&self, event: LarkEvent) -> impl Future<Output = Result<(), SinkError>> + Send {
        let state = self.0.clone();
        async move {
            state.calls.fetch_add(1, Ordering::SeqCst);
            let gate = state.gate.lock().unwrap().clone();
            if let Some(gate) = gate {
                gate.acquire().await.unwrap().forget();
            }
            if state.fail.load(Ordering::SeqCst) {
                return Err(SinkError("store is full".into()));
            }
            state.recorded.lock().unwrap().push(event);
            Ok(())
        }
    }
}

/// Polls `fut` until it completes; panics after 10 s of real time. (The tests hold the
/// paused clock still, so a tokio timeout would never fire.)
pub(crate) async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    let mut fut = std::pin::pin!(fut);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Poll::Ready(value) = futures::poll!(fut.as_mut()) {
            return value;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::task::yield_now().await;
    }
}

/// Everything logged on this thread while the guard lives (the tests run on a
/// current-thread runtime), at every level.
pub(crate) struct Logs {
    buffer: Arc<Mutex<Vec<u8>>>,
    _guard: tracing::subscriber::DefaultGuard,
}

impl Logs {
    pub(crate) fn capture() -> Logs {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || LogWriter(writer.clone()))
            .finish();
        Logs {
            buffer,
            _guard: tracing::subscriber::set_default(subscriber),
        }
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.buffer.lock().unwrap()).into_owned()
    }
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
