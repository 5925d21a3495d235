//! Tests of [`super`] (frame.rs): the bytes are those the SDKs' generated code reads and
//! writes, built here by hand from the field numbers of `pbbp2.proto`.

use super::*;

/// A varint, as protobuf writes it.
fn varint(mut n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

/// Field `number` as a varint (wire type 0).
fn int_field(number: u8, value: u64) -> Vec<u8> {
    let mut out = vec![number << 3];
    out.extend(varint(value));
    out
}

/// Field `number` as length-delimited bytes (wire type 2).
fn bytes_field(number: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![(number << 3) | 2];
    out.extend(varint(value.len() as u64));
    out.extend_from_slice(value);
    out
}

fn header_field(key: &str, value: &str) -> Vec<u8> {
    let mut inner = bytes_field(1, key.as_bytes());
    inner.extend(bytes_field(2, value.as_bytes()));
    bytes_field(5, &inner)
}

#[test]
fn a_ping_is_the_bytes_the_python_sdk_writes() {
    // _new_ping_frame(7).SerializeToString(): SeqID 0, LogID 0, service 7, method 0 (all
    // required, so written although zero), one header type=ping.
    let expected: Vec<u8> = [
        &[0x08, 0x00, 0x10, 0x00, 0x18, 0x07, 0x20, 0x00, 0x2a, 0x0c][..],
        &[0x0a, 0x04],
        b"type",
        &[0x12, 0x04],
        b"ping",
    ]
    .concat();
    assert_eq!(Frame::ping(7).to_bytes(), expected);
    assert_eq!(Frame::from_bytes(&expected).unwrap(), Frame::ping(7));
}

#[test]
fn a_data_frame_built_from_the_field_numbers_decodes() {
    let payload = br#"{"schema":"2.0"}"#;
    let bytes: Vec<u8> = [
        int_field(1, 12),
        int_field(2, 7_100_000_000_123),
        int_field(3, 33_554_678),
        int_field(4, 1),
        header_field("type", "event"),
        header_field("message_id", "m-1"),
        header_field("sum", "1"),
        header_field("seq", "0"),
        header_field("trace_id", "tr-9"),
        bytes_field(6, b"gzip-not-used"),
        bytes_field(7, b"json"),
        bytes_field(8, payload),
        bytes_field(9, b"log-new-1"),
    ]
    .concat();
    let frame = Frame::from_bytes(&bytes).unwrap();
    assert_eq!(frame.seq_id, 12);
    assert_eq!(frame.log_id, 7_100_000_000_123);
    assert_eq!(frame.service, 33_554_678);
    assert_eq!(frame.method, METHOD_DATA);
    assert_eq!(frame.header(HEADER_TYPE), Some(TYPE_EVENT));
    assert_eq!(frame.header(HEADER_MESSAGE_ID), Some("m-1"));
    assert_eq!(frame.header(HEADER_TRACE_ID), Some("tr-9"));
    assert_eq!(frame.header("missing"), None);
    assert_eq!(frame.payload_encoding.as_deref(), Some("gzip-not-used"));
    assert_eq!(frame.payload_type.as_deref(), Some("json"));
    assert_eq!(frame.payload(), payload);
    assert_eq!(frame.log_id_new.as_deref(), Some("log-new-1"));
    // Written back in field order, as protobuf serializers do: the same bytes.
    assert_eq!(frame.to_bytes(), bytes);
}

#[test]
fn an_ack_keeps_the_frame_and_adds_biz_rt_and_the_code() {
    let frame = Frame {
        seq_id: 3,
        log_id: 4,
        service: 5,
        method: METHOD_DATA,
        headers: vec![Header {
            key: HEADER_MESSAGE_ID.into(),
            value: "m".into(),
        }],
        payload: Some(b"the event".to_vec()),
        ..Frame::ping(0)
    };
    let ack = Frame::from_bytes(&frame.clone().into_ack(200, 17).to_bytes()).unwrap();
    assert_eq!(
        (ack.seq_id, ack.log_id, ack.service, ack.method),
        (3, 4, 5, METHOD_DATA)
    );
    assert_eq!(ack.header(HEADER_MESSAGE_ID), Some("m"));
    assert_eq!(ack.header(HEADER_BIZ_RT), Some("17"));
    assert_eq!(ack.payload(), br#"{"code":200}"#);
    assert_eq!(frame.into_ack(500, 0).payload(), br#"{"code":500}"#);
}

#[test]
fn bytes_that_are_not_a_frame_are_an_error_not_a_panic() {
    for bad in [
        &b"\xff\xff\xff"[..],
        &[0x2a, 0x10, 0x0a][..], // a header cut short
        &[
            0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ][..], // varint too long
        &[0x43][..],             // wire type 3 (group start), unsupported
    ] {
        assert!(Frame::from_bytes(bad).is_err(), "{bad:?}");
    }
    // An empty message and unknown fields decode (proto2 readers skip what they do not
    // know; the required fields read as 0).
    assert_eq!(Frame::from_bytes(&[]).unwrap().method, 0);
    let with_unknown = [int_field(4, 1), int_field(15, 99)].concat();
    assert_eq!(
        Frame::from_bytes(&with_unknown).unwrap().method,
        METHOD_DATA
    );
}
