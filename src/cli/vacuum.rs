//! `baton vacuum`: one full VACUUM of a SQLite database, which gives its free pages back to the
//! file system and switches it to incremental auto-vacuum, so that the reaper
//! (`--thread-ttl`) shrinks it from then on. Databases created by this version already have it.

use clap::Args;

use crate::store::StoreError;
use crate::store::sqlite::{self, Vacuumed};

/// Flags of `baton vacuum`.
#[derive(Debug, Clone, Args)]
pub struct VacuumArgs {
    /// The SQLite database to compact (`sqlite://PATH`). Stop the server first: the VACUUM
    /// rewrites the whole file and blocks writes while it runs.
    #[arg(long, env = "BATON_DATABASE_URL", default_value = "sqlite://baton.db")]
    pub database_url: String,
}

/// Why `baton vacuum` did nothing.
#[derive(Debug, thiserror::Error)]
pub enum VacuumError {
    #[error(
        "baton vacuum compacts a SQLite database (sqlite://PATH); PostgreSQL reclaims space with \
         its own autovacuum, and memory:// keeps nothing"
    )]
    NotSqlite,
    #[error("no database file at {0}")]
    Missing(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Compacts the database and returns its size before and after.
pub async fn run(args: &VacuumArgs) -> Result<Vacuumed, VacuumError> {
    let path = args
        .database_url
        .strip_prefix("sqlite://")
        .or_else(|| args.database_url.strip_prefix("sqlite:"))
        .ok_or(VacuumError::NotSqlite)?;
    if !std::path::Path::new(path).exists() {
        return Err(VacuumError::Missing(path.to_owned()));
    }
    Ok(sqlite::vacuum(path).await?)
}
