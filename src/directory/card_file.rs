//! `CardFile`: where the directory keeps its cards' bodies (their compressed JSON) once they
//! are indexed: an unnamed temporary file, read back a card at a time on a `CardCache` miss.
//! At 100k cards the bodies were 72 MB of the process's 220 MB; on disk they cost the page
//! cache, which the kernel can drop, instead of resident memory. The store stays the record;
//! the file is this process's copy, gone when the process ends (it has no name to find).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Where one card's body lies in the file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BodyRef {
    offset: u64,
    len: u32,
}

impl BodyRef {
    /// The body's size in bytes.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the body is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The `len` bytes from `offset` on within this ref: one body of several written at once.
    pub fn slice(self, offset: usize, len: usize) -> BodyRef {
        BodyRef {
            offset: self.offset + offset as u64,
            len: u32::try_from(len).unwrap_or(u32::MAX).min(self.len),
        }
    }
}

/// Why a body could not be kept or read back.
#[derive(Debug, thiserror::Error)]
pub enum CardFileError {
    #[error("card file: {0}")]
    Io(#[from] std::io::Error),
    #[error("card body of {0} bytes is too large")]
    TooLarge(usize),
}

/// The bytes behind the refs: a temporary file, or memory where no temporary file could be
/// made (a read-only or missing temp directory), so the directory still works, only larger.
enum Backing {
    File(File),
    /// Held only to copy bytes in or out.
    Memory(Mutex<Vec<u8>>),
}

/// Append-only bodies with the bytes of replaced and removed ones counted, so the owner knows
/// when rewriting the live ones (`compacted`) would give back more than it costs.
pub struct CardFile {
    backing: Backing,
    /// The next free offset: appends reserve their range here, then write outside any lock.
    end: AtomicU64,
    /// Bytes of bodies no card refers to any more.
    garbage: AtomicU64,
}

impl CardFile {
    /// A new, empty file in the system's temporary directory (`TMPDIR`), or memory when none
    /// can be made (logged).
    pub fn new() -> Self {
        let backing = match tempfile::tempfile() {
            Ok(file) => Backing::File(file),
            Err(e) => {
                tracing::warn!(error = %e, "no temporary file for card bodies; keeping them in memory");
                Backing::Memory(Mutex::new(Vec::new()))
            }
        };
        CardFile {
            backing,
            end: AtomicU64::new(0),
            garbage: AtomicU64::new(0),
        }
    }

    /// Keeps `body`; the ref reads it back.
    pub fn append(&self, body: &[u8]) -> Result<BodyRef, CardFileError> {
        let len = u32::try_from(body.len()).map_err(|_| CardFileError::TooLarge(body.len()))?;
        let offset = self.end.fetch_add(u64::from(len), Ordering::Relaxed);
        match &self.backing {
            Backing::File(file) => file.write_all_at(body, offset)?,
            Backing::Memory(bytes) => {
                let mut bytes = bytes.lock().map_err(|_| poisoned())?;
                let (start, stop) = (offset as usize, offset as usize + body.len());
                if bytes.len() < stop {
                    bytes.resize(stop, 0);
                }
                bytes[start..stop].copy_from_slice(body);
            }
        }
        Ok(BodyRef { offset, len })
    }

    /// The body behind `at`.
    pub fn read(&self, at: BodyRef) -> Result<Vec<u8>, CardFileError> {
        let mut out = vec![0; at.len()];
        match &self.backing {
            Backing::File(file) => file.read_exact_at(&mut out, at.offset)?,
            Backing::Memory(bytes) => {
                let bytes = bytes.lock().map_err(|_| poisoned())?;
                let start = at.offset as usize;
                let found = bytes.get(start..start + at.len()).ok_or_else(|| {
                    std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "past the end")
                })?;
                out.copy_from_slice(found);
            }
        }
        Ok(out)
    }

    /// Counts `at`'s bytes as garbage: no card refers to them any more.
    pub fn release(&self, at: BodyRef) {
        self.garbage.fetch_add(u64::from(at.len), Ordering::Relaxed);
    }

    /// Bytes written, live and garbage.
    pub fn size(&self) -> u64 {
        self.end.load(Ordering::Relaxed)
    }

    /// Bytes no card refers to.
    pub fn garbage(&self) -> u64 {
        self.garbage.load(Ordering::Relaxed)
    }

    /// Whether rewriting the live bodies would free more than it copies: garbage above the live
    /// bytes and above `floor`, so a small directory never bothers.
    pub fn wants_compaction(&self, floor: u64) -> bool {
        let garbage = self.garbage();
        garbage > floor && garbage > self.size() - garbage
    }
}

impl Default for CardFile {
    fn default() -> Self {
        CardFile::new()
    }
}

fn poisoned() -> CardFileError {
    CardFileError::Io(std::io::Error::other("card bodies lock poisoned"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_read_back_and_garbage_is_counted() {
        for file in [
            CardFile::new(),
            CardFile {
                backing: Backing::Memory(Mutex::new(Vec::new())),
                end: AtomicU64::new(0),
                garbage: AtomicU64::new(0),
            },
        ] {
            let a = file.append(b"first card").expect("append");
            let b = file.append(b"second").expect("append");
            assert_eq!(file.read(a).expect("read"), b"first card");
            assert_eq!(file.read(b).expect("read"), b"second");
            assert_eq!(file.size(), 16);
            file.release(a);
            assert_eq!(file.garbage(), 10);
            assert!(file.wants_compaction(0), "10 garbage over 6 live");
            assert!(!file.wants_compaction(64));
        }
    }
}
