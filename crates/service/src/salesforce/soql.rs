//! SOQL literal escaping — the ONE place where text from outside becomes part of a query.
//! Every SOQL string literal goes through [`quote`]; record ids are [`RecordId`]s, validated
//! where they enter (`crate::ids`), so [`id_list`] needs no escaping. Nothing else in the
//! crate builds literals by hand.

pub use crate::ids::{InvalidRecordId, RecordId};

/// A SOQL DateTime literal (`2026-11-26T10:00:00Z`): written unquoted, in UTC.
pub fn datetime(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A SOQL string literal, quotes included, with every character SOQL treats specially
/// escaped.
// Source: Salesforce SOQL and SOSL Reference, "Quoted String Escape Sequences"
// (developer.salesforce.com/docs/atlas.en-us.soql_sosl.meta/soql_sosl/
// sforce_api_calls_soql_select_quotedstringescapes.htm): \n \r \t \b \f \" \' \\ and
// \uXXXX; "if you use a backslash character in any other context, an error occurs".
// Other control characters are written as \uXXXX so no raw control byte reaches the parser.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if c.is_control() && (c as u32) <= 0xFFFF => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// A parenthesised list of id literals for `IN`: `('a0B…','a0B…')`. Ids need no escaping
/// (a [`RecordId`] is alphanumeric by construction).
pub fn id_list(ids: &[RecordId]) -> String {
    let inner: Vec<String> = ids.iter().map(|id| format!("'{}'", id.as_str())).collect();
    format!("({})", inner.join(","))
}

#[cfg(test)]
mod tests;
