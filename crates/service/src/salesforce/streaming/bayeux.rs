//! The Bayeux conversation: handshake (`ext.replay`), subscribe (replay id keyed by the
//! exact channel), connect, the server's `advice` (capped), and what each refusal means
//! (design §3 rule 9).

use std::time::Duration;

use serde_json::{json, Value};

use super::answer::{ArraySplitter, SplitError};
use super::cometd::CometdTransport;
use super::failure::{protocol, Delay, Failure, Phase};
use super::{StreamError, StreamItem, LONG_POLL_MARGIN, META_REQUEST_TIMEOUT};
use crate::ids::ReplayId;
use crate::outbound::STREAMING_BODY_CAP;
use crate::salesforce::events::{parse_event, read_event_message};

/// New events taken from one connect answer; the rest is left on the server and replayed
/// by a new subscription (from the checkpoint) once these are handed over. With the
/// processor's channel, this bounds what the subscriber holds however far behind it is.
pub const MAX_EVENTS_PER_ANSWER: usize = 1_000;

/// Bytes read of one connect answer at most (each message is also capped at
/// [`STREAMING_BODY_CAP`]): an answer replayed after a dropped client starts with the
/// events already handed over, read and skipped, which stay far below this.
const ANSWER_READ_CAP: usize = 4 * STREAMING_BODY_CAP;

/// Longest connect hold taken from `advice.timeout`. Salesforce holds a connect up to
/// 110 s and asks clients to reconnect "before two minutes" ("Clients and Timeouts",
/// developer.salesforce.com/docs/platform/api-streaming/guide/using-streaming-api-timeouts.html);
/// a longer hold would only delay noticing a dead connection.
pub const MAX_CONNECT_HOLD: Duration = Duration::from_secs(120);

/// Longest wait before the next connect taken from `advice.interval`. Salesforce expires
/// the subscription when a client does not reconnect "within 40 seconds" of a response
/// (same page), so a longer wait would only lose it; 30 s leaves 10 s for the request.
pub const MAX_ADVICE_INTERVAL: Duration = Duration::from_secs(30);

impl CometdTransport {
    pub(super) async fn handshake(&mut self) -> Result<Vec<StreamItem>, Failure> {
        self.client_id = None;
        let id = self.message_id();
        let request = json!([{
            "channel": "/meta/handshake",
            "version": "1.0",
            "minimumVersion": "1.0",
            "supportedConnectionTypes": ["long-polling"],
            "ext": {"replay": true},
            "id": id,
        }]);
        let replies = self
            .post(request, META_REQUEST_TIMEOUT, Phase::Handshake)
            .await?;
        let reply =
            find_reply(&replies, "/meta/handshake").ok_or_else(|| protocol(Phase::Handshake))?;
        if !successful(reply) {
            return Err(self.classify(reply, Phase::Handshake));
        }
        let Some(client_id) = reply.get("clientId").and_then(Value::as_str) else {
            return Err(protocol(Phase::Handshake));
        };
        tracing::debug!(channel = %self.channel, client_id, "streaming handshake done");
        self.client_id = Some(client_id.to_string());
        self.apply_advice(reply);
        self.phase = Phase::Subscribe { fallback: None };
        Ok(Vec::new())
    }

