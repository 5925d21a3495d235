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
