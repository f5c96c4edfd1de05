//! The few places where SQLite and PostgreSQL need different SQL; everything else in `sql.rs` is
//! written once for both.

use sqlx::postgres::PgQueryResult;
use sqlx::sqlite::SqliteQueryResult;
use sqlx::{Postgres, Sqlite};

/// What a database needs said its own way. Queries are written with PostgreSQL's numbered
/// placeholders (`$1`); a dialect rewrites them for its database.
pub(crate) trait Dialect: sqlx::Database {
    /// Starts a read transaction whose queries all see one snapshot (the head and the history of
    /// a thread must agree).
    const BEGIN_SNAPSHOT: &'static str;

    /// The function that measures a stored text column (`stored_bytes`).
    const BYTE_LENGTH: &'static str;

    /// What ends a subquery choosing rows to claim, so that two processes claiming at once
    /// pass over each other's rows instead of waiting for them (or claiming them twice).
    const SKIP_LOCKED: &'static str;

    /// The query with its `$n` placeholders written as this database expects.
    fn placeholders(sql: &str) -> String;

    /// Rows an `UPDATE` or `DELETE` changed (each driver has its own result type).
    fn rows_affected(result: &Self::QueryResult) -> u64;
}

impl Dialect for Sqlite {
    /// A WAL reader sees one snapshot from its first read until it ends.
    const BEGIN_SNAPSHOT: &'static str = "BEGIN";

    /// `LENGTH` counts a text's characters, not its bytes; it is what SQLite has always reported
    /// here, so sizes measured before and after stay comparable.
    const BYTE_LENGTH: &'static str = "LENGTH";

    /// One writer at a time: nothing to skip.
    const SKIP_LOCKED: &'static str = "";

    /// SQLite reads `?n` as the n-th parameter (`$n` would be a named one).
    fn placeholders(sql: &str) -> String {
        sql.replace('$', "?")
    }

    fn rows_affected(result: &SqliteQueryResult) -> u64 {
        result.rows_affected()
    }
}

impl Dialect for Postgres {
    /// READ COMMITTED would let the history move between two statements.
    const BEGIN_SNAPSHOT: &'static str = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";

    const BYTE_LENGTH: &'static str = "octet_length";

    const SKIP_LOCKED: &'static str = "FOR UPDATE SKIP LOCKED";

    fn placeholders(sql: &str) -> String {
        sql.to_owned()
    }

    fn rows_affected(result: &PgQueryResult) -> u64 {
        result.rows_affected()
    }
}
