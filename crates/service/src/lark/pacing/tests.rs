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
        batch_left: 0,
    };
    // Answered exactly one window ago: gone from it.
    assert_eq!(pacer.room(&calls, t + Duration::from_secs(1), 1), Room::Now);
    assert_eq!(
        pacer.room(&calls, t + Duration::from_millis(999), 1),
        Room::At(t + Duration::from_secs(1))
    );
    let on_its_way = Calls {
        in_flight: 1,
        ended: VecDeque::new(),
        batch_left: 0,
    };
    assert_eq!(pacer.room(&on_its_way, t, 1), Room::AfterAnAnswer);
}

/// Callers that start `gap` apart, one at a time, each answered [`ANSWER_AFTER`] later.
async fn trickle(pacer: &Arc<Pacer>, n: usize, gap: Duration) -> Vec<tokio::task::JoinHandle<()>> {
    let mut handles = Vec::new();
    for _ in 0..n {
        let slot_pacer = pacer.clone();
        handles.push(tokio::spawn(async move {
            let slot = slot_pacer.acquire().await;
            tokio::time::sleep(ANSWER_AFTER).await;
            drop(slot);
        }));
        tokio::time::sleep(gap).await;
    }
    handles
}

/// A pacer of `max` calls a second, filled by `max` calls `gap` apart (so their room comes
/// back `gap` apart), with `queued` more callers queued behind them; returns when each
/// queued caller started, and when the first room came back.
async fn queued_behind_a_full_second(
    max: usize,
    gap: Duration,
    queued: usize,
) -> (Vec<Instant>, Instant) {
    let pacer = Arc::new(Pacer::new(&[Limit {
        max,
        window: Duration::from_secs(1),
    }]));
    let t0 = Instant::now();
    let first = trickle(&pacer, max, gap).await;
    let calls = run_burst(pacer, queued).await;
    for h in first {
        h.await.unwrap();
    }
    let starts = calls.iter().map(|c| c.1).collect();
    (starts, t0 + ANSWER_AFTER + Duration::from_secs(1))
}

#[tokio::test(start_paused = true)]
async fn a_full_pacer_lets_its_queue_go_in_batches() {
    // Room comes back 5 ms apart; ten queued callers go five at once (half the limit),
    // not one per freed room.
    let gap = Duration::from_millis(5);
    let (starts, first_free) = queued_behind_a_full_second(10, gap, 10).await;
    assert!(starts[..5].iter().all(|&s| s == first_free + gap * 4));
    assert!(starts[5..].iter().all(|&s| s == first_free + gap * 9));
}

#[tokio::test(start_paused = true)]
async fn a_batch_waits_no_longer_than_its_bound() {
    // Room comes back 5 ms apart over 95 ms; a batch's bound is less.
    let gap = Duration::from_millis(5);
    let (starts, first_free) = queued_behind_a_full_second(20, gap, 10).await;
    let freed_by_bound = (BATCH_WAIT.as_millis() / gap.as_millis()) as usize + 1;
    assert!(freed_by_bound < 10);
    let (batch, rest) = starts.split_at(freed_by_bound);
    assert!(batch.iter().all(|&s| s == first_free + BATCH_WAIT));
    assert!(rest.iter().all(|&s| s > first_free + BATCH_WAIT));
}

#[tokio::test(start_paused = true)]
async fn room_further_off_than_the_gap_is_not_waited_for() {
    // Room comes back 20 ms apart, more than the gap and less than the bound.
    let gap = BATCH_GAP * 2;
    assert!(gap < BATCH_WAIT);
    let (starts, first_free) = queued_behind_a_full_second(4, gap, 2).await;
    assert_eq!(starts, [first_free, first_free + gap]);
}

#[tokio::test(start_paused = true)]
async fn a_batch_does_not_wait_for_room_that_is_not_coming_soon() {
    // Room in the minute for three more after the first ten: a batch of five would wait
    // a minute for its last two; the three go at once.
    let pacer = Arc::new(Pacer::new(&[
        Limit {
            max: 10,
            window: Duration::from_secs(1),
        },
        Limit {
            max: 13,
            window: Duration::from_secs(60),
        },
    ]));
    let t0 = Instant::now();
    let calls = run_burst(pacer, 15).await;
    let starts: Vec<Instant> = calls.iter().map(|c| c.1).collect();
    assert!(starts[..10].iter().all(|&s| s == t0));
    let room_back = t0 + ANSWER_AFTER + Duration::from_secs(1);
    assert!(starts[10..13].iter().all(|&s| s == room_back));
    let minute = t0 + ANSWER_AFTER + Duration::from_secs(60);
    assert!(starts[13..].iter().all(|&s| s == minute));
}

#[tokio::test(start_paused = true)]
async fn a_lone_call_with_room_starts_at_once_while_more_room_is_coming() {
    let pacer = Arc::new(Pacer::for_reserve_apply());
    let t0 = Instant::now();
    // Fifty calls 1 ms apart fill the second; their room comes back 1 ms apart.
    let calls = trickle(&pacer, 50, Duration::from_millis(1)).await;
    // Six places are free again and more come each millisecond: a batch would wait for
    // them, a lone caller has no one to wait for.
    let arrives = t0 + ANSWER_AFTER + Duration::from_millis(1005);
    tokio::time::sleep_until(arrives).await;
    let slot = pacer.acquire().await;
    assert_eq!(Instant::now(), arrives);
    drop(slot);
    for call in calls {
        call.await.unwrap();
    }
}
