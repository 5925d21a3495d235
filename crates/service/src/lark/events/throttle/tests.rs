//! Tests of [`super`] (throttle.rs).

use super::*;

#[test]
fn one_line_per_kind_per_minute_with_the_count_of_the_rest() {
    let mut t = LogThrottle::default();
    let start = Instant::now();
    assert_eq!(t.allow("undecodable_frame", start), Some(0));
    for _ in 0..5 {
        assert_eq!(
            t.allow("undecodable_frame", start + Duration::from_secs(1)),
            None
        );
    }
    assert_eq!(t.allow("unknown_type", start), Some(0), "kinds are apart");
    assert_eq!(t.allow("undecodable_frame", start + LOG_EVERY), Some(5));
    assert_eq!(t.allow("undecodable_frame", start + LOG_EVERY), None);
}
