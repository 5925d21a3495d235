//! The attendance plan, by case: a meeting's events into at most three writes, Lark's
//! answers, the timers, and starting over.

use super::*;
use crate::ids::BookingId;
use crate::lark::Participant;

const STATUS: &str = "Lark_Session_Status__c";
const STARTED: &str = BookingSettings::SESSION_STARTED_AT_FIELD;
const ENDED: &str = BookingSettings::SESSION_ENDED_AT_FIELD;
const JOINED: &str = BookingSettings::TRAINER_JOINED_AT_FIELD;
const COUNT: &str = BookingSettings::PARTICIPANTS_FIELD;
const GUEST: &str = BookingSettings::GUEST_JOINED_FIELD;
const RECORDING: &str = BookingSettings::RECORDING_URL_FIELD;

fn settings() -> BookingSettings {
    let env = [
        ("LVB__SALESFORCE__CLIENT_ID", "c"),
        ("LVB__SALESFORCE__CLIENT_SECRET", "s"),
        ("LVB__LARK__APP_ID", "a"),
        ("LVB__LARK__APP_SECRET", "s"),
        ("LVB__SECURITY__ENCRYPTION_KEY", &"ab".repeat(32)),
        ("LVB__SECURITY__STATE_SECRET", &"s".repeat(32)),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()));
    Settings::load_from(None, env).unwrap().salesforce.booking
}

fn timing() -> Timing {
    Timing {
        attendance: true,
        grace: Duration::from_secs(3600),
        no_show_after: Some(Duration::from_secs(600)),
    }
}

/// `secs` seconds after the session's scheduled start (2026-11-26 10:00 UTC).
fn t(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_795_687_200 + secs, 0).unwrap()
}

fn row() -> AttendanceEntry {
    let mut e = AttendanceEntry::new(BookingId::parse("a0B000000000001EAA").unwrap());
    e.meeting_no = Some("123456789".into());
    e.scheduled_start = Some(t(0));
    e.scheduled_end = Some(t(3600));
    e
}

const MEETING: &str = "7000000000000000001";
const HOST: &str = "ou_host";
const GUEST_ID: &str = "ou_guest";

fn event(happening: Happening, operator: Option<&str>, at: i64) -> RecordedEvent {
    RecordedEvent {
        happening,
        meeting_no: "123456789".into(),
        meeting_id: Some(MEETING.into()),
        meeting_start: Some(t(60)),
        meeting_end: (happening == Happening::Ended).then(|| t(at)),
        owner_open_id: Some(HOST.into()),
        operator_open_id: operator.map(str::to_string),
        operator_is_host: operator == Some(HOST),
        at: Some(t(at)),
        recording_url: (happening == Happening::RecordingReady)
            .then(|| "https://meetings.example/minutes/obus1".into()),
    }
}

fn participant(id: &str, joined: i64, host: bool, external: bool) -> Participant {
    Participant {
        id: id.into(),
        first_join_time: Some(t(joined)),
        final_leave_time: Some(t(3000)),
        in_meeting_duration: None,
        user_type: None,
        is_host: host,
        is_cohost: false,
        is_external: external,
        status: Some(ParticipantState::Left),
    }
}

fn detail(id: &str, start: i64, end: Option<i64>, people: Vec<Participant>) -> MeetingDetail {
    MeetingDetail {
        id: id.into(),
        meeting_no: Some("123456789".into()),
        topic: None,
        url: None,
        start_time: Some(t(start)),
        end_time: end.map(t),
        status: Some(if end.is_some() {
            MeetingState::Ended
        } else {
            MeetingState::InProgress
        }),
        host_id: Some(HOST.into()),
        participant_count_accumulated: Some(people.len() as u32),
        participants: people,
    }
}

/// Applies `events` at their times, refreshing as the step does; returns the write owed
/// once the linger has passed (marked written), if any.
fn apply_all(e: &mut AttendanceEntry, events: &[RecordedEvent]) {
    let b = settings();
    for ev in events {
        apply_event(e, ev, ev.at.unwrap());
        refresh(e, &b, &timing(), ev.at.unwrap());
    }
}

/// The owed write, as the step makes it: marked written, the row refreshed.
fn write(e: &mut AttendanceEntry) -> Option<Map<String, Value>> {
    let fields = owed_write(e, &settings(), &timing())?;
    mark_written(e, &fields);
    let now = e.write.at.unwrap_or(t(0));
    refresh(e, &settings(), &timing(), now);
    Some(fields)
}

