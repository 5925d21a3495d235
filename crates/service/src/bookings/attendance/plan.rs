//! The attendance decisions, pure: what an event or Lark's answer means for a booking's
//! session ([`apply_event`], [`apply_details`], [`apply_lookup`]), what the booking should
//! show ([`fields`]), when that is worth a write ([`owed_write`]: at most three a meeting),
//! and when something is due next ([`refresh`], [`due`]). No I/O: the step carries these
//! out, the store keeps the rows.
//!
//! **The session.** Every meeting of the booking's reservation that started no earlier than
//! [`EARLY_START`] before the booking's start counts (Lark lets a reservation's meeting be
//! started again, e.g. after a dropped call): the session started at the first one's start,
//! ended at the last one's end, and its participants are everyone seen in any of them.
//! Meetings before that window — a trainer trying the link the day before — are not the
//! session's.
//!
//! **Three writes a meeting.** The session status and the recording URL are what makes a
//! write; the other fields ride along with one. So a meeting costs one write when it
//! starts (`In Progress`, started at, and the trainer's join when it came within
//! [`WRITE_LINGER`]), one when it ends (`Completed`, ended at, trainer joined at, the
//! participant count and whether a guest joined — written once the participants call
//! settled, so the end is one write), and one for the recording.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use super::record::{whole_seconds, Happening, RecordedEvent};
use crate::config::{BookingSettings, Settings};
use crate::lark::meetings::{MeetingState, ParticipantState};
use crate::lark::MeetingDetail;
use crate::salesforce::values::datetime_value;
use crate::store::{AttendanceEntry, Owed};

/// The start's write waits this long, so that the host's join, which usually follows the
/// start within a moment, rides with it.
pub const WRITE_LINGER: Duration = Duration::from_secs(2);
/// A meeting that started this long before the booking's start is not its session (a
/// trainer trying the link earlier); nor does a host's join before it count as present.
pub const EARLY_START: chrono::Duration = chrono::Duration::hours(1);
/// First retry of a failed Lark call or write; doubled each time up to [`RETRY_CAP`].
pub const RETRY_FIRST: Duration = Duration::from_secs(60);
/// Longest wait between two tries.
pub const RETRY_CAP: Duration = Duration::from_secs(30 * 60);
/// Participants calls tried before the end is written with what the events said.
pub const DETAILS_ATTEMPTS: u32 = 6;
/// Writes of one booking's attendance tried before they wait for the next change.
pub const WRITE_ATTEMPTS: u32 = 8;
/// The post-end lookup is given up this long after the booking's scheduled end.
pub const LOOKUP_GIVE_UP: chrono::Duration = chrono::Duration::hours(24);
/// A meeting still running at the lookup is looked at again after the grace, but at least
/// this long after.
pub const LOOKUP_REPEAT_MIN: Duration = Duration::from_secs(5 * 60);
/// A no-show alert claimed but not finished (the process died mid-send) is sent again
/// only within this long of its claim: Lark drops a message whose `uuid` it saw within
/// the hour, so a resend inside it can never reach the trainer twice.
pub const ALERT_RESEND_WINDOW: chrono::Duration = chrono::Duration::minutes(50);
/// Largest participant count the field holds (Number 4,0).
pub const MAX_PARTICIPANTS: usize = 9_999;
/// Longest URL a Salesforce URL field holds.
pub const MAX_URL: usize = 255;

/// The session statuses written (`config::SESSION_STATUSES`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStatus {
    /// A meeting of the session started and has not ended (or its end is being settled).
    InProgress,
    /// The session's meetings ended; its participants are known.
    Completed,
    /// Lark had no meeting for the session at all.
    NoShow,
}

impl SessionStatus {
    /// The picklist value.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::InProgress => "In Progress",
            SessionStatus::Completed => "Completed",
            SessionStatus::NoShow => "No Show",
        }
    }
}

