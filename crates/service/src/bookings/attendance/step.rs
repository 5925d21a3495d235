//! [`Attendance`]: the processor's attendance work, in its turn (rules 29 and 30). A turn
//! has two steps:
//!
//! - [`Attendance::take_events`] — the recorded events not yet processed, oldest first: each
//!   is matched to its booking by meeting number (the attendance rows, then the reservation
//!   journal) and applied to the booking's row; the rows and the events' "processed" are
//!   saved in one transaction (so each event is applied exactly once, across crashes).
//! - [`Attendance::run_due`] — what the rows' timers say is due: the participants call after
//!   an end, the post-end lookup of a session whose end was not heard of, the no-show check,
//!   and the owed write-backs (one sObject Collections call for all of them).
//!
//! The processor calls [`Attendance::turn`] (both, in that order) when the sink wakes it
//! or the rows' timer ([`Attendance::next_due`]) fires. Everything it decides comes from
//! `plan`; here are only the calls and the bookkeeping.
//! A Lark call or a write that fails waits on its row's own backoff; nothing here holds
//! up the booking pipeline for long (a turn takes at most [`DUE_PER_TURN`] rows, of which
//! [`LARK_ROWS_PER_TURN`] need Lark, [`LARK_AT_ONCE`] at a time, each bounded by
//! [`LOOKUP_TIMEOUT`]), and the processor gives stream batches their turn first.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde_json::{Map, Value};
use tokio::sync::Notify;

use super::lookup::{LookupError, MeetingLookup};
use super::no_show::NoShowNotices;
use super::plan::{
    self, apply_details, apply_event, apply_lookup, apply_presence, backoff, due, owed_write, plus,
    refresh, session_window_start, settle_details, Applied, Timing, ALERT_RESEND_WINDOW,
    DETAILS_ATTEMPTS, LOOKUP_GIVE_UP, WRITE_ATTEMPTS,
};
use super::record::RecordedEvent;
use super::sink::AttendanceSink;
use crate::bookings::model::Booking;
use crate::bookings::notices::BookingAlerts;
use crate::bookings::outcome::PipelineError;
use crate::bookings::reader::BookingReader;
use crate::bookings::writeback::{WriteBack, WriteBatcher, Written};
use crate::config::Settings;
use crate::ids::BookingId;
use crate::lark::LarkClient;
use crate::metrics::{names, Metrics};
use crate::salesforce::SalesforceClient;
use crate::store::{AttendanceEntry, Owed, Store, StoredLarkEvent};
use crate::tokens::TokenService;

/// How long attendance waits after a failed turn.
pub const HOLD_AFTER_FAILURE: Duration = Duration::from_secs(5);
/// Recorded events taken at once.
const EVENTS_PER_TURN: usize = 500;
/// Rows whose work is due taken at once; the rest come in the next turn.
pub const DUE_PER_TURN: usize = 50;
/// Lark calls in flight at once within a turn.
pub const LARK_AT_ONCE: usize = 4;
/// Rows whose work needs Lark (the participants call, a lookup, a no-show check) taken in
/// one turn: with [`LOOKUP_TIMEOUT`] a turn holds the processor for at most about half a
/// minute however slow Lark is; the rest stay due for the next turn.
pub const LARK_ROWS_PER_TURN: usize = 8;
/// Longest one row's Lark work may take, retries included (then it counts as failed and
/// waits on its backoff).
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(15);
/// Recorded events are kept this long (design §3 rule 28).
const EVENTS_KEPT: chrono::Duration = chrono::Duration::days(7);
/// Attendance rows are kept this long after their session ended, with nothing owed (a
/// recording can come hours after the end).
const ROWS_KEPT: chrono::Duration = chrono::Duration::days(7);
/// How often old events and rows are pruned.
const PRUNE_EVERY: chrono::Duration = chrono::Duration::hours(1);
/// Open rows whose due times are recomputed at start (the timings may have changed).
const RECOMPUTE_LIMIT: usize = 20_000;

/// What attendance is built from: the engine's parts.
pub struct AttendanceParts {
    /// The settings (attendance, alerts, the booking's fields).
    pub settings: Arc<Settings>,
    /// Events and attendance rows.
    pub store: Store,
    /// Meetings calls and the trainers' messages.
    pub lark: LarkClient,
    /// The write-back of the attendance fields.
    pub salesforce: SalesforceClient,
    /// Hosts' user tokens where Lark refuses the app.
    pub tokens: TokenService,
    /// Bookings read fresh for the no-show check.
    pub reader: BookingReader,
    /// The admins' no-show alert.
    pub alerts: BookingAlerts,
    /// Counters.
    pub metrics: Metrics,
}

