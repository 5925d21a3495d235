//! One open connection of the [`super::LongConnection`]: reading frames, joining
//! fragments, pinging, handing each event to the sink and acknowledging its frame only
//! once the sink has recorded it, and the watchdog for a silent connection. It ends when
//! the connection is lost or shutdown is asked for; reconnecting is the caller's.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::time::{sleep_until, timeout, Instant};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

use super::endpoint::{parse_config_update, ClientConfig};
use super::event::LarkEvent;
use super::fragments::{Fragments, Joined};
use super::frame::{
    Frame, HEADER_MESSAGE_ID, HEADER_SEQ, HEADER_SUM, HEADER_TRACE_ID, HEADER_TYPE, METHOD_CONTROL,
    METHOD_DATA, TYPE_EVENT, TYPE_PING, TYPE_PONG,
};
use super::throttle::LogThrottle;
use super::{EventSink, SinkError};
use crate::metrics::{names, Metrics};

/// Time allowed to write one frame; a peer that stops reading loses the connection.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Time allowed for the close handshake at shutdown.
pub(super) const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Ping intervals of silence after which the connection is taken for dead (rule 28).
pub(super) const WATCHDOG_PINGS: u32 = 3;

/// Events read but not yet recorded, at most; beyond, an event is left unacknowledged and
/// Lark pushes it again (after 3 s, design §4).
pub(crate) const MAX_QUEUED_EVENTS: usize = 256;

pub(super) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How one connection ended.
pub(super) enum End {
    /// `cancel` fired; the connection was closed cleanly.
    Cancelled,
    /// The connection broke, Lark closed it, or the watchdog gave up on it.
    Lost(String),
}

/// An event read and waiting for the sink, with the frame that brought it (the one its
/// acknowledgement answers).
struct Received {
    frame: Frame,
    event: LarkEvent,
}

/// The sink's answer for one event.
struct Recorded {
    frame: Frame,
    label: &'static str,
    event_id: String,
    result: Result<(), SinkError>,
    took: Duration,
}

type InFlight<'a> = Pin<Box<dyn Future<Output = Recorded> + Send + 'a>>;

/// What woke the loop.
enum Step {
    Cancel,
    Recorded(Recorded),
    Message(Option<Result<Message, tungstenite::Error>>),
    Ping,
    Expire,
    Silent,
}

/// One open connection's state.
pub(super) struct Session<'a, S> {
    metrics: &'a Metrics,
    sink: &'a S,
    config: &'a mut ClientConfig,
    throttle: &'a mut LogThrottle,
    service_id: i32,
    fragments: Fragments,
    queue: VecDeque<Received>,
}

impl<'a, S: EventSink> Session<'a, S> {
    /// A session of the connection whose endpoint gave `service_id`.
    pub(super) fn new(
        metrics: &'a Metrics,
        sink: &'a S,
        config: &'a mut ClientConfig,
        throttle: &'a mut LogThrottle,
        service_id: i32,
    ) -> Self {
        Session {
            metrics,
            sink,
            config,
            throttle,
            service_id,
            fragments: Fragments::default(),
            queue: VecDeque::new(),
        }
    }

