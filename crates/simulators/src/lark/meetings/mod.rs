//! A reserved meeting's life, driven from outside as people would (design §5): someone
//! starts it (the 19-digit meeting id is made then), the host, an internal user (by
//! email) or an external guest (by name) joins and leaves, someone ends it, a recording
//! becomes ready. Each step raises the VC event Lark sends for it over the long
//! connection, and feeds `GET /open-apis/vc/v1/meetings/:meeting_id` and
//! `GET /open-apis/vc/v1/meetings/list_by_no` ([`rest`]). `simulate` users drive it over
//! simulator-only HTTP endpoints ([`drive`]).
//!
//! Owns: the meetings (`State::meetings`) and the event payloads. Only meetings of
//! reservations made through the Open API exist here, as only those raise events
//! ("仅通过Open API预约的会议会产生此类事件"). It never delivers anything itself: it hands
//! the payloads to [`super::events::LongConnection::raise`], after letting go of the
//! simulator's state lock.
//!
//! Payload shapes: the five event pages mirrored in wxkingstar/doc-hub-mcp under
//! `feishu/003-服务端API/视频会议/会议管理/事件/` — `会议开始.md` (meeting_started_v1:
//! `meeting {id, topic, meeting_no, meeting_source, start_time, end_time, host_user,
//! owner, calendar_event_id}`, `operator`), `加入会议.md` and `离开会议.md` (no
//! `meeting_source` nor `calendar_event_id`; leave adds `leave_reason` 1 left, 2 meeting
//! ended, 3 removed), `会议结束.md` (as started), `录制完成.md` (`meeting {id, topic,
//! meeting_no, owner {id}}`, `url`, `duration` in ms as a string). A user is `{id:
//! {union_id, user_id, open_id}, user_role (1 participant, 2 host, 3 co-host), user_type
//! (1 Lark user)}`. Times are unix seconds of the wall clock, as strings.
//!
//! Not simulated: co-hosts, rooms/PSTN/SIP participants, a meeting's 90-day age limit
//! (every meeting here is recent), `calendar_event_id` (sent empty: the reservations
//! made here are not tied to a calendar event).

pub(super) mod drive;
pub(super) mod rest;

use std::sync::Arc;

use serde_json::{json, Value};

use super::{random_digits, unix_now, Shared, SimUser, State};

/// `meeting_source` of a meeting reserved through the Open API ("4：开放平台会议").
pub const MEETING_SOURCE_OPEN_PLATFORM: i64 = 4;
/// `user_type` of a Lark user.
pub const USER_TYPE_LARK: i64 = 1;
/// `user_role` of a participant.
pub const ROLE_PARTICIPANT: i64 = 1;
/// `user_role` of the host.
pub const ROLE_HOST: i64 = 2;

/// Who acts in a meeting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Person {
    /// The reservation's owner, who hosts.
    Host,
    /// A user of the simulated tenant, by email.
    User(String),
    /// Someone from outside the tenant, by display name.
    Guest(String),
}

/// Why someone left (`leave_reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaveReason {
    /// 1: left on their own.
    Left = 1,
    /// 2: the meeting ended.
    MeetingEnded = 2,
    /// 3: removed from the meeting.
    Removed = 3,
}

/// A step that cannot be taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MeetingError {
    /// No live reservation with this id or meeting number.
    NoSuchReservation(String),
    /// No meeting with this id, nor one in progress with this meeting number.
    NoSuchMeeting(String),
    /// The reservation's meeting is already in progress.
    AlreadyInProgress(String),
    /// The meeting has ended.
    Ended(String),
    /// No user of the tenant has this email.
    UnknownUser(String),
    /// The person is already in the meeting.
    AlreadyIn,
    /// The person is not in the meeting.
    NotIn,
}

impl std::fmt::Display for MeetingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MeetingError::NoSuchReservation(r) => write!(f, "no live reservation {r}"),
            MeetingError::NoSuchMeeting(m) => {
                write!(f, "no meeting {m} (nor one in progress with that number)")
            }
            MeetingError::AlreadyInProgress(m) => write!(f, "meeting {m} is already in progress"),
            MeetingError::Ended(m) => write!(f, "meeting {m} has ended"),
            MeetingError::UnknownUser(e) => write!(f, "no Lark user with email {e}"),
            MeetingError::AlreadyIn => write!(f, "already in the meeting"),
            MeetingError::NotIn => write!(f, "not in the meeting"),
        }
    }
}

impl std::error::Error for MeetingError {}

/// Someone who took part in a meeting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimParticipant {
    /// open_id (for a guest, an id of the app's view of them).
    pub open_id: String,
    /// union_id ("" for a guest).
    pub union_id: String,
    /// user_id ("" for a guest).
    pub user_id: String,
    /// Display name.
    pub name: String,
    /// The reservation's owner.
    pub is_host: bool,
    /// From outside the tenant.
    pub is_external: bool,
    /// (joined, left) in unix seconds; the last is open while they are in.
    pub stays: Vec<(i64, Option<i64>)>,
}

