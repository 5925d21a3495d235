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
//!
//! - `lexer.rs` — SOQL text → tokens (string escapes, date literals)
//! - `parser.rs` — tokens → [`Query`] (recursive descent)
//! - `eval.rs` — field resolution, typing of literals, filtering, ordering, paging
//! - `tests.rs`

use serde_json::{Map, Value};

use crate::salesforce::schema::ObjectDef;

mod eval;
mod lexer;
mod parser;
#[cfg(test)]
mod tests;

use lexer::*;
use parser::*;

pub use eval::{attributes, execute};
pub use lexer::CmpOp;
pub use parser::{parse, Query};

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
