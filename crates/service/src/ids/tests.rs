use super::*;

#[test]
fn ids_are_validated_and_normalised_once() {
    let b = BookingId::parse("a0B000000000001").unwrap();
    assert_eq!(b.as_str().len(), 18);
    assert_eq!(b, BookingId::parse(b.as_str()).unwrap());
    assert!(TrainerId::parse("a0T00000000001'--").is_err());
    assert_eq!(b.to_string(), b.as_str());
}

#[test]
fn fifteen_char_ids_get_the_published_checksums() {
    // Worked examples published with the algorithm (codegolf.stackexchange.com/q/69127,
    // gammone.com, forceguru.blogspot.com).
    for (short, long) in [
        ("a0RE000000IJmcN", "a0RE000000IJmcNMAT"),
        ("a01M00000062mPg", "a01M00000062mPgIAI"),
        ("001M000000qfPyS", "001M000000qfPySIAU"),
        ("a0FE000000D6r3F", "a0FE000000D6r3FMAR"),
        ("0F9E000000092w2", "0F9E000000092w2KAA"),
        ("a0D30000001n7Pi", "a0D30000001n7PiEAI"),
        ("aaaaaaaaaaaaaaa", "aaaaaaaaaaaaaaaAAA"),
    ] {
        let id = RecordId::parse(short).unwrap();
        assert_eq!(id.as_str(), long, "{short}");
        assert_eq!(id.short(), short);
        assert_eq!(
            RecordId::parse(long).unwrap(),
            id,
            "18-char form parses to the same id"
        );
    }
}

#[test]
fn simulator_constants_are_valid_ids() {
    for id in [
        lvb_simulators::SF_INTEGRATION_USER_ID,
        lvb_simulators::SF_HUMAN_USER_ID,
        lvb_simulators::SF_ORG_ID,
    ] {
        assert_eq!(RecordId::parse(id).unwrap().as_str(), id);
    }
}

#[test]
fn junk_and_injection_are_rejected() {
    for bad in [
        "",
        "a0B",
        "a0B' OR Id!='",
        "a0B000000000001' OR Name != '",
        "a0B00000000001-",
        "a0B00000000001 ",
        "a0B0000000000é1",
        "a0RE000000IJmcNMAX", // wrong checksum
        "a0RE000000IJmcnMAT", // case changed: checksum no longer matches
        "a0RE000000IJmcNMA",  // 17 chars
        "a0RE000000IJmcNMATT",
    ] {
        assert!(RecordId::parse(bad).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn key_prefix_and_serde_round_trip() {
    let id = RecordId::parse("a0RE000000IJmcN").unwrap();
    assert_eq!(id.key_prefix(), "a0R");
    let json = serde_json::to_string(&id).unwrap();
    assert_eq!(json, "\"a0RE000000IJmcNMAT\"");
    let back: RecordId = serde_json::from_str(&json).unwrap();
    assert_eq!(back, id);
    assert!(serde_json::from_str::<RecordId>("\"x' OR '1'='1\"").is_err());
}

#[test]
fn replay_positions_round_trip_through_the_wire_values() {
    for r in [
        ReplayId::Latest,
        ReplayId::Earliest,
        ReplayId::After(0),
        ReplayId::After(42),
    ] {
        assert_eq!(ReplayId::from_wire(r.wire()), r);
    }
    assert_eq!(ReplayId::Latest.wire(), -1);
    assert_eq!(ReplayId::Earliest.wire(), -2);
}

#[test]
fn typed_ids_serialise_as_their_text_and_refuse_junk() {
    let b = BookingId::parse("a0B000000000001").unwrap();
    let json = serde_json::to_string(&b).unwrap();
    assert_eq!(json, format!("\"{}\"", b.as_str()));
    assert_eq!(serde_json::from_str::<BookingId>(&json).unwrap(), b);
    assert!(serde_json::from_str::<TrainerId>("\"nope\"").is_err());
}
