use super::*;

/// Feeds `text` in pieces of `piece` bytes; returns the elements read.
fn split(text: &str, piece: usize) -> Result<Vec<String>, SplitError> {
    let mut splitter = ArraySplitter::new(1024);
    let mut out = Vec::new();
    for chunk in text.as_bytes().chunks(piece) {
        splitter.feed(chunk, |e| {
            out.push(String::from_utf8(e.to_vec()).unwrap());
            true
        })?;
    }
    assert!(splitter.done(), "the array was closed");
    Ok(out)
}

#[test]
fn an_array_is_split_into_its_messages_however_it_arrives() {
    let text =
        r#" [ {"channel":"/meta/connect","a":[1,{"b":"]}"}]} , {"s":"a \"quoted\" } \\"},[2]] "#;
    for piece in [1, 2, 3, 7, 1000] {
        let messages = split(text, piece).unwrap();
        assert_eq!(
            messages,
            vec![
                r#"{"channel":"/meta/connect","a":[1,{"b":"]}"}]}"#,
                r#"{"s":"a \"quoted\" } \\"}"#,
                "[2]",
            ],
            "in pieces of {piece}"
        );
        for m in &messages {
            serde_json::from_str::<serde_json::Value>(m).expect("each is valid JSON");
        }
    }
    assert_eq!(split("[]", 1).unwrap(), Vec::<String>::new());
}

#[test]
fn reading_stops_when_asked() {
    let mut splitter = ArraySplitter::new(1024);
    let mut seen = 0;
    let more = splitter
        .feed(br#"[{"a":1},{"a":2},{"a":3}]"#, |_| {
            seen += 1;
            seen < 2
        })
        .unwrap();
    assert!(!more);
    assert_eq!(seen, 2);
    assert!(!splitter.done());
}

#[test]
fn what_is_not_an_array_of_messages_is_refused() {
    for text in [
        r#"{"channel":"/meta/connect"}"#,
        "[1,2]",
        r#"["a"]"#,
        "[{}] x",
    ] {
        let mut splitter = ArraySplitter::new(1024);
        assert_eq!(
            splitter.feed(text.as_bytes(), |_| true),
            Err(SplitError::NotAnArray),
            "{text}"
        );
    }
}

#[test]
fn a_message_larger_than_the_cap_is_refused_without_holding_more() {
    let mut splitter = ArraySplitter::new(16);
    let big = format!(r#"[{{"padding":"{}"}}]"#, "x".repeat(100));
    assert_eq!(
        splitter.feed(big.as_bytes(), |_| true),
        Err(SplitError::MessageTooLarge)
    );
    assert!(splitter.element.len() <= 16);
}

#[test]
fn a_large_message_is_not_kept_after_it_is_read() {
    let mut splitter = ArraySplitter::new(1 << 20);
    let big = format!(r#"[{{"padding":"{}"}},"#, "x".repeat(2 * KEPT_CAPACITY));
    let mut lengths = Vec::new();
    let more = splitter
        .feed(big.as_bytes(), |e| {
            lengths.push(e.len());
            true
        })
        .unwrap();
    assert!(more);
    assert_eq!(lengths, vec![2 * KEPT_CAPACITY + 14]);
    assert!(splitter.element.capacity() <= KEPT_CAPACITY, "let go");
    // The next element, in two pieces, is read whole.
    splitter.feed(br#"{"a":"#, |_| unreachable!()).unwrap();
    let mut next = Vec::new();
    splitter
        .feed(br#"1}]"#, |e| {
            next.push(e.to_vec());
            true
        })
        .unwrap();
    assert_eq!(next, vec![br#"{"a":1}"#.to_vec()]);
    assert!(splitter.done());
}
