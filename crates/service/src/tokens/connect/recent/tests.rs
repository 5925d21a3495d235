use super::*;

#[tokio::test(start_paused = true)]
async fn an_unknown_id_is_remembered_for_an_hour() {
    let cache = RecentIds::unknown();
    assert!(!cache.contains("a0T000000000001"));
    cache.insert("a0T000000000001");
    assert!(cache.contains("a0T000000000001"));
    tokio::time::advance(UNKNOWN_TTL - Duration::from_secs(1)).await;
    assert!(cache.contains("a0T000000000001"));
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(
        !cache.contains("a0T000000000001"),
        "asked again after an hour"
    );
    cache.insert("a0T000000000001");
    cache.remove("a0T000000000001");
    assert!(!cache.contains("a0T000000000001"));
}

#[tokio::test(start_paused = true)]
async fn the_cache_is_bounded_and_drops_the_oldest() {
    let cache = RecentIds::new(UNKNOWN_TTL, 3);
    for id in ["a", "b", "c"] {
        cache.insert(id);
        tokio::time::advance(Duration::from_secs(1)).await;
    }
    cache.insert("d");
    assert_eq!(cache.len(), 3);
    assert!(!cache.contains("a"), "the oldest went");
    assert!(cache.contains("b") && cache.contains("c") && cache.contains("d"));
    // Expired ids go before live ones.
    tokio::time::advance(UNKNOWN_TTL).await;
    cache.insert("e");
    assert_eq!(cache.len(), 1);
    assert!(cache.contains("e"));
}
