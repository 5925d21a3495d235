use super::*;
use crate::lark::messages::MAX_UUID_LEN;

#[test]
fn subjects_have_stable_keys_and_uuids_per_day() {
    let id = BookingId::parse("a0B5g00000AbCdE").unwrap();
    let s = Subject::Failed(id.clone());
    assert_eq!(s.key(), format!("failed:{id}"));
    let t = TrainerId::parse("a0T000000000001").unwrap();
    assert_eq!(
        Subject::Disconnected(t.clone()).key(),
        format!("disconnected:{t}")
    );
    let a = message_uuid(&s.key(), day(0));
    assert!(a.len() <= MAX_UUID_LEN, "{a}");
    assert_eq!(a, message_uuid(&s.key(), day(0)));
    assert_ne!(a, message_uuid(&s.key(), day(1)));
    assert_ne!(a, message_uuid(&format!("pending:{id}"), day(0)));
}

#[test]
fn long_texts_are_clipped() {
    assert_eq!(clip("abc", 5), "abc");
    assert_eq!(clip("abcdef", 3), "abc…");
    assert_eq!(clip("ééé", 2), "éé…");
}

fn day(n: u64) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 12, 7).unwrap() + chrono::Days::new(n)
}
