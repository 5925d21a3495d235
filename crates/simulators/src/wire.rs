//! Small wire-level facts the simulators need, written here rather than borrowed from the
//! service: a simulator that shared the client's code would also share its mistakes.

use std::fmt;

/// OAuth 2.0 JWT bearer grant type (RFC 7523 §2.1), as Salesforce's token endpoint takes it.
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// The record id Salesforce puts in `recordIds` of a `GAP_OVERFLOW` event, which names no
/// record ("000000000000000AAA": the 15 zeros plus their case checksum).
pub const EMPTY_RECORD_ID: &str = "000000000000000AAA";

/// Characters of the 3-char case checksum of an 18-character record id, by 5-bit value.
// Source: the published 15→18 conversion: three chunks of 5 characters; bit j of a chunk
// is set when its j-th character is an uppercase letter; the value indexes "A..Z0..5".
const CHECKSUM_ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";

/// Not a record id (Salesforce answers `MALFORMED_ID`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MalformedId;

/// A record id in its 18-character form, as the simulated org stores it.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct RecordId(String);

impl RecordId {
    /// Accepts 15 (case-sensitive) or 18 alphanumerics whose suffix matches.
    pub fn parse(s: &str) -> Result<RecordId, MalformedId> {
        if (s.len() != 15 && s.len() != 18) || !s.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(MalformedId);
        }
        let suffix = id_checksum(&s[..15]);
        if s.len() == 18 && s[15..] != suffix {
            return Err(MalformedId);
        }
        Ok(RecordId(format!("{}{suffix}", &s[..15])))
    }

    /// The 18-character id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The 3-character case checksum of the first 15 characters of `id`.
pub fn id_checksum(id: &str) -> String {
    let bytes = id.as_bytes();
    (0..3)
        .map(|chunk| {
            let bits = (0..5).fold(0usize, |acc, j| {
                if bytes.get(chunk * 5 + j).is_some_and(u8::is_ascii_uppercase) {
                    acc | (1 << j)
                } else {
                    acc
                }
            });
            CHECKSUM_ALPHABET[bits] as char
        })
        .collect()
}

/// Random bytes as lowercase hex (tokens, codes and ids the simulators hand out).
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut buf);
    hex::encode(buf)
}

/// Escapes text for an HTML page of the simulated Lark login.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The `{Field__c}` placeholders of a formula-like template, each once, in order.
pub fn template_fields(template: &str) -> Vec<String> {
    let mut fields: Vec<String> = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else { break };
        let name = after[..close].trim();
        if !name.is_empty() && !fields.iter().any(|f| f == name) {
            fields.push(name.to_string());
        }
        rest = &after[close + 1..];
    }
    fields
}

#[cfg(test)]
mod tests;
