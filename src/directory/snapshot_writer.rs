//! `SnapshotWriter`: keeps the store's directory snapshot (`snapshot.rs`, `store::snapshot_parts`)
//! close to the live directory, so the next start-up restores it instead of analysing every
//! card: right after a start-up that found none usable (or reloaded many cards behind it), then
//! at most once an interval while changes keep coming, and once at graceful shutdown.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Directory, DirectoryError, snapshot};
use crate::store::{Store, StoreError, snapshot_parts};

/// Why a snapshot was not written (logged; the directory goes on without it).
#[derive(Debug, thiserror::Error)]
pub enum SnapshotWriteError {
    #[error("encoding the directory snapshot: {0}")]
    Directory(#[from] DirectoryError),
    #[error("storing the directory snapshot: {0}")]
    Store(#[from] StoreError),
    #[error("the encoding task failed: {0}")]
    Encoding(#[from] tokio::task::JoinError),
}

/// Writes the directory's snapshot to the store when the directory changed.
pub struct SnapshotWriter {
    directory: Arc<Directory>,
    store: Arc<dyn Store>,
    /// One write at a time (the periodic one and the shutdown one), held across the store's
    /// writes: a second writer would only write the same snapshot again.
    writing: tokio::sync::Mutex<()>,
}

impl SnapshotWriter {
    /// A writer of `directory`'s snapshots into `store`.
    pub fn new(directory: Arc<Directory>, store: Arc<dyn Store>) -> Arc<Self> {
        Arc::new(SnapshotWriter {
            directory,
            store,
            writing: tokio::sync::Mutex::new(()),
        })
    }

    /// Writes a snapshot if the directory changed since the last one; true if it wrote.
    pub async fn write_if_changed(&self) -> Result<bool, SnapshotWriteError> {
        let _one = self.writing.lock().await;
        if !self.directory.changed_since_snapshot() {
            return Ok(false);
        }
        let started = Instant::now();
        let directory = self.directory.clone();
        // Off the async workers: encoding 100k cards is a few hundred milliseconds of CPU.
        let encoded = tokio::task::spawn_blocking(move || directory.encode_snapshot()).await??;
        let encode_ms = started.elapsed().as_millis() as u64;
        let format = i64::from(snapshot::FORMAT_VERSION);
        let published = snapshot_parts::save(self.store.as_ref(), format, &encoded.bytes).await?;
        // Even when another process published a newer one: the store holds a snapshot at
        // least as recent, and the cards that differ are reloaded by revision at start-up.
        self.directory.snapshot_stored(&encoded);
        tracing::info!(
            cards = encoded.cards,
            bytes = encoded.bytes.len(),
            encode_ms,
            ms = started.elapsed().as_millis() as u64,
            published = published.is_some(),
            "directory snapshot written"
        );
        Ok(true)
    }

    /// `write_if_changed`, its failure logged.
    pub async fn write_logged(&self) {
        if let Err(e) = self.write_if_changed().await {
            tracing::warn!(error = %e, "directory snapshot not written");
        }
    }

    /// The background task: a snapshot now if none holds the directory, then one per
    /// `interval` while it changes. Aborted with the server's other tasks.
    pub fn spawn(self: &Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        let writer = self.clone();
        tokio::spawn(async move {
            if writer.directory.snapshot_due_now() {
                writer.write_logged().await;
            }
            loop {
                tokio::time::sleep(interval).await;
                writer.write_logged().await;
            }
        })
    }
}