#[test]
fn a_meeting_costs_three_writes_start_end_recording() {
    let mut e = row();
    // Started, and the host joins within the linger: one write carries both.
    apply_all(
        &mut e,
        &[
            event(Happening::Started, None, 60),
            event(Happening::Joined, Some(HOST), 61),
        ],
    );
    assert_eq!(
        e.write.at,
        Some(t(60) + chrono::Duration::from_std(WRITE_LINGER).unwrap()),
        "the start's write waits for what comes with it"
    );
    let first = write(&mut e).expect("the start is written");
    assert_eq!(first[STATUS], json!("In Progress"));
    assert_eq!(first[STARTED], datetime_value(t(60)));
    assert_eq!(first[JOINED], datetime_value(t(61)));
    assert!(
        !first.contains_key(COUNT),
        "no count while it runs: {first:?}"
    );

    // The guest joins, people leave: nothing worth a write.
    apply_all(
        &mut e,
        &[
            event(Happening::Joined, Some(GUEST_ID), 120),
            event(Happening::Left, Some(GUEST_ID), 3000),
            event(Happening::Left, Some(HOST), 3001),
        ],
    );
    assert_eq!(owed_write(&e, &settings(), &timing()), None);
    assert_eq!(e.write.at, None);

    // Ended: the participants call is owed first; the end is written once it answered.
    apply_all(&mut e, &[event(Happening::Ended, Some(HOST), 3002)]);
    assert_eq!(e.details.at, Some(t(3002)));
    assert_eq!(
        owed_write(&e, &settings(), &timing()),
        None,
        "waits for the count"
    );
    assert!(due(&e, &timing(), t(3002)).details);
    apply_details(
        &mut e,
        &detail(
            MEETING,
            60,
            Some(3002),
            vec![
                participant(HOST, 61, true, false),
                participant(GUEST_ID, 120, false, true),
            ],
        ),
    );
    refresh(&mut e, &settings(), &timing(), t(3003));
    let second = write(&mut e).expect("the end is written");
    assert_eq!(second[STATUS], json!("Completed"));
    assert_eq!(second[ENDED], datetime_value(t(3002)));
    assert_eq!(second[COUNT], json!(2));
    assert_eq!(second[GUEST], json!(true));
    assert!(
        !second.contains_key(STARTED),
        "what was written stays: {second:?}"
    );

    // The recording: the third write, with the URL alone.
    apply_all(&mut e, &[event(Happening::RecordingReady, None, 3600)]);
    let third = write(&mut e).expect("the recording is written");
    assert_eq!(
        third,
        Map::from_iter([(
            RECORDING.to_string(),
            json!("https://meetings.example/minutes/obus1")
        )])
    );
    assert_eq!(owed_write(&e, &settings(), &timing()), None);
    assert_eq!(e.due_at, None, "nothing more is due");
}

#[test]
fn a_late_host_join_rides_with_the_end_and_is_never_a_write_of_its_own() {
    let mut e = row();
    apply_all(
        &mut e,
        &[
            event(Happening::Started, None, 60),
            event(Happening::Joined, Some(GUEST_ID), 61),
        ],
    );
    let first = write(&mut e).unwrap();
    assert!(!first.contains_key(JOINED), "{first:?}");
    apply_all(&mut e, &[event(Happening::Joined, Some(HOST), 900)]);
    assert_eq!(owed_write(&e, &settings(), &timing()), None);
    apply_all(&mut e, &[event(Happening::Ended, None, 3000)]);
    apply_details(&mut e, &detail(MEETING, 60, Some(3000), vec![]));
    refresh(&mut e, &settings(), &timing(), t(3001));
    let second = write(&mut e).unwrap();
    assert_eq!(second[JOINED], datetime_value(t(900)));
    assert_eq!(second[COUNT], json!(2), "the events' participants count");
}

#[test]
fn an_event_applied_twice_changes_nothing_twice() {
    let events = [
        event(Happening::Started, Some(HOST), 60),
        event(Happening::Joined, Some(HOST), 61),
        event(Happening::Joined, Some(GUEST_ID), 70),
        event(Happening::Ended, None, 3000),
        event(Happening::RecordingReady, None, 3100),
    ];
    let mut once = row();
    apply_all(&mut once, &events);
    let mut twice = row();
    apply_all(&mut twice, &events);
    apply_all(&mut twice, &events);
    assert_eq!(once, twice);
    assert_eq!(once.participant_ids, vec![HOST, GUEST_ID]);
}