/// The attendance work of the processor.
pub struct Attendance {
    settings: Arc<Settings>,
    timing: Timing,
    store: Store,
    reader: BookingReader,
    writer: WriteBatcher,
    lookup: MeetingLookup,
    notices: NoShowNotices,
    metrics: Metrics,
    wake: Arc<Notify>,
    pruned_at: Mutex<Option<DateTime<Utc>>>,
    /// After a failed turn: no turn before this.
    hold: Mutex<Option<tokio::time::Instant>>,
}

impl Attendance {
    /// Attendance over the engine's parts. Recorded events left from before a restart are
    /// processed at the processor's first turn (the wake starts set).
    pub fn new(parts: AttendanceParts) -> Attendance {
        let AttendanceParts {
            settings,
            store,
            lark,
            salesforce,
            tokens,
            reader,
            alerts,
            metrics,
        } = parts;
        let wake = Arc::new(Notify::new());
        wake.notify_one();
        Attendance {
            timing: Timing::of(&settings),
            writer: WriteBatcher::new(settings.clone(), salesforce, metrics.clone()),
            lookup: MeetingLookup::new(lark.clone(), tokens),
            notices: NoShowNotices::new(lark, alerts, metrics.clone()),
            settings,
            store,
            reader,
            metrics,
            wake,
            pruned_at: Mutex::new(None),
            hold: Mutex::new(None),
        }
    }

    /// The sink the long connection records into; it wakes this attendance.
    pub fn sink(&self) -> AttendanceSink {
        AttendanceSink::new(self.store.clone(), self.wake.clone(), self.metrics.clone())
    }

    /// Notified when events were recorded (the processor waits on it).
    pub fn wake(&self) -> &Notify {
        &self.wake
    }

    /// Recomputes every open row's due time with the current timings (a restart may have
    /// changed `attendance.grace` or `alerts.no_show_after`).
    pub fn recompute(&self) -> Result<(), PipelineError> {
        let now = Utc::now();
        let b = &self.settings.salesforce.booking;
        let mut changed = Vec::new();
        for mut row in self.store.open_attendance(RECOMPUTE_LIMIT)? {
            let before = row.due_at;
            refresh(&mut row, b, &self.timing, now);
            if row.due_at != before {
                changed.push(row);
            }
        }
        Ok(self.store.save_attendance(&changed, &[], now)?)
    }

    /// When the next turn is due, if any: the soonest row's work, or the end of a hold
    /// after a failed turn.
    pub fn next_due(&self) -> Option<tokio::time::Instant> {
        if let Some(hold) = *self.hold.lock().unwrap_or_else(|p| p.into_inner()) {
            return Some(hold);
        }
        let at = match self.store.next_attendance_due() {
            Ok(at) => at?,
            Err(e) => {
                tracing::error!(error = %e, "could not read attendance's next due time");
                return None;
            }
        };
        Some(crate::retry::timer_at(at))
    }

    fn count_event(&self, outcome: &str) {
        self.metrics
            .inc(names::ATTENDANCE_EVENTS, &[("outcome", outcome)]);
    }

    fn count_lookup(&self, kind: &str, outcome: &str) {
        self.metrics.inc(
            names::ATTENDANCE_LOOKUPS,
            &[("kind", kind), ("outcome", outcome)],
        );
    }

