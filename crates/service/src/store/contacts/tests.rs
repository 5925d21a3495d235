use super::*;
use crate::store::test_support::{at, b, t};

#[test]
fn contacts_and_app_hosted_reservations_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    {
        let s = Store::open(&path).unwrap();
        s.remember_contact("Ana@Example.com ", Some("ou_ana"), at(100))
            .unwrap();
        s.remember_contact("nobody@example.com", None, at(200))
            .unwrap();
        s.record_app_hosted(&AppHostedEntry {
            booking_id: b(1),
            reservation_id: "r1".into(),
            owner_open_id: "ou_ana".into(),
            trainer_id: t(1),
            created_at: at(100),
        })
        .unwrap();
    }
    let s = Store::open(&path).unwrap();
    let ana = s.cached_contact("ana@example.com").unwrap().unwrap();
    assert_eq!(ana.open_id.as_deref(), Some("ou_ana"));
    assert_eq!(ana.checked_at, at(100));
    let nobody = s.cached_contact("NOBODY@example.com").unwrap().unwrap();
    assert_eq!(nobody.open_id, None, "a miss is remembered too");
    assert!(s.cached_contact("else@example.com").unwrap().is_none());
    assert_eq!(s.prune_contacts(at(150)).unwrap(), 1);
    assert!(s.cached_contact("ana@example.com").unwrap().is_none());

    let hosted = s.app_hosted(&b(1)).unwrap().unwrap();
    assert_eq!(
        (
            hosted.reservation_id.as_str(),
            hosted.owner_open_id.as_str()
        ),
        ("r1", "ou_ana")
    );
    assert!(s.app_hosted(&b(2)).unwrap().is_none());
    let b2 = AppHostedEntry {
        booking_id: b(2),
        reservation_id: "r2".into(),
        owner_open_id: "ou_ana".into(),
        trainer_id: t(1),
        created_at: at(50),
    };
    s.record_app_hosted(&b2).unwrap();
    s.record_reservation(
        &crate::store::ReservationEntry {
            booking_id: b(2),
            reservation_id: "r2".into(),
            trainer_id: t(1),
            url: "u".into(),
            end_time: at(10),
            topic: None,
            meeting_no: None,
        },
        at(50),
    )
    .unwrap();
    assert_eq!(s.prune_app_hosted(at(100)).unwrap(), 0, "made at 100: kept");
    assert_eq!(
        s.prune_app_hosted(at(101)).unwrap(),
        1,
        "b1 has no journal entry"
    );
    assert!(s.app_hosted(&b(1)).unwrap().is_none());
    s.forget_app_hosted(&b(1)).unwrap();
}
