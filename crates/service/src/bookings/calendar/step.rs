//! Carrying the calendar plan out (design §3 rule 20): after a booking's meeting is
//! settled, the event that goes with it — created with the host's user token and an
//! idempotency key from the booking and the reservation, its times and text patched on a
//! change, deleted (with the old host's token) on a trainer change, a cancellation or a
//! release — journalled the moment Lark answers. The event id rides in the write-back the
//! meeting already makes; a calendar failure never costs the meeting.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use super::plan::{plan_event, wanted_event, EventPlan, WantedEvent};
use super::primary::{LookupError, PrimaryCalendars};
use crate::bookings::host_token::HostTokens;
use crate::bookings::model::{Booking, MeetingStatus, CALENDAR_REASON};
use crate::bookings::outcome::PipelineError;
use crate::bookings::owed::OwedDeletions;
use crate::bookings::writeback::WriteBack;
use crate::config::Settings;
use crate::ids::{BookingId, TrainerId};
use crate::lark::calendar::{idempotency_key, EventTime, NewCalendarEvent};
use crate::lark::{LarkClient, LarkError};
use crate::metrics::{names, Failure, Metrics};
use crate::salesforce::values::clip;
use crate::store::{CalendarEventEntry, OwedItem, Store};
use crate::tokens::trainer::TrainerRecord;
use crate::tokens::AccessToken;

/// Lark's code for a user access token that lacks the scope a call needs: "the user access
/// token has not been granted the required user authorization… request user
/// re-authorization" (open.larkoffice.com/document/faq/trouble-shooting/
/// how-to-resolve-error-99991679). Only a new consent fixes it, so it is not retried.
pub const MISSING_USER_SCOPE: i64 = 99991679;

/// What the calendar step came to for one booking.
#[derive(Debug)]
pub struct CalendarDone {
    /// The write-back, with the event field (and the error field) folded in.
    pub write: Option<WriteBack>,
    /// Why the step must be tried again (on the booking's own backoff), if it must.
    pub retry: Option<String>,
}

/// A calendar call that failed, and whether it is the trainer's missing consent.
enum StepError {
    /// The trainer's token lacks the calendar scopes (99991679).
    MissingScope,
    /// Lark (or the client, before sending) refused the request itself — e.g. a guest
    /// email that is not one: shown on the booking, not retried (the same request would
    /// be refused again; the next change of the booking tries anew).
    Refused(LarkError),
    Lark(LarkError),
    Pipeline(PipelineError),
}

impl From<PipelineError> for StepError {
    fn from(e: PipelineError) -> StepError {
        StepError::Pipeline(e)
    }
}

impl From<crate::store::StoreError> for StepError {
    fn from(e: crate::store::StoreError) -> StepError {
        StepError::Pipeline(e.into())
    }
}

fn lark_step(e: LarkError) -> StepError {
    match e {
        LarkError::PermissionDenied { code, .. } if code == MISSING_USER_SCOPE => {
            StepError::MissingScope
        }
        e @ LarkError::InvalidParams { .. } => StepError::Refused(e),
        other => StepError::Lark(other),
    }
}

/// Carries out the calendar step after the meeting step; borrowed per batch.
pub struct CalendarStep<'a> {
    pub settings: &'a Settings,
    pub store: &'a Store,
    pub lark: &'a LarkClient,
    pub hosts: &'a HostTokens,
    pub calendars: &'a PrimaryCalendars,
    pub owed: &'a OwedDeletions,
    pub metrics: &'a Metrics,
    /// Whether the booking object has the event field (describe); without it the id is
    /// kept in the journal only.
    pub field_present: bool,
}

