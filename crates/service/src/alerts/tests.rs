use super::*;
use crate::lark::messages::MAX_UUID_LEN;

#[test]
fn subjects_have_stable_keys_and_uuids_per_day() {
    let s = Subject::Failed("a0B5g00000AbCdEAAV".into());
    assert_eq!(s.key(), "failed:a0B5g00000AbCdEAAV");
    assert_eq!(Subject::Disconnected("x".into()).key(), "disconnected:x");
    let a = message_uuid(&s.key(), 20_000);
    assert!(a.len() <= MAX_UUID_LEN, "{a}");
    assert_eq!(a, message_uuid(&s.key(), 20_000));
    assert_ne!(a, message_uuid(&s.key(), 20_001));
    assert_ne!(a, message_uuid("pending:a0B5g00000AbCdEAAV", 20_000));
}

#[test]
fn long_texts_are_clipped() {
    assert_eq!(clip("abc", 5), "abc");
    assert_eq!(clip("abcdef", 3), "abc…");
    assert_eq!(clip("ééé", 2), "éé…");
}
