use super::*;
use crate::store::test_support::{at, b, t};

#[test]
fn owed_deletions_are_recorded_once_listed_by_host_settled_and_pruned() {
    let s = Store::in_memory().unwrap();
    let reservation = OwedDeletion {
        item: OwedItem::Reservation {
            reservation_id: "r1".into(),
        },
        booking_id: b(1),
        trainer_id: t(1),
        ends_at: at(1_000),
    };
    let event = OwedDeletion {
        item: OwedItem::Event {
            calendar_id: "cal".into(),
            event_id: "ev_0".into(),
        },
        booking_id: b(1),
        trainer_id: t(1),
        ends_at: at(1_000),
    };
    let other = OwedDeletion {
        item: OwedItem::Reservation {
            reservation_id: "r2".into(),
        },
        booking_id: b(2),
        trainer_id: t(2),
        ends_at: at(5_000),
    };
    assert!(s.owe_deletion(&reservation, at(10)).unwrap());
    assert!(!s.owe_deletion(&reservation, at(11)).unwrap(), "once");
    assert!(s.owe_deletion(&event, at(12)).unwrap());
    assert!(s.owe_deletion(&other, at(13)).unwrap());
    assert_eq!(
        s.owed_deletions_of(&t(1)).unwrap(),
        vec![reservation.clone(), event.clone()]
    );
    s.settle_owed(&event.item).unwrap();
    assert_eq!(s.owed_deletions_of(&t(1)).unwrap(), vec![reservation]);
    assert_eq!(s.prune_owed(at(2_000)).unwrap(), 1, "r1's meeting ended");
    assert_eq!(s.owed_deletions().unwrap(), vec![other]);
}
