use super::*;

#[test]
fn retry_delays_double_with_jitter_up_to_the_cap() {
    let cap = Duration::from_secs(60);
    for attempts in 1..=12 {
        let d = retry_delay(attempts, cap);
        let full = RETRY_BASE_DELAY
            .saturating_mul(1 << (attempts - 1))
            .min(cap);
        assert!(d <= full && d >= full / 2, "{attempts}: {d:?} vs {full:?}");
    }
    assert!(retry_delay(3, Duration::from_millis(100)) <= Duration::from_millis(100));
}
