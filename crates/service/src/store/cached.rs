//! Statements compiled once per connection and kept: the store's every `execute` and
//! `query_row` goes through [`Cached`], so SQLite parses and plans each statement text the
//! first time only. Compiling SQL on every call was 15 % of the service's CPU in the
//! 2,000-booking burst (issue 22).

use rusqlite::{Connection, Params, Row};

/// Compiled statements a connection keeps: more than the store's distinct statements
/// (about 95), so none is ever compiled twice.
pub(super) const STATEMENT_CACHE: usize = 128;

/// `execute` and `query_row` through the connection's statement cache.
pub(super) trait Cached {
    /// As [`Connection::execute`], with the statement compiled once.
    fn execute_cached<P: Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize>;

    /// As [`Connection::query_row`], with the statement compiled once.
    fn query_row_cached<T, P, F>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<T>
    where
        P: Params,
        F: FnOnce(&Row<'_>) -> rusqlite::Result<T>;
}

impl Cached for Connection {
    fn execute_cached<P: Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }

    fn query_row_cached<T, P, F>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<T>
    where
        P: Params,
        F: FnOnce(&Row<'_>) -> rusqlite::Result<T>,
    {
        self.prepare_cached(sql)?.query_row(params, f)
    }
}