/// The timings attendance works with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// `attendance.enabled`: write attendance and look up missed meetings.
    pub attendance: bool,
    /// `attendance.grace`.
    pub grace: Duration,
    /// `alerts.no_show_after` (None = off).
    pub no_show_after: Option<Duration>,
}

impl Timing {
    /// From the settings.
    pub fn of(settings: &Settings) -> Timing {
        Timing {
            attendance: settings.attendance.enabled,
            grace: settings.attendance.grace,
            no_show_after: settings.alerts.no_show_after,
        }
    }

    /// True when events matter at all (attendance, or the no-show alert's host join).
    pub fn uses_events(&self) -> bool {
        self.attendance || self.no_show_after.is_some()
    }
}

/// `t` plus `d`, saturating: no configured duration or value from outside can overflow a
/// time into a panic (rule 17).
pub fn plus(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| t.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The wait before try number `attempts + 1` after `attempts` failed ones.
pub fn backoff(attempts: u32) -> Duration {
    let doubled = RETRY_FIRST.saturating_mul(1 << attempts.saturating_sub(1).min(16));
    doubled.min(RETRY_CAP)
}

/// The earliest start of a meeting that counts as the session's, when the schedule is
/// known.
pub fn session_window_start(entry: &AttendanceEntry) -> Option<DateTime<Utc>> {
    entry
        .scheduled_start
        .map(|s| s.checked_sub_signed(EARLY_START).unwrap_or(s))
}

/// True when a meeting that started at `start` is before the session's window.
fn before_session(entry: &AttendanceEntry, start: Option<DateTime<Utc>>) -> bool {
    match (session_window_start(entry), start) {
        (Some(window), Some(start)) => start < window,
        _ => false,
    }
}

fn earliest(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn add_participant(entry: &mut AttendanceEntry, id: &str) {
    /// Bounds the row however many join (a webinar-sized meeting still counts right up
    /// to here; the field holds four digits anyway).
    const MAX_IDS: usize = MAX_PARTICIPANTS + 1;
    if !id.is_empty()
        && entry.participant_ids.len() < MAX_IDS
        && !entry.participant_ids.iter().any(|p| p == id)
    {
        entry.participant_ids.push(id.to_string());
    }
}

/// What became of an event for a booking's row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// It told something new (or confirmed what was known).
    Applied,
    /// Its meeting started before the session's window: not the session's.
    BeforeSession,
}

impl Applied {
    /// The event's outcome label (store and metrics).
    pub fn outcome(self) -> &'static str {
        match self {
            Applied::Applied => "applied",
            Applied::BeforeSession => "before_session",
        }
    }
}

