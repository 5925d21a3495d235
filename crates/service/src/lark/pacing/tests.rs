use super::*;
use std::sync::Arc;

/// The simulated time between a call's start and its answer.
const ANSWER_AFTER: Duration = Duration::from_millis(30);

/// Spawns `n` callers in order, each answered [`ANSWER_AFTER`] after it starts; returns
/// (caller, start, answer, position in start order).
async fn run_burst(pacer: Arc<Pacer>, n: usize) -> Vec<(usize, Instant, Instant, usize)> {
    let order = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut handles = Vec::new();
    for i in 0..n {
        let pacer = pacer.clone();
        let order = order.clone();
        handles.push(tokio::spawn(async move {
            let slot = pacer.acquire().await;
            let position = order.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let started = Instant::now();
            tokio::time::sleep(ANSWER_AFTER).await;
            drop(slot);
            (i, started, Instant::now(), position)
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

/// Most calls Lark could have counted in one `window`, wherever in (start, answer] each
/// arrived: at any call's start, those started before it and answered less than one
/// window earlier, and itself.
fn most_possibly_counted(calls: &[(usize, Instant, Instant, usize)], window: Duration) -> usize {
    calls
        .iter()
        .map(|&(_, start, ..)| {
            calls
                .iter()
                .filter(|&&(_, s, answered, _)| s <= start && start < answered + window)
                .count()
        })
        .max()
        .unwrap_or(0)
}

#[tokio::test(start_paused = true)]
async fn burst_runs_at_both_limits_and_never_above_wherever_the_calls_arrived() {
    let t0 = Instant::now();
    let calls = run_burst(Arc::new(Pacer::for_reserve_apply()), 1100).await;
    let second = Duration::from_secs(1);
    let minute = Duration::from_secs(60);
    assert!(most_possibly_counted(&calls, second) <= APPLY_PER_SECOND);
    assert!(most_possibly_counted(&calls, minute) <= APPLY_PER_MINUTE);

    let starts: Vec<Instant> = calls.iter().map(|c| c.1).collect();
    // 50 at once; the next 50 one second after the first 50 were answered; all 1000 of
    // the minute within 20 s...
    assert_eq!(starts[49], t0);
    assert_eq!(starts[50], t0 + ANSWER_AFTER + second);
    assert_eq!(starts[999], t0 + (ANSWER_AFTER + second) * 19);
    let in_first_minute = starts.iter().filter(|&&t| t < t0 + minute).count();
    assert_eq!(in_first_minute, APPLY_PER_MINUTE);
    // ...and the 1001st one minute after the first answer.
    assert_eq!(starts[1000], t0 + ANSWER_AFTER + minute);
}

#[tokio::test(start_paused = true)]
async fn waiters_start_in_arrival_order() {
    let pacer = Arc::new(Pacer::new(&[Limit {
        max: 3,
        window: Duration::from_secs(1),
    }]));
    let t0 = Instant::now();
    let calls = run_burst(pacer, 10).await;
    for (caller, started, _, position) in calls {
        // FIFO: the n-th caller to arrive is the n-th to start, three a window.
        assert_eq!(position, caller);
        let windows = (caller / 3) as u32;
        assert_eq!(
            started,
            t0 + (Duration::from_secs(1) + ANSWER_AFTER) * windows
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_call_on_its_way_holds_its_place_until_a_window_after_its_answer() {
    let pacer = Arc::new(Pacer::new(&[Limit {
        max: 1,
        window: Duration::from_secs(1),
    }]));
    let first = pacer.acquire().await;
    let started = Arc::new(std::sync::Mutex::new(None));
    let next = {
        let (pacer, started) = (pacer.clone(), started.clone());
        tokio::spawn(async move {
            let _slot = pacer.acquire().await;
            *started.lock().unwrap() = Some(Instant::now());
        })
    };
    // However long the answer takes, the next call waits for it...
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(*started.lock().unwrap(), None);
    let answered = Instant::now();
    drop(first);
    // ...and then for one window more (it may have arrived just before it was answered).
    tokio::time::sleep(Duration::from_millis(999)).await;
    assert_eq!(*started.lock().unwrap(), None);
    next.await.unwrap();
    assert_eq!(
        *started.lock().unwrap(),
        Some(answered + Duration::from_secs(1))
    );
}

#[tokio::test(start_paused = true)]
async fn a_call_given_up_before_its_answer_still_counts_for_a_window() {
    let pacer = Pacer::new(&[Limit {
        max: 2,
        window: Duration::from_secs(1),
    }]);
    let t0 = Instant::now();
    // The slot goes with a call dropped mid-way (a timeout): counted from then on.
    drop(pacer.acquire().await);
    let _second = pacer.acquire().await;
    let _third = pacer.acquire().await;
    assert_eq!(Instant::now(), t0 + Duration::from_secs(1));
}

#[test]
fn a_window_is_half_open() {
    let pacer = Pacer::new(&[Limit {
        max: 1,
        window: Duration::from_secs(1),
    }]);
    let t = Instant::now();
    let calls = Calls {
        in_flight: 0,
        ended: VecDeque::from([t]),
    };
    // Answered exactly one window ago: gone from it.
    assert_eq!(pacer.room(&calls, t + Duration::from_secs(1)), Room::Now);
    assert_eq!(
        pacer.room(&calls, t + Duration::from_millis(999)),
        Room::At(t + Duration::from_secs(1))
    );
    let on_its_way = Calls {
        in_flight: 1,
        ended: VecDeque::new(),
    };
    assert_eq!(pacer.room(&on_its_way, t), Room::AfterAnAnswer);
}
