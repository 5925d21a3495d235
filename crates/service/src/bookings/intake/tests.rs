//! What a stream batch takes in while it runs, and what it leaves for the next batch.

use super::*;
use crate::config::{SalesforceSettings, Settings};
use crate::salesforce::events::{ChangeEvent, ChangeKind};

const OWN_USER: &str = "005000000000001AAA";
const A: &str = "a0B000000000001EAA";
const B: &str = "a0B000000000002EAA";
const C: &str = "a0B000000000003EAA";

fn settings() -> SalesforceSettings {
    let unused = std::path::Path::new("unused.db");
    Settings::for_simulators("http://127.0.0.1:9", "http://127.0.0.1:9", unused)
        .unwrap()
        .salesforce
}

/// A batch of `first` and what waits behind it, handed over a query's worth at a time.
fn start<'a>(
    first: StreamItem,
    intake: &'a mut Intake,
    metrics: &'a Metrics,
    settings: &'a SalesforceSettings,
) -> Batch<'a> {
    let own = Some(OWN_USER.to_string());
    Batch::start(first, intake, metrics, settings, own, MAX_IDS_PER_QUERY)
}

/// A change to `id` by a user (not the service), at `replay`.
fn edit(replay: i64, id: &str) -> StreamItem {
    change(replay, ChangeKind::Update, id, "005000000000009AAA")
}

fn change(replay: i64, kind: ChangeKind, id: &str, user: &str) -> StreamItem {
    let s = settings();
    StreamItem::Event(ChangeEvent {
        replay_id: replay,
        channel: s.streaming.channel.clone(),
        kind,
        entity: s.booking.object.clone(),
        record_ids: vec![id.to_string()],
        commit_user: Some(user.to_string()),
        changed_fields: vec!["Start__c".to_string()],
        commit_timestamp: None,
        transaction_key: None,
        sequence_number: None,
    })
}

fn ids(chunk: &IdChunk) -> Vec<&str> {
    chunk.ids.iter().map(|id| id.as_str()).collect()
}

fn replay(item: Option<StreamItem>) -> Option<i64> {
    match item? {
        StreamItem::Event(ev) => Some(ev.replay_id),
        other => panic!("expected an event, got {other:?}"),
    }
}

#[test]
fn a_batch_takes_in_bookings_that_arrive_while_it_runs_and_its_own_writes_events() {
    let (tx, rx) = mpsc::channel(16);
    let mut intake = Intake::new(rx);
    let (metrics, s) = (Metrics::default(), settings());
    tx.try_send(edit(2, B)).unwrap();
    let mut batch = start(edit(1, A), &mut intake, &metrics, &s);
    assert_eq!(ids(&batch.next_chunk().unwrap()), [A, B]);
    // While A and B are worked on: the service's own write to A, and a new booking C.
    tx.try_send(change(3, ChangeKind::Update, A, OWN_USER))
        .unwrap();
    tx.try_send(edit(4, C)).unwrap();
    assert_eq!(ids(&batch.next_chunk().unwrap()), [C]);
    assert!(batch.next_chunk().is_none(), "nothing more is waiting");
    assert_eq!(
        batch.work.last_replay,
        Some(4),
        "the checkpoint covers all four"
    );
    assert_eq!(batch.work.ids.len(), 3);
    drop(batch);
    assert!(intake.try_recv().is_none(), "nothing was left behind");
}

#[test]
fn a_change_to_a_booking_already_handed_over_waits_for_the_next_batch_with_all_behind_it() {
    let (tx, rx) = mpsc::channel(16);
    let mut intake = Intake::new(rx);
    let (metrics, s) = (Metrics::default(), settings());
    let mut batch = start(edit(1, A), &mut intake, &metrics, &s);
    assert_eq!(ids(&batch.next_chunk().unwrap()), [A]);
    // A user edits A while it is being worked on (read before the edit), then makes C.
    tx.try_send(edit(2, A)).unwrap();
    tx.try_send(edit(3, C)).unwrap();
    assert!(
        batch.next_chunk().is_none(),
        "the edit to A is not taken in, nor C behind it"
    );
    assert!(batch.next_chunk().is_none(), "and no more once it stopped");
    assert_eq!(
        batch.work.last_replay,
        Some(1),
        "the checkpoint stops before the edit"
    );
    drop(batch);
    assert_eq!(
        replay(intake.try_recv()),
        Some(2),
        "the next batch starts with the edit"
    );
    assert_eq!(replay(intake.try_recv()), Some(3));
}

#[test]
fn repeats_of_a_booking_not_yet_handed_over_are_one_read_and_keep_the_edit() {
    let (tx, rx) = mpsc::channel(16);
    let mut intake = Intake::new(rx);
    let (metrics, s) = (Metrics::default(), settings());
    // A gap event (who changed it is not known), then a user's edit of the same booking.
    tx.try_send(change(2, ChangeKind::GapUpdate, B, OWN_USER))
        .unwrap();
    tx.try_send(edit(3, B)).unwrap();
    let mut batch = start(edit(1, A), &mut intake, &metrics, &s);
    let chunk = batch.next_chunk().unwrap();
    assert_eq!(ids(&chunk), [A, B]);
    assert!(chunk.edited.contains(&BookingId::parse(B).unwrap()));
    assert_eq!(batch.work.last_replay, Some(3));
}

#[test]
fn a_sweep_or_replay_gap_after_bookings_were_handed_over_starts_the_next_batch() {
    for (item, is_gap) in [
        (change(2, ChangeKind::GapOverflow, A, OWN_USER), false),
        (
            StreamItem::ReplayGap {
                reason: "invalid".into(),
            },
            true,
        ),
    ] {
        let (tx, rx) = mpsc::channel(16);
        let mut intake = Intake::new(rx);
        let (metrics, s) = (Metrics::default(), settings());
        let mut batch = start(edit(1, A), &mut intake, &metrics, &s);
        assert!(batch.next_chunk().is_some());
        tx.try_send(item).unwrap();
        assert!(batch.next_chunk().is_none());
        assert!(!batch.work.sweep, "this batch's end runs no sweep");
        drop(batch);
        let carried = intake.try_recv().unwrap();
        assert_eq!(matches!(carried, StreamItem::ReplayGap { .. }), is_gap);
        // The next batch, starting with it, sweeps.
        let batch = start(carried, &mut intake, &metrics, &s);
        assert!(batch.work.sweep);
    }
}

#[test]
fn a_batch_takes_in_no_more_than_its_cap_of_bookings() {
    let (tx, rx) = mpsc::channel(MAX_BATCH_BOOKINGS + 10);
    let mut intake = Intake::new(rx);
    let (metrics, s) = (Metrics::default(), settings());
    for i in 1..=MAX_BATCH_BOOKINGS + 5 {
        let id = format!("a0B{:012}EAA", 1_000 + i);
        tx.try_send(edit(i as i64 + 1, &id)).unwrap();
    }
    let mut batch = start(edit(1, A), &mut intake, &metrics, &s);
    let mut handed = 0;
    while let Some(chunk) = batch.next_chunk() {
        assert!(chunk.ids.len() <= MAX_IDS_PER_QUERY);
        handed += chunk.ids.len();
    }
    assert_eq!(handed, MAX_BATCH_BOOKINGS);
    drop(batch);
    let mut left = 0;
    while intake.try_recv().is_some() {
        left += 1;
    }
    assert_eq!(left, 6, "the rest waits for the next batch");
}
