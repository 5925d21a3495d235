use super::*;

#[test]
fn ipv6_clients_are_counted_by_their_64_prefix() {
    let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
    let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
    let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
    assert_eq!(rate_key(a), rate_key(b));
    assert_ne!(rate_key(a), rate_key(other));
    let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
    assert_eq!(rate_key(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
    let v4: IpAddr = "192.0.2.8".parse().unwrap();
    assert_eq!(rate_key(v4), v4);
}

#[test]
fn the_limit_refuses_past_the_allowance_and_says_how_long_to_wait() {
    let mut server = crate::config::Settings::for_simulators(
        "http://127.0.0.1:9",
        "http://127.0.0.1:9",
        std::path::Path::new("unused.db"),
    )
    .unwrap()
    .server;
    server.rate_limit_per_minute = 3;
    let limit = RateLimit::new(&server);
    let ip: IpAddr = "192.0.2.1".parse().unwrap();
    for _ in 0..3 {
        assert_eq!(limit.check(ip), None);
    }
    let wait = limit.check(ip).expect("the fourth is refused");
    assert!(
        wait > Duration::ZERO && wait <= Duration::from_secs(20),
        "{wait:?}"
    );
    assert_eq!(
        limit.check("192.0.2.2".parse().unwrap()),
        None,
        "per address"
    );
}
