//! The engine's hook: every booking it processes tells attendance its session's times, so
//! the no-show check (start + `alerts.no_show_after`) and the post-end lookup (end +
//! `attendance.grace`) are timed from the booking as last read, with no query of their
//! own. Only bookings with a journalled reservation get a row (only they have a meeting);
//! a booking that no longer has a meeting closes its row.

use chrono::{DateTime, Utc};

use super::plan::{note_schedule, refresh, SessionTimes, Timing};
use crate::bookings::model::Booking;
use crate::config::Settings;
use crate::store::{AttendanceEntry, Store, StoreError};

/// The sessions of processed bookings, read before they are handed to the work.
pub fn sessions(bookings: &[Booking], settings: &Settings) -> Vec<SessionTimes> {
    let b = &settings.salesforce.booking;
    bookings
        .iter()
        .map(|booking| SessionTimes {
            booking_id: booking.id.clone(),
            start: booking.start,
            end: booking.end,
            live: booking.is_live_remote(b) && !booking.bad_times,
        })
        .collect()
}

/// Takes the processed bookings' sessions into their attendance rows (after the work, so
/// a reservation just made is in the journal). One transaction for the lot.
pub fn note_sessions(
    store: &Store,
    settings: &Settings,
    sessions: &[SessionTimes],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let timing = Timing::of(settings);
    if sessions.is_empty() || !timing.uses_events() {
        return Ok(());
    }
    let b = &settings.salesforce.booking;
    let ids: Vec<_> = sessions.iter().map(|s| s.booking_id.clone()).collect();
    let mut rows = store.attendance(&ids)?;
    let mut changed = Vec::new();
    for s in sessions {
        let existing = rows.iter().position(|r| r.booking_id == s.booking_id);
        // A booking no longer live without a row has nothing to follow: no journal read.
        if existing.is_none() && !s.live {
            continue;
        }
        let journal = store.reservation(&s.booking_id)?;
        let mut entry = match existing {
            Some(i) => rows.swap_remove(i),
            // Only a booking with a reservation has a meeting to follow.
            None if s.live && journal.is_some() => AttendanceEntry::new(s.booking_id.clone()),
            None => continue,
        };
        let before = entry.clone();
        if let Some(j) = &journal {
            if j.meeting_no.is_some() {
                entry.meeting_no = j.meeting_no.clone();
            }
            entry.trainer_id = Some(j.trainer_id.clone());
        }
        if note_schedule(&mut entry, s) {
            tracing::info!(booking = %s.booking_id, "rescheduled after No Show: its attendance starts over");
        }
        refresh(&mut entry, b, &timing, now);
        if entry != before {
            changed.push(entry);
        }
    }
    store.save_attendance(&changed, &[], now)
}
