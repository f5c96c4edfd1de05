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

    /// The number under `key` of the JSON object in the text column `column`, as a double
    /// (NULL when absent). `key` is the caller's constant, never input.
    fn json_real(column: &str, key: &str) -> String;

    /// The same as a 64-bit integer.
    fn json_integer(column: &str, key: &str) -> String;

    /// The JSON text of `column` with each `(key, value)` set to the SQL expression `value`.
    fn json_with(column: &str, values: &[(&str, &str)]) -> String;

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

    fn json_real(column: &str, key: &str) -> String {
        format!("json_extract({column}, '$.{key}')")
    }

    fn json_integer(column: &str, key: &str) -> String {
        format!("CAST(json_extract({column}, '$.{key}') AS INTEGER)")
    }

    fn json_with(column: &str, values: &[(&str, &str)]) -> String {
        let pairs: Vec<String> = values
            .iter()
            .map(|(key, value)| format!("'$.{key}', {value}"))
            .collect();
        format!("json_set({column}, {})", pairs.join(", "))
    }

    /// SQLite reads `?n` as the n-th parameter (`$n` would be a named one). Only a `$` before
    /// a digit is a placeholder: JSON paths (`'$.rating'`) keep theirs.
    fn placeholders(sql: &str) -> String {
        let mut written = String::with_capacity(sql.len());
        let mut chars = sql.chars().peekable();
        while let Some(c) = chars.next() {
            let placeholder = c == '$' && chars.peek().is_some_and(char::is_ascii_digit);
            written.push(if placeholder { '?' } else { c });
        }
        written
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

    fn json_real(column: &str, key: &str) -> String {
        format!("({column}::jsonb ->> '{key}')::float8")
    }

    fn json_integer(column: &str, key: &str) -> String {
        format!("({column}::jsonb ->> '{key}')::bigint")
    }

    /// The column is text: parsed as `jsonb`, set, and written back as text (keys reordered,
    /// which no reader depends on).
    fn json_with(column: &str, values: &[(&str, &str)]) -> String {
        let mut json = format!("{column}::jsonb");
        for (key, value) in values {
            json = format!("jsonb_set({json}, '{{{key}}}', to_jsonb({value}))");
        }
        format!("{json}::text")
    }

    fn placeholders(sql: &str) -> String {
        sql.to_owned()
    }

    fn rows_affected(result: &PgQueryResult) -> u64 {
        result.rows_affected()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_placeholders_leave_json_paths_alone() {
        assert_eq!(
            Sqlite::placeholders("SELECT json_extract(card, '$.rating') WHERE id = $1 AND n < $12"),
            "SELECT json_extract(card, '$.rating') WHERE id = ?1 AND n < ?12"
        );
    }
}
