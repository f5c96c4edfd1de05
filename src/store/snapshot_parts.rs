//! Where the directory's persisted snapshot lives: in the database, so every process on one
//! PostgreSQL shares it. The bytes go in parts of `PART_BYTES`, each written by a statement of
//! its own (on SQLite, each through the writer queue like any write, so a 100 MB snapshot never
//! holds the one writer for long), then a one-row head is flipped to name them in one statement,
//! then the older snapshots' parts are deleted. A reader takes the head, then the parts in order;
//! a part missing (pruned by a newer snapshot meanwhile) means no usable snapshot this time.

use super::{Store, StoreError, now_ms};

/// The size of one part: small enough that writing one holds SQLite's writer for milliseconds.
pub const PART_BYTES: usize = 4 << 20;

/// The one-row head naming the current snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotHead {
    /// Grows with time (milliseconds since the epoch, shifted, plus random low bits), so a
    /// snapshot published later by any process supersedes an earlier one.
    pub snapshot_id: i64,
    /// The encoding's format (the directory's to check; the store only keeps it).
    pub format: i64,
    /// How many parts make the snapshot.
    pub parts: i64,
    /// Milliseconds since the Unix epoch.
    pub written_at: i64,
}

/// A snapshot read back whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSnapshot {
    pub head: SnapshotHead,
    pub bytes: Vec<u8>,
}

/// Writes `bytes` as the new snapshot in parts, publishes it and prunes older ones; returns
/// its head, or `None` when a newer snapshot was published meanwhile (ours is then pruned).
pub async fn save(
    store: &dyn Store,
    format: i64,
    bytes: &[u8],
) -> Result<Option<SnapshotHead>, StoreError> {
    let low_bits = super::revision::new_revision() & 0x3ff;
    let head = SnapshotHead {
        snapshot_id: (now_ms() << 10) | low_bits,
        format,
        parts: i64::try_from(bytes.len().div_ceil(PART_BYTES)).unwrap_or(i64::MAX),
        written_at: now_ms(),
    };
    for (part, chunk) in bytes.chunks(PART_BYTES).enumerate() {
        let part = i64::try_from(part).unwrap_or(i64::MAX);
        store
            .put_snapshot_part(head.snapshot_id, part, chunk.to_vec())
            .await?;
    }
    let published = store.publish_snapshot(&head).await?;
    store.prune_snapshot_parts().await?;
    Ok(published.then_some(head))
}

/// The current snapshot, whole; `None` when there is none or it is incomplete.
pub async fn load(store: &dyn Store) -> Result<Option<StoredSnapshot>, StoreError> {
    let Some(head) = store.snapshot_head().await? else {
        return Ok(None);
    };
    let mut bytes: Vec<u8> = Vec::new();
    for part in 0..head.parts {
        let Some(chunk) = store.snapshot_part(head.snapshot_id, part).await? else {
            tracing::info!(
                snapshot = head.snapshot_id,
                part,
                "directory snapshot replaced while read; not used"
            );
            return Ok(None);
        };
        if bytes.is_empty() {
            // One allocation for the whole snapshot: parts are all full but the last.
            bytes.reserve_exact(
                chunk
                    .len()
                    .saturating_mul(usize::try_from(head.parts).unwrap_or(1)),
            );
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(Some(StoredSnapshot { head, bytes }))
}