#[test]
fn a_meeting_before_the_session_window_is_not_the_session() {
    let mut e = row();
    let mut early = event(Happening::Started, Some(HOST), -86_400);
    early.meeting_start = Some(t(-86_400));
    assert_eq!(
        apply_event(&mut e, &early, t(-86_400)),
        Applied::BeforeSession
    );
    assert_eq!(e, row(), "the trainer trying the link the day before");
}

#[test]
fn a_new_meeting_after_the_end_reopens_the_session() {
    let mut e = row();
    apply_all(
        &mut e,
        &[
            event(Happening::Started, Some(HOST), 60),
            event(Happening::Ended, None, 600),
        ],
    );
    apply_details(&mut e, &detail(MEETING, 60, Some(600), vec![]));
    assert_eq!(status(&e), Some(SessionStatus::Completed));
    let mut again = event(Happening::Started, Some(HOST), 700);
    again.meeting_id = Some("7000000000000000002".into());
    again.meeting_start = Some(t(700));
    apply_event(&mut e, &again, t(700));
    assert_eq!(status(&e), Some(SessionStatus::InProgress));
    assert_eq!(
        e.started_at,
        Some(t(60)),
        "the session started with the first"
    );
    assert_eq!(e.meeting_id.as_deref(), Some("7000000000000000002"));
    // A late event of the first meeting does not reopen or end anything.
    let mut late_end = event(Happening::Ended, None, 600);
    late_end.meeting_id = Some(MEETING.into());
    apply_event(&mut e, &late_end, t(710));
    assert_eq!(e.ended_at, None);
}

#[test]
fn the_post_end_lookup_finds_no_meeting_a_running_one_or_an_ended_one() {
    let b = settings();
    // Nothing at all: No Show, one write with the status alone.
    let mut none = row();
    assert_eq!(
        apply_lookup(&mut none, &[], &timing(), t(7200)),
        LookedUp::NoMeeting
    );
    refresh(&mut none, &b, &timing(), t(7200));
    assert_eq!(
        write(&mut none).unwrap(),
        Map::from_iter([(STATUS.to_string(), json!("No Show"))])
    );
    assert_eq!(none.due_at, None);

    // Still running: In Progress, and looked at again after the grace.
    let mut running = row();
    let found = apply_lookup(
        &mut running,
        &[detail(
            MEETING,
            120,
            None,
            vec![participant(HOST, 130, true, false)],
        )],
        &timing(),
        t(7200),
    );
    assert_eq!(found, LookedUp::StillRunning);
    assert_eq!(status(&running), Some(SessionStatus::InProgress));
    assert_eq!(running.lookup.at, Some(t(7200 + 3600)));
    refresh(&mut running, &b, &timing(), t(7200));
    assert!(running.due_at.is_some());

    // Ended: everything the events would have said, in one write.
    let mut ended = row();
    let found = apply_lookup(
        &mut ended,
        &[
            // Meetings before the session's window are not the session's.
            detail("7000000000000000000", -86_400, Some(-86_000), vec![]),
            detail(
                MEETING,
                120,
                Some(3500),
                vec![
                    participant(HOST, 130, true, false),
                    participant("ou_x", 140, false, true),
                ],
            ),
        ],
        &timing(),
        t(7200),
    );
    assert_eq!(found, LookedUp::Ended);
    refresh(&mut ended, &b, &timing(), t(7200));
    let fields = write(&mut ended).unwrap();
    assert_eq!(fields[STATUS], json!("Completed"));
    assert_eq!(fields[STARTED], datetime_value(t(120)));
    assert_eq!(fields[ENDED], datetime_value(t(3500)));
    assert_eq!(fields[JOINED], datetime_value(t(130)));
    assert_eq!(fields[COUNT], json!(2));
    assert_eq!(fields[GUEST], json!(true));
}