    pub(super) async fn subscribe(
        &mut self,
        fallback: Option<String>,
    ) -> Result<Vec<StreamItem>, Failure> {
        let replay_from = if fallback.is_some() {
            ReplayId::Latest
        } else {
            self.resume_from()
        };
        let id = self.message_id();
        let channel = self.channel.clone();
        let mut replay = serde_json::Map::new();
        replay.insert(channel.clone(), json!(replay_from.wire()));
        let request = json!([{
            "channel": "/meta/subscribe",
            "clientId": self.client_id,
            "subscription": channel,
            "ext": {"replay": replay},
            "id": id,
        }]);
        let retry = Phase::Subscribe {
            fallback: fallback.clone(),
        };
        let replies = self
            .post(request, META_REQUEST_TIMEOUT, retry.clone())
            .await?;
        let reply =
            find_reply(&replies, "/meta/subscribe").ok_or_else(|| protocol(retry.clone()))?;
        if successful(reply) {
            tracing::info!(channel = %self.channel, replay_from = %replay_from, "subscribed");
            self.phase = Phase::Connect;
            self.subscribed_once = true;
            self.succeeded();
            self.status.set_subscribed(true);
            let mut items = Vec::new();
            if let Some(reason) = fallback {
                items.push(StreamItem::ReplayGap { reason });
            }
            items.push(StreamItem::Subscribed { replay_from });
            return Ok(items);
        }
        let error = error_text(reply);
        if fallback.is_none() && is_invalid_replay_error(&error) {
            tracing::warn!(
                channel = %self.channel,
                replay_id = %replay_from,
                error = %error,
                "replay id no longer valid; resubscribing for new events only"
            );
            self.phase = Phase::Subscribe {
                fallback: Some(error),
            };
            return Ok(Vec::new());
        }
        Err(self.classify(reply, retry))
    }

    pub(super) async fn connect(&mut self) -> Result<Vec<StreamItem>, Failure> {
        if !self.pending_interval.is_zero() {
            tokio::time::sleep(std::mem::take(&mut self.pending_interval)).await;
        }
        let id = self.message_id();
        let request = json!([{
            "channel": "/meta/connect",
            "clientId": self.client_id,
            "connectionType": "long-polling",
            "id": id,
        }]);
        let timeout = self.connect_hold + LONG_POLL_MARGIN;
        let response = self.send(request, timeout, Phase::Connect).await?;
        // Events may come before, after or around the connect reply, several at once.
        let (replies, items) = match self.read_connect_answer(response).await? {
            Answer::Whole { replies, items } => (replies, items),
            Answer::Cut { items, why } => {
                // The rest stays on the server: a new subscription replays it from the
                // checkpoint once these are handed over (events already handed over are
                // skipped then).
                tracing::info!(channel = %self.channel, taken = items.len(), why, "connect answer read in part; subscribing again from the checkpoint for the rest");
                self.phase = Phase::Handshake;
                return Ok(items);
            }
        };
        let Some(reply) = find_reply(&replies, "/meta/connect") else {
            if items.is_empty() {
                return Err(protocol(Phase::Connect));
            }
            return Ok(items);
        };
        if !successful(reply) {
            let failure = self.classify(reply, Phase::Connect);
            if items.is_empty() {
                return Err(failure);
            }
            // Hand over what arrived; the failure is met again on the next connect.
            return Ok(items);
        }
        self.succeeded();
        self.apply_advice(reply);
        match advice_reconnect(reply) {
            Some("handshake") => self.phase = Phase::Handshake,
            Some("none") => {
                return Err(Failure::Fatal(StreamError::Stopped {
                    error: "advice.reconnect = none on a successful connect".into(),
                }))
            }
            _ => {}
        }
        Ok(items)
    }

