use super::*;

#[test]
fn ids_are_validated_and_normalised_once() {
    let b = BookingId::parse("a0B000000000001").unwrap();
    assert_eq!(b.as_str().len(), 18);
    assert_eq!(b, BookingId::parse(b.as_str()).unwrap());
    assert!(TrainerId::parse("a0T00000000001'--").is_err());
    assert_eq!(b.to_string(), b.as_str());
}
