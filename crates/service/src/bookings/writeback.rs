//! Write-back: the output fields a booking gets ([`WriteBack`]) and their delivery by the
//! [`WriteBatcher`] in sObject Collections calls of up to 200 records. A record Salesforce
//! refuses (a validation rule, a locked record) is reported back per record; the others
//! land. It writes and reports; what to do about a refusal is the engine's.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::model::MeetingStatus;
use super::outcome::{BookingFailure, BookingFailureKind, PipelineError};
use crate::config::{BookingSettings, Settings};
use crate::ids::BookingId;
use crate::metrics::{Failure, Metrics};
use crate::salesforce::soql::RecordId;
use crate::salesforce::SalesforceClient;

/// Records per sObject Collections call (Salesforce's maximum).
pub const WRITES_PER_CALL: usize = 200;
/// While a batch is still running, write-backs wait at most this long to share a call:
/// long enough for a full call of 200 at Lark's pace of 50 applies a second (with 3 s the
/// 2,000-booking benchmark made 17 collection calls of about 150 where 11 of 200 do).
const WRITE_LINGER: Duration = Duration::from_millis(4500);
/// ... and no longer than this after the last one arrived, while only a few wait: when
/// the rest of the batch is slow (one booking retrying a failing call for seconds), the
/// others' links go out now (rule 14).
const WRITE_IDLE: Duration = Duration::from_millis(100);
/// Write-backs waiting, or bookings of the batch still being worked on, at which
/// [`WRITE_IDLE_BURST`] applies instead: a burst. (Counting those still being worked on
/// too: when Lark's minute window reopens, the first link would otherwise go out alone,
/// 100 ms before the next apply's.)
const BURST_PENDING: usize = 10;
/// The idle wait during a burst: longer than the gaps Lark's apply pacing makes (50
/// applies a second, released about once a second), so a burst still shares calls. With
/// 100 ms here the 2,000-booking benchmark made 96 collection calls instead of 16 (and as
/// many extra streaming polls for the change events of those writes).
const WRITE_IDLE_BURST: Duration = Duration::from_millis(1200);

/// Fields to write on one booking.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteBack {
    pub booking_id: BookingId,
    /// The meeting status the fields set, if they set one.
    pub status: Option<MeetingStatus>,
    pub fields: Map<String, Value>,
}

impl WriteBack {
    /// The status and reason fields.
    pub fn status(
        settings: &BookingSettings,
        id: &BookingId,
        status: MeetingStatus,
        reason: Option<&str>,
    ) -> WriteBack {
        let mut fields = Map::new();
        fields.insert(
            settings.meeting_status_field.clone(),
            json!(status.as_str()),
        );
        fields.insert(
            settings.meeting_error_field.clone(),
            reason.map_or(Value::Null, |r| json!(r)),
        );
        WriteBack {
            booking_id: id.clone(),
            status: Some(status),
            fields,
        }
    }

    /// All four output fields; `meeting` is (reservation id, link), None clears both.
    pub fn meeting(
        settings: &BookingSettings,
        id: &BookingId,
        meeting: Option<(&str, &str)>,
        status: MeetingStatus,
        reason: Option<&str>,
    ) -> WriteBack {
        let mut write = WriteBack::status(settings, id, status, reason);
        let (reservation_id, link) =
            meeting.map_or((Value::Null, Value::Null), |(r, u)| (json!(r), json!(u)));
        write
            .fields
            .insert(settings.reservation_field.clone(), reservation_id);
        write.fields.insert(settings.link_field.clone(), link);
        write
    }

    /// The reason written with a `Failed` status; None when the write sets another.
    pub fn failed_reason(&self, settings: &BookingSettings) -> Option<String> {
        (self.status == Some(MeetingStatus::Failed)).then(|| {
            self.fields
                .get(&settings.meeting_error_field)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        })
    }

    /// Folds a later write for the same booking into this one (the later one wins).
    fn absorb(&mut self, later: WriteBack) {
        self.fields.extend(later.fields);
        if later.status.is_some() {
            self.status = later.status;
        }
    }
}

/// A write-back Salesforce refused for one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedWrite {
    pub booking_id: BookingId,
    /// Salesforce's `statusCode: message` pairs, joined.
    pub reason: String,
}

impl RefusedWrite {
    /// The refusal as a summary's failure line.
    pub fn failure(&self) -> BookingFailure {
        BookingFailure {
            booking: self.booking_id.clone(),
            kind: BookingFailureKind::WriteRefused,
            reason: self.reason.clone(),
        }
    }
}

/// What write-backs came to, besides the records that landed as they were.
#[derive(Debug, Default)]
pub struct Written {
    /// Records Salesforce refused.
    pub refused: Vec<RefusedWrite>,
    /// Bookings a landed write made `Failed`, with the reason written on them.
    pub failed: Vec<BookingFailure>,
}

