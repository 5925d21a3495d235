//! The store's tables, made or brought up to date at every open: idempotent `CREATE … IF
//! NOT EXISTS`, and the once-only changes a store made by an earlier version needs (new
//! columns, and tables rebuilt without rowid).

use rusqlite::{params, Connection, OptionalExtension};

use super::StoreError;

/// Schema, applied idempotently at open. Times are unix seconds unless a column says
/// otherwise.
const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS oauth_pending (
    nonce        TEXT PRIMARY KEY,
    trainer_id   TEXT NOT NULL,
    verifier_enc TEXT NOT NULL,
    expires_at   INTEGER NOT NULL,
    consumed_at  INTEGER
);
CREATE INDEX IF NOT EXISTS oauth_pending_expiry ON oauth_pending (expires_at);
-- Flows are no longer looked up by trainer (none is evicted for another, rule 27).
DROP INDEX IF EXISTS oauth_pending_trainer;
CREATE TABLE IF NOT EXISTS checkpoints (
    channel    TEXT PRIMARY KEY,
    replay_id  INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS token_journal (
    trainer_id         TEXT PRIMARY KEY,
    access_enc         TEXT NOT NULL,
    refresh_enc        TEXT,
    access_expires_at  INTEGER NOT NULL,
    refresh_expires_at INTEGER,
    refreshed_at       INTEGER NOT NULL,
    confirmed          INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS reservations (
    booking_id     TEXT PRIMARY KEY,
    reservation_id TEXT NOT NULL,
    trainer_id     TEXT NOT NULL,
    url            TEXT NOT NULL,
    end_time       INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS reminders (
    trainer_id TEXT PRIMARY KEY,
    sent_at    INTEGER NOT NULL
);
"#;

/// Applies every table's schema, in order, and brings an earlier version's store up to date.
pub(super) fn apply(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch(SCHEMA)?;
    conn.execute_batch(super::retries::SCHEMA)?;
    super::retries::migrate(conn)?;
    add_column_once(conn, "reservations", "topic", "TEXT")?;
    add_column_once(conn, "reservations", "meeting_no", "TEXT")?;
    conn.execute_batch(super::calendar::SCHEMA)?;
    // Before the indexes below: a rebuilt table gets its own back, and then theirs.
    rebuild_with_rowid_tables(conn)?;
    conn.execute_batch(super::contacts::SCHEMA)?;
    conn.execute_batch(super::alerts::SCHEMA)?;
    conn.execute_batch(super::health::SCHEMA)?;
    conn.execute_batch(super::owed::SCHEMA)?;
    // After the reservations' meeting_no column: it indexes it.
    conn.execute_batch(super::attendance::SCHEMA)?;
    Ok(())
}

/// Adds a column to a table of a store made by an earlier version, once: `ALTER TABLE`
/// has no `IF NOT EXISTS`, so the table's columns are looked at first.
fn add_column_once(
    conn: &Connection,
    table: &str,
    column: &str,
    definition: &str,
) -> Result<(), StoreError> {
    let present: i64 = conn.query_row(
        "SELECT COUNT(*) FROM pragma_table_info(?1) WHERE name = ?2",
        params![table, column],
        |r| r.get(0),
    )?;
    if present == 0 {
        conn.execute_batch(&format!(
            "ALTER TABLE {table} ADD COLUMN {column} {definition};"
        ))?;
    }
    Ok(())
}

/// The three tables every booking writes as it gets its meeting — the apply's intent
/// (`in_doubt_applies`), the reservation journal (`reservations`) and the event journal
/// (`calendar_events`) — each keyed by its `booking_id` and stored `WITHOUT ROWID`: one
/// b-tree each, where a rowid table keyed by text is two (the table, and the index SQLite
/// makes for its text key), so the booking's commits write fewer pages to the WAL and to
/// disk. In the benchmark's burst: 19.3 `pwrite` calls per booking before (a WAL frame is
/// two), 13.6 after (README "Benchmark"). https://www.sqlite.org/withoutrowid.html
///
/// New stores create them so ([`SCHEMA`], `retries` and `calendar`); a store made by an
/// earlier version has each rebuilt once, at open, in one transaction: a crash midway
/// leaves it as it was, to be rebuilt at the next open.
const KEYED_TABLES: [&str; 3] = ["in_doubt_applies", "reservations", "calendar_events"];

/// Rebuilds, `WITHOUT ROWID`, each of [`KEYED_TABLES`] that an earlier version made with
/// a rowid; keeps its rows, its columns (with their types, `NOT NULL` and defaults) and
/// its indexes. The tables must exist.
fn rebuild_with_rowid_tables(conn: &Connection) -> Result<(), StoreError> {
    for table in KEYED_TABLES {
        let sql: Option<String> = conn
            .query_row(
                "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?1",
                params![table],
                |r| r.get(0),
            )
            .optional()?;
        let Some(sql) = sql else { continue };
        if sql.to_ascii_uppercase().contains("WITHOUT ROWID") {
            continue;
        }
        rebuild(conn, table)?;
    }
    Ok(())
}

/// One column as `pragma_table_info` gives it.
struct Column {
    name: String,
    decl_type: String,
    not_null: bool,
    default: Option<String>,
}

fn rebuild(conn: &Connection, table: &str) -> Result<(), StoreError> {
    let tx = conn.unchecked_transaction()?;
    let columns: Vec<Column> = {
        let mut stmt =
            tx.prepare("SELECT name, type, \"notnull\", dflt_value FROM pragma_table_info(?1)")?;
        let rows = stmt.query_map(params![table], |r| {
            Ok(Column {
                name: r.get(0)?,
                decl_type: r.get(1)?,
                not_null: r.get::<_, i64>(2)? != 0,
                default: r.get(3)?,
            })
        })?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    // Indexes of our own (SQLite's index of the text key has no SQL and goes with the
    // rowid), made again on the new table.
    let indexes: Vec<String> = {
        let mut stmt = tx.prepare(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ?1 AND sql IS NOT NULL",
        )?;
        let rows = stmt.query_map(params![table], |r| r.get(0))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let definitions: Vec<String> = columns
        .iter()
        .map(|c| {
            let mut d = format!("{} {}", c.name, c.decl_type);
            if c.not_null {
                d.push_str(" NOT NULL");
            }
            if let Some(default) = &c.default {
                d.push_str(&format!(" DEFAULT {default}"));
            }
            d
        })
        .collect();
    let names = columns
        .iter()
        .map(|c| c.name.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let new = format!("{table}_without_rowid");
    // A rowid table lets a text key be NULL; ours never wrote one, and such a row could not
    // be found by its booking anyway.
    tx.execute_batch(&format!(
        "CREATE TABLE {new} ({}, PRIMARY KEY (booking_id)) WITHOUT ROWID;
         INSERT INTO {new} ({names}) SELECT {names} FROM {table} WHERE booking_id IS NOT NULL;
         DROP TABLE {table};
         ALTER TABLE {new} RENAME TO {table};",
        definitions.join(", ")
    ))?;
    for index in indexes {
        tx.execute_batch(&index)?;
    }
    tx.commit()?;
    tracing::info!(table, "store table rebuilt without rowid");
    Ok(())
}