    /// A connect answer's meta replies and its events (parsed, in order, without those
    /// already handed over in this run), read as it arrives, one message at a time. At most
    /// [`MAX_EVENTS_PER_ANSWER`] new events are taken: past that the answer is left unread
    /// ([`Answer::Cut`]), and so is the rest after a message past the cap or a broken-off
    /// answer that already gave events. An answer that is not a JSON array counts for
    /// nothing (its events come again with the next subscription).
    pub(super) async fn read_connect_answer(
        &mut self,
        mut response: reqwest::Response,
    ) -> Result<Answer, Failure> {
        let delivered_before = self.last_delivered;
        let mut splitter = ArraySplitter::new(STREAMING_BODY_CAP);
        let (mut replies, mut items) = (Vec::new(), Vec::new());
        let mut read = 0usize;
        let mut unparsable = false;
        let booking_id_field = self.booking_id_field.clone();
        loop {
            let chunk = match response.chunk().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(_) if !items.is_empty() => {
                    return Ok(Answer::Cut {
                        items,
                        why: "the answer broke off",
                    })
                }
                Err(e) => return Err(self.answer_lost(&e, Phase::Connect)),
            };
            read += chunk.len();
            let fed = splitter.feed(&chunk, |element| {
                // Events are read for what `parse_event` looks at only; the rare meta
                // reply is read whole.
                let Ok(message) = read_event_message(element, &booking_id_field) else {
                    unparsable = true;
                    return false;
                };
                let channel = message.get("channel").and_then(Value::as_str).unwrap_or("");
                if channel.starts_with("/meta/") {
                    match serde_json::from_slice::<Value>(element) {
                        Ok(whole) => replies.push(whole),
                        Err(_) => {
                            unparsable = true;
                            return false;
                        }
                    }
                } else if let Some(item) = self.take_event(&message) {
                    items.push(item);
                }
                items.len() < MAX_EVENTS_PER_ANSWER
            });
            match fed {
                Ok(_) if unparsable => break,
                Ok(true) if read <= ANSWER_READ_CAP => {}
                Ok(_) => {
                    return Ok(Answer::Cut {
                        items,
                        why: "the processor has enough to do",
                    })
                }
                Err(SplitError::MessageTooLarge) if !items.is_empty() => {
                    return Ok(Answer::Cut {
                        items,
                        why: "a message past the cap",
                    })
                }
                Err(SplitError::MessageTooLarge) => {
                    return Err(self.too_large(&"one message is past the cap"))
                }
                Err(SplitError::NotAnArray) => {
                    unparsable = true;
                    break;
                }
            }
        }
        if unparsable || !splitter.done() {
            // Nothing of it counts as handed over: it comes again.
            self.last_delivered = delivered_before;
            return Err(self.not_an_array(Phase::Connect));
        }
        Ok(Answer::Whole { replies, items })
    }

    /// One event message as a stream item; None for one on another channel or one
    /// already handed over in this run.
    fn take_event(&mut self, message: &Value) -> Option<StreamItem> {
        let channel = message.get("channel").and_then(Value::as_str).unwrap_or("");
        if channel != self.channel {
            tracing::warn!(channel = %self.channel, other = channel, "event on a channel not subscribed; ignored");
            return None;
        }
        let item = match parse_event(message, &self.booking_id_field) {
            Ok(event) => StreamItem::Event(event),
            Err(bad) => {
                tracing::debug!(channel = %self.channel, replay_id = ?bad.replay_id, reason = %bad.reason, "malformed event");
                StreamItem::Malformed {
                    replay_id: bad.replay_id,
                    reason: bad.reason,
                }
            }
        };
        if let Some(replay_id) = item.replay_id() {
            if self.last_delivered.is_some_and(|last| replay_id <= last) {
                tracing::debug!(channel = %self.channel, replay_id, "replayed event already handed over; skipped");
                return None;
            }
            self.last_delivered = Some(replay_id);
        }
        Some(item)
    }

    /// Reads `advice.timeout` and `advice.interval`, each capped (design §3 rule 18): a
    /// server asking for a ten-hour interval must not stall the stream.
    pub(super) fn apply_advice(&mut self, reply: &Value) {
        let (timeout, interval) = capped_advice(reply);
        if let Some(timeout) = timeout {
            self.connect_hold = timeout;
        }
        if let Some(interval) = interval {
            self.pending_interval = interval;
        }
    }

    /// Decides what an unsuccessful meta reply means (design §3 rule 9).
    pub(super) fn classify(&self, reply: &Value, same_phase: Phase) -> Failure {
        let error = error_text(reply);
        let reason = reply
            .pointer("/ext/sfdc/failureReason")
            .and_then(Value::as_str)
            .unwrap_or("");
        let advice = advice_reconnect(reply);
        tracing::warn!(
            channel = %self.channel,
            client_id = self.client_id.as_deref().unwrap_or(""),
            error = %error,
            failure_reason = reason,
            advice = advice.unwrap_or(""),
            "Streaming API refused a message"
        );
        if error.starts_with("401") || reason.starts_with("401") {
            return Failure::Retry {
                phase: Phase::Relogin,
                delay: Delay::Now,
            };
        }
        if error.starts_with("403::Unknown client") || advice == Some("handshake") {
            return Failure::Retry {
                phase: Phase::Handshake,
                delay: Delay::Now,
            };
        }
        if error.contains("cookie present") {
            // The session lost its BAYEUX_BROWSER cookie: a new handshake sets it again.
            return Failure::Retry {
                phase: Phase::Handshake,
                delay: Delay::Backoff,
            };
        }
        // Limits and load pass ("Organization concurrent user limit exceeded", "Server is
        // too busy", too many simultaneous connections): wait and try again.
        let passing = error.contains("limit exceeded")
            || reason.contains("limit")
            || error.starts_with("503")
            || reason.starts_with("503");
        match same_phase {
            Phase::Handshake if error.starts_with("400::Invalid connection type") => {
                Failure::Fatal(StreamError::HandshakeRefused { error })
            }
            // A denied handshake without a 401 reason is load or a limit.
            Phase::Handshake => Failure::Retry {
                phase: Phase::Handshake,
                delay: Delay::Backoff,
            },
            // Unknown channel, no permission: only an admin can fix these.
            Phase::Subscribe { .. }
                if !passing && (error.starts_with("400") || error.starts_with("403")) =>
            {
                Failure::Fatal(StreamError::SubscribeRefused {
                    channel: self.channel.clone(),
                    error,
                })
            }
            _ if !passing && advice == Some("none") => {
                Failure::Fatal(StreamError::Stopped { error })
            }
            phase => Failure::Retry {
                phase,
                delay: Delay::Backoff,
            },
        }
    }
}