impl SimParticipant {
    /// In the meeting now.
    pub fn is_in(&self) -> bool {
        self.stays.last().is_some_and(|(_, left)| left.is_none())
    }

    /// Seconds in the meeting up to `now`.
    pub fn seconds_in(&self, now: i64) -> i64 {
        self.stays
            .iter()
            .map(|(joined, left)| left.unwrap_or(now).saturating_sub(*joined).max(0))
            .sum()
    }
}

/// A meeting of a reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimMeeting {
    /// 19-digit meeting id, made when it started.
    pub id: String,
    /// The reservation it belongs to.
    pub reserve_id: String,
    /// 9-digit meeting number (the reservation's).
    pub meeting_no: String,
    /// Topic (the reservation's).
    pub topic: String,
    /// Join URL (the reservation's).
    pub url: String,
    /// open_id of the owner (the reservation's), who hosts.
    pub owner_open_id: String,
    /// Unix seconds.
    pub start_time: i64,
    /// Unix seconds, once ended.
    pub end_time: Option<i64>,
    /// Everyone who joined, in order of first join.
    pub participants: Vec<SimParticipant>,
    /// Most people in the meeting at once (`participant_count`).
    pub peak_participants: usize,
    /// (url, duration in ms) once a recording is ready.
    pub recording: Option<(String, u64)>,
}

/// The meetings of the simulated tenant.
#[derive(Debug, Default)]
pub(super) struct Meetings {
    all: Vec<SimMeeting>,
    /// Test knob: the tenant token is refused (121005) on `meetings/:id`.
    pub(super) tenant_refused: bool,
}

impl Meetings {
    pub(super) fn all(&self) -> &[SimMeeting] {
        &self.all
    }

    /// The meeting with this id; else the one in progress with this meeting number,
    /// else the last one that had it (so a recording can follow the end by number).
    fn find_mut(&mut self, key: &str) -> Result<&mut SimMeeting, MeetingError> {
        let by_number = |live: bool| {
            self.all
                .iter()
                .rposition(|m| m.meeting_no == key && (!live || m.end_time.is_none()))
        };
        let index = self
            .all
            .iter()
            .position(|m| m.id == key)
            .or_else(|| by_number(true))
            .or_else(|| by_number(false))
            .ok_or_else(|| MeetingError::NoSuchMeeting(key.to_string()))?;
        Ok(&mut self.all[index])
    }
}

/// Drives meetings and reads them: the handle `LarkSim::meetings` gives. Clones share
/// the simulator.
#[derive(Clone)]
pub struct MeetingLife {
    shared: Arc<Shared>,
}

