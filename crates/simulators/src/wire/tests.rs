use super::*;

#[test]
fn ids_take_their_checksum() {
    // A 15/18 pair as Salesforce shows it.
    assert_eq!(
        RecordId::parse("001A000001KzaYH").unwrap().as_str(),
        "001A000001KzaYHIAZ"
    );
    assert_eq!(RecordId::parse("001A000001KzaYHAAA"), Err(MalformedId));
    assert_eq!(id_checksum("000000000000000"), "AAA");
}