/// What a connect answer gave.
pub(super) enum Answer {
    /// All of it: its meta replies and its new events.
    Whole {
        replies: Vec<Value>,
        items: Vec<StreamItem>,
    },
    /// Its first new events; the rest is left for a replay.
    Cut {
        items: Vec<StreamItem>,
        why: &'static str,
    },
}

pub(super) fn find_reply<'a>(messages: &'a [Value], channel: &str) -> Option<&'a Value> {
    messages
        .iter()
        .find(|m| m.get("channel").and_then(Value::as_str) == Some(channel))
}

pub(super) fn successful(reply: &Value) -> bool {
    reply.get("successful").and_then(Value::as_bool) == Some(true)
}

pub(super) fn error_text(reply: &Value) -> String {
    reply
        .get("error")
        .and_then(Value::as_str)
        .unwrap_or("(no error text)")
        .to_string()
}

pub(super) fn advice_reconnect(reply: &Value) -> Option<&str> {
    reply.pointer("/advice/reconnect").and_then(Value::as_str)
}

/// `400::The replayId {N} you provided was invalid.  Please provide a valid ID, …`
pub(super) fn is_invalid_replay_error(error: &str) -> bool {
    error.contains("The replayId") && error.contains("was invalid")
}

/// `advice.timeout` and `advice.interval` (milliseconds) as waits, capped at
/// [`MAX_CONNECT_HOLD`] and [`MAX_ADVICE_INTERVAL`]; `None` where the reply gives none.
pub(super) fn capped_advice(reply: &Value) -> (Option<Duration>, Option<Duration>) {
    let millis = |key: &str, cap: Duration| {
        let asked = reply.pointer(key).and_then(Value::as_u64)?;
        let wait = Duration::from_millis(asked).min(cap);
        if wait < Duration::from_millis(asked) {
            tracing::warn!(
                advice = key,
                asked_ms = asked,
                capped_ms = wait.as_millis() as u64,
                "Streaming API advice capped"
            );
        }
        Some(wait)
    };
    (
        millis("/advice/timeout", MAX_CONNECT_HOLD),
        millis("/advice/interval", MAX_ADVICE_INTERVAL),
    )
}
