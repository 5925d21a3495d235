//! The SOQL lexer: text → tokens, with Salesforce's string escapes and date literals,
//! and the `ERROR at Row:r:Column:c` locator errors carry.

use chrono::{DateTime, NaiveDate, Utc};

use crate::salesforce::schema::parse_datetime;

use super::*;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
    Word(String),
    Str(String),
    Num(f64),
    DateTime(DateTime<Utc>),
    Date(NaiveDate),
    Comma,
    LParen,
    RParen,
    Colon,
    Op(CmpOp),
    Eof,
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `=`
    Eq,
    /// `!=` or `<>`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

#[derive(Debug, Clone)]
pub(super) struct Token {
    pub(super) tok: Tok,
    /// Char offset in the query.
    pub(super) pos: usize,
    /// The source text, for "unexpected token" messages.
    pub(super) text: String,
}

pub(super) struct Source<'a> {
    pub(super) soql: &'a str,
}

impl Source<'_> {
    /// Salesforce's locator: the query line, a caret, and `ERROR at Row:r:Column:c`.
    pub(super) fn error(&self, code: &'static str, pos: usize, detail: &str) -> SoqlError {
        let before: String = self.soql.chars().take(pos).collect();
        let row = before.matches('\n').count() + 1;
        let col = before.chars().rev().take_while(|c| *c != '\n').count() + 1;
        let line = self.soql.lines().nth(row - 1).unwrap_or_default();
        SoqlError {
            code,
            message: format!(
                "\n{line}\n{}^\nERROR at Row:{row}:Column:{col}\n{detail}",
                " ".repeat(col - 1)
            ),
        }
    }

    pub(super) fn malformed(&self, token: &Token) -> SoqlError {
        let shown = if token.tok == Tok::Eof {
            "<EOF>".to_string()
        } else {
            token.text.clone()
        };
        self.error(
            "MALFORMED_QUERY",
            token.pos,
            &format!("unexpected token: {shown}"),
        )
    }
}

pub(super) fn lex(src: &Source) -> Result<Vec<Token>, SoqlError> {
    let chars: Vec<char> = src.soql.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let simple = |tok: Tok, len: usize| Token {
            tok,
            pos: start,
            text: chars[start..start + len].iter().collect(),
        };
        let token = match c {
            ',' => simple(Tok::Comma, 1),
            '(' => simple(Tok::LParen, 1),
            ')' => simple(Tok::RParen, 1),
            ':' => simple(Tok::Colon, 1),
            '=' => simple(Tok::Op(CmpOp::Eq), 1),
            '!' if chars.get(i + 1) == Some(&'=') => simple(Tok::Op(CmpOp::Ne), 2),
            '<' if chars.get(i + 1) == Some(&'>') => simple(Tok::Op(CmpOp::Ne), 2),
            '<' if chars.get(i + 1) == Some(&'=') => simple(Tok::Op(CmpOp::Le), 2),
            '<' => simple(Tok::Op(CmpOp::Lt), 1),
            '>' if chars.get(i + 1) == Some(&'=') => simple(Tok::Op(CmpOp::Ge), 2),
            '>' => simple(Tok::Op(CmpOp::Gt), 1),
            '\'' => lex_string(src, &chars, start)?,
            c if c.is_ascii_alphabetic() || c == '_' => {
                let mut j = i;
                while j < chars.len()
                    && (chars[j].is_ascii_alphanumeric() || chars[j] == '_' || chars[j] == '.')
                {
                    j += 1;
                }
                let text: String = chars[i..j].iter().collect();
                Token {
                    tok: Tok::Word(text.clone()),
                    pos: start,
                    text,
                }
            }
            c if c.is_ascii_digit()
                || (c == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) =>
            {
                let mut j = i + 1;
                while j < chars.len()
                    && (chars[j].is_ascii_alphanumeric()
                        || matches!(chars[j], ':' | '.' | '+' | '-'))
                {
                    j += 1;
                }
                let text: String = chars[i..j].iter().collect();
                let tok = classify_number_like(&text).ok_or_else(|| {
                    src.error(
                        "MALFORMED_QUERY",
                        start,
                        &format!("unexpected token: {text}"),
                    )
                })?;
                Token {
                    tok,
                    pos: start,
                    text,
                }
            }
            other => {
                return Err(src.error(
                    "MALFORMED_QUERY",
                    start,
                    &format!("unexpected token: {other}"),
                ))
            }
        };
        i = start + token.text.chars().count();
        tokens.push(token);
    }
    tokens.push(Token {
        tok: Tok::Eof,
        pos: chars.len(),
        text: String::new(),
    });
    Ok(tokens)
}

/// A number, a dateTime (`2026-11-26T10:00:00Z`, `…:00.000+0000`, `…+01:00`) or a date.
pub(super) fn classify_number_like(text: &str) -> Option<Tok> {
    if let Ok(n) = text.parse::<f64>() {
        return Some(Tok::Num(n));
    }
    if text.contains('T') {
        return parse_datetime(text).map(Tok::DateTime);
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .map(Tok::Date)
}

/// A quoted literal with SOQL's escapes (SOQL and SOSL Reference, "Quoted String Escape
/// Sequences"): \n \r \t \b \f (either case), \" \' \\ and \uXXXX; any other backslash
/// is an error.
pub(super) fn lex_string(src: &Source, chars: &[char], start: usize) -> Result<Token, SoqlError> {
    let mut value = String::new();
    let mut j = start + 1;
    loop {
        match chars.get(j) {
            None => {
                return Err(src.error(
                    "MALFORMED_QUERY",
                    start,
                    "unexpected token: <EOF> (unterminated string literal)",
                ))
            }
            Some('\'') => break,
            Some('\\') => {
                let escaped = chars.get(j + 1).copied();
                let decoded = match escaped {
                    Some('n' | 'N') => '\n',
                    Some('r' | 'R') => '\r',
                    Some('t' | 'T') => '\t',
                    Some('b' | 'B') => '\u{8}',
                    Some('f' | 'F') => '\u{c}',
                    Some(c @ ('"' | '\'' | '\\')) => c,
                    Some('u') => {
                        let hex: String = chars.iter().skip(j + 2).take(4).collect();
                        match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                            Some(c) if hex.len() == 4 => {
                                j += 4;
                                c
                            }
                            _ => return Err(bad_escape(src, chars, start, j)),
                        }
                    }
                    _ => return Err(bad_escape(src, chars, start, j)),
                };
                value.push(decoded);
                j += 2;
            }
            Some(c) => {
                value.push(*c);
                j += 1;
            }
        }
    }
    Ok(Token {
        tok: Tok::Str(value),
        pos: start,
        text: chars[start..=j].iter().collect(),
    })
}

pub(super) fn bad_escape(src: &Source, chars: &[char], start: usize, at: usize) -> SoqlError {
    let literal: String = chars[start..chars.len().min(at + 2)].iter().collect();
    let seq: String = chars[at..chars.len().min(at + 2)].iter().collect();
    src.error(
        "MALFORMED_QUERY",
        start,
        &format!(
            "Invalid string literal '{literal}'. Illegal character sequence '{seq}' in string literal."
        ),
    )
}