    /// Reads, pings and records until the connection ends.
    pub(super) async fn serve(&mut self, mut ws: Ws, cancel: &CancellationToken) -> End {
        // The SDKs' ping loop pings first, then sleeps.
        let mut next_ping = Instant::now();
        let mut heard = Instant::now();
        let mut inflight: Option<InFlight<'a>> = None;
        loop {
            if inflight.is_none() {
                inflight = self.queue.pop_front().map(|r| self.record(r));
            }
            let watchdog = heard + self.config.ping_interval * WATCHDOG_PINGS;
            let expiry = self.fragments.next_expiry();
            let step = tokio::select! {
                biased;
                _ = cancel.cancelled() => Step::Cancel,
                done = finished(&mut inflight) => Step::Recorded(done),
                message = ws.next() => Step::Message(message),
                _ = sleep_until(next_ping) => Step::Ping,
                _ = sleep_until(expiry.unwrap_or(watchdog)), if expiry.is_some() => Step::Expire,
                _ = sleep_until(watchdog) => Step::Silent,
            };
            let outcome = match step {
                Step::Cancel => {
                    // Rule 24: the record under way finishes and is answered; the events
                    // still queued are not (Lark pushes them again to the next client).
                    if let Some(recording) = inflight.take() {
                        let done = recording.await;
                        let _ = self.acknowledge(&mut ws, done).await;
                    }
                    close(ws).await;
                    return End::Cancelled;
                }
                Step::Recorded(done) => {
                    inflight = None;
                    self.acknowledge(&mut ws, done).await
                }
                Step::Message(message) => {
                    heard = Instant::now();
                    match message {
                        None => Err("Lark closed the connection".to_string()),
                        Some(Err(e)) => Err(format!("reading failed: {e}")),
                        Some(Ok(Message::Binary(bytes))) => match self.on_frame(&bytes) {
                            Some(reply) => send(&mut ws, reply).await,
                            None => Ok(()),
                        },
                        Some(Ok(Message::Close(_))) => {
                            Err("Lark closed the connection".to_string())
                        }
                        Some(Ok(Message::Text(_))) => {
                            self.dropped("unknown_type", "a text message");
                            Ok(())
                        }
                        // WebSocket-level pings are answered by tungstenite itself.
                        Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => Ok(()),
                    }
                }
                Step::Ping => {
                    next_ping = Instant::now() + self.config.ping_interval;
                    send(&mut ws, Frame::ping(self.service_id)).await
                }
                Step::Expire => {
                    let expired = self.fragments.expire(Instant::now());
                    for _ in 0..expired {
                        self.dropped("fragment_expired", "a message's fragments never all came");
                    }
                    Ok(())
                }
                Step::Silent => Err(format!(
                    "nothing heard for {} ping intervals",
                    WATCHDOG_PINGS
                )),
            };
            if let Err(reason) = outcome {
                return End::Lost(reason);
            }
        }
    }