/// Applies one meeting event to the booking's row. Idempotent: applying it again changes
/// nothing, so a redelivery after a crash is harmless even before the dedupe.
pub fn apply_event(entry: &mut AttendanceEntry, e: &RecordedEvent, now: DateTime<Utc>) -> Applied {
    if before_session(entry, e.meeting_start) {
        return Applied::BeforeSession;
    }
    rearm_write(entry);
    if entry.owner_open_id.is_none() {
        entry.owner_open_id = e.owner_open_id.clone();
    }
    // A meeting other than the one we know, started after that one ended: the session
    // goes on in a new meeting (Lark lets a reservation's meeting be started again).
    let other = e.meeting_id.is_some() && e.meeting_id != entry.meeting_id;
    let reopens = other
        && entry.ended_at.is_some_and(|ended| match e.meeting_start {
            Some(start) => start >= ended,
            None => e.happening == Happening::Started,
        });
    if reopens {
        entry.meeting_id = e.meeting_id.clone();
        entry.ended_at = None;
        entry.details_settled = false;
        entry.details = Owed::default();
    } else if entry.meeting_id.is_none() {
        entry.meeting_id = e.meeting_id.clone();
    }
    // Any event of a meeting says it started: the start event may have been missed.
    let start = e.meeting_start.or((e.happening == Happening::Started)
        .then_some(e.at)
        .flatten());
    if start.is_some() {
        entry.started_at = earliest(entry.started_at, start);
        // Lark had a meeting after all (it started late, or the lookup ran early).
        entry.no_show = false;
    }
    match e.happening {
        // Someone who left had joined (their join may have been missed).
        Happening::Left => {
            if let Some(id) = &e.operator_open_id {
                add_participant(entry, id);
            }
        }
        // Who started it is not counted in it until their join event (as in the docs'
        // events; the no-show check asks Lark before it alerts, and the participants
        // call after the end has the last word).
        Happening::Started => {}
        Happening::Joined => {
            if let Some(id) = &e.operator_open_id {
                add_participant(entry, id);
            }
            let is_host = match (&entry.owner_open_id, &e.operator_open_id) {
                (Some(owner), Some(op)) => owner == op,
                _ => e.operator_is_host,
            };
            if is_host {
                let joined = e.at.or(Some(whole_seconds(now)));
                entry.host_joined_at = earliest(entry.host_joined_at, joined);
            }
        }
        Happening::Ended => {
            // Only the end of the meeting we follow ends the session.
            let ours = e.meeting_id.is_none() || e.meeting_id == entry.meeting_id;
            if ours && entry.ended_at.is_none() {
                entry.ended_at = e.meeting_end.or(e.at).or(Some(whole_seconds(now)));
                if !entry.details_settled {
                    // One participants call for the count and the guest (rule 29).
                    entry.details = Owed {
                        at: Some(now),
                        attempts: 0,
                    };
                }
            }
        }
        Happening::RecordingReady => {
            if e.recording_url.is_some() {
                entry.recording_url = e.recording_url.clone();
            }
        }
    }
    Applied::Applied
}

/// True for a participant who was in the meeting (not only called or ringing).
fn took_part(p: &crate::lark::Participant) -> bool {
    p.first_join_time.is_some()
        || matches!(
            p.status,
            Some(ParticipantState::InMeeting | ParticipantState::Left) | None
        )
}

/// Folds what Lark says of one meeting into the row: its start, its participants and the
/// host's first join. Its end only when `take_end` (the meeting the session follows).
fn fold_meeting(entry: &mut AttendanceEntry, m: &MeetingDetail, take_end: bool) {
    rearm_write(entry);
    if entry.owner_open_id.is_none() {
        entry.owner_open_id = m.host_id.clone();
    }
    entry.started_at = earliest(entry.started_at, m.start_time.map(whole_seconds));
    for p in m.participants.iter().filter(|p| took_part(p)) {
        add_participant(entry, &p.id);
        let host = p.is_host || entry.owner_open_id.as_deref() == Some(p.id.as_str());
        if host {
            entry.host_joined_at =
                earliest(entry.host_joined_at, p.first_join_time.map(whole_seconds));
        }
    }
    if take_end {
        if let Some(end) = m.end_time.map(whole_seconds) {
            entry.ended_at = Some(entry.ended_at.map_or(end, |e| e.max(end)));
        }
    }
}

/// The participants call after the end answered: the session's end is settled.
pub fn apply_details(entry: &mut AttendanceEntry, m: &MeetingDetail) {
    fold_meeting(entry, m, true);
    settle_details(entry);
}

/// The participants call is given up (or cannot be made): the end is written with what
/// the events said.
pub fn settle_details(entry: &mut AttendanceEntry) {
    entry.details_settled = true;
    entry.details = Owed::default();
}

/// What the post-end lookup found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookedUp {
    /// No meeting of the session at all: `No Show`.
    NoMeeting,
    /// The session's meetings have all ended: `Completed`.
    Ended,
    /// One still runs: `In Progress`, looked at again later.
    StillRunning,
    /// Lark lists no meeting, yet events said one started: left as the events tell it.
    NotFound,
}

impl LookedUp {
    /// The metrics label.
    pub fn label(self) -> &'static str {
        match self {
            LookedUp::NoMeeting => "no_show",
            LookedUp::Ended => "completed",
            LookedUp::StillRunning => "in_progress",
            LookedUp::NotFound => "not_found",
        }
    }
}

