use super::*;
use std::sync::Mutex;

#[tokio::test(start_paused = true)]
async fn tells_every_hundred_items_and_every_interval_while_running() {
    let heard = Arc::new(Mutex::new(Vec::new()));
    let progress = Progress::default();
    let log = heard.clone();
    let _watching = progress.watch(Duration::from_secs(5), move |d, t| {
        log.lock().unwrap().push((d, t))
    });
    progress.add_total(250);
    progress.tick(99);
    progress.tick(2);
    assert_eq!(*heard.lock().unwrap(), vec![(101, 250)]);
    tokio::time::sleep(Duration::from_millis(5_100)).await;
    assert_eq!(*heard.lock().unwrap(), vec![(101, 250), (101, 250)]);
    progress.tick(149);
    assert_eq!(heard.lock().unwrap().last(), Some(&(250, 250)));
    let count = heard.lock().unwrap().len();
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(heard.lock().unwrap().len(), count, "silent once done");
}