    /// The sink's work for one event, as a future the loop polls.
    fn record(&self, received: Received) -> InFlight<'a> {
        let sink = self.sink;
        Box::pin(async move {
            let Received { frame, event } = received;
            let label = event.kind.label();
            let event_id = event.header.event_id.clone();
            let started = Instant::now();
            let result = sink.record(event).await;
            Recorded {
                frame,
                label,
                event_id,
                result,
                took: started.elapsed(),
            }
        })
    }

    /// Answers the frame of a recorded event: 200 when recorded, 500 when not.
    async fn acknowledge(&mut self, ws: &mut Ws, done: Recorded) -> Result<(), String> {
        let (code, outcome) = match &done.result {
            Ok(()) => (200, "recorded"),
            Err(e) => {
                tracing::warn!(
                    event_id = %done.event_id,
                    error = %e,
                    "could not record a Lark event; answering 500 so that Lark pushes it again"
                );
                (500, "sink_failed")
            }
        };
        self.metrics.inc(
            names::LARK_EVENTS,
            &[("type", done.label), ("outcome", outcome)],
        );
        tracing::debug!(event_id = %done.event_id, code, "acknowledged a Lark event");
        let biz_rt = u64::try_from(done.took.as_millis()).unwrap_or(u64::MAX);
        send(ws, done.frame.into_ack(code, biz_rt)).await
    }

    /// Handles one binary message; returns a frame to send back at once, if any.
    fn on_frame(&mut self, bytes: &[u8]) -> Option<Frame> {
        let frame = match Frame::from_bytes(bytes) {
            Ok(frame) => frame,
            Err(e) => {
                self.dropped("undecodable_frame", &e.to_string());
                return None;
            }
        };
        match frame.method {
            METHOD_CONTROL => {
                self.on_control(&frame);
                None
            }
            METHOD_DATA => self.on_data(frame),
            other => {
                self.dropped("unknown_type", &format!("frame method {other}"));
                None
            }
        }
    }

    /// A pong may carry a new `ClientConfig`; a ping from the server needs no answer.
    fn on_control(&mut self, frame: &Frame) {
        match frame.header(HEADER_TYPE) {
            Some(TYPE_PONG) => {
                if frame.payload().is_empty() {
                    return;
                }
                match parse_config_update(frame.payload()) {
                    Some(update) => {
                        let before = *self.config;
                        self.config.apply(update);
                        if *self.config != before {
                            tracing::info!(config = ?self.config, "Lark changed the event connection's settings");
                        }
                    }
                    None => self.dropped(
                        "bad_client_config",
                        "a pong whose payload is not a ClientConfig",
                    ),
                }
            }
            Some(TYPE_PING) => {}
            other => {
                let detail = format!("control frame of type {:?}", other.map(short));
                self.dropped("unknown_type", &detail);
            }
        }
    }

    /// An event (or a fragment of one): joined, read, queued for the sink. An envelope
    /// that is not an event is answered 500 at once (what the SDKs answer when their
    /// dispatcher fails on it).
    fn on_data(&mut self, mut frame: Frame) -> Option<Frame> {
        match frame.header(HEADER_TYPE) {
            Some(TYPE_EVENT) => {}
            // `card` (card actions) and anything newer: the SDKs leave them unanswered.
            other => {
                let detail = format!("data frame of type {:?}", other.map(short));
                self.dropped("unknown_type", &detail);
                return None;
            }
        }
        // As oapi-sdk-go reads them: a missing or unreadable `sum` is 1, `seq` 0.
        let number = |key: &str| {
            frame
                .header(key)
                .and_then(|v| v.trim().parse::<usize>().ok())
        };
        let sum = number(HEADER_SUM).unwrap_or(1);
        let seq = number(HEADER_SEQ).unwrap_or(0);
        let message_id = frame
            .header(HEADER_MESSAGE_ID)
            .unwrap_or_default()
            .to_string();
        let trace_id = frame
            .header(HEADER_TRACE_ID)
            .unwrap_or_default()
            .to_string();
        let payload = frame.payload.take().unwrap_or_default();
        let payload = match self
            .fragments
            .add(&message_id, sum, seq, payload, Instant::now())
        {
            Joined::Complete(payload) => payload,
            Joined::Waiting => return None,
            Joined::Invalid => {
                self.dropped("fragment_invalid", &format!("fragment {seq} of {sum}"));
                return None;
            }
            Joined::TooLarge => {
                self.dropped("fragment_too_large", "a message over the size cap");
                return None;
            }
        };
        let event = match LarkEvent::parse(&payload) {
            Ok(event) => event,
            Err(e) => {
                self.metrics.inc(
                    names::LARK_EVENTS,
                    &[("type", "unknown"), ("outcome", "invalid")],
                );
                if let Some(suppressed) = self.throttle.allow("invalid_envelope", Instant::now()) {
                    tracing::warn!(%message_id, %trace_id, error = %e, suppressed, "a Lark event that is not an event envelope; answered 500");
                }
                return Some(frame.into_ack(500, 0));
            }
        };
        tracing::debug!(
            event_id = %event.header.event_id,
            event_type = %short(&event.header.event_type),
            %message_id,
            %trace_id,
            "received a Lark event"
        );
        if self.queue.len() >= MAX_QUEUED_EVENTS {
            self.dropped("overloaded", "too many events waiting for the sink");
            return None;
        }
        self.queue.push_back(Received { frame, event });
        None
    }

    /// Counts a dropped frame and logs it, at most once a minute per reason.
    fn dropped(&mut self, reason: &'static str, detail: &str) {
        self.metrics
            .inc(names::LARK_EVENT_FRAMES_DROPPED, &[("reason", reason)]);
        if let Some(suppressed) = self.throttle.allow(reason, Instant::now()) {
            tracing::warn!(
                reason,
                detail,
                suppressed,
                "dropped a frame from the Lark event connection"
            );
        }
    }
}

/// The in-flight record's answer; never completes while there is none.
async fn finished(inflight: &mut Option<InFlight<'_>>) -> Recorded {
    match inflight {
        Some(recording) => recording.await,
        None => std::future::pending().await,
    }
}

/// Writes one frame within [`SEND_TIMEOUT`].
async fn send(ws: &mut Ws, frame: Frame) -> Result<(), String> {
    match timeout(SEND_TIMEOUT, ws.send(Message::binary(frame.to_bytes()))).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("writing failed: {e}")),
        Err(_) => Err("writing timed out".to_string()),
    }
}

/// Sends the close frame and waits (briefly) for Lark's.
async fn close(mut ws: Ws) {
    let _ = timeout(CLOSE_TIMEOUT, async {
        if ws.close(None).await.is_ok() {
            while let Some(Ok(_)) = ws.next().await {}
        }
    })
    .await;
}

/// A value from Lark, cut short for a log line.
fn short(text: &str) -> String {
    text.chars().take(64).collect()
}