/// The post-end lookup answered with the session's meetings (rule 29): fills what the
/// events would have said, or marks `No Show` when Lark had no meeting at all.
pub fn apply_lookup(
    entry: &mut AttendanceEntry,
    meetings: &[MeetingDetail],
    timing: &Timing,
    now: DateTime<Utc>,
) -> LookedUp {
    rearm_write(entry);
    let session: Vec<&MeetingDetail> = meetings
        .iter()
        .filter(|m| !before_session(entry, m.start_time))
        .collect();
    entry.lookup = Owed::default();
    if session.is_empty() {
        entry.lookup_done = true;
        if entry.started_at.is_some() {
            return LookedUp::NotFound;
        }
        entry.no_show = true;
        return LookedUp::NoMeeting;
    }
    let running = session
        .iter()
        .any(|m| m.end_time.is_none() || matches!(m.status, Some(MeetingState::InProgress)));
    let last = session
        .iter()
        .max_by_key(|m| m.start_time)
        .map(|m| m.id.clone());
    for m in &session {
        fold_meeting(entry, m, !running);
    }
    entry.no_show = false;
    entry.meeting_id = last.or(entry.meeting_id.take());
    if running {
        entry.ended_at = None;
        let again = timing.grace.max(LOOKUP_REPEAT_MIN);
        entry.lookup = Owed {
            at: Some(plus(now, again)),
            attempts: 0,
        };
        return LookedUp::StillRunning;
    }
    settle_details(entry);
    entry.lookup_done = true;
    LookedUp::Ended
}

/// The no-show check asked Lark about the session's meetings: what they say is folded in
/// (a host whose join the events missed is present after all). True when the host took
/// part.
pub fn apply_presence(entry: &mut AttendanceEntry, meetings: &[MeetingDetail]) -> bool {
    let window = session_window_start(entry);
    let session = meetings
        .iter()
        .filter(|m| !matches!((window, m.start_time), (Some(w), Some(s)) if s < w));
    for m in session {
        if entry.meeting_id.is_none() {
            entry.meeting_id = Some(m.id.clone());
        }
        fold_meeting(entry, m, false);
    }
    host_present(entry)
}

/// The session's status as the booking should show it.
pub fn status(entry: &AttendanceEntry) -> Option<SessionStatus> {
    match (entry.started_at, entry.ended_at) {
        (Some(_), Some(_)) if entry.details_settled => Some(SessionStatus::Completed),
        (Some(_), _) => Some(SessionStatus::InProgress),
        (None, _) if entry.no_show => Some(SessionStatus::NoShow),
        _ => None,
    }
}

/// True when someone other than the host took part.
pub fn guest_joined(entry: &AttendanceEntry) -> bool {
    match &entry.owner_open_id {
        Some(owner) => entry.participant_ids.iter().any(|p| p != owner),
        // Without the owner we cannot tell the host apart: a second person is a guest.
        None => entry.participant_ids.len() > 1,
    }
}

/// The seven attendance fields as the booking should show them (null where nothing is
/// known or the status does not show it yet).
pub fn fields(entry: &AttendanceEntry, b: &BookingSettings) -> Map<String, Value> {
    let status = status(entry);
    let time = |t: Option<DateTime<Utc>>| t.map_or(Value::Null, datetime_value);
    let shown = matches!(
        status,
        Some(SessionStatus::InProgress | SessionStatus::Completed)
    );
    let completed = status == Some(SessionStatus::Completed);
    let mut f = Map::new();
    f.insert(
        b.session_status_field.clone(),
        status.map_or(Value::Null, |s| json!(s.as_str())),
    );
    f.insert(
        BookingSettings::SESSION_STARTED_AT_FIELD.into(),
        time(entry.started_at.filter(|_| shown)),
    );
    f.insert(
        BookingSettings::SESSION_ENDED_AT_FIELD.into(),
        time(entry.ended_at.filter(|_| completed)),
    );
    f.insert(
        BookingSettings::TRAINER_JOINED_AT_FIELD.into(),
        time(entry.host_joined_at.filter(|_| shown)),
    );
    f.insert(
        BookingSettings::PARTICIPANTS_FIELD.into(),
        if completed {
            json!(entry.participant_ids.len().min(MAX_PARTICIPANTS))
        } else {
            Value::Null
        },
    );
    f.insert(
        BookingSettings::GUEST_JOINED_FIELD.into(),
        if completed {
            json!(guest_joined(entry))
        } else {
            Value::Null
        },
    );
    f.insert(
        BookingSettings::RECORDING_URL_FIELD.into(),
        entry
            .recording_url
            .as_deref()
            // A longer URL would be cut into a broken link: left out instead.
            .filter(|u| u.len() <= MAX_URL)
            .map_or(Value::Null, |u| json!(u)),
    );
    f
}

