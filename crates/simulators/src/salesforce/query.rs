//! The simulator's SOQL subset: a lexer, a recursive-descent parser and an evaluator over
//! the record store. Supported:
//!
//! ```text
//! SELECT f1, Rel__r.Field__c, … FROM Obj
//!   [WHERE cond] [ORDER BY f [ASC|DESC] [NULLS FIRST|LAST], …] [LIMIT n] [OFFSET n]
//! cond := term ((AND term)* | (OR term)*)      -- mixing AND and OR needs parentheses
//! term := NOT term | '(' cond ')' | f op literal | f [NOT] IN (literal, …) | f LIKE 'pattern'
//! op   := = != <> < <= > >=
//! literal := 'string with \escapes' | number | true | false | null
//!          | 2026-11-26T10:00:00Z | 2026-11-26T10:00:00.000+0000 | 2026-11-26
//!          | TODAY | YESTERDAY | TOMORROW | NEXT_N_DAYS:n | LAST_N_DAYS:n
//! ```
//!
//! Errors carry Salesforce's codes and message shapes (`MALFORMED_QUERY`,
//! `INVALID_FIELD`, `INVALID_TYPE`, `INVALID_QUERY_FILTER_OPERATOR`), with the
//! `ERROR at Row:r:Column:c` locator Salesforce puts in them.

use std::cmp::Ordering;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde_json::{json, Map, Value};

use super::schema::{parse_datetime, FieldDef, FieldType, ObjectDef};
use crate::wire::RecordId;

/// A SOQL failure as Salesforce reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoqlError {
    /// `MALFORMED_QUERY`, `INVALID_FIELD`, `INVALID_TYPE`, `INVALID_QUERY_FILTER_OPERATOR`.
    pub code: &'static str,
    /// The message, with Salesforce's `ERROR at Row:r:Column:c` locator.
    pub message: String,
}

/// Where the evaluator reads objects and records from.
pub trait RecordSource {
    /// The object with this API name (case-insensitive).
    fn object(&self, name: &str) -> Option<&ObjectDef>;
    /// Every stored row of `object` (deleted ones too), in creation order.
    fn rows(&self, object: &str) -> Vec<&Map<String, Value>>;
    /// A row by 18-char id, deleted or not.
    fn row(&self, object: &str, id: &str) -> Option<&Map<String, Value>>;
}

// ---------------------------------------------------------------------------------------
// Lexer

#[derive(Debug, Clone, PartialEq)]
enum Tok {
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
struct Token {
    tok: Tok,
    /// Char offset in the query.
    pos: usize,
    /// The source text, for "unexpected token" messages.
    text: String,
}

struct Source<'a> {
    soql: &'a str,
}

