use super::*;

#[tokio::test]
async fn an_essential_task_that_ended_is_described_by_how() {
    let panicked = tokio::spawn(async {
        if std::hint::black_box(true) {
            panic!("boom");
        }
        Ok::<(), std::io::Error>(())
    })
    .await;
    assert!(how_it_ended(panicked).starts_with("panicked"));
    let failed = Ok(Err::<(), _>(std::io::Error::other("socket closed")));
    assert_eq!(how_it_ended(failed), "failed: socket closed");
    assert_eq!(
        how_it_ended(Ok(Ok::<(), std::io::Error>(()))),
        "stopped on its own"
    );
}