/// The fields last written, as the row keeps them.
pub fn written(entry: &AttendanceEntry) -> Map<String, Value> {
    serde_json::from_str(&entry.written).unwrap_or_default()
}

/// The fields to write now, if the booking owes a write: only a change of the session
/// status or of the recording URL makes one; every other field that differs rides along.
pub fn owed_write(
    entry: &AttendanceEntry,
    b: &BookingSettings,
    timing: &Timing,
) -> Option<Map<String, Value>> {
    if !timing.attendance || entry.closed {
        return None;
    }
    let wanted = fields(entry, b);
    let had = written(entry);
    let differs = |k: &str| wanted.get(k) != Some(had.get(k).unwrap_or(&Value::Null));
    let recording = BookingSettings::RECORDING_URL_FIELD;
    let trigger = differs(&b.session_status_field)
        || (wanted.get(recording).is_some_and(|v| !v.is_null()) && differs(recording));
    if !trigger {
        return None;
    }
    let changes: Map<String, Value> = wanted
        .into_iter()
        .filter(|(k, v)| had.get(k).unwrap_or(&Value::Null) != v)
        .collect();
    (!changes.is_empty()).then_some(changes)
}

/// News of the meeting: a write given up after [`WRITE_ATTEMPTS`] is tried afresh.
fn rearm_write(entry: &mut AttendanceEntry) {
    if entry.write.attempts >= WRITE_ATTEMPTS {
        entry.write = Owed::default();
    }
}

/// Records that `fields` landed on the booking.
pub fn mark_written(entry: &mut AttendanceEntry, landed: &Map<String, Value>) {
    let mut had = written(entry);
    had.extend(landed.clone());
    entry.written = Value::Object(had).to_string();
    entry.write = Owed::default();
}

/// When the post-end lookup is due (rule 29), if it is owed.
fn lookup_due(entry: &AttendanceEntry, timing: &Timing) -> Option<DateTime<Utc>> {
    if !timing.attendance || entry.closed || entry.lookup_done || entry.no_show {
        return None;
    }
    if entry.ended_at.is_some() {
        return None;
    }
    let end = entry.scheduled_end?;
    Some(entry.lookup.at.unwrap_or_else(|| plus(end, timing.grace)))
}

/// When the no-show check is due (rule 30), if it is owed.
fn alert_due(entry: &AttendanceEntry, timing: &Timing) -> Option<DateTime<Utc>> {
    timing.no_show_after?;
    if entry.closed {
        return None;
    }
    if let Some(claimed) = entry.alert_claimed_at {
        // A claim the process died on: finished now (sent again, or given up).
        return (!entry.alert_done).then_some(claimed);
    }
    // No meeting at all (the lookup ran after the end): there is nobody to alert about.
    if entry.alert_checked || entry.no_show || host_present(entry) {
        return None;
    }
    Some(plus(entry.scheduled_start?, timing.no_show_after?))
}

/// True when the host's join into the session is known.
pub fn host_present(entry: &AttendanceEntry) -> bool {
    match (entry.host_joined_at, session_window_start(entry)) {
        (Some(joined), Some(window)) => joined >= window,
        (joined, _) => joined.is_some(),
    }
}

