use super::*;

#[tokio::test(start_paused = true)]
async fn shutdown_waits_for_tasks_in_flight_and_names_those_it_cancels() {
    let tasks = Tasks::default();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tasks.spawn("quick", async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let _ = tx.send(());
    });
    tasks.spawn("stuck", std::future::pending::<()>());
    assert_eq!(tasks.running(), vec!["quick", "stuck"]);
    let cancelled = tasks.shutdown(Duration::from_secs(5)).await;
    assert!(rx.await.is_ok(), "the quick one finished, not cancelled");
    assert_eq!(cancelled, vec!["stuck".to_string()]);
    assert!(tasks.running().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_shutdown_with_nothing_in_flight_returns_at_once() {
    let tasks = Tasks::default();
    tasks.spawn("done", async {}).await.unwrap();
    let before = tokio::time::Instant::now();
    assert!(tasks.shutdown(Duration::from_secs(25)).await.is_empty());
    assert_eq!(before.elapsed(), Duration::ZERO);
}

/// A task dropped while its runtime shuts down may spawn from its destructor (the app's
/// timers do, when a test's runtime ends with the app still running); the spawned task
/// is dropped at once, and taking it off the list must not wait for the list's lock that
/// `spawn` itself holds. It used to hang the test suite.
#[test]
fn spawning_while_the_runtime_shuts_down_does_not_deadlock() {
    struct SpawnOnDrop(Tasks);
    impl Drop for SpawnOnDrop {
        fn drop(&mut self) {
            self.0.spawn("spawned while shutting down", async {});
        }
    }
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let tasks = Tasks::default();
    let list = tasks.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let guard = SpawnOnDrop(tasks.clone());
        rt.block_on(async {
            tasks.spawn("holder", async move {
                let _guard = guard;
                std::future::pending::<()>().await
            });
        });
        drop(rt);
        let _ = done_tx.send(());
    });
    done_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the runtime shut down (no deadlock in Tasks::spawn)");
    assert!(list.running().is_empty(), "{:?}", list.running());
}