impl Source<'_> {
    /// Salesforce's locator: the query line, a caret, and `ERROR at Row:r:Column:c`.
    fn error(&self, code: &'static str, pos: usize, detail: &str) -> SoqlError {
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

    fn malformed(&self, token: &Token) -> SoqlError {
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

fn lex(src: &Source) -> Result<Vec<Token>, SoqlError> {
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
fn classify_number_like(text: &str) -> Option<Tok> {
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
fn lex_string(src: &Source, chars: &[char], start: usize) -> Result<Token, SoqlError> {
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

fn bad_escape(src: &Source, chars: &[char], start: usize, at: usize) -> SoqlError {
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

// ---------------------------------------------------------------------------------------
// Parser

#[derive(Debug, Clone, PartialEq)]
enum Lit {
    Str(String),
    Num(f64),
    Bool(bool),
    Null,
    DateTime(DateTime<Utc>),
    Date(NaiveDate),
    /// A relative date literal: `[start, end)` computed at evaluation time.
    Relative(RelativeDate),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum RelativeDate {
    Today,
    Yesterday,
    Tomorrow,
    NextNDays(i64),
    LastNDays(i64),
}

#[derive(Debug, Clone)]
struct FieldRef {
    path: String,
    pos: usize,
}

#[derive(Debug, Clone)]
enum Expr {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    Cmp {
        field: FieldRef,
        op: CmpOp,
        value: Lit,
        value_pos: usize,
    },
    In {
        field: FieldRef,
        negated: bool,
        values: Vec<(Lit, usize)>,
    },
    Like {
        field: FieldRef,
        pattern: String,
    },
}

#[derive(Debug, Clone)]
struct OrderKey {
    field: FieldRef,
    descending: bool,
    nulls_last: bool,
}

/// A parsed query.
#[derive(Debug, Clone)]
pub struct Query {
    select: Vec<FieldRef>,
    from: FieldRef,
    filter: Option<Expr>,
    order: Vec<OrderKey>,
    limit: Option<usize>,
    offset: Option<usize>,
    soql: String,
}

struct Parser<'a> {
    src: &'a Source<'a>,
    tokens: Vec<Token>,
    at: usize,
}

impl Parser<'_> {
    fn peek(&self) -> &Token {
        &self.tokens[self.at]
    }

    fn next(&mut self) -> Token {
        let t = self.tokens[self.at].clone();
        if self.at + 1 < self.tokens.len() {
            self.at += 1;
        }
        t
    }

    fn is_keyword(&self, keyword: &str) -> bool {
        matches!(&self.peek().tok, Tok::Word(w) if w.eq_ignore_ascii_case(keyword))
    }

    fn eat_keyword(&mut self, keyword: &str) -> bool {
        if self.is_keyword(keyword) {
            self.next();
            true
        } else {
            false
        }
    }

    fn expect_keyword(&mut self, keyword: &str) -> Result<(), SoqlError> {
        if self.eat_keyword(keyword) {
            Ok(())
        } else {
            Err(self.src.malformed(self.peek()))
        }
    }

    fn expect(&mut self, tok: Tok) -> Result<Token, SoqlError> {
        if self.peek().tok == tok {
            Ok(self.next())
        } else {
            Err(self.src.malformed(self.peek()))
        }
    }

    /// A field path or object name (not a reserved word).
    fn name(&mut self) -> Result<FieldRef, SoqlError> {
        match &self.peek().tok {
            Tok::Word(w) if !is_reserved(w) => {
                let t = self.next();
                Ok(FieldRef {
                    path: t.text,
                    pos: t.pos,
                })
            }
            _ => Err(self.src.malformed(self.peek())),
        }
    }

    fn count(&mut self) -> Result<usize, SoqlError> {
        let t = self.next();
        match t.tok {
            Tok::Num(n) if n >= 0.0 && n.fract() == 0.0 => Ok(n as usize),
            _ => Err(self.src.malformed(&t)),
        }
    }

    fn query(&mut self) -> Result<Query, SoqlError> {
        self.expect_keyword("SELECT")?;
        let mut select = vec![self.name()?];
        while self.peek().tok == Tok::Comma {
            self.next();
            select.push(self.name()?);
        }
        self.expect_keyword("FROM")?;
        let from = self.name()?;
        let filter = if self.eat_keyword("WHERE") {
            Some(self.condition()?)
        } else {
            None
        };
        let mut order = Vec::new();
        if self.eat_keyword("ORDER") {
            self.expect_keyword("BY")?;
            loop {
                let field = self.name()?;
                let descending = if self.eat_keyword("DESC") {
                    true
                } else {
                    self.eat_keyword("ASC");
                    false
                };
                // SOQL default: NULLS FIRST ascending, NULLS LAST descending.
                let mut nulls_last = descending;
                if self.eat_keyword("NULLS") {
                    if self.eat_keyword("LAST") {
                        nulls_last = true;
                    } else {
                        self.expect_keyword("FIRST")?;
                        nulls_last = false;
                    }
                }
                order.push(OrderKey {
                    field,
                    descending,
                    nulls_last,
                });
                if self.peek().tok != Tok::Comma {
                    break;
                }
                self.next();
            }
        }
        let limit = if self.eat_keyword("LIMIT") {
            Some(self.count()?)
        } else {
            None
        };
        let offset = if self.eat_keyword("OFFSET") {
            Some(self.count()?)
        } else {
            None
        };
        if self.peek().tok != Tok::Eof {
            return Err(self.src.malformed(self.peek()));
        }
        Ok(Query {
            select,
            from,
            filter,
            order,
            limit,
            offset,
            soql: self.src.soql.to_string(),
        })
    }

    /// Terms joined by one connective; SOQL rejects `a AND b OR c` without parentheses.
    fn condition(&mut self) -> Result<Expr, SoqlError> {
        let first = self.term()?;
        let connective = if self.is_keyword("AND") {
            "AND"
        } else if self.is_keyword("OR") {
            "OR"
        } else {
            return Ok(first);
        };
        let mut terms = vec![first];
        while self.eat_keyword(connective) {
            terms.push(self.term()?);
        }
        if self.is_keyword("AND") || self.is_keyword("OR") {
            return Err(self.src.malformed(self.peek()));
        }
        Ok(if connective == "AND" {
            Expr::And(terms)
        } else {
            Expr::Or(terms)
        })
    }

    fn term(&mut self) -> Result<Expr, SoqlError> {
        if self.eat_keyword("NOT") {
            return Ok(Expr::Not(Box::new(self.term()?)));
        }
        if self.peek().tok == Tok::LParen {
            self.next();
            let inner = self.condition()?;
            self.expect(Tok::RParen)?;
            return Ok(inner);
        }
        let field = self.name()?;
        if self.eat_keyword("LIKE") {
            let t = self.next();
            return match t.tok {
                Tok::Str(pattern) => Ok(Expr::Like { field, pattern }),
                _ => Err(self.src.malformed(&t)),
            };
        }
        let negated = if self.is_keyword("NOT") {
            self.next();
            if !self.is_keyword("IN") {
                return Err(self.src.malformed(self.peek()));
            }
            true
        } else {
            false
        };
        if self.eat_keyword("IN") {
            self.expect(Tok::LParen)?;
            let mut values = Vec::new();
            loop {
                let pos = self.peek().pos;
                values.push((self.literal()?, pos));
                if self.peek().tok == Tok::Comma {
                    self.next();
                    continue;
                }
                self.expect(Tok::RParen)?;
                break;
            }
            return Ok(Expr::In {
                field,
                negated,
                values,
            });
        }
        let t = self.next();
        let op = match t.tok {
            Tok::Op(op) => op,
            _ => return Err(self.src.malformed(&t)),
        };
        let value_pos = self.peek().pos;
        let value = self.literal()?;
        Ok(Expr::Cmp {
            field,
            op,
            value,
            value_pos,
        })
    }

    fn literal(&mut self) -> Result<Lit, SoqlError> {
        let t = self.next();
        let lit = match &t.tok {
            Tok::Str(s) => Lit::Str(s.clone()),
            Tok::Num(n) => Lit::Num(*n),
            Tok::DateTime(d) => Lit::DateTime(*d),
            Tok::Date(d) => Lit::Date(*d),
            Tok::Word(w) => match w.to_ascii_uppercase().as_str() {
                "TRUE" => Lit::Bool(true),
                "FALSE" => Lit::Bool(false),
                "NULL" => Lit::Null,
                "TODAY" => Lit::Relative(RelativeDate::Today),
                "YESTERDAY" => Lit::Relative(RelativeDate::Yesterday),
                "TOMORROW" => Lit::Relative(RelativeDate::Tomorrow),
                "NEXT_N_DAYS" | "LAST_N_DAYS" => {
                    self.expect(Tok::Colon)?;
                    let n = self.count()? as i64;
                    if w.eq_ignore_ascii_case("NEXT_N_DAYS") {
                        Lit::Relative(RelativeDate::NextNDays(n))
                    } else {
                        Lit::Relative(RelativeDate::LastNDays(n))
                    }
                }
                _ => return Err(self.src.malformed(&t)),
            },
            _ => return Err(self.src.malformed(&t)),
        };
        Ok(lit)
    }
}

fn is_reserved(word: &str) -> bool {
    const RESERVED: &[&str] = &[
        "SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "IN", "LIKE", "ORDER", "BY", "ASC", "DESC",
        "NULLS", "LIMIT", "OFFSET", "NULL", "TRUE", "FALSE", "GROUP", "HAVING",
    ];
    RESERVED.iter().any(|r| r.eq_ignore_ascii_case(word))
}

/// Parses a query (syntax only; names are checked by [`execute`]).
pub fn parse(soql: &str) -> Result<Query, SoqlError> {
    let src = Source { soql };
    let tokens = lex(&src)?;
    Parser {
        src: &src,
        tokens,
        at: 0,
    }
    .query()
}

// ---------------------------------------------------------------------------------------
// Name resolution and evaluation

/// One relationship step of a field path.
#[derive(Debug, Clone)]
struct Hop {
    /// The reference field holding the parent id (`Trainer__c`).
    reference_field: String,
    /// Its relationship name, as it appears in results (`Trainer__r`).
    relationship: String,
    /// The parent object.
    target: String,
}

#[derive(Debug, Clone)]
struct Resolved {
    hops: Vec<Hop>,
    field: FieldDef,
}

fn resolve<S: RecordSource>(
    src: &Source,
    store: &S,
    root: &ObjectDef,
    field: &FieldRef,
) -> Result<Resolved, SoqlError> {
    let parts: Vec<&str> = field.path.split('.').collect();
    let mut object = root.clone();
    let mut hops = Vec::new();
    for relationship in &parts[..parts.len() - 1] {
        let reference = object.relationship(relationship).ok_or_else(|| {
            src.error(
                "INVALID_FIELD",
                field.pos,
                &format!(
                    "Didn't understand relationship '{relationship}' in field path. If you are attempting to use a custom relationship, be sure to append the '__r' after the custom relationship name. Please reference your WSDL or the describe call for the appropriate names."
                ),
            )
        })?;
        let target_name = reference.reference_to.clone().unwrap_or_default();
        let target = store.object(&target_name).ok_or_else(|| {
            src.error(
                "INVALID_FIELD",
                field.pos,
                &format!("Didn't understand relationship '{relationship}' in field path."),
            )
        })?;
        hops.push(Hop {
            reference_field: reference.name.clone(),
            relationship: reference.relationship_name.clone().unwrap_or_default(),
            target: target.name.clone(),
        });
        object = target.clone();
    }
    let name = parts[parts.len() - 1];
    let def = object.field(name).ok_or_else(|| {
        src.error(
            "INVALID_FIELD",
            field.pos,
            &format!(
                "No such column '{name}' on entity '{}'. If you are attempting to use a custom field, be sure to append the '__c' after the custom field name. Please reference your WSDL or the describe call for the appropriate names.",
                object.name
            ),
        )
    })?;
    Ok(Resolved {
        hops,
        field: def.clone(),
    })
}

/// A literal checked against the field it is compared with.
#[derive(Debug, Clone)]
enum Typed {
    Null,
    Text(String),
    Id(String),
    Bool(bool),
    Num(f64),
    Instant(DateTime<Utc>),
    Range(DateTime<Utc>, DateTime<Utc>),
}

#[derive(Debug, Clone)]
enum Cond {
    And(Vec<Cond>),
    Or(Vec<Cond>),
    Not(Box<Cond>),
    Cmp(Resolved, CmpOp, Typed),
    In(Resolved, bool, Vec<Typed>),
    Like(Resolved, String),
}

fn type_literal(
    src: &Source,
    field: &FieldDef,
    lit: &Lit,
    pos: usize,
    now: DateTime<Utc>,
) -> Result<Typed, SoqlError> {
    let mismatch = |expected: &str, quoted: bool| {
        src.error(
            "INVALID_FIELD",
            pos,
            &format!(
                "value of filter criterion for field '{}' must be of type {expected} and should {}be enclosed in quotes",
                field.name,
                if quoted { "" } else { "not " }
            ),
        )
    };
    if *lit == Lit::Null {
        return Ok(Typed::Null);
    }
    let ft = field.field_type;
    match (ft, lit) {
        (t, Lit::Str(s)) if t.is_id() => match RecordId::parse(s) {
            Ok(id) => Ok(Typed::Id(id.to_string())),
            Err(_) => Err(src.error(
                "INVALID_QUERY_FILTER_OPERATOR",
                pos,
                &format!("invalid ID field: {s}"),
            )),
        },
        (t, _) if t.is_id() => Err(mismatch("id", true)),
        (t, Lit::Str(s)) if t.is_text() => Ok(Typed::Text(s.clone())),
        (t, _) if t.is_text() => Err(mismatch("string", true)),
        (FieldType::Boolean, Lit::Bool(b)) => Ok(Typed::Bool(*b)),
        (FieldType::Boolean, _) => Err(mismatch("boolean", false)),
        (FieldType::Double, Lit::Num(n)) => Ok(Typed::Num(*n)),
        (FieldType::Double, _) => Err(mismatch("double", false)),
        (FieldType::DateTime, Lit::DateTime(d)) => Ok(Typed::Instant(*d)),
        (FieldType::DateTime, Lit::Relative(r)) => {
            let (start, end) = relative_range(*r, now);
            Ok(Typed::Range(start, end))
        }
        (FieldType::DateTime, _) => Err(mismatch("dateTime", false)),
        _ => Err(mismatch(ft.wire_name(), false)),
    }
}

/// `[start, end)` of a relative date literal, in UTC (the simulated org's time zone).
// Ranges per the SOQL and SOSL Reference, "Date Formats and Date Literals": TODAY is
// today from 00:00:00 for 24 h; NEXT_N_DAYS:n starts 00:00:00 of the next day and lasts
// n days; LAST_N_DAYS:n includes today and the n days before it.
fn relative_range(r: RelativeDate, now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let today = now
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .expect("midnight")
        .and_utc();
    let day = Duration::days(1);
    match r {
        RelativeDate::Today => (today, today + day),
        RelativeDate::Yesterday => (today - day, today),
        RelativeDate::Tomorrow => (today + day, today + day * 2),
        RelativeDate::NextNDays(n) => (today + day, today + day * (n as i32 + 1)),
        RelativeDate::LastNDays(n) => (today - day * n as i32, today + day),
    }
}

fn compile<S: RecordSource>(
    src: &Source,
    store: &S,
    root: &ObjectDef,
    expr: &Expr,
    now: DateTime<Utc>,
) -> Result<Cond, SoqlError> {
    Ok(match expr {
        Expr::And(terms) => Cond::And(
            terms
                .iter()
                .map(|t| compile(src, store, root, t, now))
                .collect::<Result<_, _>>()?,
        ),
        Expr::Or(terms) => Cond::Or(
            terms
                .iter()
                .map(|t| compile(src, store, root, t, now))
                .collect::<Result<_, _>>()?,
        ),
        Expr::Not(inner) => Cond::Not(Box::new(compile(src, store, root, inner, now)?)),
        Expr::Cmp {
            field,
            op,
            value,
            value_pos,
        } => {
            let r = resolve(src, store, root, field)?;
            let typed = type_literal(src, &r.field, value, *value_pos, now)?;
            Cond::Cmp(r, *op, typed)
        }
        Expr::In {
            field,
            negated,
            values,
        } => {
            let r = resolve(src, store, root, field)?;
            let typed = values
                .iter()
                .map(|(v, pos)| type_literal(src, &r.field, v, *pos, now))
                .collect::<Result<_, _>>()?;
            Cond::In(r, *negated, typed)
        }
        Expr::Like { field, pattern } => {
            let r = resolve(src, store, root, field)?;
            if !r.field.field_type.is_text() {
                return Err(src.error(
                    "INVALID_FIELD",
                    field.pos,
                    &format!(
                        "invalid operator on {} field: LIKE",
                        r.field.field_type.wire_name()
                    ),
                ));
            }
            Cond::Like(r, pattern.to_lowercase())
        }
    })
}

/// The value of a (possibly relationship) field for a row; a missing or deleted parent
/// reads as null.
fn value_of<S: RecordSource>(store: &S, row: &Map<String, Value>, r: &Resolved) -> Value {
    let mut current = row;
    for hop in &r.hops {
        match current
            .get(&hop.reference_field)
            .and_then(Value::as_str)
            .and_then(|id| store.row(&hop.target, id))
            .filter(|parent| !is_deleted(parent))
        {
            Some(parent) => current = parent,
            None => return Value::Null,
        }
    }
    current.get(&r.field.name).cloned().unwrap_or(Value::Null)
}

fn is_deleted(row: &Map<String, Value>) -> bool {
    row.get("IsDeleted")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// A stored value converted for comparison with a typed literal.
fn as_typed(field: &FieldDef, value: &Value) -> Typed {
    match value {
        Value::Null => Typed::Null,
        Value::Bool(b) => Typed::Bool(*b),
        Value::Number(n) => Typed::Num(n.as_f64().unwrap_or_default()),
        Value::String(s) if field.field_type == FieldType::DateTime => {
            parse_datetime(s).map(Typed::Instant).unwrap_or(Typed::Null)
        }
        Value::String(s) if field.field_type.is_id() => Typed::Id(s.clone()),
        Value::String(s) => Typed::Text(s.clone()),
        _ => Typed::Null,
    }
}

fn compare(a: &Typed, b: &Typed) -> Option<Ordering> {
    match (a, b) {
        // SOQL text comparison is case-insensitive.
        (Typed::Text(x), Typed::Text(y)) => Some(x.to_lowercase().cmp(&y.to_lowercase())),
        (Typed::Id(x), Typed::Id(y)) => Some(x.cmp(y)),
        (Typed::Bool(x), Typed::Bool(y)) => Some(x.cmp(y)),
        (Typed::Num(x), Typed::Num(y)) => x.partial_cmp(y),
        (Typed::Instant(x), Typed::Instant(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

fn matches_cmp(value: &Typed, op: CmpOp, lit: &Typed) -> bool {
    match (value, lit) {
        (Typed::Null, Typed::Null) => op == CmpOp::Eq,
        // SOQL's != and NOT IN keep rows whose field is null.
        (Typed::Null, _) | (_, Typed::Null) => op == CmpOp::Ne,
        (Typed::Instant(v), Typed::Range(start, end)) => match op {
            CmpOp::Eq => v >= start && v < end,
            CmpOp::Ne => !(v >= start && v < end),
            CmpOp::Lt => v < start,
            CmpOp::Le => v < end,
            CmpOp::Gt => v >= end,
            CmpOp::Ge => v >= start,
        },
        _ => match compare(value, lit) {
            None => op == CmpOp::Ne,
            Some(ord) => match op {
                CmpOp::Eq => ord == Ordering::Equal,
                CmpOp::Ne => ord != Ordering::Equal,
                CmpOp::Lt => ord == Ordering::Less,
                CmpOp::Le => ord != Ordering::Greater,
                CmpOp::Gt => ord == Ordering::Greater,
                CmpOp::Ge => ord != Ordering::Less,
            },
        },
    }
}

/// SOQL LIKE: `%` any run, `_` one character, case-insensitive; `\%` and `\_` are literal
/// (the lexer has already turned other escapes into characters).
fn like(text: &str, pattern: &str) -> bool {
    fn go(t: &[char], p: &[char]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some(('%', rest)) => (0..=t.len()).any(|i| go(&t[i..], rest)),
            Some(('_', rest)) => !t.is_empty() && go(&t[1..], rest),
            Some(('\\', rest)) if matches!(rest.first(), Some('%' | '_')) => {
                t.first() == rest.first() && go(&t[1..], &rest[1..])
            }
            Some((c, rest)) => t.first() == Some(c) && go(&t[1..], rest),
        }
    }
    let t: Vec<char> = text.to_lowercase().chars().collect();
    let p: Vec<char> = pattern.chars().collect();
    go(&t, &p)
}

fn eval<S: RecordSource>(store: &S, row: &Map<String, Value>, cond: &Cond) -> bool {
    match cond {
        Cond::And(terms) => terms.iter().all(|t| eval(store, row, t)),
        Cond::Or(terms) => terms.iter().any(|t| eval(store, row, t)),
        Cond::Not(inner) => !eval(store, row, inner),
        Cond::Cmp(r, op, lit) => {
            matches_cmp(&as_typed(&r.field, &value_of(store, row, r)), *op, lit)
        }
        Cond::In(r, negated, lits) => {
            let v = as_typed(&r.field, &value_of(store, row, r));
            if matches!(v, Typed::Null) {
                return *negated;
            }
            lits.iter().any(|l| matches_cmp(&v, CmpOp::Eq, l)) != *negated
        }
        Cond::Like(r, pattern) => match value_of(store, row, r) {
            Value::String(s) => like(&s, pattern),
            _ => false,
        },
    }
}

/// `{"type": …, "url": "/services/data/vXX.X/sobjects/Obj/Id"}`.
pub fn attributes(object: &str, id: &str, api_version: &str) -> Value {
    json!({
        "type": object,
        "url": format!("/services/data/v{api_version}/sobjects/{object}/{id}"),
    })
}

/// Writes one selected field into an output record, nesting relationship fields as
/// `"Trainer__r": {"attributes": …, "Email__c": …}` (or `null` without a parent).
fn put_field<S: RecordSource>(
    store: &S,
    out: &mut Map<String, Value>,
    row: &Map<String, Value>,
    hops: &[Hop],
    field: &FieldDef,
    api_version: &str,
) {
    let Some((hop, rest)) = hops.split_first() else {
        out.insert(
            field.name.clone(),
            row.get(&field.name).cloned().unwrap_or(Value::Null),
        );
        return;
    };
    let parent = row
        .get(&hop.reference_field)
        .and_then(Value::as_str)
        .and_then(|id| store.row(&hop.target, id))
        .filter(|p| !is_deleted(p));
    match parent {
        None => {
            out.entry(hop.relationship.clone()).or_insert(Value::Null);
        }
        Some(parent) => {
            let id = parent.get("Id").and_then(Value::as_str).unwrap_or_default();
            let entry = out.entry(hop.relationship.clone()).or_insert_with(|| {
                let mut m = Map::new();
                m.insert(
                    "attributes".into(),
                    attributes(&hop.target, id, api_version),
                );
                Value::Object(m)
            });
            if let Value::Object(nested) = entry {
                put_field(store, nested, parent, rest, field, api_version);
            }
        }
    }
}

/// Sort key of one value.
fn sort_cmp(a: &Typed, b: &Typed) -> Ordering {
    match (a, b) {
        (Typed::Null, Typed::Null) => Ordering::Equal,
        _ => compare(a, b).unwrap_or(Ordering::Equal),
    }
}

/// Runs a parsed query. `include_deleted` is true for `queryAll`.
pub fn execute<S: RecordSource>(
    query: &Query,
    store: &S,
    include_deleted: bool,
    api_version: &str,
    now: DateTime<Utc>,
) -> Result<Vec<Map<String, Value>>, SoqlError> {
    let src = Source { soql: &query.soql };
    let root = store.object(&query.from.path).ok_or_else(|| {
        src.error(
            "INVALID_TYPE",
            query.from.pos,
            &format!(
                "sObject type '{}' is not supported. If you are attempting to use a custom object, be sure to append the '__c' after the entity name. Please reference your WSDL or the describe call for the appropriate names.",
                query.from.path
            ),
        )
    })?;
    let mut selected: Vec<Resolved> = Vec::new();
    for field in &query.select {
        let r = resolve(&src, store, root, field)?;
        if selected.iter().any(|s| {
            s.field.name == r.field.name
                && s.hops.len() == r.hops.len()
                && s.hops
                    .iter()
                    .zip(&r.hops)
                    .all(|(a, b)| a.relationship == b.relationship)
        }) {
            return Err(src.error(
                "MALFORMED_QUERY",
                field.pos,
                &format!("duplicate field selected: {}", field.path),
            ));
        }
        selected.push(r);
    }
    let cond = query
        .filter
        .as_ref()
        .map(|f| compile(&src, store, root, f, now))
        .transpose()?;
    let order: Vec<(Resolved, &OrderKey)> = query
        .order
        .iter()
        .map(|k| resolve(&src, store, root, &k.field).map(|r| (r, k)))
        .collect::<Result<_, _>>()?;

    let mut rows: Vec<&Map<String, Value>> = store
        .rows(&root.name)
        .into_iter()
        .filter(|row| include_deleted || !is_deleted(row))
        .filter(|row| cond.as_ref().is_none_or(|c| eval(store, row, c)))
        .collect();
    if !order.is_empty() {
        rows.sort_by(|a, b| {
            for (r, key) in &order {
                let va = as_typed(&r.field, &value_of(store, a, r));
                let vb = as_typed(&r.field, &value_of(store, b, r));
                let ord = match (matches!(va, Typed::Null), matches!(vb, Typed::Null)) {
                    (true, true) => Ordering::Equal,
                    (true, false) if key.nulls_last => Ordering::Greater,
                    (true, false) => Ordering::Less,
                    (false, true) if key.nulls_last => Ordering::Less,
                    (false, true) => Ordering::Greater,
                    (false, false) if key.descending => sort_cmp(&vb, &va),
                    (false, false) => sort_cmp(&va, &vb),
                };
                if ord != Ordering::Equal {
                    return ord;
                }
            }
            Ordering::Equal
        });
    }
    let offset = query.offset.unwrap_or(0);
    let limit = query.limit.unwrap_or(usize::MAX);
    Ok(rows
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(|row| {
            let id = row.get("Id").and_then(Value::as_str).unwrap_or_default();
            let mut out = Map::new();
            out.insert("attributes".into(), attributes(&root.name, id, api_version));
            for r in &selected {
                put_field(store, &mut out, row, &r.hops, &r.field, api_version);
            }
            out
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::super::schema::default_schema;
    use super::*;
    use std::collections::BTreeMap;

    struct Fixture {
        objects: Vec<ObjectDef>,
        rows: BTreeMap<String, Vec<Map<String, Value>>>,
    }

    impl RecordSource for Fixture {
        fn object(&self, name: &str) -> Option<&ObjectDef> {
            self.objects
                .iter()
                .find(|o| o.name.eq_ignore_ascii_case(name))
        }
        fn rows(&self, object: &str) -> Vec<&Map<String, Value>> {
            self.rows
                .get(object)
                .map(|v| v.iter().collect())
                .unwrap_or_default()
        }
        fn row(&self, object: &str, id: &str) -> Option<&Map<String, Value>> {
            self.rows
                .get(object)?
                .iter()
                .find(|r| r.get("Id").and_then(Value::as_str) == Some(id))
        }
    }

    const T1: &str = "a0T000000000001EAA";
    const T2: &str = "a0T000000000002EAA";
    const B1: &str = "a0B000000000001EAA";
    const B2: &str = "a0B000000000002EAA";
    const B3: &str = "a0B000000000003EAA";

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn fixture() -> Fixture {
        let mut rows = BTreeMap::new();
        rows.insert(
            "Onboarding_Trainer__c".to_string(),
            vec![
                obj(json!({"Id": T1, "IsDeleted": false, "Name": "Ann", "Email__c": "ann@example.com"})),
                obj(json!({"Id": T2, "IsDeleted": true, "Name": "Gone", "Email__c": "gone@example.com"})),
            ],
        );
        rows.insert(
            "Training_Booking__c".to_string(),
            vec![
                obj(json!({"Id": B1, "IsDeleted": false, "Name": "O'Brien", "Trainer__c": T1,
                    "Service_Type__c": "Remote", "Training_Start__c": "2026-11-26T10:00:00.000+0000"})),
                obj(json!({"Id": B2, "IsDeleted": false, "Name": "b2", "Trainer__c": null,
                    "Service_Type__c": "Onsite", "Training_Start__c": "2026-11-27T10:00:00.000+0000"})),
                obj(json!({"Id": B3, "IsDeleted": true, "Name": "b3", "Trainer__c": T2,
                    "Service_Type__c": "Remote", "Training_Start__c": null})),
            ],
        );
        Fixture {
            objects: default_schema(),
            rows,
        }
    }

    fn run(soql: &str, all: bool) -> Result<Vec<Map<String, Value>>, SoqlError> {
        let now = "2026-11-26T08:00:00Z".parse().unwrap();
        execute(&parse(soql)?, &fixture(), all, "62.0", now)
    }

    fn ids(rows: &[Map<String, Value>]) -> Vec<&str> {
        rows.iter().map(|r| r["Id"].as_str().unwrap()).collect()
    }

    #[test]
    fn where_conditions_filter_rows() {
        for (soql, expected) in [
            ("SELECT Id FROM Training_Booking__c", vec![B1, B2]),
            ("select id from training_booking__c where service_type__c = 'remote'", vec![B1]),
            ("SELECT Id FROM Training_Booking__c WHERE Service_Type__c != 'Remote'", vec![B2]),
            (
                "SELECT Id FROM Training_Booking__c WHERE Id IN ('a0B000000000001','a0B000000000002EAA')",
                vec![B1, B2],
            ),
            ("SELECT Id FROM Training_Booking__c WHERE Id NOT IN ('a0B000000000001EAA')", vec![B2]),
            ("SELECT Id FROM Training_Booking__c WHERE Trainer__c = null", vec![B2]),
            ("SELECT Id FROM Training_Booking__c WHERE Trainer__c != null", vec![B1]),
            ("SELECT Id FROM Training_Booking__c WHERE Name = 'O\\'Brien'", vec![B1]),
            (
                "SELECT Id FROM Training_Booking__c WHERE Training_Start__c > 2026-11-26T10:00:00Z",
                vec![B2],
            ),
            (
                "SELECT Id FROM Training_Booking__c WHERE Training_Start__c >= 2026-11-26T10:00:00.000+0000",
                vec![B1, B2],
            ),
            ("SELECT Id FROM Training_Booking__c WHERE Training_Start__c = TODAY", vec![B1]),
            ("SELECT Id FROM Training_Booking__c WHERE Training_Start__c = NEXT_N_DAYS:1", vec![B2]),
            (
                "SELECT Id FROM Training_Booking__c WHERE (Service_Type__c = 'Onsite' OR Trainer__r.Email__c = 'ANN@example.com') AND NOT Name LIKE 'b%'",
                vec![B1],
            ),
            ("SELECT Id FROM Training_Booking__c WHERE IsDeleted = false", vec![B1, B2]),
            // Text sorts case-insensitively: "b2" < "O'Brien".
            ("SELECT Id FROM Training_Booking__c ORDER BY Name DESC", vec![B1, B2]),
            ("SELECT Id FROM Training_Booking__c ORDER BY Trainer__c ASC NULLS LAST LIMIT 1", vec![B1]),
            ("SELECT Id FROM Training_Booking__c ORDER BY Name LIMIT 5 OFFSET 1", vec![B1]),
        ] {
            let rows = run(soql, false).unwrap_or_else(|e| panic!("{soql}: {e:?}"));
            assert_eq!(ids(&rows), expected, "{soql}");
        }
    }

    #[test]
    fn query_all_includes_deleted_rows_and_parents_that_are_gone_read_null() {
        let rows = run(
            "SELECT Id, IsDeleted, Trainer__r.Name FROM Training_Booking__c",
            true,
        )
        .unwrap();
        assert_eq!(ids(&rows), vec![B1, B2, B3]);
        assert_eq!(rows[2]["IsDeleted"], json!(true));
        assert_eq!(
            rows[2]["Trainer__r"],
            Value::Null,
            "deleted parent reads null"
        );
    }

    #[test]
    fn relationship_fields_are_nested_with_attributes() {
        let rows = run(
            "SELECT Id, Name, Trainer__r.Email__c, Trainer__r.Name FROM Training_Booking__c",
            false,
        )
        .unwrap();
        assert_eq!(
            Value::Object(rows[0].clone()),
            json!({
                "attributes": {"type": "Training_Booking__c",
                               "url": format!("/services/data/v62.0/sobjects/Training_Booking__c/{B1}")},
                "Id": B1,
                "Name": "O'Brien",
                "Trainer__r": {
                    "attributes": {"type": "Onboarding_Trainer__c",
                                   "url": format!("/services/data/v62.0/sobjects/Onboarding_Trainer__c/{T1}")},
                    "Email__c": "ann@example.com",
                    "Name": "Ann"
                }
            })
        );
        assert_eq!(rows[1]["Trainer__r"], Value::Null);
    }

    #[test]
    fn errors_have_salesforce_codes_and_locators() {
        for (soql, code, needle) in [
            (
                "SELECT Id FRM Training_Booking__c",
                "MALFORMED_QUERY",
                "unexpected token: FRM",
            ),
            (
                "SELECT Id FROM",
                "MALFORMED_QUERY",
                "unexpected token: <EOF>",
            ),
            (
                "SELECT Id FROM Training_Booking__c WHERE Name = 'x' AND Name = 'y' OR Name = 'z'",
                "MALFORMED_QUERY",
                "unexpected token: OR",
            ),
            (
                "SELECT Id FROM Training_Booking__c WHERE Name = 'unterminated",
                "MALFORMED_QUERY",
                "unterminated",
            ),
            (
                "SELECT Id FROM Training_Booking__c WHERE Name = 'bad \\q'",
                "MALFORMED_QUERY",
                "Illegal character sequence '\\q'",
            ),
            (
                "SELECT Id, Id FROM Training_Booking__c",
                "MALFORMED_QUERY",
                "duplicate field selected: Id",
            ),
            (
                "SELECT Id, Nope__c FROM Training_Booking__c",
                "INVALID_FIELD",
                "No such column 'Nope__c' on entity 'Training_Booking__c'",
            ),
            (
                "SELECT Coach__r.Name FROM Training_Booking__c",
                "INVALID_FIELD",
                "Didn't understand relationship 'Coach__r'",
            ),
            (
                "SELECT Id FROM Booking",
                "INVALID_TYPE",
                "sObject type 'Booking' is not supported",
            ),
            (
                "SELECT Id FROM Training_Booking__c WHERE Id = 'a0B' OR Id != ''",
                "INVALID_QUERY_FILTER_OPERATOR",
                "invalid ID field: a0B",
            ),
            (
                "SELECT Id FROM Training_Booking__c WHERE Training_Start__c > '2026-01-01'",
                "INVALID_FIELD",
                "must be of type dateTime",
            ),
            (
                "SELECT Id FROM Training_Booking__c WHERE IsDeleted = 'false'",
                "INVALID_FIELD",
                "must be of type boolean",
            ),
            (
                "SELECT Id FROM Training_Booking__c WHERE Name = 5",
                "INVALID_FIELD",
                "must be of type string and should be enclosed in quotes",
            ),
        ] {
            let err = run(soql, false).unwrap_err();
            assert_eq!(err.code, code, "{soql}: {}", err.message);
            assert!(err.message.contains(needle), "{soql}: {}", err.message);
            assert!(
                err.message.contains("ERROR at Row:1:Column:"),
                "{}",
                err.message
            );
        }
        let err = run("SELECT Id FRM Training_Booking__c", false).unwrap_err();
        assert!(
            err.message.contains("ERROR at Row:1:Column:11"),
            "{}",
            err.message
        );
    }

    #[test]
    fn string_escapes_decode() {
        let q = parse(r"SELECT Id FROM X WHERE Name = 'a\nb\\c\'d\u00e9'").unwrap();
        match q.filter.unwrap() {
            Expr::Cmp { value, .. } => assert_eq!(value, Lit::Str("a\nb\\c'dé".into())),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn like_wildcards() {
        assert!(like("Remote Training", "remote%"));
        assert!(like("abc", "a_c"));
        assert!(!like("abc", "a_"));
        assert!(like("50%", "50\\%"));
        assert!(!like("500", "50\\%"));
    }
}