/// What is due for a row at `now`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Due {
    /// The participants call after an end.
    pub details: bool,
    /// The post-end lookup (rule 29).
    pub lookup: bool,
    /// The no-show check (rule 30), or finishing one a restart interrupted.
    pub no_show_check: bool,
    /// The attendance write-back.
    pub write: bool,
}

/// What is due for a row at `now`.
pub fn due(entry: &AttendanceEntry, timing: &Timing, now: DateTime<Utc>) -> Due {
    let by = |t: Option<DateTime<Utc>>| t.is_some_and(|t| t <= now);
    Due {
        details: by(entry.details.at),
        lookup: by(lookup_due(entry, timing)),
        no_show_check: by(alert_due(entry, timing)),
        write: by(entry.write.at),
    }
}

/// Brings the owed write and the row's `due_at` up to date after any change: a write that
/// became owed is due now — the start's [`WRITE_LINGER`] from now — (or when its backoff
/// says), one no longer owed is dropped.
pub fn refresh(
    entry: &mut AttendanceEntry,
    b: &BookingSettings,
    timing: &Timing,
    now: DateTime<Utc>,
) {
    match (owed_write(entry, b, timing).is_some(), entry.write.at) {
        // Given up: waits for the meeting's next news (`rearm_write`).
        (true, None) if entry.write.attempts >= WRITE_ATTEMPTS => {}
        // The start's write waits for what usually comes with it (the host's join); the
        // others have nothing to wait for (the end's waited for the participants call).
        (true, None) => {
            let linger = match status(entry) {
                Some(SessionStatus::InProgress) => WRITE_LINGER,
                _ => Duration::ZERO,
            };
            entry.write.at = Some(plus(now, linger));
        }
        (false, _) => entry.write = Owed::default(),
        (true, Some(_)) => {}
    }
    if entry.closed {
        entry.details = Owed::default();
    }
    entry.due_at = [
        entry.details.at,
        lookup_due(entry, timing),
        alert_due(entry, timing),
        entry.write.at,
    ]
    .into_iter()
    .flatten()
    .min();
}

/// The booking's session as the engine read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionTimes {
    /// The booking.
    pub booking_id: crate::ids::BookingId,
    /// Its scheduled start, as read.
    pub start: Option<DateTime<Utc>>,
    /// Its scheduled end, as read.
    pub end: Option<DateTime<Utc>>,
    /// Remote, not cancelled, not deleted: it has (or will have) a meeting.
    pub live: bool,
}

/// Takes the booking's schedule as the engine read it. A booking that no longer has a
/// meeting closes; one rescheduled after `No Show` starts over (rule 29: its new session
/// is looked at afresh — the fields written stay known, so the next write clears the
/// status). Returns true when it started over.
pub fn note_schedule(entry: &mut AttendanceEntry, s: &SessionTimes) -> bool {
    if !s.live {
        entry.closed = true;
        return false;
    }
    entry.closed = false;
    let moved = entry.scheduled_start != s.start || entry.scheduled_end != s.end;
    entry.scheduled_start = s.start;
    entry.scheduled_end = s.end;
    if !moved {
        return false;
    }
    // A new time is a new look at the host's presence (the alert itself stays once per
    // booking: a claimed one is never claimed again) and at the end.
    entry.alert_checked = false;
    entry.lookup = Owed::default();
    if !entry.no_show {
        entry.lookup_done = false;
        return false;
    }
    let fresh = AttendanceEntry::new(entry.booking_id.clone());
    *entry = AttendanceEntry {
        meeting_no: entry.meeting_no.take(),
        trainer_id: entry.trainer_id.take(),
        scheduled_start: s.start,
        scheduled_end: s.end,
        owner_open_id: entry.owner_open_id.take(),
        written: std::mem::take(&mut entry.written),
        alert_claimed_at: entry.alert_claimed_at,
        alert_done: entry.alert_done,
        ..fresh
    };
    true
}

#[cfg(test)]
mod tests;