impl Written {
    /// Adds another call's refusals and `Failed` bookings to these.
    pub fn extend(&mut self, other: Written) {
        self.refused.extend(other.refused);
        self.failed.extend(other.failed);
    }
}

/// Sends write-backs to Salesforce in collection calls; cheap to clone.
#[derive(Clone)]
pub struct WriteBatcher {
    settings: Arc<Settings>,
    salesforce: SalesforceClient,
    metrics: Metrics,
}

impl WriteBatcher {
    /// Writes with `salesforce` to the booking object `settings` names.
    pub fn new(settings: Arc<Settings>, salesforce: SalesforceClient, metrics: Metrics) -> Self {
        WriteBatcher {
            settings,
            salesforce,
            metrics,
        }
    }

    /// Collects write-backs and sends them in collection calls of up to 200: at once when
    /// the batch is done (the channel closed) or 200 are waiting, else [`WRITE_IDLE`] (in
    /// a burst [`WRITE_IDLE_BURST`]) after the last one came in or [`WRITE_LINGER`] after
    /// the first, whichever is sooner. `busy` counts the batch's bookings still being
    /// worked on. Adds the records Salesforce refused and the bookings written as `Failed`
    /// to `written` — also those of calls that landed before one failed (then the error is
    /// returned).
    pub async fn flush(
        &self,
        mut rx: mpsc::Receiver<WriteBack>,
        busy: &AtomicUsize,
        written: &mut Written,
    ) -> Result<(), PipelineError> {
        let mut pending: Vec<WriteBack> = Vec::new();
        let mut first_at: Option<Instant> = None;
        let mut deadline: Option<Instant> = None;
        loop {
            let next = match deadline {
                Some(d) => tokio::select! {
                    w = rx.recv() => w.map(Some),
                    _ = tokio::time::sleep_until(d) => Some(None),
                },
                None => rx.recv().await.map(Some),
            };
            match next {
                Some(Some(w)) => {
                    match pending.iter_mut().find(|p| p.booking_id == w.booking_id) {
                        Some(p) => p.absorb(w),
                        None => pending.push(w),
                    }
                    let now = Instant::now();
                    let first = *first_at.get_or_insert(now);
                    let burst = pending.len().max(busy.load(Ordering::Relaxed));
                    let idle = if burst >= BURST_PENDING {
                        WRITE_IDLE_BURST
                    } else {
                        WRITE_IDLE
                    };
                    deadline = Some((first + WRITE_LINGER).min(now + idle));
                    if pending.len() >= WRITES_PER_CALL {
                        written.extend(self.write(std::mem::take(&mut pending)).await?);
                        (first_at, deadline) = (None, None);
                    }
                }
                Some(None) => {
                    written.extend(self.write(std::mem::take(&mut pending)).await?);
                    (first_at, deadline) = (None, None);
                }
                None => {
                    written.extend(self.write(std::mem::take(&mut pending)).await?);
                    return Ok(());
                }
            }
        }
    }

    /// One collections call; a refused record is logged, counted and returned, and so is
    /// a booking written as `Failed`. A landed write carrying a link ends the booking's
    /// latency measurement.
    pub async fn write(&self, writes: Vec<WriteBack>) -> Result<Written, PipelineError> {
        if writes.is_empty() {
            return Ok(Written::default());
        }
        let b = &self.settings.salesforce.booking;
        let object = &b.object;
        let ids: Vec<BookingId> = writes.iter().map(|w| w.booking_id.clone()).collect();
        // What each write says, read before the fields are handed over.
        let said: Vec<(bool, Option<String>)> = writes
            .iter()
            .map(|w| {
                let linked = w
                    .fields
                    .get(&b.link_field)
                    .and_then(Value::as_str)
                    .is_some_and(|l| !l.is_empty());
                (linked, w.failed_reason(b))
            })
            .collect();
        let records: Vec<(RecordId, Map<String, Value>)> = writes
            .into_iter()
            .map(|w| (w.booking_id.record_id().clone(), w.fields))
            .collect();
        let results = self.salesforce.update_many(object, records).await?;
        let mut written = Written::default();
        for ((id, r), (linked, failed)) in ids.into_iter().zip(results.iter()).zip(said) {
            if r.success {
                if linked {
                    self.metrics.link_written(&id);
                }
                if let Some(reason) = failed {
                    written.failed.push(BookingFailure {
                        booking: id.clone(),
                        kind: BookingFailureKind::MeetingFailed,
                        reason,
                    });
                }
                continue;
            }
            self.metrics.failure(Failure::SalesforceWriteRejected);
            let codes: Vec<String> = r
                .errors
                .iter()
                .map(|e| format!("{}: {}", e.status_code, e.message))
                .collect();
            tracing::error!(booking = %id, errors = ?codes, "Salesforce rejected the booking write-back");
            written.refused.push(RefusedWrite {
                booking_id: id,
                reason: codes.join("; "),
            });
        }
        Ok(written)
    }
}
