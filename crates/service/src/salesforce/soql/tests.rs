use super::*;

#[test]
fn quote_escapes_every_special_character() {
    for (input, expected) in [
        ("plain", "'plain'"),
        ("Bob's BBQ", r"'Bob\'s BBQ'"),
        (r"back\slash", r"'back\\slash'"),
        ("say \"hi\"", r#"'say \"hi\"'"#),
        ("line1\nline2", r"'line1\nline2'"),
        ("cr\rtab\t", r"'cr\rtab\t'"),
        ("bs\u{8}ff\u{c}", r"'bs\bff\f'"),
        ("nul\u{0}", r"'nul\u0000'"),
        ("' OR Id != '", r"'\' OR Id != \''"),
        (r"\'", r"'\\\''"),
        ("Zoë 東京", "'Zoë 東京'"),
    ] {
        assert_eq!(quote(input), expected, "{input:?}");
    }
}

#[test]
fn id_list_is_a_parenthesised_literal_list() {
    let a = RecordId::parse("a0RE000000IJmcN").unwrap();
    let b = RecordId::parse("a01M00000062mPg").unwrap();
    assert_eq!(
        id_list(&[a, b]),
        "('a0RE000000IJmcNMAT','a01M00000062mPgIAI')"
    );
    assert_eq!(id_list(&[]), "()");
}
