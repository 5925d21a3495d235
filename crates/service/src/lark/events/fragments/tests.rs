//! Tests of [`super`] (fragments.rs).

use super::*;

fn at(start: Instant, secs: u64) -> Instant {
    start + Duration::from_secs(secs)
}

#[test]
fn fragments_join_in_seq_order_whatever_order_they_arrive_in() {
    let mut f = Fragments::default();
    let t = Instant::now();
    assert_eq!(f.add("m", 3, 2, b"C".to_vec(), t), Joined::Waiting);
    assert_eq!(f.add("m", 3, 0, b"AA".to_vec(), t), Joined::Waiting);
    assert_eq!(f.cached_bytes(), 3);
    assert_eq!(
        f.add("m", 3, 1, b"B".to_vec(), t),
        Joined::Complete(b"AABC".to_vec())
    );
    assert_eq!((f.open_sets(), f.cached_bytes()), (0, 0));
    // A lone frame is its own message.
    assert_eq!(
        f.add("n", 1, 0, b"x".to_vec(), t),
        Joined::Complete(b"x".to_vec())
    );
    // Interleaved messages do not mix; a fragment sent twice counts once.
    assert_eq!(f.add("a", 2, 0, b"a0".to_vec(), t), Joined::Waiting);
    assert_eq!(f.add("b", 2, 1, b"b1".to_vec(), t), Joined::Waiting);
    assert_eq!(f.add("a", 2, 0, b"a0".to_vec(), t), Joined::Waiting);
    assert_eq!(f.cached_bytes(), 4);
    assert_eq!(
        f.add("b", 2, 0, b"b0".to_vec(), t),
        Joined::Complete(b"b0b1".to_vec())
    );
    assert_eq!(
        f.add("a", 2, 1, b"a1".to_vec(), t),
        Joined::Complete(b"a0a1".to_vec())
    );
}

#[test]
fn an_incomplete_set_expires_five_seconds_after_its_last_fragment() {
    let mut f = Fragments::default();
    let t = Instant::now();
    f.add("m", 2, 0, b"A".to_vec(), t);
    f.add("k", 2, 0, b"K".to_vec(), at(t, 3));
    assert_eq!(f.next_expiry(), Some(at(t, 5)));
    assert_eq!(f.expire(at(t, 4)), 0);
    assert_eq!(f.expire(at(t, 5)), 1, "m's last fragment is 5 s old");
    assert_eq!((f.open_sets(), f.cached_bytes()), (1, 1));
    // A late fragment of the expired message starts a new set: it never completes alone.
    assert_eq!(f.add("m", 2, 1, b"B".to_vec(), at(t, 6)), Joined::Waiting);
    // k's second fragment arrives in time: its timer had restarted at 3 s.
    assert_eq!(
        f.add("k", 2, 1, b"L".to_vec(), at(t, 7)),
        Joined::Complete(b"KL".to_vec())
    );
    assert_eq!(f.expire(at(t, 11)), 1);
    assert_eq!(
        (f.open_sets(), f.cached_bytes(), f.next_expiry()),
        (0, 0, None)
    );
}

#[test]
fn absurd_sum_and_seq_are_refused_without_allocating() {
    let mut f = Fragments::default();
    let t = Instant::now();
    assert_eq!(f.add("m", usize::MAX, 0, b"A".to_vec(), t), Joined::Invalid);
    assert_eq!(
        f.add("m", MAX_FRAGMENTS + 1, 0, b"A".to_vec(), t),
        Joined::Invalid
    );
    assert_eq!(f.add("m", 2, 2, b"A".to_vec(), t), Joined::Invalid);
    assert_eq!(f.open_sets(), 0);
    // A set whose fragments disagree on sum is dropped whole.
    assert_eq!(f.add("m", 3, 0, b"A".to_vec(), t), Joined::Waiting);
    assert_eq!(f.add("m", 2, 1, b"B".to_vec(), t), Joined::Invalid);
    assert_eq!((f.open_sets(), f.cached_bytes()), (0, 0));
}

#[test]
fn the_byte_caps_hold() {
    let mut f = Fragments::default();
    let t = Instant::now();
    // One message over its cap is dropped.
    let half = vec![0u8; MAX_MESSAGE_BYTES / 2 + 1];
    assert_eq!(f.add("big", 3, 0, half.clone(), t), Joined::Waiting);
    assert_eq!(f.add("big", 3, 1, half.clone(), t), Joined::TooLarge);
    assert_eq!((f.open_sets(), f.cached_bytes()), (0, 0));
    assert_eq!(
        f.add("lone", 1, 0, vec![0u8; MAX_MESSAGE_BYTES + 1], t),
        Joined::TooLarge
    );

    // Many messages together: the oldest sets go first, the total stays under the cap.
    let chunk = vec![0u8; MAX_MESSAGE_BYTES / 2];
    let sets = MAX_CACHED_BYTES / chunk.len() + 3;
    for i in 0..sets {
        let id = format!("m{i}");
        let joined = f.add(&id, 2, 0, chunk.clone(), at(t, i as u64));
        assert_eq!(joined, Joined::Waiting, "{id}");
        assert!(f.cached_bytes() <= MAX_CACHED_BYTES);
    }
    assert_eq!(f.open_sets(), MAX_CACHED_BYTES / chunk.len());
    // The newest sets were kept and can complete; the oldest were dropped.
    let last = format!("m{}", sets - 1);
    assert!(matches!(
        f.add(&last, 2, 1, b"!".to_vec(), at(t, sets as u64)),
        Joined::Complete(_)
    ));
    assert_eq!(
        f.add("m0", 2, 1, b"!".to_vec(), at(t, sets as u64)),
        Joined::Waiting
    );
}

#[test]
fn the_number_of_open_sets_is_capped() {
    let mut f = Fragments::default();
    let t = Instant::now();
    for i in 0..MAX_OPEN_SETS + 10 {
        f.add(&format!("m{i}"), 2, 0, b"x".to_vec(), at(t, i as u64));
    }
    assert_eq!(f.open_sets(), MAX_OPEN_SETS);
    assert_eq!(f.cached_bytes(), MAX_OPEN_SETS);
}
