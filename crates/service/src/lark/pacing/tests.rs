use super::*;
use crate::lark::test_support::max_in_window;
use std::sync::Arc;

/// Spawns `n` callers in order; returns (caller, start time, position in start order).
async fn run_burst(pacer: Arc<Pacer>, n: usize) -> Vec<(usize, Instant, usize)> {
    let order = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut handles = Vec::new();
    for i in 0..n {
        let pacer = pacer.clone();
        let order = order.clone();
        handles.push(tokio::spawn(async move {
            pacer.acquire().await;
            let position = order.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            (i, Instant::now(), position)
        }));
        // Spawned in order, so they queue in order: let each reach the lock.
        tokio::task::yield_now().await;
    }
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test(start_paused = true)]
async fn burst_runs_at_both_limits_and_never_above() {
    let t0 = Instant::now();
    let starts = run_burst(Arc::new(Pacer::for_reserve_apply()), 1100).await;
    let times: Vec<Instant> = starts.iter().map(|(_, t, _)| *t).collect();

    assert!(max_in_window(&times, Duration::from_secs(1)) <= APPLY_PER_SECOND);
    assert!(max_in_window(&times, Duration::from_secs(60)) <= APPLY_PER_MINUTE);

    // At the limit (less the margin): 50 every 1.1 s, so all 1000 within 21 s...
    let second = Duration::from_secs(1) + WINDOW_MARGIN;
    let in_first_minute = times
        .iter()
        .filter(|&&t| t < t0 + Duration::from_secs(60))
        .count();
    assert_eq!(in_first_minute, APPLY_PER_MINUTE);
    assert_eq!(times[49], t0);
    assert_eq!(times[50], t0 + second);
    assert_eq!(times[999], t0 + second * 19);
    // ...and the 1001st exactly when the first leaves the (padded) minute window.
    assert_eq!(times[1000], t0 + Duration::from_secs(60) + WINDOW_MARGIN);
}

#[tokio::test(start_paused = true)]
async fn waiters_start_in_arrival_order() {
    let pacer = Arc::new(Pacer::new(&[Limit {
        max: 3,
        window: Duration::from_secs(1),
    }]));
    let t0 = Instant::now();
    let starts = run_burst(pacer, 10).await;
    for (caller, at, position) in starts {
        // FIFO: the n-th caller to arrive is the n-th to start, in batches of three.
        assert_eq!(position, caller);
        assert_eq!(at, t0 + Duration::from_secs((caller / 3) as u64));
    }
}

#[test]
fn window_counting_is_half_open() {
    let t = Instant::now();
    let s = [t, t + Duration::from_secs(1)];
    assert_eq!(max_in_window(&s, Duration::from_secs(1)), 1);
    let s = [t, t + Duration::from_millis(999)];
    assert_eq!(max_in_window(&s, Duration::from_secs(1)), 2);
}