#[test]
fn a_booking_rescheduled_after_no_show_starts_over() {
    let b = settings();
    let mut e = row();
    apply_lookup(&mut e, &[], &timing(), t(7200));
    refresh(&mut e, &b, &timing(), t(7200));
    write(&mut e).unwrap();
    let later = SessionTimes {
        booking_id: e.booking_id.clone(),
        start: Some(t(86_400)),
        end: Some(t(90_000)),
        live: true,
    };
    assert!(note_schedule(&mut e, &later));
    assert!(!e.no_show && !e.lookup_done);
    refresh(&mut e, &b, &timing(), t(8000));
    assert_eq!(
        write(&mut e).unwrap(),
        Map::from_iter([(STATUS.to_string(), Value::Null)]),
        "the No Show is cleared"
    );
    assert_eq!(
        e.due_at,
        Some(t(86_400 + 600)),
        "the new session's no-show check is next"
    );
    // The same times again change nothing.
    let before = e.clone();
    assert!(!note_schedule(&mut e, &later));
    assert_eq!(e, before);
}

#[test]
fn timers_no_show_at_start_plus_wait_lookup_at_end_plus_grace() {
    let b = settings();
    let mut e = row();
    refresh(&mut e, &b, &timing(), t(-100));
    assert_eq!(e.due_at, Some(t(600)));
    assert!(!due(&e, &timing(), t(599)).no_show_check);
    assert!(due(&e, &timing(), t(600)).no_show_check);

    // The host joined: the next is the lookup at the end + grace.
    apply_all(&mut e, &[event(Happening::Joined, Some(HOST), 30)]);
    write(&mut e);
    refresh(&mut e, &b, &timing(), t(40));
    assert_eq!(e.due_at, Some(t(3600 + 3600)));
    assert!(due(&e, &timing(), t(7200)).lookup);

    // A host join before the session's window does not count as present.
    let mut early = row();
    early.host_joined_at = Some(t(-7200));
    refresh(&mut early, &b, &timing(), t(-100));
    assert_eq!(early.due_at, Some(t(600)));

    // Closed: nothing is due, events or not.
    let mut closed = row();
    let id = closed.booking_id.clone();
    note_schedule(
        &mut closed,
        &SessionTimes {
            booking_id: id,
            start: None,
            end: None,
            live: false,
        },
    );
    refresh(&mut closed, &b, &timing(), t(0));
    assert_eq!(closed.due_at, None);

    // With attendance off and the alert off nothing is written nor looked up.
    let off = Timing {
        attendance: false,
        grace: Duration::from_secs(60),
        no_show_after: None,
    };
    let mut quiet = row();
    apply_all(&mut quiet, &[event(Happening::Started, Some(HOST), 60)]);
    refresh(&mut quiet, &b, &off, t(70));
    assert_eq!(owed_write(&quiet, &b, &off), None);
    assert_eq!(quiet.due_at, None);
}

#[test]
fn a_claimed_alert_left_unfinished_is_due_at_once_and_never_claimed_again() {
    let b = settings();
    let mut e = row();
    e.alert_claimed_at = Some(t(600));
    refresh(&mut e, &b, &timing(), t(700));
    assert_eq!(e.due_at, Some(t(600)));
    e.alert_done = true;
    refresh(&mut e, &b, &timing(), t(700));
    assert_eq!(e.due_at, Some(t(7200)), "only the lookup is left");
}

#[test]
fn a_given_up_write_waits_for_the_meetings_next_news() {
    let b = settings();
    let mut e = row();
    apply_all(&mut e, &[event(Happening::Started, Some(HOST), 60)]);
    e.write = Owed {
        at: None,
        attempts: WRITE_ATTEMPTS,
    };
    refresh(&mut e, &b, &timing(), t(100));
    assert_eq!(e.write.at, None, "given up");
    apply_all(&mut e, &[event(Happening::Joined, Some(GUEST_ID), 120)]);
    assert!(e.write.at.is_some(), "news re-arms it");
}

#[test]
fn guests_long_urls_and_backoff() {
    let mut e = row();
    e.owner_open_id = None;
    e.participant_ids = vec!["a".into()];
    assert!(!guest_joined(&e));
    e.participant_ids.push("b".into());
    assert!(
        guest_joined(&e),
        "without the owner a second person is a guest"
    );
    e.owner_open_id = Some("a".into());
    e.participant_ids = vec!["a".into()];
    assert!(!guest_joined(&e), "the host alone");

    e.recording_url = Some(format!("https://x.example/{}", "a".repeat(300)));
    assert_eq!(fields(&e, &settings())[RECORDING], Value::Null);

    assert_eq!(backoff(1), Duration::from_secs(60));
    assert_eq!(backoff(2), Duration::from_secs(120));
    assert_eq!(backoff(40), RETRY_CAP);
}