    /// One attendance turn of the processor (woken by the sink or by its timer): the
    /// recorded events not yet processed, then what is due. A failure (the store, or
    /// Salesforce for a no-show check's read) is logged and holds attendance for
    /// [`HOLD_AFTER_FAILURE`], so a failing turn never spins; nothing is lost, as what was
    /// not done stays recorded or due.
    pub async fn turn(&self) {
        let result = match self.take_events() {
            Ok(_) => self.run_due().await,
            Err(e) => Err(e),
        };
        let mut hold = self.hold.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(()) => *hold = None,
            Err(e) => {
                tracing::warn!(error = %e, "attendance turn failed; trying again shortly");
                *hold = Some(tokio::time::Instant::now() + HOLD_AFTER_FAILURE);
            }
        }
    }

    /// Applies the recorded events not yet processed, oldest first; returns how many.
    pub fn take_events(&self) -> Result<usize, PipelineError> {
        let mut total = 0;
        loop {
            let events = self.store.unprocessed_lark_events(EVENTS_PER_TURN)?;
            if events.is_empty() {
                break;
            }
            let now = Utc::now();
            let mut rows: Vec<AttendanceEntry> = Vec::new();
            let mut done: Vec<(String, &str)> = Vec::new();
            for event in &events {
                let outcome = self.take_event(event, &mut rows, now)?;
                self.count_event(outcome);
                done.push((event.event_id.clone(), outcome));
            }
            let b = &self.settings.salesforce.booking;
            for row in &mut rows {
                refresh(row, b, &self.timing, now);
            }
            self.store.save_attendance(&rows, &done, now)?;
            total += events.len();
            if events.len() < EVENTS_PER_TURN {
                break;
            }
        }
        Ok(total)
    }

    /// Matches one event to its booking's row (taken into `rows`) and applies it; returns
    /// its outcome.
    #[tracing::instrument(name = "lark_event", skip_all, fields(event_id = %event.event_id))]
    fn take_event(
        &self,
        event: &StoredLarkEvent,
        rows: &mut Vec<AttendanceEntry>,
        now: DateTime<Utc>,
    ) -> Result<&'static str, PipelineError> {
        if !self.timing.uses_events() {
            return Ok("unused");
        }
        let Some(e) = RecordedEvent::decode(&event.body) else {
            tracing::warn!(kind = %event.kind, "a recorded Lark event could not be read; ignored");
            return Ok("undecodable");
        };
        let Some(index) = self.row_of(&e.meeting_no, rows)? else {
            tracing::info!(meeting_no = %e.meeting_no, event_type = %event.event_type, "a meeting event for no booking's reservation; acknowledged and ignored");
            return Ok("not_ours");
        };
        let row = &mut rows[index];
        let _span = tracing::info_span!("booking", booking = %row.booking_id).entered();
        if row.closed {
            tracing::info!(event_type = %event.event_type, "a meeting event for a booking that no longer has a meeting; ignored");
            return Ok("cancelled");
        }
        let applied = apply_event(row, &e, now);
        if applied == Applied::BeforeSession {
            tracing::info!(event_type = %event.event_type, "a meeting event from before the session's window; ignored");
        }
        Ok(applied.outcome())
    }

    /// The index in `rows` of the row of the booking whose meeting has this number:
    /// taken from `rows`, the attendance rows or the reservation journal.
    fn row_of(
        &self,
        meeting_no: &str,
        rows: &mut Vec<AttendanceEntry>,
    ) -> Result<Option<usize>, PipelineError> {
        if let Some(i) = rows
            .iter()
            .position(|r| r.meeting_no.as_deref() == Some(meeting_no))
        {
            return Ok(Some(i));
        }
        if let Some(row) = self.store.attendance_by_meeting_no(meeting_no)? {
            if let Some(i) = rows.iter().position(|r| r.booking_id == row.booking_id) {
                return Ok(Some(i));
            }
            rows.push(row);
            return Ok(Some(rows.len() - 1));
        }
        let Some(journal) = self.store.reservation_by_meeting_no(meeting_no)? else {
            return Ok(None);
        };
        if let Some(i) = rows.iter().position(|r| r.booking_id == journal.booking_id) {
            rows[i].meeting_no = Some(meeting_no.to_string());
            return Ok(Some(i));
        }
        let mut row = self
            .store
            .attendance(std::slice::from_ref(&journal.booking_id))?
            .pop()
            .unwrap_or_else(|| {
                // A booking not processed since attendance began: its end from the journal
                // (the end Lark holds) until the engine next reads it.
                let mut row = AttendanceEntry::new(journal.booking_id.clone());
                row.scheduled_end = Some(journal.end_time);
                row
            });
        row.meeting_no = Some(meeting_no.to_string());
        row.trainer_id = Some(journal.trainer_id.clone());
        rows.push(row);
        Ok(Some(rows.len() - 1))
    }

    /// Does what the rows' timers say is due, then saves them.
    pub async fn run_due(&self) -> Result<(), PipelineError> {
        self.prune()?;
        let now = Utc::now();
        let mut rows = self.store.due_attendance(now, DUE_PER_TURN)?;
        if rows.is_empty() {
            return Ok(());
        }
        let b = &self.settings.salesforce.booking;
        self.details(&mut rows, now).await;
        self.lookups(&mut rows, now).await;
        for row in &mut rows {
            refresh(row, b, &self.timing, now);
        }
        self.store.save_attendance(&rows, &[], now)?;
        self.no_show_checks(&mut rows, now).await?;
        self.writes(&mut rows, now).await;
        let now = Utc::now();
        for row in &mut rows {
            refresh(row, b, &self.timing, now);
        }
        Ok(self.store.save_attendance(&rows, &[], now)?)
    }

    /// Forgets old events and rows, at most once per [`PRUNE_EVERY`].
    fn prune(&self) -> Result<(), PipelineError> {
        let now = Utc::now();
        {
            let mut at = self.pruned_at.lock().unwrap_or_else(|p| p.into_inner());
            if at.is_some_and(|t| now - t < PRUNE_EVERY) {
                return Ok(());
            }
            *at = Some(now);
        }
        self.store.prune_lark_events(now - EVENTS_KEPT)?;
        self.store.prune_attendance(now - ROWS_KEPT)?;
        Ok(())
    }

    /// The participants calls that are due (after an end): the count and the guest.
    async fn details(&self, rows: &mut [AttendanceEntry], now: DateTime<Utc>) {
        let timing = self.timing;
        let wanted: Vec<usize> = (0..rows.len())
            .filter(|&i| due(&rows[i], &timing, now).details)
            .take(LARK_ROWS_PER_TURN)
            .collect();
        let calls = futures::stream::iter(wanted.into_iter().map(|i| {
            let row = rows[i].clone();
            async move {
                let result = match row.meeting_id.as_deref() {
                    Some(id) => Some(bounded(self.lookup.meeting(&row, id)).await),
                    None => None,
                };
                (i, result)
            }
        }))
        .buffer_unordered(LARK_AT_ONCE)
        .collect::<Vec<_>>()
        .await;
        for (i, result) in calls {
            let row = &mut rows[i];
            let _span = tracing::info_span!("booking", booking = %row.booking_id).entered();
            match result {
                Some(Ok(detail)) => {
                    apply_details(row, &detail);
                    self.count_lookup("details", "done");
                }
                None => {
                    tracing::info!("the meeting's id is not known; its end is written with what the events said");
                    settle_details(row);
                    self.count_lookup("details", "given_up");
                }
                Some(Err(e)) => {
                    let attempts = row.details.attempts + 1;
                    if e.is_transient() && attempts < DETAILS_ATTEMPTS {
                        tracing::warn!(error = %e, attempts, "the participants call failed; trying again later");
                        row.details = Owed {
                            at: Some(plus(now, backoff(attempts))),
                            attempts,
                        };
                        self.count_lookup("details", "failed");
                    } else {
                        tracing::warn!(error = %e, attempts, "the participants call is given up; the end is written with what the events said");
                        settle_details(row);
                        self.count_lookup("details", "given_up");
                    }
                }
            }
        }
    }

    /// The post-end lookups that are due (rule 29): sessions whose end was not heard of.
    async fn lookups(&self, rows: &mut [AttendanceEntry], now: DateTime<Utc>) {
        let timing = self.timing;
        let wanted: Vec<usize> = (0..rows.len())
            .filter(|&i| due(&rows[i], &timing, now).lookup)
            .take(LARK_ROWS_PER_TURN)
            .collect();
        let calls = futures::stream::iter(wanted.into_iter().map(|i| {
            let row = rows[i].clone();
            async move { (i, bounded(self.session_meetings(&row, now)).await) }
        }))
        .buffer_unordered(LARK_AT_ONCE)
        .collect::<Vec<_>>()
        .await;
        for (i, result) in calls {
            let row = &mut rows[i];
            let _span = tracing::info_span!("booking", booking = %row.booking_id).entered();
            match result {
                Ok(Some(meetings)) => {
                    let found = apply_lookup(row, &meetings, &timing, now);
                    tracing::info!(
                        outcome = found.label(),
                        meetings = meetings.len(),
                        "post-end lookup"
                    );
                    self.count_lookup("post_end", found.label());
                }
                Ok(None) => {
                    tracing::warn!("post-end lookup: the meeting's number is not known; given up");
                    row.lookup_done = true;
                    self.count_lookup("post_end", "given_up");
                }
                Err(e) => {
                    let attempts = row.lookup.attempts + 1;
                    let end = row.scheduled_end.unwrap_or(now);
                    if e.is_transient() && now < end + LOOKUP_GIVE_UP {
                        tracing::warn!(error = %e, attempts, "post-end lookup failed; trying again later");
                        row.lookup = Owed {
                            at: Some(plus(now, backoff(attempts))),
                            attempts,
                        };
                        self.count_lookup("post_end", "failed");
                    } else {
                        tracing::warn!(error = %e, attempts, "post-end lookup given up");
                        row.lookup_done = true;
                        self.count_lookup("post_end", "given_up");
                    }
                }
            }
        }
    }

    /// The session's meetings in Lark (None when the meeting number is not known).
    async fn session_meetings(
        &self,
        row: &AttendanceEntry,
        now: DateTime<Utc>,
    ) -> Result<Option<Vec<crate::lark::MeetingDetail>>, LookupError> {
        let Some(meeting_no) = row.meeting_no.as_deref() else {
            return Ok(None);
        };
        let from = session_window_start(row)
            .or(row.scheduled_end.map(|e| e - chrono::Duration::days(1)))
            .unwrap_or(now - chrono::Duration::days(1));
        Ok(Some(self.lookup.session(row, meeting_no, from, now).await?))
    }

    /// The no-show checks that are due (rule 30): read the bookings fresh, ask Lark whether
    /// the host is in after all, and otherwise claim, message and alert.
    async fn no_show_checks(
        &self,
        rows: &mut [AttendanceEntry],
        now: DateTime<Utc>,
    ) -> Result<(), PipelineError> {
        let Some(after) = self.timing.no_show_after else {
            return Ok(());
        };
        let timing = self.timing;
        let wanted: Vec<usize> = (0..rows.len())
            .filter(|&i| due(&rows[i], &timing, now).no_show_check)
            .take(LARK_ROWS_PER_TURN)
            .collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let ids: Vec<BookingId> = wanted.iter().map(|&i| rows[i].booking_id.clone()).collect();
        let bookings = self.reader.by_ids(&ids).await?;
        let b = &self.settings.salesforce.booking;
        for i in wanted {
            let row = &mut rows[i];
            let Some(booking) = bookings.iter().find(|bk| bk.id == row.booking_id) else {
                continue;
            };
            self.no_show_check(row, booking, after, now).await;
            refresh(row, b, &timing, now);
            // The claim and the delivery are remembered at once, each booking on its own.
            self.store
                .save_attendance(std::slice::from_ref(row), &[], now)?;
        }
        Ok(())
    }

    #[tracing::instrument(name = "no_show_check", skip_all, fields(booking = %row.booking_id))]
    async fn no_show_check(
        &self,
        row: &mut AttendanceEntry,
        booking: &Booking,
        after: Duration,
        now: DateTime<Utc>,
    ) {
        let b = &self.settings.salesforce.booking;
        let link = booking.link.clone();
        if let Some(claimed) = row.alert_claimed_at {
            // The process died between the claim and the end of the delivery.
            row.alert_checked = true;
            row.alert_done = true;
            if now - claimed < ALERT_RESEND_WINDOW && booking.start.is_some() {
                tracing::info!("finishing a no-show alert claimed before a restart");
                let start = booking.start.unwrap_or(now);
                let sent = self
                    .notices
                    .deliver(booking, b, start, after, link.as_deref())
                    .await;
                tracing::info!(?sent, "no-show alert delivered after a restart");
            }
            return;
        }
        let relevant = booking.is_live_remote(b)
            && booking.shows_a_meeting()
            && booking.trainer.is_some()
            && row.scheduled_end.is_some_and(|end| now < end);
        if !relevant {
            row.alert_checked = true;
            self.metrics
                .inc(names::NO_SHOWS, &[("outcome", "not_relevant")]);
            return;
        }
        if booking.start != row.scheduled_start || booking.end != row.scheduled_end {
            // Rescheduled since the engine last read it: timed again from the fresh read.
            let s = plan::SessionTimes {
                booking_id: booking.id.clone(),
                start: booking.start,
                end: booking.end,
                live: true,
            };
            plan::note_schedule(row, &s);
            return;
        }
        // The events may have missed the host's join (a connection down): ask Lark first.
        if let (Some(meeting_no), Some(window)) =
            (row.meeting_no.clone(), session_window_start(row))
        {
            match bounded(self.lookup.session(row, &meeting_no, window, now)).await {
                Ok(meetings) => {
                    self.count_lookup("presence", "done");
                    if apply_presence(row, &meetings) {
                        tracing::info!(
                            "the host is in the meeting (Lark says so; its join event was missed)"
                        );
                        row.alert_checked = true;
                        self.metrics
                            .inc(names::NO_SHOWS, &[("outcome", "host_present")]);
                        return;
                    }
                }
                Err(e) => {
                    self.count_lookup("presence", "failed");
                    tracing::warn!(error = %e, "could not ask Lark whether the host is in; alerting on the events alone");
                }
            }
        }
        match self.store.claim_no_show_alert(&row.booking_id, now) {
            Ok(true) => {}
            Ok(false) => {
                row.alert_checked = true;
                return;
            }
            Err(e) => {
                // Nothing is sent without a claim; the check comes again at the next turn.
                tracing::error!(error = %e, "could not claim the no-show alert; not sending");
                return;
            }
        }
        row.alert_claimed_at = Some(now);
        row.alert_checked = true;
        let start = row.scheduled_start.unwrap_or(now);
        tracing::info!("the host has not joined; messaging the trainer and alerting admins");
        let sent = self
            .notices
            .deliver(booking, b, start, after, link.as_deref())
            .await;
        row.alert_done = true;
        if sent.message || sent.alert {
            self.metrics.inc(names::NO_SHOWS, &[("outcome", "alerted")]);
        }
    }

    /// The owed write-backs that are due, in one sObject Collections call (up to 200 each).
    async fn writes(&self, rows: &mut [AttendanceEntry], now: DateTime<Utc>) {
        let b = &self.settings.salesforce.booking;
        let timing = self.timing;
        let mut batch: Vec<(usize, Map<String, Value>)> = Vec::new();
        for (i, row) in rows.iter().enumerate() {
            if !due(row, &timing, now).write {
                continue;
            }
            if let Some(fields) = owed_write(row, b, &timing) {
                batch.push((i, fields));
            }
        }
        if batch.is_empty() {
            return;
        }
        let writes: Vec<WriteBack> = batch
            .iter()
            .map(|(i, fields)| WriteBack {
                booking_id: rows[*i].booking_id.clone(),
                status: None,
                fields: fields.clone(),
            })
            .collect();
        match self.writer.write(writes).await {
            Ok(Written { refused, .. }) => {
                for (i, fields) in batch {
                    let row = &mut rows[i];
                    match refused.iter().find(|r| r.booking_id == row.booking_id) {
                        None => {
                            plan::mark_written(row, &fields);
                            self.metrics
                                .inc(names::ATTENDANCE_WRITES, &[("outcome", "written")]);
                            tracing::info!(booking = %row.booking_id, fields = ?fields.keys().collect::<Vec<_>>(), "attendance written");
                        }
                        Some(r) => {
                            self.metrics
                                .inc(names::ATTENDANCE_WRITES, &[("outcome", "refused")]);
                            tracing::warn!(booking = %row.booking_id, reason = %r.reason, "Salesforce refused the attendance fields");
                            self.write_later(row, now);
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "attendance write-back failed; trying again later");
                for (i, _) in batch {
                    self.metrics
                        .inc(names::ATTENDANCE_WRITES, &[("outcome", "failed")]);
                    self.write_later(&mut rows[i], now);
                }
            }
        }
    }

    /// A write that did not land waits on its backoff; after [`WRITE_ATTEMPTS`] it waits
    /// for the booking's next event or lookup instead (`plan` re-arms it then).
    fn write_later(&self, row: &mut AttendanceEntry, now: DateTime<Utc>) {
        let attempts = row.write.attempts + 1;
        if attempts >= WRITE_ATTEMPTS {
            tracing::error!(booking = %row.booking_id, attempts, "attendance write given up until the meeting's next news");
            row.write = Owed { at: None, attempts };
            return;
        }
        row.write = Owed {
            at: Some(plus(now, backoff(attempts))),
            attempts,
        };
    }
}

/// One row's Lark work, bounded by [`LOOKUP_TIMEOUT`].
async fn bounded<T>(
    work: impl std::future::Future<Output = Result<T, LookupError>>,
) -> Result<T, LookupError> {
    tokio::time::timeout(LOOKUP_TIMEOUT, work)
        .await
        .unwrap_or(Err(LookupError::Lark(crate::lark::LarkError::Timeout)))
}