impl CalendarStep<'_> {
    /// Brings the booking's event in step with its meeting, folding what to write into
    /// `write`. Only the store failing is an error; Lark failures come back as `retry`.
    pub async fn follow(
        &self,
        booking: &Booking,
        write: Option<WriteBack>,
    ) -> Result<CalendarDone, PipelineError> {
        let b = &self.settings.salesforce.booking;
        let id = &booking.id;
        let status = write
            .as_ref()
            .and_then(|w| w.status)
            .or(booking.meeting_status);
        let entry = self.store.calendar_event(id)?;
        if !self.settings.calendar.enabled && entry.is_none() {
            return Ok(CalendarDone { write, retry: None });
        }
        let reservation = self.store.reservation(id)?;
        let mut wanted = wanted_event(self.settings, booking, status, reservation.as_ref());
        let mut missing_scope = false;
        if let Some(w) = &wanted {
            if self.store.trainer_calendar(&w.host_id)?.lacks_scope {
                missing_scope = true;
                // Nothing can be made; an event already there stays as it is.
                wanted = None;
            }
        }
        let plan = if missing_scope {
            EventPlan::Nothing
        } else {
            plan_event(wanted, entry)
        };
        let result = self.carry_out(booking, plan).await;
        let mut retry = true;
        let reason = match result {
            Ok(()) => None,
            Err(StepError::Pipeline(e @ PipelineError::Store(_))) => return Err(e),
            Err(StepError::MissingScope) => {
                missing_scope = true;
                None
            }
            Err(StepError::Refused(e)) => {
                retry = false;
                Some(e.to_string())
            }
            Err(StepError::Lark(e)) => Some(e.to_string()),
            Err(StepError::Pipeline(e)) => Some(e.to_string()),
        };
        if missing_scope {
            self.scope_missing(booking).await?;
        }
        let mut write = write;
        // The event field: what the journal now says.
        let shown = booking
            .topic_values
            .get(&b.calendar_event_field)
            .and_then(Value::as_str)
            .map(str::to_string);
        let journalled = self
            .store
            .calendar_event(id)?
            .map(|e| e.event_id)
            .filter(|_| !booking.is_deleted);
        let field_wanted = self.field_present && !booking.is_deleted && shown != journalled;
        if field_wanted {
            set_field(
                &mut write,
                &booking.id,
                &b.calendar_event_field,
                journalled.map_or(Value::Null, |e| json!(e)),
            );
        }
        // The error field: the calendar's reason while the meeting itself is fine.
        let meeting_ok = matches!(
            status,
            Some(MeetingStatus::Created | MeetingStatus::CreatedByApp)
        );
        let own_reason = write
            .as_ref()
            .and_then(|w| w.fields.get(&b.meeting_error_field))
            .map(|v| v.as_str().map(str::to_string));
        // What the error field will show: this pass's write (the meeting step never writes
        // a calendar reason), else what the booking shows.
        let (showing, showing_calendar) = match &own_reason {
            Some(r) => (r.clone(), false),
            None => (booking.meeting_error.clone(), booking.calendar_error),
        };
        let wanted_reason = match (&reason, missing_scope) {
            (Some(r), _) => Some(clip(&format!("{CALENDAR_REASON}{r}"))),
            (None, true) => Some(clip(&format!(
                "{CALENDAR_REASON}the trainer's Lark connection does not allow calendar access; they were asked to reconnect."
            ))),
            (None, false) => None,
        };
        if meeting_ok && !booking.is_deleted {
            match &wanted_reason {
                Some(r)
                    if (showing.is_none() || showing_calendar)
                        && showing.as_deref() != Some(r.as_str()) =>
                {
                    set_field(&mut write, &booking.id, &b.meeting_error_field, json!(r));
                }
                None if showing_calendar => {
                    set_field(&mut write, &booking.id, &b.meeting_error_field, Value::Null);
                }
                _ => {}
            }
        }
        if let Some(r) = &reason {
            self.metrics.failure(Failure::CalendarFailed);
            tracing::warn!(error = %r, "calendar step failed; the meeting stands, retrying on the booking's backoff");
        }
        Ok(CalendarDone {
            write,
            retry: reason.filter(|_| retry),
        })
    }

    async fn carry_out(&self, booking: &Booking, plan: EventPlan) -> Result<(), StepError> {
        match plan {
            EventPlan::Nothing => Ok(()),
            EventPlan::Create(wanted) => self.create(booking, &wanted).await,
            EventPlan::Replace { old, wanted } => {
                self.delete(booking, &old).await?;
                self.create(booking, &wanted).await
            }
            EventPlan::Delete(old) => self.delete(booking, &old).await,
            EventPlan::Patch { entry, wanted } | EventPlan::Invite { entry, wanted } => {
                let Some((host, token)) = self.host_token(booking, &entry.trainer_id).await? else {
                    return Ok(());
                };
                let mut entry = entry;
                let text_changed = entry.content != wanted.content();
                if entry.start != wanted.start || entry.end != wanted.end || text_changed {
                    let (start, end) = (self.time(wanted.start), self.time(wanted.end));
                    let (cal, ev) = (entry.calendar_id.clone(), entry.event_id.clone());
                    let text =
                        text_changed.then(|| (wanted.summary.clone(), wanted.description.clone()));
                    let patched = self
                        .hosts
                        .with_token_retry(&host, token.clone(), |lark: LarkClient, t| {
                            let (cal, ev, start, end, text) = (
                                cal.clone(),
                                ev.clone(),
                                start.clone(),
                                end.clone(),
                                text.clone(),
                            );
                            async move {
                                let text = text.as_ref().map(|(s, d)| (s.as_str(), d.as_str()));
                                lark.patch_calendar_event(&t, &cal, &ev, &start, &end, text, true)
                                    .await
                            }
                        })
                        .await;
                    match patched {
                        Ok(_) => {
                            entry.start = wanted.start;
                            entry.end = wanted.end;
                            entry.content = wanted.content();
                            self.record(&entry)?;
                            self.metrics
                                .inc(names::MEETINGS, &[("action", "event_moved")]);
                            tracing::info!(event = %entry.event_id, "calendar event moved");
                        }
                        Err(LarkError::NotFound { .. }) => {
                            // Deleted by hand in Lark: make a new one (with a new key, since
                            // the old one names the deleted event).
                            let store = self.store;
                            let id = &booking.id;
                            store.record_deleted_event(
                                id,
                                &entry.reservation_id,
                                &entry.event_id,
                            )?;
                            store.forget_calendar_event(id)?;
                            return self.create(booking, &wanted).await;
                        }
                        Err(e) => return Err(lark_step(e)),
                    }
                }
                self.invite(&host, token, entry, &wanted).await
            }
        }
    }

    fn time(&self, at: DateTime<Utc>) -> EventTime {
        EventTime {
            at,
            timezone: self.settings.calendar.timezone.clone(),
        }
    }

    fn record(&self, entry: &CalendarEventEntry) -> Result<(), StepError> {
        Ok(self.store.record_calendar_event(entry, Utc::now())?)
    }

    /// The host's record and token; None when they are not connected (no event then).
    async fn host_token(
        &self,
        booking: &Booking,
        host: &TrainerId,
    ) -> Result<Option<(Arc<TrainerRecord>, AccessToken)>, StepError> {
        Ok(self.hosts.host_token(booking, host).await?)
    }

    async fn create(&self, booking: &Booking, wanted: &WantedEvent) -> Result<(), StepError> {
        let Some((host, token)) = self.host_token(booking, &wanted.host_id).await? else {
            return Ok(());
        };
        let store = self.store;
        let calendar_id = match self.calendars.id(self.hosts, &host, &token).await {
            Ok(id) => id,
            Err(LookupError::Lark(e)) => return Err(lark_step(e)),
            Err(LookupError::Store(e)) => return Err(e.into()),
        };
        // Stable across retries and restarts: a create whose answer was lost, sent again,
        // gets the same event back. After an event of this reservation was deleted (or
        // vanished), the key also names that event, or Lark would answer the deleted one.
        let deleted = store.deleted_event(&booking.id, &wanted.reservation_id)?;
        let mut parts = vec![booking.id.as_str(), wanted.reservation_id.as_str()];
        if let Some(old) = deleted.as_deref() {
            parts.push(old);
        }
        let key = idempotency_key(&parts);
        let event = NewCalendarEvent {
            summary: wanted.summary.clone(),
            description: wanted.description.clone(),
            start: self.time(wanted.start),
            end: self.time(wanted.end),
            meeting_url: wanted.meeting_url.clone(),
            reminder_minutes: i64::from(self.settings.calendar.reminder_minutes),
        };
        let created = self
            .hosts
            .with_token_retry(&host, token.clone(), |lark: LarkClient, t| {
                let (cal, key, event) = (calendar_id.clone(), key.clone(), event.clone());
                async move { lark.create_calendar_event(&t, &cal, &key, &event).await }
            })
            .await;
        let created = match created {
            Ok(c) => c,
            Err(e) => {
                // A kept calendar that is gone or out of reach is looked up again next time.
                self.calendars.forget_if_gone(&host.id, &e)?;
                return Err(lark_step(e));
            }
        };
        let entry = CalendarEventEntry {
            booking_id: booking.id.clone(),
            trainer_id: host.id.clone(),
            calendar_id: calendar_id.clone(),
            event_id: created.event_id.clone(),
            reservation_id: wanted.reservation_id.clone(),
            start: wanted.start,
            end: wanted.end,
            guest: None,
            content: wanted.content(),
        };
        // Journalled the moment Lark answered.
        self.record(&entry)?;
        self.metrics
            .inc(names::MEETINGS, &[("action", "event_created")]);
        tracing::info!(trainer = %host.id, event = %entry.event_id, "calendar event created");
        self.invite(&host, token, entry, wanted).await
    }

    /// Invites the guest unless the journal says they are.
    async fn invite(
        &self,
        host: &TrainerRecord,
        token: AccessToken,
        mut entry: CalendarEventEntry,
        wanted: &WantedEvent,
    ) -> Result<(), StepError> {
        let Some(guest) = wanted.guest.clone() else {
            return Ok(());
        };
        if entry.guest.as_deref() == Some(guest.as_str()) {
            return Ok(());
        }
        let (cal, ev) = (entry.calendar_id.clone(), entry.event_id.clone());
        self.hosts
            .with_token_retry(host, token, |lark: LarkClient, t| {
                let (cal, ev, guest) = (cal.clone(), ev.clone(), guest.clone());
                async move {
                    lark.add_calendar_guests(&t, &cal, &ev, &[guest.as_str()], true)
                        .await
                }
            })
            .await
            .map_err(lark_step)?;
        entry.guest = Some(guest);
        self.record(&entry)?;
        tracing::info!(event = %entry.event_id, "guest invited to the calendar event");
        Ok(())
    }

    /// Deletes the journalled event with its host's token; an event already gone, or a
    /// host no longer connected (the event cannot be reached), ends the journal entry.
    async fn delete(&self, booking: &Booking, old: &CalendarEventEntry) -> Result<(), StepError> {
        let store = self.store;
        let Some((host, token)) = self.host_token(booking, &old.trainer_id).await? else {
            // Rule 25: owed until the host reconnects (or the session ends).
            let item = OwedItem::Event {
                calendar_id: old.calendar_id.clone(),
                event_id: old.event_id.clone(),
            };
            self.owed
                .owe(booking, &old.trainer_id, item, old.end)
                .await?;
            store.record_deleted_event(&booking.id, &old.reservation_id, &old.event_id)?;
            store.forget_calendar_event(&booking.id)?;
            return Ok(());
        };
        let (cal, ev) = (old.calendar_id.clone(), old.event_id.clone());
        let deleted = self
            .hosts
            .with_token_retry(&host, token, |lark: LarkClient, t| {
                let (cal, ev) = (cal.clone(), ev.clone());
                async move { lark.delete_calendar_event(&t, &cal, &ev).await }
            })
            .await;
        match deleted {
            Ok(()) | Err(LarkError::NotFound { .. }) => {
                store.record_deleted_event(&booking.id, &old.reservation_id, &old.event_id)?;
                store.forget_calendar_event(&booking.id)?;
                self.metrics
                    .inc(names::MEETINGS, &[("action", "event_deleted")]);
                tracing::info!(event = %old.event_id, "calendar event deleted");
                Ok(())
            }
            Err(e) => Err(lark_step(e)),
        }
    }

    /// The host lacks the calendar scopes: remember it (no more calendar calls for them
    /// until they reconnect) and send their one reconnect reminder.
    async fn scope_missing(&self, booking: &Booking) -> Result<(), PipelineError> {
        let Some(trainer) = &booking.trainer else {
            return Ok(());
        };
        let store = self.store;
        store.mark_lacks_calendar_scope(&trainer.id)?;
        let lark = &self.settings.lark;
        if !lark.notify_trainers {
            return Ok(());
        }
        let Some(email) = trainer.email.as_deref() else {
            return Ok(());
        };
        if !store.claim_scope_reminder(&trainer.id, Utc::now())? {
            return Ok(());
        }
        let link = self.settings.server.connect_link(&trainer.id);
        let name = trainer.name.as_deref().unwrap_or("there");
        let text = format!(
            "Hi {name}, your remote training meetings are ready, but they cannot be put on your Lark calendar: your Lark connection does not allow calendar access. Please reconnect here and allow calendar access: {link}"
        );
        // One per connection: Lark deduplicates a retried send by uuid, too.
        let uuid = format!("lvb-calendar-scope-{}", trainer.id);
        match self.lark.send_text_by_email(email, &text, &uuid).await {
            Ok(()) => {
                tracing::info!(trainer = %trainer.id, "calendar reconnect reminder sent");
            }
            Err(e) => {
                tracing::warn!(trainer = %trainer.id, error = %e, "calendar reconnect reminder failed; the next booking tries again");
                store.release_scope_reminder(&trainer.id)?;
            }
        }
        Ok(())
    }
}

/// Sets one field in the booking's write-back, making a write of that field alone when
/// the meeting step wrote nothing.
fn set_field(write: &mut Option<WriteBack>, id: &BookingId, field: &str, value: Value) {
    let w = write.get_or_insert_with(|| WriteBack {
        booking_id: id.clone(),
        status: None,
        fields: Map::new(),
    });
    w.fields.insert(field.to_string(), value);
}
