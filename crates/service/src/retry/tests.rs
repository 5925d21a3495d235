use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Debug, PartialEq)]
enum E {
    Transient,
    Permanent,
    Hinted(u64),
    Timeout,
}
impl std::fmt::Display for E {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}
impl Retryable for E {
    fn retry_hint(&self) -> RetryHint {
        match self {
            E::Transient | E::Timeout => RetryHint::Backoff,
            E::Permanent => RetryHint::Never,
            E::Hinted(s) => RetryHint::After(Duration::from_secs(*s)),
        }
    }
    fn timed_out(_: Duration) -> Self {
        E::Timeout
    }
}

#[tokio::test(start_paused = true)]
async fn transient_errors_are_retried_until_success() {
    let calls = AtomicUsize::new(0);
    let r: Result<u32, E> = with_retry(&RetryPolicy::default(), "t", || async {
        if calls.fetch_add(1, Ordering::SeqCst) < 2 {
            Err(E::Transient)
        } else {
            Ok(7)
        }
    })
    .await;
    assert_eq!(r, Ok(7));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn permanent_errors_are_not_retried() {
    let calls = AtomicUsize::new(0);
    let r: Result<u32, E> = with_retry(&RetryPolicy::default(), "t", || async {
        calls.fetch_add(1, Ordering::SeqCst);
        Err(E::Permanent)
    })
    .await;
    assert_eq!(r, Err(E::Permanent));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn server_hint_sets_the_wait() {
    let start = tokio::time::Instant::now();
    let calls = AtomicUsize::new(0);
    let r: Result<u32, E> = with_retry(&RetryPolicy::default(), "t", || async {
        if calls.fetch_add(1, Ordering::SeqCst) == 0 {
            Err(E::Hinted(7))
        } else {
            Ok(1)
        }
    })
    .await;
    assert_eq!(r, Ok(1));
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_secs(7) && waited < Duration::from_secs(8),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn attempts_are_capped_and_slow_attempts_time_out() {
    let calls = AtomicUsize::new(0);
    let policy = RetryPolicy {
        max_attempts: 3,
        attempt_timeout: Duration::from_secs(1),
        ..RetryPolicy::default()
    };
    let r: Result<u32, E> = with_retry(&policy, "t", || async {
        calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(5)).await;
        Ok(1)
    })
    .await;
    assert_eq!(r, Err(E::Timeout));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[test]
fn delays_for_counted_attempts_double_with_jitter_up_to_the_cap() {
    let (base, cap) = (Duration::from_secs(2), Duration::from_secs(60));
    for attempt in 1..=12 {
        let d = delay_for_attempt(attempt, base, cap);
        let full = base.saturating_mul(1 << (attempt - 1)).min(cap);
        assert!(d <= full && d >= full / 2, "{attempt}: {d:?} vs {full:?}");
    }
    assert!(delay_for_attempt(3, base, Duration::from_millis(100)) <= Duration::from_millis(100));
    // Absurd counts neither overflow nor panic.
    assert!(delay_for_attempt(u32::MAX, base, cap) <= cap);
}

#[tokio::test(start_paused = true)]
async fn a_stored_time_becomes_its_timer_instant_and_a_past_one_now() {
    let now = tokio::time::Instant::now();
    assert_eq!(
        timer_at(chrono::Utc::now() - chrono::Duration::hours(1)),
        now
    );
    let later = timer_at(chrono::Utc::now() + chrono::Duration::seconds(90));
    // The wall clock moves on between the two reads: within a second of 90 s ahead.
    let ahead = later - now;
    assert!(
        ahead > Duration::from_secs(89) && ahead <= Duration::from_secs(90),
        "{ahead:?}"
    );
}
