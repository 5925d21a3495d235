use super::*;

#[test]
fn contacts_and_app_hosted_reservations_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    {
        let s = Store::open(&path).unwrap();
        s.remember_contact("Ana@Example.com ", Some("ou_ana"), 100)
            .unwrap();
        s.remember_contact("nobody@example.com", None, 200).unwrap();
        s.record_app_hosted(&AppHostedEntry {
            booking_id: "b1".into(),
            reservation_id: "r1".into(),
            owner_open_id: "ou_ana".into(),
            trainer_id: "t1".into(),
            created_at: 100,
        })
        .unwrap();
    }
    let s = Store::open(&path).unwrap();
    let ana = s.cached_contact("ana@example.com").unwrap().unwrap();
    assert_eq!(ana.open_id.as_deref(), Some("ou_ana"));
    assert_eq!(ana.checked_at, 100);
    let nobody = s.cached_contact("NOBODY@example.com").unwrap().unwrap();
    assert_eq!(nobody.open_id, None, "a miss is remembered too");
    assert!(s.cached_contact("else@example.com").unwrap().is_none());
    assert_eq!(s.prune_contacts(150).unwrap(), 1);
    assert!(s.cached_contact("ana@example.com").unwrap().is_none());

    let hosted = s.app_hosted("b1").unwrap().unwrap();
    assert_eq!(
        (
            hosted.reservation_id.as_str(),
            hosted.owner_open_id.as_str()
        ),
        ("r1", "ou_ana")
    );
    assert!(s.app_hosted("b2").unwrap().is_none());
    let b2 = AppHostedEntry {
        booking_id: "b2".into(),
        reservation_id: "r2".into(),
        owner_open_id: "ou_ana".into(),
        trainer_id: "t1".into(),
        created_at: 50,
    };
    s.record_app_hosted(&b2).unwrap();
    s.record_reservation(
        &crate::store::ReservationEntry {
            booking_id: "b2".into(),
            reservation_id: "r2".into(),
            trainer_id: "t1".into(),
            url: "u".into(),
            end_time: 10,
            topic: None,
        },
        50,
    )
    .unwrap();
    assert_eq!(s.prune_app_hosted(100).unwrap(), 0, "made at 100: kept");
    assert_eq!(
        s.prune_app_hosted(101).unwrap(),
        1,
        "b1 has no journal entry"
    );
    assert!(s.app_hosted("b1").unwrap().is_none());
    s.forget_app_hosted("b1").unwrap();
}
