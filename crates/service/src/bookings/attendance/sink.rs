//! [`AttendanceSink`]: where the long connection hands each event (rule 28). It records
//! the event in the store — a local, fsynced write, well inside Lark's 3 s — and wakes the
//! processor; the event's work happens in the processor's turn, never here. Only once the
//! record is durable does the connection acknowledge the event: a process killed before
//! that gets the event again from Lark, and one killed after finds it in the store.
//!
//! A redelivered `event_id` is acknowledged and changes nothing. An event nothing will be
//! done with (another type, a VC event without a meeting number) is recorded as processed
//! at once, logged once and counted.

use std::sync::Arc;

use chrono::Utc;
use tokio::sync::Notify;

use super::record::Recordable;
use crate::lark::events::{EventSink, LarkEvent, SinkError};
use crate::metrics::{names, Metrics};
use crate::store::{EventRecorded, NewLarkEvent, Store};

/// Records Lark's events and wakes the processor; cheap to clone.
#[derive(Clone)]
pub struct AttendanceSink {
    store: Store,
    wake: Arc<Notify>,
    metrics: Metrics,
}

impl AttendanceSink {
    /// Records into `store`, waking whoever waits on `wake`.
    pub fn new(store: Store, wake: Arc<Notify>, metrics: Metrics) -> AttendanceSink {
        AttendanceSink {
            store,
            wake,
            metrics,
        }
    }

    fn count(&self, outcome: &str) {
        self.metrics
            .inc(names::ATTENDANCE_EVENTS, &[("outcome", outcome)]);
    }
}

impl EventSink for AttendanceSink {
    #[tracing::instrument(name = "lark_event", skip_all, fields(event_id = %event.header.event_id))]
    async fn record(&self, event: LarkEvent) -> Result<(), SinkError> {
        let recordable = Recordable::of(&event);
        let (kind, meeting_no, body, settled) = match &recordable {
            Recordable::Meeting(e) => (
                event.kind.label(),
                Some(e.meeting_no.as_str()),
                e.encode(),
                None,
            ),
            Recordable::Ignored(outcome) => {
                (event.kind.label(), None, String::new(), Some(*outcome))
            }
        };
        let new = NewLarkEvent {
            event_id: &event.header.event_id,
            event_type: &event.header.event_type,
            kind,
            meeting_no,
            body: &body,
            settled,
        };
        match self.store.record_lark_event(&new, Utc::now()) {
            Ok(EventRecorded::New) => {
                match settled {
                    Some(outcome) => {
                        tracing::info!(event_type = %event.header.event_type, outcome, "a Lark event the service does not use; acknowledged and ignored");
                        self.count(outcome);
                    }
                    None => self.wake.notify_one(),
                }
                Ok(())
            }
            Ok(EventRecorded::Duplicate) => {
                tracing::debug!("a Lark event recorded before (redelivered); acknowledged again");
                self.count("duplicate");
                Ok(())
            }
            Err(e) => {
                // Not acknowledged: Lark pushes it again.
                tracing::error!(error = %e, "could not record a Lark event; Lark will send it again");
                Err(SinkError(format!("the store refused the event: {e}")))
            }
        }
    }
}