/// Events to raise once the state lock is released: (event type, event body).
type Raised = Vec<(&'static str, Value)>;

impl MeetingLife {
    pub(super) fn new(shared: Arc<Shared>) -> MeetingLife {
        MeetingLife { shared }
    }

    fn raise(&self, raised: Raised) {
        for (event_type, event) in raised {
            self.shared.long_connection.raise(event_type, event);
        }
    }

    /// Every meeting, in the order they started.
    pub fn all(&self) -> Vec<SimMeeting> {
        self.shared.lock().meetings.all().to_vec()
    }

    /// The meeting with this id, or the one in progress (else the last) with this
    /// meeting number.
    pub fn get(&self, meeting: &str) -> Option<SimMeeting> {
        self.shared.lock().meetings.find_mut(meeting).ok().cloned()
    }

    /// `GET meetings/:id` answers the tenant token 121005 (`true`) or serves it again,
    /// so callers can test their fallback to the owner's user token.
    pub fn refuse_tenant_token(&self, refused: bool) {
        self.shared.lock().meetings.tenant_refused = refused;
    }

    /// Starts the meeting of a live reservation (by reserve id or meeting number):
    /// `vc.meeting.meeting_started_v1` with `by` as the operator. Nobody is in it until
    /// they [`MeetingLife::join`].
    pub fn start(&self, reservation: &str, by: &Person) -> Result<SimMeeting, MeetingError> {
        let (meeting, raised) = {
            let mut state = self.shared.lock();
            let reserve = state
                .reserves
                .iter()
                .find(|r| !r.deleted && (r.id == reservation || r.meeting_no == reservation))
                .ok_or_else(|| MeetingError::NoSuchReservation(reservation.to_string()))?
                .clone();
            if let Some(live) = state
                .meetings
                .all
                .iter()
                .find(|m| m.meeting_no == reserve.meeting_no && m.end_time.is_none())
            {
                return Err(MeetingError::AlreadyInProgress(live.id.clone()));
            }
            let meeting = SimMeeting {
                id: format!("7{}", random_digits(18)),
                reserve_id: reserve.id.clone(),
                meeting_no: reserve.meeting_no.clone(),
                topic: reserve.topic.clone().unwrap_or_default(),
                url: reserve.url.clone(),
                owner_open_id: reserve.owner_open_id.clone(),
                start_time: unix_now(),
                end_time: None,
                participants: Vec::new(),
                peak_participants: 0,
                recording: None,
            };
            let operator = resolve(&state, &meeting, by)?;
            let event = json!({
                "meeting": meeting_json(&state, &meeting, true),
                "operator": operator_json(&operator),
            });
            state.meetings.all.push(meeting.clone());
            (meeting, vec![("vc.meeting.meeting_started_v1", event)])
        };
        self.raise(raised);
        Ok(meeting)
    }

    /// `who` joins the meeting in progress: `vc.meeting.join_meeting_v1`.
    pub fn join(&self, meeting: &str, who: &Person) -> Result<(), MeetingError> {
        let raised = {
            let mut state = self.shared.lock();
            let snapshot = live(&mut state, meeting)?;
            let person = resolve(&state, &snapshot, who)?;
            let m = state.meetings.find_mut(meeting)?;
            let now = unix_now();
            match m
                .participants
                .iter_mut()
                .find(|p| p.open_id == person.open_id)
            {
                Some(p) if p.is_in() => return Err(MeetingError::AlreadyIn),
                Some(p) => p.stays.push((now, None)),
                None => m.participants.push(SimParticipant {
                    stays: vec![(now, None)],
                    ..person.clone()
                }),
            }
            let present = m.participants.iter().filter(|p| p.is_in()).count();
            m.peak_participants = m.peak_participants.max(present);
            let m = m.clone();
            let event = json!({
                "meeting": meeting_json(&state, &m, false),
                "operator": operator_json(&person),
            });
            vec![("vc.meeting.join_meeting_v1", event)]
        };
        self.raise(raised);
        Ok(())
    }

    /// `who` leaves the meeting in progress: `vc.meeting.leave_meeting_v1`.
    pub fn leave(
        &self,
        meeting: &str,
        who: &Person,
        reason: LeaveReason,
    ) -> Result<(), MeetingError> {
        let raised = {
            let mut state = self.shared.lock();
            let snapshot = live(&mut state, meeting)?;
            let person = resolve(&state, &snapshot, who)?;
            let m = state.meetings.find_mut(meeting)?;
            let participant = m
                .participants
                .iter_mut()
                .find(|p| p.open_id == person.open_id && p.is_in())
                .ok_or(MeetingError::NotIn)?;
            if let Some(stay) = participant.stays.last_mut() {
                stay.1 = Some(unix_now());
            }
            let m = m.clone();
            vec![leave_event(&state, &m, &person, reason)]
        };
        self.raise(raised);
        Ok(())
    }

    /// Ends the meeting in progress: everyone still in leaves (`leave_reason` 2), then
    /// `vc.meeting.meeting_ended_v1` with `by` as the operator.
    pub fn end(&self, meeting: &str, by: &Person) -> Result<SimMeeting, MeetingError> {
        let (ended, raised) = {
            let mut state = self.shared.lock();
            let snapshot = live(&mut state, meeting)?;
            let operator = resolve(&state, &snapshot, by)?;
            let now = unix_now();
            let m = state.meetings.find_mut(meeting)?;
            let mut leavers = Vec::new();
            for p in m.participants.iter_mut().filter(|p| p.is_in()) {
                if let Some(stay) = p.stays.last_mut() {
                    stay.1 = Some(now);
                }
                leavers.push(p.clone());
            }
            m.end_time = Some(now);
            let m = m.clone();
            let mut raised: Raised = leavers
                .iter()
                .map(|p| leave_event(&state, &m, p, LeaveReason::MeetingEnded))
                .collect();
            raised.push((
                "vc.meeting.meeting_ended_v1",
                json!({
                    "meeting": meeting_json(&state, &m, true),
                    "operator": operator_json(&operator),
                }),
            ));
            (m, raised)
        };
        self.raise(raised);
        Ok(ended)
    }

    /// A recording of the meeting is ready: `vc.meeting.recording_ready_v1` with its
    /// `url` and `duration` (ms, a string). Returns the URL.
    pub fn recording_ready(&self, meeting: &str, duration_ms: u64) -> Result<String, MeetingError> {
        let (url, raised) = {
            let mut state = self.shared.lock();
            let m = state.meetings.find_mut(meeting)?;
            let url = format!(
                "https://meetings.larksuite.com/minutes/obus{}",
                crate::wire::random_hex(12)
            );
            m.recording = Some((url.clone(), duration_ms));
            let m = m.clone();
            let owner = lark_user(&state, &m.owner_open_id);
            let event = json!({
                "meeting": {
                    "id": m.id,
                    "topic": m.topic,
                    "meeting_no": m.meeting_no,
                    "owner": { "id": ids_json(&owner) },
                },
                "url": url,
                "duration": duration_ms.to_string(),
            });
            (url, vec![("vc.meeting.recording_ready_v1", event)])
        };
        self.raise(raised);
        Ok(url)
    }
}

/// A copy of the meeting in progress named by `key` (id or meeting number).
fn live(state: &mut State, key: &str) -> Result<SimMeeting, MeetingError> {
    let m = state.meetings.find_mut(key)?;
    if m.end_time.is_some() {
        return Err(MeetingError::Ended(m.id.clone()));
    }
    Ok(m.clone())
}

/// The participant record of `who` in `meeting` (their stays left empty when new).
fn resolve(
    state: &State,
    meeting: &SimMeeting,
    who: &Person,
) -> Result<SimParticipant, MeetingError> {
    let known = |open_id: &str| {
        meeting
            .participants
            .iter()
            .find(|p| p.open_id == open_id)
            .cloned()
    };
    match who {
        Person::Host => Ok(known(&meeting.owner_open_id)
            .unwrap_or_else(|| member(&lark_user(state, &meeting.owner_open_id), true))),
        Person::User(email) => {
            let user = state
                .user_by_email(email)
                .ok_or_else(|| MeetingError::UnknownUser(email.clone()))?;
            Ok(known(&user.open_id)
                .unwrap_or_else(|| member(user, user.open_id == meeting.owner_open_id)))
        }
        Person::Guest(name) => Ok(meeting
            .participants
            .iter()
            .find(|p| p.is_external && p.name == *name)
            .cloned()
            .unwrap_or_else(|| SimParticipant {
                open_id: format!("ou_{}", crate::wire::random_hex(16)),
                union_id: String::new(),
                user_id: String::new(),
                name: name.clone(),
                is_host: false,
                is_external: true,
                stays: Vec::new(),
            })),
    }
}

fn member(user: &SimUser, is_host: bool) -> SimParticipant {
    SimParticipant {
        open_id: user.open_id.clone(),
        union_id: user.union_id.clone(),
        user_id: user.user_id.clone(),
        name: user.name.clone(),
        is_host,
        is_external: false,
        stays: Vec::new(),
    }
}

/// The tenant's user with this open_id (a bare record if the user was removed).
fn lark_user(state: &State, open_id: &str) -> SimUser {
    state
        .user_by_open_id(open_id)
        .cloned()
        .unwrap_or_else(|| SimUser {
            open_id: open_id.to_string(),
            union_id: String::new(),
            user_id: String::new(),
            name: String::new(),
            email: String::new(),
            enterprise_email: None,
        })
}

fn ids_json(user: &SimUser) -> Value {
    json!({ "union_id": user.union_id, "user_id": user.user_id, "open_id": user.open_id })
}

/// `meeting_event_user` of the host (user_role 2).
fn host_json(state: &State, m: &SimMeeting) -> Value {
    json!({
        "id": ids_json(&lark_user(state, &m.owner_open_id)),
        "user_role": ROLE_HOST,
        "user_type": USER_TYPE_LARK,
    })
}

/// `meeting_event_user` of whoever acted.
fn operator_json(p: &SimParticipant) -> Value {
    json!({
        "id": { "union_id": p.union_id, "user_id": p.user_id, "open_id": p.open_id },
        "user_role": if p.is_host { ROLE_HOST } else { ROLE_PARTICIPANT },
        "user_type": USER_TYPE_LARK,
    })
}

/// `meeting_event_meeting`; `full` adds `meeting_source` and `calendar_event_id` (the
/// started and ended events carry them). `end_time` is "0" while the meeting is in
/// progress: the pages do not say what a live meeting's end time holds.
fn meeting_json(state: &State, m: &SimMeeting, full: bool) -> Value {
    let mut meeting = json!({
        "id": m.id,
        "topic": m.topic,
        "meeting_no": m.meeting_no,
        "start_time": m.start_time.to_string(),
        "end_time": m.end_time.unwrap_or(0).to_string(),
        "host_user": host_json(state, m),
        "owner": host_json(state, m),
    });
    if full {
        meeting["meeting_source"] = json!(MEETING_SOURCE_OPEN_PLATFORM);
        meeting["calendar_event_id"] = json!("");
    }
    meeting
}

fn leave_event(
    state: &State,
    m: &SimMeeting,
    p: &SimParticipant,
    reason: LeaveReason,
) -> (&'static str, Value) {
    (
        "vc.meeting.leave_meeting_v1",
        json!({
            "meeting": meeting_json(state, m, false),
            "operator": operator_json(p),
            "leave_reason": reason as i64,
        }),
    )
}

#[cfg(test)]
mod tests;
